// Test helpers are for tests: a product file, a script or a benchmark that imported one would ship
// or run code nobody reviews as product code.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import test from 'ava';

const ROOT = resolve(import.meta.dirname, '..');
const SKIP = new Set(['node_modules', 'test', '.git', 'runs', 'asm']);

function* sources(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (SKIP.has(e.name) && dir === ROOT) continue;
    if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* sources(p);
    else if (/\.(ts|js|mjs)$/.test(e.name)) yield p;
  }
}

test('no file outside test/ imports from test/', (t) => {
  const offenders: string[] = [];
  for (const file of sources(ROOT)) {
    const src = readFileSync(file, 'utf8');
    for (const m of src.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) {
      if (!m[1].startsWith('.')) continue;
      const target = relative(ROOT, resolve(join(file, '..'), m[1]));
      if (target === 'test' || target.startsWith('test/'))
        offenders.push(`${relative(ROOT, file)} -> ${m[1]}`);
    }
  }
  t.deepEqual(offenders, []);
});
