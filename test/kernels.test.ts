/**
 * Every Backend op on every available float32 backend (webasm, webgpu), against the float64 ReferenceBackend on the same
 * seeded random inputs (values ~N(0,1), never zero; ragged shapes).
 *
 * TOLERANCE: for float32 backends, relErr = max|got - ref| / max(1, max|ref|) <= 1e-4 for every output.
 *
 * Each (backend, case) pair is its own test. webgpu runs where an adapter answers (on CPU-only Linux:
 * Mesa llvmpipe through Dawn's OpenGL ES backend, see shared/kernels/webgpu/setup.ts); otherwise its
 * tests are skipped with the reason printed.
 */
import test, { type ExecutionContext } from 'ava';
import { relErr } from '../scripts/torch_ref/rel-err.js';
import type { AttentionShape, Backend, BackendName, Buf, MatmulShape } from '../shared/kernels/backend.js';
import {
  availableBackends,
  createBackend,
  setupWebgpu,
  WasmBackend,
  WebgpuBackend,
} from '../shared/kernels/index.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { defaultInvFreq } from '../shared/model/rope.js';
import { Rng } from '../shared/util/rng.js';
import { ints, normals, seedOf } from './helpers/random.js';

const TOLERANCE = 1e-4;
const FLOAT32_BACKENDS: BackendName[] = ['webasm', 'webgpu'];

type Outputs = Record<string, Float32Array | Float64Array | number>;
interface Case {
  name: string;
  /** Builds inputs from `rng` (same seed for reference and candidate), runs the op, reads back. */
  run(be: Backend, rng: Rng): Promise<Outputs>;
}

const available = await availableBackends();
const webgpuSetup = await setupWebgpu();
if (!webgpuSetup.ok) console.log(`kernels.test: webgpu tests skipped: ${webgpuSetup.reason}`);
else console.log(`kernels.test: webgpu adapter: ${webgpuSetup.reason}`);

const reference = new ReferenceBackend();
const instances = new Map<BackendName, Promise<Backend>>();
function backend(name: BackendName): Promise<Backend> {
  let b = instances.get(name);
  if (!b) {
    b = createBackend(name);
    instances.set(name, b);
  }
  return b;
}

test.after.always(async () => {
  for (const b of instances.values()) await (await b).dispose();
});

const opTest = test.macro({
  async exec(t: ExecutionContext, name: BackendName, c: Case) {
    const be = await backend(name);
    const seed = seedOf(c.name);
    const want = await c.run(reference, new Rng(seed));
    const got = await c.run(be, new Rng(seed));
    const errs: string[] = [];
    for (const [key, w] of Object.entries(want)) {
      const g = got[key];
      if (typeof w === 'number') {
        t.is(typeof g, 'number', key);
        const err = relErr([g as number], [w]);
        errs.push(`${key} ${err.toExponential(1)}`);
        t.true(err <= TOLERANCE, `${key}: got ${g}, want ${w}, relErr ${err.toExponential(2)}`);
      } else {
        t.true(g instanceof Float32Array, `${key}: float32 backends return Float32Array`);
        t.is((g as Float32Array).length, w.length, `${key}: length`);
        const err = relErr(g as Float32Array, w);
        errs.push(`${key} ${err.toExponential(1)}`);
        t.true(err <= TOLERANCE, `${key}: relErr ${err.toExponential(2)} > ${TOLERANCE}`);
      }
    }
    t.log(`relErr: ${errs.join(', ')}`);
  },
  title: (_ = '', name: BackendName, c: Case) => `${name}: ${c.name}`,
});

// -------------------------------------------------------------------------------------------------
// cases

async function readAll(be: Backend, bufs: Record<string, unknown>): Promise<Outputs> {
  const out: Outputs = {};
  for (const [k, b] of Object.entries(bufs)) out[k] = await be.read(b as never);
  return out;
}

