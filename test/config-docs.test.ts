import { readFileSync } from 'node:fs';
import test from 'ava';
import { PRETRAIN_DEFAULTS } from '../shared/config/pretrain-config.js';
import { TRAIN_DEFAULTS } from '../shared/config/train-config.js';
import { MATH_CORPUS_DEFAULTS } from '../shared/data/synthetic-math.js';

/**
 * docs/config.md mirrors shared/config: every field of the run configurations has a row, and every
 * field a row names exists (a renamed or removed setting leaves no stale row behind).
 */
const doc = readFileSync(new URL('../docs/config.md', import.meta.url), 'utf8');

/** Dotted paths of the leaves; the open mappings (model.config, data.math) count as one field. */
function fields(o: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) => {
    const path = prefix ? `${prefix}.${k}` : k;
    const open = path === 'model.config' || path === 'data.math';
    return v !== null && typeof v === 'object' && !Array.isArray(v) && !open
      ? fields(v as Record<string, unknown>, path)
      : [path];
  });
}

/** The first column of every table row under a heading that starts with `title`. */
function documented(title: string): Set<string> {
  const start = doc.indexOf(`\n## ${title}`);
  if (start < 0) throw new Error(`docs/config.md has no section "${title}"`);
  const next = doc.indexOf('\n## ', start + 1);
  const section = doc.slice(start, next < 0 ? undefined : next);
  const out = new Set<string>();
  for (const line of section.split('\n')) {
    const first = line.startsWith('| `') ? line.split('|')[1] : '';
    for (const m of first.matchAll(/`([^`]+)`/g)) out.add(m[1]);
  }
  return out;
}

const sections: [string, string[]][] = [
  ['Pre-training', fields(PRETRAIN_DEFAULTS as unknown as Record<string, unknown>)],
  ['RL training', fields(TRAIN_DEFAULTS as unknown as Record<string, unknown>)],
  ['The synthetic math corpus', Object.keys(MATH_CORPUS_DEFAULTS)],
];

for (const [title, expected] of sections) {
  test(`docs/config.md: ${title} lists every field and no other`, (t) => {
    const rows = documented(title);
    t.deepEqual(
      expected.filter((f) => !rows.has(f)),
      [],
      'fields without a row',
    );
    t.deepEqual(
      [...rows].filter((f) => !expected.includes(f)),
      [],
      'rows without a field',
    );
  });
}
