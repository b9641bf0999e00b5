/**
 * The WebAssembly SIMD matmul (asm/matmul.ts through shared/kernels/wasm/) against the float64
 * ReferenceBackend, every layout (A B, A^T B, A B^T, A^T B^T), on seeded N(0, 1) inputs, ragged and
 * block-crossing shapes, single-threaded and on all cores. The in-process cases run the default build
 * (relaxed SIMD, fused multiply-add); both builds also run in a fresh process.
 *
 * TOLERANCE (as for every float32 kernel, see kernels.test.ts): relErr = max|got - ref| /
 * max(1, max|ref|) <= 1e-4.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { relErr } from '../scripts/torch_ref/rel-err.js';
import type { MatmulShape } from '../shared/kernels/backend.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { chooseVariant, relaxedSimdSupported } from '../shared/kernels/wasm/loader.js';
import { DOT_MAX_ROWS, PARALLEL_MIN_FLOPS, WasmMatmul } from '../shared/kernels/wasm/matmul.js';
import { Rng } from '../shared/util/rng.js';
import { normals, seedOf } from './helpers/random.js';

const TOLERANCE = 1e-4;
const reference = new ReferenceBackend();
const mm = WasmMatmul.get();

const LAYOUTS: [boolean, boolean][] = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

/** [m, k, n]: ragged, tiny, the bench model's (N = 512 plus one), decoding (m = 8), and block edges. */
const SHAPES: [number, number, number][] = [
  [37, 29, 23],
  [1, 1, 1],
  [5, 3, 7],
  [513, 64, 2259],
  [8, 64, 2259],
  [8, 64, 37],
  [DOT_MAX_ROWS + 1, 33, 45],
  [203, 517, 61], // k past two KC = 256 blocks, m past MC = 192
  [9, 300, 2061], // n past NC = 2048
];

test('the wasm matmul is built and loads', (t) => {
  t.truthy(mm, `wasm matmul unavailable: ${WasmMatmul.unavailableReason()}`);
  if (mm) t.log(`variant ${mm.variant}, ${mm.threads} threads`);
});

for (const [m, k, n] of SHAPES) {
  for (const [transA, transB] of LAYOUTS) {
    const tag = `${transA ? 'A^T' : 'A'}${transB ? 'B^T' : 'B'}`;
    const name = `wasm matmul ${tag} m=${m} k=${k} n=${n}`;
    test(name, async (t) => {
      if (!mm) return t.fail(WasmMatmul.unavailableReason());
      const rng = new Rng(seedOf(name));
      const a = Float32Array.from(normals(rng, m * k));
      const b = Float32Array.from(normals(rng, k * n));
      const s: MatmulShape = { m, k, n, transA, transB };
      const want = await reference.read(await reference.matmul(reference.upload(a), reference.upload(b), s));
      const runs: [string, Float32Array | null][] = [
        ['1 thread', mm.matmul(a, b, s, { threads: 1 })],
        [`${mm.threads} threads`, mm.matmul(a, b, s, { threads: mm.threads })],
        ['default', mm.matmul(a, b, s)],
      ];
      for (const [label, got] of runs) {
        if (!got) return t.fail(`${label}: returned null`);
        t.is(got.length, m * n, `${label}: length`);
        const err = relErr(got, want);
        t.true(err <= TOLERANCE, `${label}: relErr ${err.toExponential(2)} > ${TOLERANCE}`);
      }
    });
  }
}

test('threads split the work when the problem is large enough', (t) => {
  if (!mm) return t.fail(WasmMatmul.unavailableReason());
  t.true(2 * 513 * 64 * 2259 >= PARALLEL_MIN_FLOPS, 'the bench shapes take the parallel path');
  if (mm.threads < 2) t.log('one core: the multi-threaded path runs with a single participant');
  t.pass();
});

test('split over threads with one operand packed for all chunks: the same bits as one thread', (t) => {
  if (!mm) return t.fail(WasmMatmul.unavailableReason());
  if (mm.threads < 2) return t.pass('one core: no split to compare');
  // split by rows (B packed once) past MC and KC; by columns (A packed once) past NC, MC and KC
  const shapes: [number, number, number][] = [
    [400, 300, 90],
    [90, 300, 2100],
    [250, 520, 260],
  ];
  for (const [m, k, n] of shapes) {
    for (const [transA, transB] of LAYOUTS) {
      const rng = new Rng(seedOf(`packed once ${m} ${k} ${n} ${transA} ${transB}`));
      const a = Float32Array.from(normals(rng, m * k));
      const b = Float32Array.from(normals(rng, k * n));
      const s: MatmulShape = { m, k, n, transA, transB };
      const one = mm.matmul(a, b, s, { threads: 1 });
      const all = mm.matmul(a, b, s, { threads: mm.threads });
      t.deepEqual(all, one, `m=${m} k=${k} n=${n} transA=${transA} transB=${transB}`);
    }
  }
});

