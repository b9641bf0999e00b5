/**
 * The WebAssembly SIMD ops (asm/ops.ts through shared/kernels/wasm/ops.ts) and the typed-array row
 * copies (shared/kernels/wasm/rows.ts), called directly, against the float64 ReferenceBackend on fresh
 * seeded N(0, 1) inputs: edge shapes (odd sizes and ragged SIMD tails, masks, kValid < seq, queries
 * that see no key, GQA, decoding with qOffset, tq < tk), on the main thread alone and split over all
 * participants. Also: the webasm backend's results are these calls' bit for bit.
 *
 * TOLERANCE (as for every float32 kernel, see kernels.test.ts): relErr = max|got - ref| /
 * max(1, max|ref|) <= 1e-4.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { relErr } from '../scripts/torch_ref/rel-err.js';
import { adamwHyperVector } from '../shared/kernels/adamw-hyper.js';
import type { AttentionShape } from '../shared/kernels/backend.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { ropeTables } from '../shared/kernels/rope-tables.js';
import { WasmBackend } from '../shared/kernels/wasm/backend.js';
import { relaxedSimdSupported } from '../shared/kernels/wasm/loader.js';
import { WasmOps } from '../shared/kernels/wasm/ops.js';
import { embeddingBackwardF32, gatherRowsF32, scatterRowsF32 } from '../shared/kernels/wasm/rows.js';
import { defaultInvFreq } from '../shared/model/rope.js';
import { Rng } from '../shared/util/rng.js';
import { ints, normals, seedOf } from './helpers/random.js';

const TOLERANCE = 1e-4;
const reference = new ReferenceBackend();
const ops = WasmOps.get();

const f32 = (x: ArrayLike<number>) => Float32Array.from(x);
const R = (x: ArrayLike<number>) => reference.upload(x);
const read = (b: Parameters<ReferenceBackend['read']>[0]) => reference.read(b);

/** Threads settings each case runs under: main thread only, and all participants (forced split). */
function threadSettings(): [string, number][] {
  if (!ops) return [];
  return [
    ['1 thread', 1],
    [`${ops.threads} threads`, ops.threads],
  ];
}

type Outputs = Record<string, ArrayLike<number> | number>;

/** Runs `got` under every thread setting and compares each output with `want`. */
async function check(t: ExecutionContext, want: Outputs, got: (w: WasmOps) => Outputs): Promise<void> {
  if (!ops) {
    t.fail(`wasm ops unavailable: ${WasmOps.unavailableReason()}`);
    return;
  }
  for (const [label, threads] of threadSettings()) {
    ops.forceThreads = threads;
    let out: Outputs;
    try {
      out = got(ops);
    } finally {
      ops.forceThreads = null;
    }
    for (const [key, w] of Object.entries(want)) {
      const g = out[key];
      const err = typeof w === 'number' ? relErr([g as number], [w]) : relErr(g as ArrayLike<number>, w);
      if (typeof w !== 'number') t.is((g as ArrayLike<number>).length, w.length, `${label} ${key}: length`);
      t.true(err <= TOLERANCE, `${label} ${key}: relErr ${err.toExponential(2)} > ${TOLERANCE}`);
    }
  }
}

test('the wasm ops are built and load, relaxed SIMD by default', (t) => {
  t.truthy(ops, `wasm ops unavailable: ${WasmOps.unavailableReason()}`);
  if (ops) t.log(`variant ${ops.variant}, ${ops.threads} threads`);
  if (ops && !process.env.RMT_WASM_VARIANT) t.is(ops.variant, relaxedSimdSupported() ? 'relaxed' : 'simd');
});

// -------------------------------------------------------------------------------------------------
// elementwise