function matmulCase(m: number, k: number, n: number, transA: boolean, transB: boolean): Case {
  const tag = `${transA ? 'A^T' : 'A'}${transB ? 'B^T' : 'B'}`;
  return {
    name: `matmul ${tag} m=${m} k=${k} n=${n}`,
    async run(be, rng) {
      const s: MatmulShape = { m, k, n, transA, transB };
      const a = be.upload(normals(rng, m * k));
      const b = be.upload(normals(rng, k * n));
      return readAll(be, { c: await be.matmul(a, b, s) });
    },
  };
}

/** Attention inputs: q [B, tq, H, hd], k/v [B, tk, KV, hd], plus dOut for backward. */
function attentionInputs(be: Backend, rng: Rng, s: AttentionShape) {
  const q = normals(rng, s.batch * s.tq * s.heads * s.headDim);
  const k = normals(rng, s.batch * s.tk * s.kvHeads * s.headDim);
  const v = normals(rng, s.batch * s.tk * s.kvHeads * s.headDim);
  const dOut = normals(rng, s.batch * s.tq * s.heads * s.headDim);
  return { q, k, v, dOut, Q: be.upload(q), K: be.upload(k), V: be.upload(v), DO: be.upload(dOut) };
}

/** Padded training batch: seq 0 full, seq 1 right-padded, seq 2 left-padded (rows 0..2 see nothing). */
function trainingShape(
  batch: number,
  t: number,
  heads: number,
  kvHeads: number,
  headDim: number,
): AttentionShape {
  const kValid = new Uint8Array(batch * t).fill(1);
  for (let j = t - 2; j < t; j++) kValid[1 * t + j] = 0;
  for (let j = 0; j < 3; j++) kValid[2 * t + j] = 0;
  return { batch, tq: t, tk: t, heads, kvHeads, headDim, kValid, qOffset: new Int32Array(batch) };
}

/** Decoding one token: tq = 1 after a cache; seq 2 is left-padded past its only visible slots. */
function decodeShape(): AttentionShape {
  const batch = 3;
  const tk = 9;
  const kValid = new Uint8Array(batch * tk).fill(1);
  for (let j = 0; j < 2; j++) kValid[1 * tk + j] = 0;
  for (let j = 0; j < 5; j++) kValid[2 * tk + j] = 0;
  // seq 2 sits at key slot 3 (qOffset 3): slots 0..3 are all padding, so that query sees no key
  return { batch, tq: 1, tk, heads: 6, kvHeads: 2, headDim: 10, kValid, qOffset: Int32Array.of(8, 6, 3) };
}

function attentionCase(label: string, s: AttentionShape): Case {
  return {
    name: `attention ${label}`,
    async run(be, rng) {
      const x = attentionInputs(be, rng, s);
      const { out, probs } = await be.attention(x.Q, x.K, x.V, s);
      return readAll(be, { out, probs });
    },
  };
}

function attentionBackwardCase(label: string, s: AttentionShape): Case {
  return {
    name: `attentionBackward ${label}`,
    async run(be, rng) {
      const x = attentionInputs(be, rng, s);
      // the same probabilities for every backend: the float64 forward's
      const r = await reference.attention(
        reference.upload(x.q),
        reference.upload(x.k),
        reference.upload(x.v),
        s,
      );
      const probs = be.upload(await reference.read(r.probs));
      const { dq, dk, dv } = await be.attentionBackward(x.DO, x.Q, x.K, x.V, probs, s);
      return readAll(be, { dq, dk, dv });
    },
  };
}

