/**
 * The tiled WGSL matmul (shared/kernels/webgpu/tiled-matmul.ts) through `WebgpuBackend.matmul`,
 * against the float64 ReferenceBackend on seeded random inputs (~N(0,1), never zero), in every layout
 * the `Backend` interface has: A·Bᵀ (the model's forward and generation), A·B and Aᵀ·B (its
 * backward), and Aᵀ·Bᵀ. Shapes: tile multiples, one off either side of the 64 tile and the 16 slice,
 * contiguous axes that are and are not multiples of 4 (the vec4 and the element-wise paths), single
 * rows and columns, and the tiny model's shapes (hidden 64, vocabulary 2259).
 *
 * TOLERANCE, per element, derived from float32 arithmetic: the backend rounds each input to float32
 * (one rounding each of a and b), rounds each product, and adds k products in some order (each term
 * goes through at most k - 1 roundings of the sum), so with u = 2^-24 and γ(j) = j·u / (1 - j·u)
 *   |C32[i,j] - C64[i,j]| <= γ(k + 2) · Σ_p |a[i,p]|·|b[p,j]|,
 * whatever the summation order or tiling (a fused multiply-add only removes roundings). Σ|a||b| is the
 * float64 reference product of |A| and |B|. On top, the repository's float32 kernel tolerance:
 * max|got - ref| / max(1, max|ref|) <= 1e-4.
 *
 * Runs where a WebGPU adapter answers (on CPU-only Linux: Mesa llvmpipe through Dawn's OpenGL ES
 * backend, see shared/kernels/webgpu/setup.ts); otherwise every test is skipped with the reason.
 */
import test from 'ava';
import { relErr } from '../scripts/torch_ref/rel-err.js';
import type { MatmulShape } from '../shared/kernels/backend.js';
import { createBackend, setupWebgpu, WebgpuBackend } from '../shared/kernels/index.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { Rng } from '../shared/util/rng.js';
import { normals, seedOf } from './helpers/random.js';

const U = 2 ** -24;
const REL_TOLERANCE = 1e-4;

function gamma(j: number): number {
  return (j * U) / (1 - j * U);
}

const setup = await setupWebgpu();
if (!setup.ok) console.log(`wgsl-matmul.test: skipped, no WebGPU adapter: ${setup.reason}`);
else console.log(`wgsl-matmul.test: webgpu adapter: ${setup.reason}`);
// serial: the tests share one backend and read its dispatch counter
const run = setup.ok ? test.serial : test.skip;

const reference = new ReferenceBackend();
let backend: Promise<WebgpuBackend> | null = null;
function tiledBackend(): Promise<WebgpuBackend> {
  backend ??= WebgpuBackend.create({ tiledMatmul: true });
  return backend;
}
test.after.always(async () => {
  if (backend) await (await backend).dispose();
});

/** [m, k, n] */
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [4, 4, 4],
  [37, 29, 23],
  [36, 20, 44],
  [64, 64, 64],
  [63, 15, 65],
  [65, 17, 63],
  [128, 48, 192],
  [129, 33, 127],
  [1, 64, 176],
  [8, 24, 64],
  [1, 200, 3],
  [70, 2, 1],
  // long k: many slices, the last one partial (and k not a multiple of 4)
  [100, 1030, 70],
  [8, 1024, 200],
  // the tiny model's lm head: logits [rows, vocab], its gradient in both operands
  [96, 64, 2259],
  [2259, 96, 64],
  [96, 2259, 64],
];

const LAYOUTS: { name: string; transA: boolean; transB: boolean }[] = [
  { name: 'A·Bᵀ', transA: false, transB: true },
  { name: 'A·B', transA: false, transB: false },
  { name: 'Aᵀ·B', transA: true, transB: false },
  { name: 'Aᵀ·Bᵀ', transA: true, transB: true },
];

