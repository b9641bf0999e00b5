// The training loops sit on top of the library: shared/train (pre-training, `rmt train`'s wiring,
// checkpoint evaluation) may import shared/run (the RMT run as services see it), and both import the
// layers below (model, rl, curriculum, ...), never the other way round. A cycle between folders means
// neither can be read, tested or replaced without the other.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import test from 'ava';

const ROOT = resolve(import.meta.dirname, '..');
const SHARED = join(ROOT, 'shared');

interface Edge {
  file: string;
  spec: string;
}

/** Folder-level import graph of shared/: `from -> to -> the first file (and specifier) that imports it`. */
function folderGraph(): Map<string, Map<string, Edge>> {
  const graph = new Map<string, Map<string, Edge>>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.ts')) addFile(path);
    }
  };
  const addFile = (path: string) => {
    const from = relative(SHARED, path).split('/')[0];
    const src = readFileSync(path, 'utf8');
    const specs = [
      ...src.matchAll(/^\s*(?:import|export)\s+(?:type\s+)?(?:[^;'"]*?\s+from\s+)?['"]([^'"]+)['"]/gm),
      ...src.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
    ].map((m) => m[1]);
    for (const spec of specs) {
      if (!spec.startsWith('.')) continue;
      const target = relative(SHARED, resolve(dirname(path), spec));
      if (target.startsWith('..')) continue;
      const to = target.split('/')[0];
      if (to === from) continue;
      const out = graph.get(from) ?? new Map<string, Edge>();
      if (!out.has(to)) out.set(to, { file: relative(ROOT, path), spec });
      graph.set(from, out);
    }
  };
  walk(SHARED);
  return graph;
}

/** A chain of imports from `from` to `to`, one line per hop, or null when `to` is not reachable. */
function importChain(graph: Map<string, Map<string, Edge>>, from: string, to: string): string[] | null {
  const via = new Map<string, { prev: string; edge: Edge }>();
  const queue = [from];
  const seen = new Set([from]);
  while (queue.length > 0) {
    const at = queue.shift()!;
    for (const [next, edge] of graph.get(at) ?? []) {
      if (seen.has(next)) continue;
      seen.add(next);
      via.set(next, { prev: at, edge });
      if (next === to) {
        const hops: string[] = [];
        for (let n = to; n !== from; n = via.get(n)!.prev) {
          const v = via.get(n)!;
          hops.unshift(`${v.prev} -> ${n} (${v.edge.file} imports ${v.edge.spec})`);
        }
        return hops;
      }
      queue.push(next);
    }
  }
  return null;
}

const graph = folderGraph();

test('the import graph sees the known edges (the scan itself works)', (t) => {
  t.true(graph.get('train')?.has('run'), 'shared/train imports shared/run');
  t.true(graph.get('run')?.has('model'), 'shared/run imports shared/model');
  t.true(graph.get('train')?.has('model'), 'shared/train imports shared/model');
});

test('shared/run never imports shared/train, directly or through another folder', (t) => {
  const chain = importChain(graph, 'run', 'train');
  t.is(chain, null, `shared/run reaches shared/train:\n${chain?.join('\n')}`);
});

test('no folder below shared/train and shared/run imports either of them: no cycle through the loops', (t) => {
  for (const top of ['train', 'run']) {
    for (const below of graph.get(top)?.keys() ?? []) {
      if (below === 'run' || below === 'train') continue;
      for (const target of ['train', 'run']) {
        const chain = importChain(graph, below, target);
        t.is(
          chain,
          null,
          `shared/${below} reaches shared/${target}, a cycle with shared/${top}:\n${chain?.join('\n')}`,
        );
      }
    }
  }
});

test('the product (shared/, services/, cli/, bin/) imports nothing from the development tools, tests, benchmarks or experiments', (t) => {
  const outside = ['scripts', 'test', 'bench', 'experiments', 'k8s'];
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return name === 'gen' || name === 'node_modules' ? [] : walk(path);
      return /\.(ts|js|mjs)$/.test(name) ? [path] : [];
    });
  const files = ['shared', 'services', 'cli', 'bin'].flatMap((d) => walk(join(ROOT, d)));
  t.true(files.length > 100, 'the scan sees the product files');
  // shared/ is the library: it does not reach up into the processes either.
  for (const file of files) {
    const from = relative(ROOT, file);
    const src = readFileSync(file, 'utf8');
    const specs = [
      ...src.matchAll(/^\s*(?:import|export)\s+(?:type\s+)?(?:[^;'"]*?\s+from\s+)?['"]([^'"]+)['"]/gm),
      ...src.matchAll(/\bimport\(\s*[`'"]([^`'"]+)[`'"]\s*\)/g),
    ].map((m) => m[1]);
    for (const spec of specs) {
      if (!spec.startsWith('.')) continue;
      const top = relative(ROOT, resolve(dirname(file), spec)).split('/')[0];
      const refused = from.startsWith('shared/') ? [...outside, 'services', 'cli', 'bin'] : outside;
      t.false(refused.includes(top), `${from} imports ${spec}`);
    }
  }
});