const cases: Case[] = [
  {
    name: 'upload / read / length / zeros / free',
    async run(be, rng) {
      const data = normals(rng, 1001);
      const a = be.upload(data);
      const z = be.zeros(37);
      if (be.length(a) !== 1001 || be.length(z) !== 37) throw new Error('length mismatch');
      const out = await readAll(be, { a, z });
      be.free(a);
      be.free(z);
      return out;
    },
  },
  matmulCase(37, 29, 23, false, false),
  matmulCase(37, 29, 23, true, false),
  matmulCase(37, 29, 23, false, true),
  matmulCase(37, 29, 23, true, true),
  // small m / n (no transposes on cpu/webasm), k a multiple of 4
  matmulCase(1, 29, 23, false, false),
  matmulCase(37, 29, 3, true, false),
  matmulCase(37, 32, 23, false, true),
  // > 4096 output cells: webasm's threaded path
  matmulCase(67, 131, 71, false, true),
  {
    name: 'add',
    async run(be, rng) {
      const a = be.upload(normals(rng, 1001));
      const b = be.upload(normals(rng, 1001));
      return readAll(be, { c: await be.add(a, b) });
    },
  },
  {
    name: 'addBias rows=13 cols=29',
    async run(be, rng) {
      const x = be.upload(normals(rng, 13 * 29));
      const bias = be.upload(normals(rng, 29));
      return readAll(be, { y: await be.addBias(x, bias, 13, 29) });
    },
  },
  {
    name: 'sumRows rows=37 cols=23',
    async run(be, rng) {
      const x = be.upload(normals(rng, 37 * 23));
      return readAll(be, { s: await be.sumRows(x, 37, 23) });
    },
  },
  {
    name: 'embedding vocab=51 dim=19 rows=41',
    async run(be, rng) {
      const table = be.upload(normals(rng, 51 * 19));
      const ids = ints(rng, 41, 0, 51);
      return readAll(be, { y: await be.embedding(table, ids, 19) });
    },
  },
  {
    name: 'embeddingBackward vocab=51 dim=19 rows=83 (repeated ids)',
    async run(be, rng) {
      const dOut = be.upload(normals(rng, 83 * 19));
      const ids = ints(rng, 83, 0, 40); // ids 40..50 unused, most used several times
      return readAll(be, { dTable: await be.embeddingBackward(dOut, ids, 51, 19) });
    },
  },
  {
    name: 'rmsnorm rows=13 dim=37',
    async run(be, rng) {
      const x = be.upload(normals(rng, 13 * 37));
      const w = be.upload(normals(rng, 37));
      const { y, rstd } = await be.rmsnorm(x, w, 13, 37, 1e-5);
      return readAll(be, { y, rstd });
    },
  },
  {
    name: 'rmsnormBackward rows=13 dim=37',
    async run(be, rng) {
      const xs = normals(rng, 13 * 37);
      const x = be.upload(xs);
      const w = be.upload(normals(rng, 37));
      const dy = be.upload(normals(rng, 13 * 37));
      const rstd = new Float64Array(13);
      for (let r = 0; r < 13; r++) {
        let ss = 0;
        for (let c = 0; c < 37; c++) ss += xs[r * 37 + c] ** 2;
        rstd[r] = 1 / Math.sqrt(ss / 37 + 1e-5);
      }
      const { dx, dw } = await be.rmsnormBackward(dy, x, w, be.upload(rstd), 13, 37);
      return readAll(be, { dx, dw });
    },
  },
  ...[false, true].map(
    (inverse): Case => ({
      name: `rope${inverse ? ' inverse' : ''} rows=11 heads=3 headDim=10 positions up to 3000`,
      async run(be, rng) {
        const x = be.upload(normals(rng, 11 * 3 * 10));
        const positions = ints(rng, 11, 0, 3000);
        positions[0] = 0;
        const freq = { invFreq: defaultInvFreq(10, 10000), attentionScale: 1 };
        return readAll(be, { y: await be.rope(x, positions, 3, 10, freq, inverse) });
      },
    }),
  ),
  ...[false, true].map(
    (inverse): Case => ({
      name: `rope${inverse ? ' inverse' : ''} random frequencies, attention scale 1.3, headDim=12`,
      async run(be, rng) {
        const x = be.upload(normals(rng, 9 * 2 * 12));
        const positions = ints(rng, 9, 0, 5000);
        const invFreq = Float64Array.from({ length: 6 }, () => 10 ** (-5 * rng.next()));
        return readAll(be, {
          y: await be.rope(x, positions, 2, 12, { invFreq, attentionScale: 1.3 }, inverse),
        });
      },
    }),
  ),
  attentionCase('GQA 6/2 heads, padded + left-padded batch of 3, t=7', trainingShape(3, 7, 6, 2, 10)),
  attentionCase('decode tq=1 tk=9 qOffset>0, a query with no visible key', decodeShape()),
  attentionCase('GQA 4/1 heads, batch 2, t=33 (threaded sizes)', trainingShape(3, 33, 4, 1, 12)),
  attentionBackwardCase('GQA 6/2 heads, padded + left-padded batch of 3, t=7', trainingShape(3, 7, 6, 2, 10)),
  attentionBackwardCase('decode tq=1 tk=9 qOffset>0, a query with no visible key', decodeShape()),
  attentionBackwardCase('GQA 4/1 heads, batch 2, t=33 (threaded sizes)', trainingShape(3, 33, 4, 1, 12)),
  {
    name: 'swiglu n=1001',
    async run(be, rng) {
      const g = be.upload(normals(rng, 1001, 3));
      const u = be.upload(normals(rng, 1001));
      return readAll(be, { h: await be.swiglu(g, u) });
    },
  },
  {
    name: 'swigluBackward n=1001',
    async run(be, rng) {
      const dh = be.upload(normals(rng, 1001));
      const g = be.upload(normals(rng, 1001, 3));
      const u = be.upload(normals(rng, 1001));
      const { dGate, dUp } = await be.swigluBackward(dh, g, u);
      return readAll(be, { dGate, dUp });
    },
  },
  {
    name: 'crossEntropy rows=9 vocab=53 (one ignored row)',
    async run(be, rng) {
      const logits = be.upload(normals(rng, 9 * 53, 3));
      const targets = ints(rng, 9, 0, 53);
      targets[4] = -1;
      const weights = Float64Array.from({ length: 9 }, () => 0.05 + rng.next());
      const { nll, dlogits } = await be.crossEntropy(logits, targets, weights, 9, 53);
      return readAll(be, { nll, dlogits });
    },
  },
  {
    name: 'crossEntropy rows=5 vocab=1000 (several logit chunks, ragged last)',
    async run(be, rng) {
      const logits = be.upload(normals(rng, 5 * 1000, 4));
      const targets = ints(rng, 5, 0, 1000);
      targets[2] = -1;
      const weights = Float64Array.from({ length: 5 }, () => 0.05 + rng.next());
      const { nll, dlogits } = await be.crossEntropy(logits, targets, weights, 5, 1000);
      return readAll(be, { nll, dlogits });
    },
  },
  {
    name: 'sumSquares n=10007',
    async run(be, rng) {
      return { ss: await be.sumSquares(be.upload(normals(rng, 10007))) };
    },
  },
  {
    name: 'adamw n=1001 gradScale=0.37 step=3',
    async run(be, rng) {
      const p = be.upload(normals(rng, 1001));
      const g = be.upload(normals(rng, 1001));
      const m = be.upload(normals(rng, 1001, 0.1));
      const v = be.upload(normals(rng, 1001, 0.1).map((x) => x * x));
      const h = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 3, gradScale: 0.37 };
      const r = await be.adamw(p, g, m, v, h);
      return readAll(be, { p: r.p, m: r.m, v: r.v });
    },
  },
  {
    // the one-pass version where the backend has it (webgpu's WGSL), else one call each
    name: 'sumSquaresMany n=1,255,256,257,10007',
    async run(be, rng) {
      const xs = [1, 255, 256, 257, 10007].map((n) => be.upload(normals(rng, n)));
      const ss = be.sumSquaresMany
        ? await be.sumSquaresMany(xs)
        : await Promise.all(xs.map((x) => be.sumSquares(x)));
      return Object.fromEntries(ss.map((x, i) => [`ss${i}`, x]));
    },
  },
  {
    name: 'adamwInPlace n=1,1001,4099, weight decay on and off',
    async run(be, rng) {
      const items = [1, 1001, 4099].map((n, i) => ({
        p: be.upload(normals(rng, n)),
        g: be.upload(normals(rng, n)),
        m: be.upload(normals(rng, n, 0.1)),
        v: be.upload(normals(rng, n, 0.1).map((x) => x * x)),
        h: {
          lr: 1e-3,
          beta1: 0.9,
          beta2: 0.95,
          eps: 1e-8,
          weightDecay: i === 1 ? 0 : 0.1,
          step: 7,
          gradScale: 0.37,
        },
      }));
      const out: Record<string, Buf> = {};
      if (be.adamwInPlace) {
        await be.adamwInPlace(items);
        for (const [i, it] of items.entries())
          Object.assign(out, { [`p${i}`]: it.p, [`m${i}`]: it.m, [`v${i}`]: it.v });
      } else {
        for (const [i, it] of items.entries()) {
          const r = await be.adamw(it.p, it.g, it.m, it.v, it.h);
          Object.assign(out, { [`p${i}`]: r.p, [`m${i}`]: r.m, [`v${i}`]: r.v });
        }
      }
      return readAll(be, out);
    },
  },
  {
    name: 'scatterRows rows=17 rowDim=11 (a repeated target row)',
    async run(be, rng) {
      const dst = be.upload(normals(rng, 17 * 11));
      const src = be.upload(normals(rng, 6 * 11));
      const index = Int32Array.of(3, 16, 0, 9, 3, 12);
      return readAll(be, { y: await be.scatterRows(dst, src, index, 11) });
    },
  },
  {
    name: 'gatherRows rows=17 rowDim=11',
    async run(be, rng) {
      const x = be.upload(normals(rng, 17 * 11));
      const index = Int32Array.of(16, 0, 5, 5, 9, 2, 16, 1);
      return readAll(be, { y: await be.gatherRows(x, index, 11) });
    },
  },
];