for (const n of [1, 3, 7, 1001, 70_001]) {
  const name = `add / swiglu / swigluBackward n=${n}`;
  test(name, async (t) => {
    const rng = new Rng(seedOf(name));
    const a = normals(rng, n, 4);
    const b = normals(rng, n);
    const dh = normals(rng, n);
    // a few saturating gates: silu far in both tails
    if (n > 3) {
      a[0] = 95;
      a[1] = -95;
      a[2] = -30;
    }
    const sum = await read(await reference.add(R(a), R(b)));
    const h = await read(await reference.swiglu(R(a), R(b)));
    const bw = await reference.swigluBackward(R(dh), R(a), R(b));
    const want = { sum, h, dGate: await read(bw.dGate), dUp: await read(bw.dUp) };
    await check(t, want, (w) => {
      const r = w.swigluBackward(f32(dh), f32(a), f32(b));
      return { sum: w.add(f32(a), f32(b)), h: w.swiglu(f32(a), f32(b)), dGate: r.dGate, dUp: r.dUp };
    });
  });
}

for (const n of [5, 4099, 50_003]) {
  const name = `adamw / sumSquares n=${n}`;
  test(name, async (t) => {
    const rng = new Rng(seedOf(name));
    const p = normals(rng, n);
    const g = normals(rng, n);
    const m = normals(rng, n, 0.1);
    const v = normals(rng, n, 0.1).map((x) => x * x);
    const h = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 7, gradScale: 0.37 };
    const r = await reference.adamw(R(p), R(g), R(m), R(v), h);
    const want = {
      p: await read(r.p),
      m: await read(r.m),
      v: await read(r.v),
      ss: await reference.sumSquares(R(g)),
    };
    const hp = adamwHyperVector(h);
    await check(t, want, (w) => {
      const o = w.adamw(f32(p), f32(g), f32(m), f32(v), hp);
      // sum of squares is compared relative to its own size
      return { p: o.p, m: o.m, v: o.v, ss: w.sumSquares(f32(g)) };
    });
    t.is(ops?.sumSquares(new Float32Array(0)), 0);
  });
}

test('adamw in slices (a tensor larger than one wasm call takes) gives the same bits as whole', (t) => {
  if (!ops) return t.pass('no WebAssembly SIMD here');
  const rng = new Rng(seedOf('adamw slices'));
  const n = 10_007;
  const [p, g, m] = [normals(rng, n), normals(rng, n), normals(rng, n, 0.1)];
  const v = normals(rng, n, 0.1).map((x) => x * x);
  const hp = adamwHyperVector({
    lr: 1e-3,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.01,
    step: 3,
    gradScale: 1,
  });
  const whole = ops.adamw(f32(p), f32(g), f32(m), f32(v), hp);
  for (const chunk of [1000, 1001, 4096]) {
    const sliced = ops.adamw(f32(p), f32(g), f32(m), f32(v), hp, chunk);
    t.deepEqual(sliced.p, whole.p, `chunk ${chunk}: p`);
    t.deepEqual(sliced.m, whole.m, `chunk ${chunk}: m`);
    t.deepEqual(sliced.v, whole.v, `chunk ${chunk}: v`);
  }
});

// -------------------------------------------------------------------------------------------------
// rmsnorm, rope

for (const [rows, dim] of [
  [1, 1],
  [13, 37],
  [4096, 32],
  [517, 257],
]) {
  const name = `rmsnorm / rmsnormBackward rows=${rows} dim=${dim}`;
  test(name, async (t) => {
    const rng = new Rng(seedOf(name));
    const x = normals(rng, rows * dim);
    const w = normals(rng, dim);
    const dy = normals(rng, rows * dim);
    const fw = await reference.rmsnorm(R(x), R(w), rows, dim, 1e-6);
    const rstd = await read(fw.rstd);
    const bw = await reference.rmsnormBackward(R(dy), R(x), R(w), fw.rstd, rows, dim);
    const want = { y: await read(fw.y), rstd, dx: await read(bw.dx), dw: await read(bw.dw) };
    await check(t, want, (o) => {
      const f = o.rmsnorm(f32(x), f32(w), rows, dim, 1e-6);
      const b = o.rmsnormBackward(f32(dy), f32(x), f32(w), f32(rstd), rows, dim);
      return { y: f.y, rstd: f.rstd, dx: b.dx, dw: b.dw };
    });
  });
}

