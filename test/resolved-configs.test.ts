import { readFileSync } from 'node:fs';
import test from 'ava';
import { resolvedConfigs, sha256 } from './helpers/resolved-configs.js';

/**
 * Runs are skipped, resumed or refused by comparing resolved configs as JSON text (paper-table's
 * stage ledger, the out_dir fingerprint). Every file under configs/ and every stage the paper
 * settings derive must therefore resolve to the very text it did when the fixture was recorded:
 * same keys, same values, same key order.
 */
const expected = JSON.parse(
  readFileSync(new URL('fixtures/resolved-configs.json', import.meta.url), 'utf8'),
) as Record<string, string>;

test('every config under configs/ resolves to the recorded text', (t) => {
  const actual = resolvedConfigs();
  t.deepEqual(Object.keys(actual), Object.keys(expected), 'the same configs and stages');
  const changed = Object.entries(actual)
    .filter(([k, v]) => sha256(v) !== expected[k])
    .map(([k, v]) => `${k}: ${v.slice(0, 400)}`);
  t.deepEqual(changed, []);
});