for (const name of FLOAT32_BACKENDS) {
  for (const c of cases) {
    if (available.includes(name)) test(opTest, name, c);
    else test.skip(opTest, name, c);
  }
}

/**
 * crossEntropy at temperature T = 0.7 against the formula evaluated here in float64 (not through the
 * ReferenceBackend): nll[r] = logsumexp(z/T) - z[target]/T and dlogits = w[r] (softmax(z/T) -
 * onehot(target)) / T, the gradient with respect to the unscaled logits z. Fresh seeded inputs with an
 * ignored row; vocab 1000 spans several of gpu.js's logit chunks. Every backend: the float64
 * reference (relErr <= 1e-12), and the float32 ones at TOLERANCE (relErr <= 1e-4, as every float32
 * kernel above).
 */
const CE_TEMPERATURE = 0.7;

function crossEntropyF64(
  z: Float64Array,
  targets: Int32Array,
  weights: Float64Array,
  rows: number,
  vocab: number,
  T: number,
): { nll: Float64Array; dlogits: Float64Array } {
  const nll = new Float64Array(rows);
  const dlogits = new Float64Array(rows * vocab);
  for (let r = 0; r < rows; r++) {
    if (targets[r] < 0) continue;
    const row = Array.from(z.subarray(r * vocab, (r + 1) * vocab), (x) => x / T);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    nll[r] = lse - row[targets[r]];
    for (let c = 0; c < vocab; c++) {
      const p = Math.exp(row[c] - lse);
      dlogits[r * vocab + c] = (weights[r] * (p - (c === targets[r] ? 1 : 0))) / T;
    }
  }
  return { nll, dlogits };
}