for (const [rows, heads, hd] of [
  [11, 3, 10],
  [512, 8, 32],
  [3, 1, 2],
]) {
  const name = `rope rows=${rows} heads=${heads} headDim=${hd}`;
  test(name, async (t) => {
    const rng = new Rng(seedOf(name));
    const x = normals(rng, rows * heads * hd);
    const positions = ints(rng, rows, 0, 3000);
    const maxPos = Math.max(...positions);
    const freq = { invFreq: defaultInvFreq(hd, 10000), attentionScale: 1.25 };
    const tab = ropeTables(maxPos + 1, hd, freq);
    const fwd = await read(await reference.rope(R(x), positions, heads, hd, freq, false));
    const inv = await read(await reference.rope(R(x), positions, heads, hd, freq, true));
    await check(t, { fwd, inv }, (o) => ({
      fwd: o.rope(f32(x), positions, heads, hd, tab.cos, tab.sin, 1),
      inv: o.rope(f32(x), positions, heads, hd, tab.cos, tab.sin, -1),
    }));
  });
}

// -------------------------------------------------------------------------------------------------
// attention

function shapeOf(
  batch: number,
  tq: number,
  tk: number,
  heads: number,
  kvHeads: number,
  headDim: number,
  rng: Rng,
  opts: { pad?: boolean; qOffset?: number[] } = {},
): AttentionShape {
  const kValid = new Uint8Array(batch * tk).fill(1);
  if (opts.pad) {
    // sequence 1: right padding; sequence 2: left padding; sequence 3 (if any): random holes
    if (batch > 1) for (let j = tk - 2; j < tk; j++) kValid[tk + j] = 0;
    if (batch > 2) for (let j = 0; j < Math.min(3, tk); j++) kValid[2 * tk + j] = 0;
    if (batch > 3) for (let j = 0; j < tk; j++) kValid[3 * tk + j] = rng.int(3) === 0 ? 0 : 1;
  }
  const qOffset = Int32Array.from(opts.qOffset ?? new Array(batch).fill(0));
  return { batch, tq, tk, heads, kvHeads, headDim, kValid, qOffset };
}

const ATTN_CASES: [string, (rng: Rng) => AttentionShape][] = [
  ['training GQA 6/2, padded batch of 4, t=7, hd=10', (r) => shapeOf(4, 7, 7, 6, 2, 10, r, { pad: true })],
  ['training MHA 4/4, t=33, hd=12 (odd, ragged SIMD)', (r) => shapeOf(3, 33, 33, 4, 4, 12, r, { pad: true })],
  ['bench small shape 8 x 64, 8/4 heads, hd=32', (r) => shapeOf(8, 64, 64, 8, 4, 32, r, { pad: true })],
  [
    'decode tq=1 tk=9, qOffset>0, a query with no visible key',
    (r) => {
      const s = shapeOf(3, 1, 9, 6, 2, 10, r, { qOffset: [8, 6, 1] });
      for (let j = 0; j < 2; j++) s.kValid[2 * 9 + j] = 0; // sequence 2 sees slots 0..1: both masked
      return s;
    },
  ],
  [
    'chunked prefill tq=5 tk=21, qOffset 3 / 16, GQA 4/1, hd=7',
    (r) => shapeOf(2, 5, 21, 4, 1, 7, r, { pad: true, qOffset: [3, 16] }),
  ],
  ['single key tk=1, hd=1', (r) => shapeOf(2, 1, 1, 2, 1, 1, r)],
  [
    'decode bench shape G=8 tq=1 tk=96, 8/4 heads, hd=32',
    (r) => shapeOf(8, 1, 96, 8, 4, 32, r, { qOffset: [40, 41, 42, 43, 44, 45, 46, 95] }),
  ],
];

