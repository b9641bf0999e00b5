/**
 * Operands the WasmBackend's matmul keeps in wasm memory between calls (shared/kernels/wasm/resident.ts):
 * a product computed from resident copies equals the float64 reference, also after its inputs are freed
 * and new arrays of the same size take their slots, after `adamwInPlace` changes a weight, and after
 * the region starts over; ResidentSet's bookkeeping (second use, slot reuse, the cap) directly; the
 * in-place KV-cache write (`writeRows`): the same numbers as scatterRows, attention over a cache kept
 * resident and patched row by row against the reference, and a whole generation with and without it
 * token for token and log-probability for log-probability identical.
 *
 * TOLERANCE (as for every float32 kernel, see kernels.test.ts): relErr = max|got - ref| /
 * max(1, max|ref|) <= 1e-4.
 */
import test from 'ava';
import { relErr } from '../scripts/torch_ref/rel-err.js';
import type { Backend, Buf, MatmulShape } from '../shared/kernels/backend.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { WasmArena } from '../shared/kernels/wasm/arena.js';
import { WasmBackend } from '../shared/kernels/wasm/backend.js';
import { ResidentSet } from '../shared/kernels/wasm/resident.js';
import { generate } from '../shared/model/generate.js';
import { Rng } from '../shared/util/rng.js';
import { normals, seedOf } from './helpers/random.js';
import { makeDecoder, randomParams, TINY_CONFIGS } from './helpers/tiny-models.js';

const TOLERANCE = 1e-4;
const reference = new ReferenceBackend();

async function product(
  be: Backend,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  s: MatmulShape,
): Promise<ArrayLike<number>> {
  const [A, B] = [be.upload(a), be.upload(b)];
  const c = await be.matmul(A, B, s);
  const out = await be.read(c);
  for (const x of [A, B, c]) be.free(x);
  return out;
}

test('resident operands: repeated, freed and replaced weights give the reference product', async (t) => {
  const be = await WasmBackend.create();
  const rng = new Rng(seedOf(t.title));
  // decoding (the dot kernel, m <= 16) and a training shape (the blocked kernel), both layouts of W
  const shapes: MatmulShape[] = [
    { m: 8, k: 64, n: 96, transB: true },
    { m: 40, k: 48, n: 40, transB: true },
    { m: 40, k: 40, n: 48 },
    // past the rows at which B is kept (A still is: n is small)
    { m: 70, k: 40, n: 48 },
  ];
  for (const s of shapes) {
    for (let gen = 0; gen < 3; gen++) {
      // a new weight each generation takes the slot the previous one freed
      const w = normals(rng, s.k * s.n);
      const W = be.upload(w);
      for (let use = 0; use < 4; use++) {
        const x = normals(rng, s.m * s.k);
        const X = be.upload(x);
        const got = await be.read(await be.matmul(X, W, s));
        const want = await product(reference, x, w, s);
        t.true(relErr(got, want) <= TOLERANCE, `m=${s.m} gen ${gen} use ${use}: ${relErr(got, want)}`);
        be.free(X);
      }
      be.free(W);
    }
  }
  await be.dispose();
});

test('resident operands: a weight changed by adamwInPlace is read afresh', async (t) => {
  const be = await WasmBackend.create();
  const rng = new Rng(seedOf(t.title));
  const s: MatmulShape = { m: 8, k: 32, n: 40, transB: true };
  const x = normals(rng, s.m * s.k);
  const X = be.upload(x);
  const W = be.upload(normals(rng, s.k * s.n));
  const [G, M, V] = [normals(rng, s.k * s.n), new Array(s.k * s.n).fill(0), new Array(s.k * s.n).fill(0)].map(
    (a) => be.upload(a),
  );
  const h = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1, gradScale: 1 };
  for (let i = 0; i < 3; i++) {
    await be.matmul(X, W, s); // used twice: resident from here on
    await be.adamwInPlace!([{ p: W, g: G, m: M, v: V, h }]);
    const got = await be.read(await be.matmul(X, W, s));
    const want = await product(reference, x, Array.from(await be.read(W)), s);
    t.true(relErr(got, want) <= TOLERANCE, `update ${i}: ${relErr(got, want)}`);
  }
  await be.dispose();
});