const crossEntropyAtTemperature = test.macro({
  async exec(t: ExecutionContext, variant: BackendName, rows: number, vocab: number) {
    const rng = new Rng(seedOf(`crossEntropy temperature rows=${rows} vocab=${vocab}`));
    const logits = normals(rng, rows * vocab, 3);
    const targets = ints(rng, rows, 0, vocab);
    targets[rows > 2 ? 2 : 0] = -1;
    const weights = Float64Array.from({ length: rows }, () => 0.05 + rng.next());
    const want = crossEntropyF64(logits, targets, weights, rows, vocab, CE_TEMPERATURE);
    const be = variant === 'reference' ? reference : await backend(variant);
    const got = await be.crossEntropy(be.upload(logits), targets, weights, rows, vocab, CE_TEMPERATURE);
    const tol = be.precision === 'f64' ? 1e-12 : TOLERANCE;
    for (const key of ['nll', 'dlogits'] as const) {
      const g = await be.read(got[key]);
      t.is(g instanceof Float64Array, be.precision === 'f64', `${key}: the backend's precision`);
      const err = relErr(g, want[key]);
      t.true(err <= tol, `${key}: relErr ${err.toExponential(2)} > ${tol}`);
      t.log(`${key} relErr ${err.toExponential(1)}`);
    }
    // the temperature matters: the T = 1 result is not the T = 0.7 one
    const plain = await be.crossEntropy(be.upload(logits), targets, weights, rows, vocab);
    t.true(relErr(await be.read(plain.nll), want.nll) > 1e-2, 'T = 1 differs from T = 0.7');
    await t.throwsAsync(() => be.crossEntropy(be.upload(logits), targets, weights, rows, vocab, 0), {
      instanceOf: RangeError,
    });
  },
  title: (_ = '', variant: BackendName, rows: number, vocab: number) =>
    `${variant}: crossEntropy rows=${rows} vocab=${vocab} at temperature ${CE_TEMPERATURE} = float64 formula`,
});