for (const [label, mk] of ATTN_CASES) {
  const name = `attention / attentionBackward ${label}`;
  test(name, async (t) => {
    const rng = new Rng(seedOf(name));
    const s = mk(rng);
    const nq = s.batch * s.tq * s.heads * s.headDim;
    const nk = s.batch * s.tk * s.kvHeads * s.headDim;
    const q = normals(rng, nq);
    const k = normals(rng, nk);
    const v = normals(rng, nk);
    const dOut = normals(rng, nq);
    const fw = await reference.attention(R(q), R(k), R(v), s);
    const probs = await read(fw.probs);
    const bw = await reference.attentionBackward(R(dOut), R(q), R(k), R(v), fw.probs, s);
    const want = {
      out: await read(fw.out),
      probs,
      dq: await read(bw.dq),
      dk: await read(bw.dk),
      dv: await read(bw.dv),
    };
    await check(t, want, (o) => {
      const f = o.attention(f32(q), f32(k), f32(v), s);
      // the backward takes the reference's probabilities, so it is checked on its own
      const b = o.attentionBackward(f32(dOut), f32(q), f32(k), f32(v), f32(probs), s);
      return { out: f.out, probs: f.probs, dq: b.dq, dk: b.dk, dv: b.dv };
    });
  });
}

test('attention: masked slots and a query with no visible key give exact zeros', (t) => {
  if (!ops) return t.fail(WasmOps.unavailableReason());
  const rng = new Rng(5);
  const s = shapeOf(2, 3, 4, 2, 1, 4, rng, { qOffset: [0, 1] });
  s.kValid[0] = 0; // sequence 0, query 0 sees only slot 0: masked
  const q = f32(normals(rng, 2 * 3 * 2 * 4));
  const k = f32(normals(rng, 2 * 4 * 4));
  const { out, probs } = ops.attention(q, k, k, s);
  for (let h = 0; h < 2; h++) {
    const row = probs.subarray(h * 3 * 4, h * 3 * 4 + 4);
    t.deepEqual([...row], [0, 0, 0, 0], 'no visible key: zero probabilities');
    t.deepEqual([...out.subarray(h * 4, h * 4 + 4)], [0, 0, 0, 0], 'and a zero output');
  }
  // causal: sequence 0, query 1 sees slots 0..1 only (slot 0 masked): probability 1 on slot 1
  t.deepEqual([...probs.subarray(4, 8)], [0, 1, 0, 0]);
});

// -------------------------------------------------------------------------------------------------
// cross-entropy

for (const [rows, vocab] of [
  [9, 53],
  [5, 1000],
  [512, 2259],
  [3, 1],
  [7, 6],
]) {
  const name = `crossEntropy rows=${rows} vocab=${vocab} (ignored rows, zero and fractional weights)`;
  test(name, async (t) => {
    const rng = new Rng(seedOf(name));
    const logits = normals(rng, rows * vocab, 3);
    if (vocab > 2) logits[1] = 80; // a dominant logit: exp of very negative differences
    const targets = ints(rng, rows, 0, vocab);
    targets[rows > 1 ? 1 : 0] = -1;
    const weights = new Float64Array(rows).map(() => rng.int(4) / 3);
    weights[0] = 0;
    const r = await reference.crossEntropy(R(logits), targets, weights, rows, vocab);
    const want = { nll: await read(r.nll), dlogits: await read(r.dlogits) };
    await check(t, want, (o) => o.crossEntropy(f32(logits), targets, weights, rows, vocab));
  });
}

// -------------------------------------------------------------------------------------------------
// row copies

test('row copies: gatherRows, scatterRows, embeddingBackward against the reference', async (t) => {
  const rng = new Rng(17);
  const dim = 11;
  const table = normals(rng, 23 * dim);
  const idx = ints(rng, 40, 0, 23);
  t.true(
    relErr(gatherRowsF32(f32(table), idx, dim), await read(await reference.gatherRows(R(table), idx, dim))) <=
      TOLERANCE,
  );
  const src = normals(rng, 5 * dim);
  const rows = Int32Array.of(3, 0, 3, 22, 7);
  const dst = f32(table);
  const got = scatterRowsF32(dst, f32(src), rows, dim);
  t.true(relErr(got, await read(await reference.scatterRows(R(table), R(src), rows, dim))) <= TOLERANCE);
  t.deepEqual(dst, f32(table), 'scatterRows leaves its input alone');
  const dOut = normals(rng, 40 * dim);
  t.true(
    relErr(
      embeddingBackwardF32(f32(dOut), idx, 23, dim),
      await read(await reference.embeddingBackward(R(dOut), idx, 23, dim)),
    ) <= TOLERANCE,
  );
  t.throws(() => gatherRowsF32(f32(table), Int32Array.of(23), dim), { instanceOf: RangeError });
  t.throws(() => scatterRowsF32(f32(table), f32(src), Int32Array.of(-1), dim), { instanceOf: RangeError });
  t.throws(() => embeddingBackwardF32(f32(dOut), Int32Array.of(23), 23, dim), { instanceOf: RangeError });
});