test('ResidentSet: copies on the second use, reuses freed slots by size, starts over at the cap', (t) => {
  const arena = new WasmArena(1);
  const base = 65536;
  const set = new ResidentSet(arena, base, 4096);
  const a = Float32Array.from({ length: 100 }, (_, i) => i);
  t.is(set.address(a, 100), -1, 'first use: copied per call');
  const pa = set.address(a, 100);
  t.is(pa, base);
  t.deepEqual(arena.f32.subarray(pa >> 2, (pa >> 2) + 100), a);
  t.is(set.address(a, 100), pa, 'third use: the same copy');
  t.is(set.top, base + 448, 'the region ends after the slot (64-byte aligned)');
  set.release(a);
  const b = Float32Array.from({ length: 100 }, (_, i) => -i);
  set.address(b, 100);
  t.is(set.address(b, 100), pa, "b takes a's freed slot");
  t.deepEqual(arena.f32.subarray(pa >> 2, (pa >> 2) + 100), b);
  // 4096 bytes hold 9 slots of 448: the tenth array starts the region over
  const more = Array.from({ length: 9 }, () => new Float32Array(100).fill(7));
  const gen = set.generation;
  for (const x of more) {
    set.address(x, 100);
    set.address(x, 100);
  }
  t.is(set.generation, gen + 1, 'the region started over once');
  t.is(set.address(b, 100), -1, 'b was dropped with it (seen afresh)');
});

test('resident operands: results of a step stay within the reference over 50 repeated uses', async (t) => {
  // the decoding pattern: the same weights every step, new activations each time
  const be = await WasmBackend.create();
  const rng = new Rng(seedOf(t.title));
  const s: MatmulShape = { m: 4, k: 24, n: 36, transB: true };
  const w = normals(rng, s.k * s.n);
  const W: Buf = be.upload(w);
  let worst = 0;
  for (let i = 0; i < 50; i++) {
    const x = normals(rng, s.m * s.k);
    const X = be.upload(x);
    const C = await be.matmul(X, W, s);
    worst = Math.max(worst, relErr(await be.read(C), await product(reference, x, w, s)));
    be.free(X);
    be.free(C);
  }
  t.true(worst <= TOLERANCE, `worst relErr ${worst}`);
  be.free(W);
  await be.dispose();
});

test('writeRows: the numbers scatterRows returns, in place; a bad index writes nothing', async (t) => {
  const be = await WasmBackend.create();
  const rng = new Rng(seedOf(t.title));
  const dst = be.upload(normals(rng, 17 * 11));
  const src = be.upload(normals(rng, 6 * 11));
  const index = Int32Array.of(3, 16, 0, 9, 3, 12);
  const want = await be.read(await be.scatterRows(dst, src, index, 11));
  await be.writeRows!(dst, src, index, 11);
  t.deepEqual(await be.read(dst), want);
  await t.throwsAsync(be.writeRows!(dst, src, Int32Array.of(1, 2, 17, 0, 0, 0), 11), {
    instanceOf: RangeError,
  });
  t.deepEqual(await be.read(dst), want, 'unchanged after the refused write');
  await be.dispose();
});

test('attention over a KV cache written in place step by step (resident, patched) matches the reference', async (t) => {
  const be = await WasmBackend.create();
  const rng = new Rng(seedOf(t.title));
  const [B, cap, H, KV, hd] = [3, 12, 4, 2, 8];
  const rowDim = KV * hd;
  const K = be.zeros(B * cap * rowDim);
  const V = be.zeros(B * cap * rowDim);
  const valid = new Uint8Array(B * cap);
  let worst = 0;
  for (let step = 0; step < 8; step++) {
    const rows = Int32Array.from({ length: B }, (_, b) => b * cap + step);
    for (let b = 0; b < B; b++) valid[b * cap + step] = 1;
    await be.writeRows!(K, be.upload(normals(rng, B * rowDim)), rows, rowDim);
    await be.writeRows!(V, be.upload(normals(rng, B * rowDim)), rows, rowDim);
    const q = normals(rng, B * H * hd);
    const s = {
      batch: B,
      tq: 1,
      tk: cap,
      heads: H,
      kvHeads: KV,
      headDim: hd,
      kValid: valid,
      qOffset: new Int32Array(B).fill(step),
    };
    const got = await be.attention(be.upload(q), K, V, s);
    const [k, v] = [await be.read(K), await be.read(V)];
    const want = await reference.attention(reference.upload(q), reference.upload(k), reference.upload(v), s);
    worst = Math.max(worst, relErr(await be.read(got.out), await reference.read(want.out)));
  }
  t.true(worst <= TOLERANCE, `worst relErr ${worst}`);
  await be.dispose();
});

test('a generation with the in-place KV cache is identical to one with scatterRows copies', async (t) => {
  const config = TINY_CONFIGS['qwen3-gqa'];
  const be = await WasmBackend.create();
  const run = async (inPlace: boolean) => {
    const view: Backend = inPlace ? be : Object.assign(Object.create(be), { writeRows: undefined });
    const model = makeDecoder(view, config, randomParams(config, 9));
    const out = await generate(model, [[1, 2, 3], [4], [5, 6]], {
      temperature: 1,
      topK: 0,
      topP: 1,
      maxNewTokens: 10,
      stopTokens: [],
      rng: new Rng(3),
    });
    for (const p of model.params.values()) be.free(p);
    return out;
  };
  const copied = await run(false);
  const inPlace = await run(true);
  t.deepEqual(inPlace, copied);
  await be.dispose();
});