for (const layout of LAYOUTS) {
  run(`tiled matmul ${layout.name} matches the float64 reference within γ(k+2)·|A||B|`, async (t) => {
    const be = await tiledBackend();
    const worst: string[] = [];
    for (const [m, k, n] of SHAPES) {
      const s: MatmulShape = { m, k, n, transA: layout.transA, transB: layout.transB };
      const rng = new Rng(seedOf(`${layout.name} ${m}x${k}x${n}`));
      const a = normals(rng, m * k);
      const b = normals(rng, k * n);
      const want = await reference.read(await reference.matmul(reference.upload(a), reference.upload(b), s));
      const bound = await reference.read(
        await reference.matmul(reference.upload(a.map(Math.abs)), reference.upload(b.map(Math.abs)), s),
      );
      const before = be.tiledMatmulDispatches();
      const live = be.liveBuffers();
      const A = be.upload(a);
      const B = be.upload(b);
      const C = await be.matmul(A, B, s);
      const got = await be.read(C);
      t.is(be.tiledMatmulDispatches(), (before ?? 0) + 1, `${m}x${k}x${n}: ran in the tiled kernel`);
      t.is(got.length, m * n, `${m}x${k}x${n}: length`);
      const g = gamma(k + 2);
      let worstRatio = 0;
      let bad = -1;
      for (let i = 0; i < m * n; i++) {
        const ratio = Math.abs(got[i] - want[i]) / (g * bound[i]);
        if (!(ratio <= 1)) {
          bad = i;
          break;
        }
        worstRatio = Math.max(worstRatio, ratio);
      }
      t.is(
        bad,
        -1,
        bad < 0
          ? ''
          : `${m}x${k}x${n}: C[${Math.floor(bad / n)}, ${bad % n}] = ${got[bad]}, want ${want[bad]} ± ${g * bound[bad]}`,
      );
      const err = relErr(got, want);
      t.true(err <= REL_TOLERANCE, `${m}x${k}x${n}: relErr ${err.toExponential(2)} > ${REL_TOLERANCE}`);
      worst.push(`${m}x${k}x${n} ${worstRatio.toFixed(3)}`);
      for (const x of [A, B, C]) be.free(x);
      t.is(be.liveBuffers(), live, `${m}x${k}x${n}: every buffer freed`);
    }
    t.log(`largest |error| / bound per shape: ${worst.join(', ')}`);
  });
}

run('a tiled product feeds gpu.js kernels and the next product on the device', async (t) => {
  const be = await tiledBackend();
  const [m, k, n] = [33, 24, 40];
  const rng = new Rng(seedOf('chain'));
  const a = normals(rng, m * k);
  const w = normals(rng, n * k);
  const bias = normals(rng, n);
  const w2 = normals(rng, n * 7);
  // y = (x·Wᵀ + bias)·W2, the second product reading the gpu.js kernel's output
  const chain = async (b: ReferenceBackend | WebgpuBackend) => {
    const h = await b.matmul(b.upload(a), b.upload(w), { m, k, n, transB: true });
    const hb = await b.addBias(h, b.upload(bias), m, n);
    return b.read(await b.matmul(hb, b.upload(w2), { m, k: n, n: 7 }));
  };
  const before = be.tiledMatmulDispatches() ?? 0;
  const got = await chain(be);
  const want = await chain(reference);
  t.is(be.tiledMatmulDispatches(), before + 2);
  const err = relErr(got, want);
  t.true(err <= REL_TOLERANCE, `relErr ${err.toExponential(2)}`);
});

run('shape errors name the operand; empty products still work', async (t) => {
  const be = await tiledBackend();
  const A = be.upload(new Float32Array(6).fill(1));
  const B = be.upload(new Float32Array(6).fill(1));
  await t.throwsAsync(be.matmul(A, B, { m: 3, k: 4, n: 2 }), {
    instanceOf: RangeError,
    message: /a holds 6/,
  });
  await t.throwsAsync(be.matmul(A, B, { m: 2, k: 3, n: 3 }), {
    instanceOf: RangeError,
    message: /b holds 6/,
  });
  const C = await be.matmul(A, B, { m: 2, k: 3, n: 2 });
  t.deepEqual(Array.from(await be.read(C)), [3, 3, 3, 3]);
  const E = await be.matmul(A, B, { m: 0, k: 3, n: 2 });
  t.is(be.length(E), 0);
  for (const x of [A, B, C, E]) be.free(x);
});

run('tiledMatmul: false (through createBackend) keeps gpu.js’s matmul', async (t) => {
  const off = (await createBackend('webgpu', undefined, {
    webgpu: { tiledMatmul: false },
  })) as WebgpuBackend;
  try {
    t.is(off.tiledMatmulDispatches(), null);
    const A = off.upload([1, 2, 3, 4]);
    const C = await off.matmul(A, A, { m: 2, k: 2, n: 2 });
    t.deepEqual(Array.from(await off.read(C)), [7, 10, 15, 22]);
  } finally {
    await off.dispose();
  }
});