test('zero-sized shapes give zeros', (t) => {
  if (!mm) return t.fail(WasmMatmul.unavailableReason());
  t.deepEqual(
    mm.matmul(new Float32Array(0), new Float32Array(12), { m: 0, k: 3, n: 4 }),
    new Float32Array(0),
  );
  t.deepEqual(mm.matmul(new Float32Array(0), new Float32Array(0), { m: 2, k: 0, n: 3 }), new Float32Array(6));
  t.throws(() => mm.matmul(new Float32Array(5), new Float32Array(6), { m: 2, k: 3, n: 2 }), {
    instanceOf: RangeError,
  });
});

test('results are fresh arrays and the arena does not grow on repeated calls', (t) => {
  if (!mm) return t.fail(WasmMatmul.unavailableReason());
  const rng = new Rng(7);
  const s: MatmulShape = { m: 300, k: 64, n: 500, transB: true };
  const a = Float32Array.from(normals(rng, s.m * s.k));
  const b = Float32Array.from(normals(rng, s.k * s.n));
  const first = mm.matmul(a, b, s)!;
  const bytes = mm.memoryBytes;
  const copy = first.slice();
  for (let i = 0; i < 20; i++) mm.matmul(b, a, { m: s.n, k: s.k, n: s.m, transB: true });
  const again = mm.matmul(a, b, s)!;
  t.is(mm.memoryBytes, bytes, 'memory did not grow');
  t.false(first.buffer instanceof SharedArrayBuffer, 'result is not a view of the shared memory');
  t.is(first.byteOffset, 0);
  t.is(first.buffer.byteLength, s.m * s.n * 4, 'result owns its whole buffer');
  t.not(first.buffer, again.buffer);
  t.deepEqual(first, copy, 'later calls do not overwrite earlier results');
  t.deepEqual(again, first, 'deterministic');
});

const execFileP = promisify(execFile);
const CHILD = fileURLToPath(new URL('../shared/kernels/wasm/selftest.ts', import.meta.url));

test('the worker pool does not keep the process alive', async (t) => {
  const started = Date.now();
  const { stdout } = await execFileP(process.execPath, ['--import', 'tsx', CHILD], {
    timeout: 20_000,
    env: { ...process.env, RMT_WASM_THREADS: '2' },
  });
  const out = JSON.parse(stdout.trim().split('\n').pop()!);
  t.is(out.threads, 2);
  t.true(out.maxErr <= TOLERANCE, `relErr ${out.maxErr}`);
  t.log(`child exited after ${Date.now() - started} ms`);
});

test('the relaxed-SIMD (fused multiply-add) build is the default, with no engine flag given', (t) => {
  if (!mm) return t.fail(WasmMatmul.unavailableReason());
  // The cases above ran this process's build; the loader turned the engine's flag on where needed.
  if (process.env.RMT_WASM_VARIANT) return t.pass(`forced ${process.env.RMT_WASM_VARIANT}`);
  t.true(relaxedSimdSupported(), 'relaxed SIMD validates after the loader ran');
  t.is(mm.variant, 'relaxed');
});

test('the plain SIMD build is the fallback where relaxed SIMD is unavailable or refused', (t) => {
  t.is(
    chooseVariant(null, () => false),
    'simd',
  );
  t.is(
    chooseVariant(null, () => true),
    'relaxed',
  );
  t.is(
    chooseVariant('simd', () => true),
    'simd',
  );
});

for (const variant of ['simd', 'relaxed'] as const) {
  test(`the ${variant} build in a fresh process, no engine flag given, agrees with float64`, async (t) => {
    const { stdout } = await execFileP(process.execPath, ['--import', 'tsx', CHILD], {
      timeout: 20_000,
      env: { ...process.env, RMT_WASM_VARIANT: variant, RMT_WASM_THREADS: '2' },
    });
    const out = JSON.parse(stdout.trim().split('\n').pop()!);
    t.is(out.variant, variant);
    t.true(out.maxErr <= TOLERANCE, `relErr ${out.maxErr}`);
  });
}