for (const [rows, vocab] of [
  [9, 53],
  [5, 1000],
]) {
  test(crossEntropyAtTemperature, 'reference', rows, vocab);
  for (const name of FLOAT32_BACKENDS) {
    if (available.includes(name)) test(crossEntropyAtTemperature, name, rows, vocab);
    else test.skip(crossEntropyAtTemperature, name, rows, vocab);
  }
}

/**
 * Flat indices past 2^24, where f32 stops holding integers: addBias decomposes each index into (row,
 * column) and gatherRows reads rows whose flat offset is past 2^24. x[r, c] = r and bias[c] = -c, so
 * y[r, c] = r - c exactly.
 */
const bigIndex = test.macro({
  async exec(t: ExecutionContext, name: BackendName) {
    const be = await backend(name);
    const rows = 4099;
    const cols = 4099;
    t.true(rows * cols > 2 ** 24);
    const xs = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) xs.fill(r, r * cols, (r + 1) * cols);
    const bias = Float32Array.from({ length: cols }, (_, c) => -c);
    const x = be.upload(xs);
    const y = await be.addBias(x, be.upload(bias), rows, cols);
    be.free(x);
    const ys = await be.read(y);
    let bad = 0;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) if (ys[r * cols + c] !== r - c) bad++;
    t.is(bad, 0, 'addBias cells wrong');
    const index = Int32Array.of(rows - 1, 0, 4095, rows - 2);
    const g = await be.read(await be.gatherRows(y, index, cols));
    be.free(y);
    let badG = 0;
    index.forEach((r, i) => {
      for (let c = 0; c < cols; c++) if (g[i * cols + c] !== r - c) badG++;
    });
    t.is(badG, 0, 'gatherRows cells wrong');
  },
  title: (_ = '', name: BackendName) => `${name}: flat indices beyond 2^24 (addBias, gatherRows)`,
});

for (const name of FLOAT32_BACKENDS) {
  if (available.includes(name)) test(bigIndex, name);
  else test.skip(bigIndex, name);
}

/**
 * webgpu's kernel cache at 2 under concurrent ops: kernels are destroyed and rebuilt while others run
 * (the wasm backend compiles nothing per shape).
 */
