import test from 'ava';
import { readFixture, resolvedConfigs, sha256 } from './helpers/resolved-configs.js';

/**
 * Runs are skipped, resumed or refused by comparing resolved configs as JSON text (paper-table's
 * stage ledger, the out_dir fingerprint). Every file under configs/ and every stage the paper
 * settings derive must therefore resolve to the very text it did when the fixture was recorded, with
 * the code of that time: same keys, same values, same key order.
 */
test('every config under configs/ resolves to the recorded text', (t) => {
  const fixture = readFixture();
  const actual = resolvedConfigs();
  t.true(Object.keys(actual).length >= 20, 'the helper sees the configs');
  const unrecorded: string[] = [];
  const changed: string[] = [];
  for (const [name, r] of Object.entries(actual)) {
    const expected = fixture[name]?.[sha256(r.input)];
    if (expected === undefined) unrecorded.push(name);
    else if (expected !== sha256(r.output)) changed.push(`${name}: ${r.output.slice(0, 400)}`);
  }
  t.deepEqual(changed, [], 'resolved differently from the recorded text');
  t.deepEqual(
    unrecorded,
    [],
    'new or changed config files: check their resolution with the previous config code, then record ' +
      'them (npx tsx test/helpers/resolved-configs.ts --write)',
  );
});