// -------------------------------------------------------------------------------------------------
// arena, routing, fallback

test('results are fresh arrays and the arena does not grow on repeated calls', (t) => {
  if (!ops) return t.fail(WasmOps.unavailableReason());
  const rng = new Rng(9);
  const rows = 64;
  const vocab = 999;
  const logits = f32(normals(rng, rows * vocab));
  const targets = ints(rng, rows, 0, vocab);
  const weights = new Float64Array(rows).fill(1);
  const first = ops.crossEntropy(logits, targets, weights, rows, vocab);
  const bytes = ops.memoryBytes;
  const copy = first.dlogits.slice();
  for (let i = 0; i < 10; i++)
    ops.crossEntropy(f32(normals(rng, rows * vocab)), targets, weights, rows, vocab);
  const again = ops.crossEntropy(logits, targets, weights, rows, vocab);
  t.is(ops.memoryBytes, bytes, 'memory did not grow');
  t.false(first.dlogits.buffer instanceof SharedArrayBuffer, 'result is not a view of the shared memory');
  t.deepEqual(first.dlogits, copy, 'later calls do not overwrite earlier results');
  t.deepEqual(again.dlogits, first.dlogits, 'deterministic');
});

test('the webasm backend runs the wasm ops: its attention and crossEntropy are theirs bit for bit', async (t) => {
  const s = shapeOf(3, 7, 7, 6, 2, 10, new Rng(3), { pad: true });
  const rng = new Rng(4);
  const nq = s.batch * s.tq * s.heads * s.headDim;
  const nk = s.batch * s.tk * s.kvHeads * s.headDim;
  const [q, k, v] = [f32(normals(rng, nq)), f32(normals(rng, nk)), f32(normals(rng, nk))];
  const logits = f32(normals(rng, 9 * 53));
  const targets = ints(rng, 9, 0, 53);
  targets[2] = -1;
  const weights = new Float64Array(9).fill(0.5);
  if (!ops) {
    t.fail(`wasm ops unavailable: ${WasmOps.unavailableReason()}`);
    return;
  }
  const want = ops.attention(q, k, v, s);
  const wantCe = ops.crossEntropy(logits, targets, weights, 9, 53);
  const be = await WasmBackend.create();
  try {
    const r = await be.attention(be.upload(q), be.upload(k), be.upload(v), s);
    const ce = await be.crossEntropy(be.upload(logits), targets, weights, 9, 53);
    t.deepEqual(await be.read(r.out), want.out);
    t.deepEqual(await be.read(r.probs), want.probs);
    t.deepEqual(await be.read(ce.nll), wantCe.nll);
    t.deepEqual(await be.read(ce.dlogits), wantCe.dlogits);
  } finally {
    await be.dispose();
  }
});

const execFileP = promisify(execFile);
const CHILD = fileURLToPath(new URL('../shared/kernels/wasm/ops-selftest.ts', import.meta.url));

for (const variant of ['simd', 'relaxed'] as const) {
  test(`the ${variant} build in a fresh process on 2 threads (the pool does not keep it alive)`, async (t) => {
    // No engine flag: the loader turns relaxed SIMD on itself where the engine has it behind one.
    const { stdout } = await execFileP(process.execPath, ['--import', 'tsx', CHILD], {
      timeout: 30_000,
      env: { ...process.env, RMT_WASM_VARIANT: variant, RMT_WASM_THREADS: '2' },
    });
    const out = JSON.parse(stdout.trim().split('\n').pop()!);
    t.is(out.variant, variant);
    t.is(out.threads, 2);
    t.true(out.maxErr <= TOLERANCE, `relErr ${out.maxErr}`);
  });
}