const eviction = test.macro({
  async exec(t: ExecutionContext, _name: 'webgpu') {
    const be = await WebgpuBackend.create({ kernelCacheLimit: 2 });
    try {
      const picked = cases.filter((c) =>
        /^(matmul|attention |crossEntropy|rmsnormBackward|sumSquares)/.test(c.name),
      );
      const results = await Promise.all(
        picked.map(async (c) => {
          const seed = seedOf(c.name);
          return [c.name, await c.run(reference, new Rng(seed)), await c.run(be, new Rng(seed))] as const;
        }),
      );
      for (const [label, want, got] of results) {
        for (const [key, w] of Object.entries(want)) {
          const err =
            typeof w === 'number' ? relErr([got[key] as number], [w]) : relErr(got[key] as Float32Array, w);
          t.true(err <= TOLERANCE, `${label} ${key}: relErr ${err.toExponential(2)}`);
        }
      }
    } finally {
      await be.dispose();
    }
  },
  title: (_ = '', name: BackendName) => `${name}: kernel cache eviction under concurrent ops`,
});

if (available.includes('webgpu')) test(eviction, 'webgpu');
else test.skip(eviction, 'webgpu');

const disposeInFlight = test.macro({
  async exec(t: ExecutionContext, name: BackendName) {
    const be = await createBackend(name);
    const big = be.upload(new Float32Array(1 << 20).fill(1)); // large uploads take a separate path
    for (let i = 0; i < 3; i++) be.upload(new Float32Array((1 << 20) + i));
    const small = be.zeros(10);
    be.free(small);
    t.is(be.length(big), 1 << 20);
    await be.dispose(); // must wait for the uploads rather than tear the device down under them
    t.pass();
  },
  title: (_ = '', name: BackendName) => `${name}: dispose with uploads still in flight`,
});

for (const name of FLOAT32_BACKENDS) {
  if (available.includes(name)) test(disposeInFlight, name);
  else test.skip(disposeInFlight, name);
}

test('availableBackends lists reference and webasm, one name per implementation', (t) => {
  t.true(available.includes('reference'));
  t.true(available.includes('webasm'), WasmBackend.unavailableReason());
  t.false(available.includes('cpu'), 'cpu is webasm under its older name');
});

test('cpu selects the WebAssembly backend under its own name, with the same numbers as webasm', async (t) => {
  const cpu = await createBackend('cpu');
  const webasm = await backend('webasm');
  try {
    t.true(cpu instanceof WasmBackend);
    t.is(cpu.name, 'cpu');
    for (const c of cases.filter((x) =>
      /^(matmul A\^TB\^T|attention GQA 6|crossEntropy rows=5|sumRows)/.test(x.name),
    )) {
      const seed = seedOf(c.name);
      t.deepEqual(await c.run(cpu, new Rng(seed)), await c.run(webasm, new Rng(seed)), c.name);
    }
  } finally {
    await cpu.dispose();
  }
});

/** Every buffer an op returns is counted until freed; a second free of one buffer changes nothing. */
const liveCount = test.macro({
  async exec(t: ExecutionContext, name: BackendName) {
    const be = await createBackend(name);
    try {
      const count = () => (be.liveBuffers as () => number).call(be);
      t.is(typeof be.liveBuffers, 'function');
      const before = count();
      const a = be.upload([1, 2, 3, 4, 5, 6]);
      const w = be.upload([1, 1, 1]);
      const { y, rstd } = await be.rmsnorm(a, w, 2, 3, 1e-5);
      t.is(count(), before + 4);
      for (const b of [a, w, y, rstd]) be.free(b);
      be.free(a);
      t.is(count(), before);
    } finally {
      await be.dispose();
    }
  },
  title: (_ = '', name: BackendName) => `${name}: liveBuffers counts what is made and not freed`,
});

for (const name of FLOAT32_BACKENDS) {
  if (available.includes(name)) test(liveCount, name);
  else test.skip(liveCount, name);
}
