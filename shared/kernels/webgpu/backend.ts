/**
 * `Backend` on WebGPU: gpu.js's webgpu mode (WGSL compute shaders) on Google's Dawn (setup.ts), with
 * the buffer pool and submit batching around Dawn's device (device-batching.ts) and the optimizer's
 * multi-tensor passes and the tiled matmul in hand-written WGSL (wgsl-optimizer.ts, tiled-matmul.ts). Kernel bodies live in `kernels.ts`;
 * host-side index building in `host.ts`; gpu.js plumbing (kernel cache, read-back) in `gpujs.ts`.
 *
 * Every kernel call returns a Promise (gpu.js's async contract) and yields a device-resident handle
 * (`WebGPUBufferResult`) that feeds the next kernel without readback:
 * - a `Buf` is a `DeviceBuf`, which may still be pending (uploads run a copy kernel, which is async
 *   while the `Backend` contract makes `upload`/`zeros` synchronous); ops await it;
 * - every argument position of a kernel always gets the same kind (a device handle for tensors, a
 *   Float32Array for host data), because gpu.js fixes the kind at the first call;
 * - intermediates are deleted as soon as their consumer has been submitted;
 * - reads copy through a staging buffer of their own (not the producing kernel's, which the LRU
 *   kernel cache may have destroyed).
 * Shapes with more than 2^24 elements are handled: index arithmetic stays in i32 (see kernels.ts).
 */
import { adamwHyperVector } from '../adamw-hyper.js';
import {
  type AdamWHyper,
  type AttentionShape,
  type Backend,
  type Buf,
  checkTemperature,
  type MatmulShape,
  type RopeFrequencies,
} from '../backend.js';
import { checkRopeFrequencies } from '../reference.js';
import { RopeTableCache, ropeRowsFor } from '../rope-tables.js';
import {
  type BatchableDevice,
  DeviceBatching,
  type DeviceBatchingOptions,
  type DeviceBatchingStats,
} from './device-batching.js';
import {
  type Dev,
  DeviceBuf,
  detachOutput,
  devLength,
  GPU,
  type GpuContext,
  type GpuInstance,
  type Handle,
  handleOf,
  KernelCache,
  type KernelFn,
  readHandle,
  WebGPUContext,
} from './gpujs.js';
import { asF32, buildCsr, buildInverse } from './host.js';
import * as K from './kernels.js';
import { setupWebgpu } from './setup.js';
import { TiledMatmul } from './tiled-matmul.js';
import { WgslOptimizer } from './wgsl-optimizer.js';

export interface WebgpuOptions {
  /** Compiled kernels kept (least recently used destroyed first); default 512. */
  kernelCacheLimit?: number;
  /**
   * The buffer pool and submit batching around gpu.js's device (`device-batching.ts`); both on by
   * default, off with RMT_WEBGPU_POOL=0 / RMT_WEBGPU_BATCH=0.
   */
  deviceBatching?: Partial<DeviceBatchingOptions>;
  /**
   * Clipping's sums of squares and AdamW as one WGSL pass each over all tensors
   * (`wgsl-optimizer.ts`, `sumSquaresMany` / `adamwInPlace`); default true, also off with
   * RMT_WEBGPU_WGSL_OPTIMIZER=0.
   */
  wgslOptimizer?: boolean;
  /**
   * Matrix products in the tiled WGSL kernel (`tiled-matmul.ts`) instead of gpu.js's one thread per
   * output; default true, also off with RMT_WEBGPU_TILED_MATMUL=0.
   */
  tiledMatmul?: boolean;
}

/** Uploads at least this large get a throwaway copy kernel: a cached one would pin a second copy. */
const UPLOAD_CACHE_LIMIT = 1 << 20;
/**
 * Kernels are compiled per shape; beyond this many the least recently used is destroyed (decoding with
 * a growing key length makes a new attention shape per step unless the caller buckets tk).
 */
const KERNEL_CACHE_LIMIT = 512;
/** Logits per chunk of a row's logsumexp in crossEntropy. */
const CE_CHUNK = 256;
/** Elements per partial sum in sumSquares. */
const SUMSQ_CHUNK = 256;

let liveWebgpuBackends = 0;

export class WebgpuBackend implements Backend {
  readonly name = 'webgpu' as const;
  readonly precision = 'f32' as const;
  private readonly kernels: KernelCache;
  private readonly ropeCache = new RopeTableCache<Dev>(
    (host) => this.deviceCopy(host),
    (cos, sin) => this.release(cos, sin),
  );
  /** Uploads still being copied to the device; dispose() waits for them before it tears down. */
  private readonly inFlight = new Set<Promise<unknown>>();
  private disposed = false;
  /** Bufs made and not yet freed (see liveBuffers). */
  private live = 0;
  private batching: DeviceBatching | null = null;
  private optimizer: WgslOptimizer | null = null;
  private tiled: TiledMatmul | null = null;
  private context: GpuContext | null = null;
  /** The optimizer's passes in WGSL, one pass for all tensors (see Backend); off with wgslOptimizer. */
  sumSquaresMany?: (xs: Buf[]) => Promise<number[]>;
  adamwInPlace?: (items: { p: Buf; g: Buf; m: Buf; v: Buf; h: AdamWHyper }[]) => Promise<void>;

  private constructor(
    private readonly gpu: GpuInstance,
    kernelCacheLimit: number,
  ) {
    this.kernels = new KernelCache(gpu, kernelCacheLimit);
  }

  static async create(options: WebgpuOptions = {}): Promise<WebgpuBackend> {
    const setup = await setupWebgpu();
    if (!setup.ok) throw new Error(`webgpu unavailable: ${setup.reason}`);
    const context = await WebGPUContext.acquire();
    const device: BatchableDevice = context.device;
    liveWebgpuBackends++;
    const backend = new WebgpuBackend(
      new GPU({ mode: 'webgpu' }),
      options.kernelCacheLimit ?? KERNEL_CACHE_LIMIT,
    );
    backend.batching = DeviceBatching.install(device, {
      ...options.deviceBatching,
      ...(process.env.RMT_WEBGPU_POOL === '0' ? { bufferPool: false } : {}),
      ...(process.env.RMT_WEBGPU_BATCH === '0' ? { batchSubmits: false } : {}),
    });
    if (options.wgslOptimizer !== false && process.env.RMT_WEBGPU_WGSL_OPTIMIZER !== '0') {
      backend.optimizer = new WgslOptimizer(device as never);
      backend.sumSquaresMany = (xs) => backend.sumSquaresManyOnDevice(xs);
      backend.adamwInPlace = (items) => backend.adamwInPlaceOnDevice(items);
    }
    if (options.tiledMatmul !== false && process.env.RMT_WEBGPU_TILED_MATMUL !== '0') {
      backend.context = context;
      backend.tiled = new TiledMatmul(device as never);
    }
    return backend;
  }

  /** Resolves when every queued kernel has run on the device (for profiling). */
  async sync(): Promise<void> {
    const { device } = await WebGPUContext.acquire();
    await device.queue.onSubmittedWorkDone();
  }

  /** The buffer pool and submit batching settings. */
  deviceBatchingSettings(): Readonly<DeviceBatchingOptions> | null {
    return this.batching ? { ...this.batching.settings } : null;
  }

  /** Counters of the buffer pool and submit batching. */
  deviceBatchingStats(): DeviceBatchingStats | null {
    return this.batching?.stats() ?? null;
  }

  /** Matrix products run by the tiled WGSL kernel so far; null when it is off. */
  tiledMatmulDispatches(): number | null {
    return this.tiled ? this.tiled.dispatches : null;
  }

  /** Device tensors made by this backend and not yet freed (see Backend.liveBuffers). */
  liveBuffers(): number {
    return this.live;
  }

  // -------------------------------------------------------------------------------------------------
  // kernel plumbing

  private run(
    op: string,
    fn: KernelFn,
    size: number,
    constants: Record<string, number>,
    args: Dev[],
  ): Promise<Dev> {
    if (this.disposed) throw new Error(`${this.name} backend used after dispose()`);
    return this.kernels.run(op, fn, size, constants, args);
  }

  private async dev(x: Buf): Promise<Dev> {
    const b = x as unknown;
    if (b instanceof Float32Array) return b;
    if (b instanceof DeviceBuf) {
      if (b.freed) throw new Error('buffer used after free()');
      if (!b.handle) b.handle = await (b.pending as Promise<Handle>);
      return b.handle;
    }
    throw new TypeError(`not a ${this.name} buffer`);
  }

  private wrap(d: Dev): Buf {
    if (d instanceof Float32Array) return d as unknown as Buf;
    const b = new DeviceBuf(d.output[0]);
    b.handle = d;
    this.live++;
    return b as unknown as Buf;
  }

  private release(...ds: Dev[]): void {
    for (const d of ds) if (!(d instanceof Float32Array)) d.delete();
  }

  /** Host data as a kernel argument for a tensor slot, device-resident. */
  private async deviceCopy(data: Float32Array): Promise<Dev> {
    const n = data.length;
    if (n < UPLOAD_CACHE_LIMIT) return this.run('copy', K.copy, n, {}, [data]);
    const k = this.gpu.createKernel(K.copy, {
      output: [n],
      asyncMode: true,
      pipeline: true,
      immutable: true,
      precision: 'single',
    });
    const out = await k(data);
    detachOutput(k);
    const { device } = await WebGPUContext.acquire();
    await device.queue.onSubmittedWorkDone();
    k.destroy();
    return out;
  }

  // -------------------------------------------------------------------------------------------------
  // buffers

  upload(data: ArrayLike<number>): Buf {
    const f32 = Float32Array.from(data);
    if (f32.length === 0) return f32 as unknown as Buf;
    return this.pendingBuf(f32.length, this.deviceCopy(f32));
  }

  zeros(n: number): Buf {
    if (n === 0) return new Float32Array(n) as unknown as Buf;
    return this.pendingBuf(n, this.run('fill', K.fill, n, {}, [new Float32Array(1)]));
  }

  private pendingBuf(n: number, p: Promise<Dev>): Buf {
    const b = new DeviceBuf(n);
    b.pending = p as Promise<Handle>;
    this.live++;
    this.inFlight.add(p);
    // settle bookkeeping; a failure still reaches whoever awaits the buffer, and an unused failed
    // upload must not become an unhandled rejection
    p.then(
      () => this.inFlight.delete(p),
      () => this.inFlight.delete(p),
    );
    return b as unknown as Buf;
  }

  async read(x: Buf): Promise<Float32Array> {
    const d = await this.dev(x);
    if (d instanceof Float32Array) return d.slice();
    return readHandle(d);
  }

  length(x: Buf): number {
    const b = x as unknown;
    if (b instanceof Float32Array) return b.length;
    if (b instanceof DeviceBuf) return b.n;
    throw new TypeError(`not a ${this.name} buffer`);
  }

  free(x: Buf): void {
    const b = x as unknown;
    if (!(b instanceof DeviceBuf) || b.freed) return;
    b.freed = true;
    this.live--;
    if (b.handle) b.handle.delete();
    else
      b.pending?.then(
        (h) => h.delete(),
        () => {},
      );
    b.handle = null;
    b.pending = null;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    await Promise.allSettled([...this.inFlight]);
    this.disposed = true;
    this.ropeCache.clear();
    this.kernels.destroy();
    await this.gpu.destroy();
    if (--liveWebgpuBackends === 0) {
      this.batching?.flush();
      this.batching?.trim();
      await WebGPUContext.destroy();
    }
  }

  // -------------------------------------------------------------------------------------------------
  // ops

  /**
   * The tiled WGSL kernel where it is on and both operands are on the device; otherwise gpu.js's,
   * with B brought to [k, n] (a transpose when transB) for coalesced reads.
   */
  async matmul(a: Buf, b: Buf, s: MatmulShape): Promise<Buf> {
    const { m, k, n } = s;
    const A = await this.dev(a);
    const B = await this.dev(b);
    if (this.disposed) throw new Error(`${this.name} backend used after dispose()`);
    if (this.tiled && this.context && !(A instanceof Float32Array) && !(B instanceof Float32Array)) {
      if (A.buffer && B.buffer && this.tiled.fits(s)) {
        const out = this.tiled.run(A.buffer as never, B.buffer as never, s);
        return this.wrap(handleOf(out, m * n, this.context));
      }
    }
    const temps: Dev[] = [];
    let Bkn = B;
    if (s.transB) {
      Bkn = await this.transpose(B, n, k);
      temps.push(Bkn);
    }
    const c = { n, k, sai: s.transA ? 1 : k, sap: s.transA ? m : 1 };
    const out = await this.run('matmulAB', K.matmulAB, m * n, c, [A, Bkn]);
    this.release(...temps);
    return this.wrap(out);
  }

  private transpose(x: Dev, rows: number, cols: number): Promise<Dev> {
    return this.run('transpose', K.transpose, rows * cols, { rows, cols }, [x]);
  }

  async add(a: Buf, b: Buf): Promise<Buf> {
    const A = await this.dev(a);
    return this.wrap(await this.run('add', K.add, devLength(A), {}, [A, await this.dev(b)]));
  }

  async addBias(x: Buf, bias: Buf, rows: number, cols: number): Promise<Buf> {
    const args = [await this.dev(x), await this.dev(bias)];
    return this.wrap(await this.run('addBias', K.addBias, rows * cols, { cols }, args));
  }

  async sumRows(x: Buf, rows: number, cols: number): Promise<Buf> {
    return this.wrap(await this.run('sumRows', K.sumRows, cols, { rows, cols }, [await this.dev(x)]));
  }

  async embedding(table: Buf, ids: Int32Array, dim: number): Promise<Buf> {
    const args = [await this.dev(table), asF32(ids)];
    return this.wrap(await this.run('gatherRows', K.gatherRows, ids.length * dim, { dim }, args));
  }

  async embeddingBackward(dOut: Buf, ids: Int32Array, vocab: number, dim: number): Promise<Buf> {
    const { offsets, rowList } = buildCsr(ids, vocab);
    const args = [await this.dev(dOut), offsets, rowList];
    return this.wrap(await this.run('embeddingBackward', K.embeddingBackward, vocab * dim, { dim }, args));
  }

  async rmsnorm(x: Buf, w: Buf, rows: number, dim: number, eps: number): Promise<{ y: Buf; rstd: Buf }> {
    const X = await this.dev(x);
    const rstd = await this.run('rmsnormRstd', K.rmsnormRstd, rows, { dim }, [X, Float32Array.of(eps)]);
    const y = await this.run('rmsnormApply', K.rmsnormApply, rows * dim, { dim }, [
      X,
      await this.dev(w),
      rstd,
    ]);
    return { y: this.wrap(y), rstd: this.wrap(rstd) };
  }

  async rmsnormBackward(
    dy: Buf,
    x: Buf,
    w: Buf,
    rstd: Buf,
    rows: number,
    dim: number,
  ): Promise<{ dx: Buf; dw: Buf }> {
    const [DY, X, W, RS] = [await this.dev(dy), await this.dev(x), await this.dev(w), await this.dev(rstd)];
    const dot = await this.run('rmsnormDot', K.rmsnormDot, rows, { dim }, [DY, X, W]);
    const dx = await this.run('rmsnormDx', K.rmsnormDx, rows * dim, { dim }, [DY, X, W, RS, dot]);
    this.release(dot);
    const dw = await this.run('rmsnormDw', K.rmsnormDw, dim, { rows, dim }, [DY, X, RS]);
    return { dx: this.wrap(dx), dw: this.wrap(dw) };
  }

  async rope(
    x: Buf,
    positions: Int32Array,
    heads: number,
    headDim: number,
    freq: RopeFrequencies,
    inverse: boolean,
  ): Promise<Buf> {
    checkRopeFrequencies(freq, headDim);
    const rows = ropeRowsFor(positions);
    const X = await this.dev(x);
    const table = await this.ropeCache.get(rows, headDim, freq);
    const c = { rowLen: heads * headDim, hd: headDim, half: headDim / 2 };
    const args = [X, asF32(positions), table.cos, table.sin, Float32Array.of(inverse ? -1 : 1)];
    return this.wrap(await this.run('rope', K.rope, positions.length * heads * headDim, c, args));
  }

  private attnConstants(s: AttentionShape): Record<string, number> {
    if (s.heads % s.kvHeads !== 0) throw new RangeError('attention: heads must be a multiple of kvHeads');
    return {
      H: s.heads,
      KV: s.kvHeads,
      G: s.heads / s.kvHeads,
      tq: s.tq,
      tk: s.tk,
      hd: s.headDim,
    };
  }

  async attention(q: Buf, k: Buf, v: Buf, s: AttentionShape): Promise<{ out: Buf; probs: Buf }> {
    const c = this.attnConstants(s);
    const { batch, tq, tk, heads, headDim } = s;
    const nProbs = batch * heads * tq * tk;
    const kValid = asF32(s.kValid);
    const qOff = asF32(s.qOffset);
    const scale = Float32Array.of(1 / Math.sqrt(headDim));
    const [Q, Kd, V] = [await this.dev(q), await this.dev(k), await this.dev(v)];
    const scores = await this.run('attnScores', K.attnScores, nProbs, c, [Q, Kd, kValid, qOff, scale]);
    const lse = await this.run('attnLse', K.attnLse, batch * heads * tq, c, [scores, kValid, qOff]);
    const probs = await this.run('attnProbs', K.attnProbs, nProbs, c, [scores, lse, kValid, qOff]);
    this.release(scores, lse);
    const out = await this.run('attnOut', K.attnOut, batch * tq * heads * headDim, c, [probs, V]);
    return { out: this.wrap(out), probs: this.wrap(probs) };
  }

  async attentionBackward(
    dOut: Buf,
    q: Buf,
    k: Buf,
    v: Buf,
    probs: Buf,
    s: AttentionShape,
  ): Promise<{ dq: Buf; dk: Buf; dv: Buf }> {
    const c = this.attnConstants(s);
    const { batch, tq, tk, heads, kvHeads, headDim } = s;
    const nProbs = batch * heads * tq * tk;
    const [DO, Q, Kd, V, P] = await Promise.all([dOut, q, k, v, probs].map((b) => this.dev(b)));
    const dp = await this.run('attnDp', K.attnDp, nProbs, c, [DO, V]);
    const rowDot = await this.run('attnRowDot', K.attnRowDot, batch * heads * tq, c, [P, dp]);
    const scale = Float32Array.of(1 / Math.sqrt(headDim));
    const ds = await this.run('attnDs', K.attnDs, nProbs, c, [P, dp, rowDot, scale]);
    this.release(dp, rowDot);
    const dq = await this.run('attnDq', K.attnDq, batch * tq * heads * headDim, c, [ds, Kd]);
    const nKv = batch * tk * kvHeads * headDim;
    const dk = await this.run('attnKvGrad', K.attnKvGrad, nKv, c, [ds, Q]);
    this.release(ds);
    const dv = await this.run('attnKvGrad', K.attnKvGrad, nKv, c, [P, DO]);
    return { dq: this.wrap(dq), dk: this.wrap(dk), dv: this.wrap(dv) };
  }

  async swiglu(gate: Buf, up: Buf): Promise<Buf> {
    const G = await this.dev(gate);
    return this.wrap(await this.run('swiglu', K.swiglu, devLength(G), {}, [G, await this.dev(up)]));
  }

  async swigluBackward(dh: Buf, gate: Buf, up: Buf): Promise<{ dGate: Buf; dUp: Buf }> {
    const [DH, G, U] = [await this.dev(dh), await this.dev(gate), await this.dev(up)];
    const n = devLength(G);
    const dGate = await this.run('swigluDGate', K.swigluDGate, n, {}, [DH, G, U]);
    const dUp = await this.run('swigluDUp', K.swigluDUp, n, {}, [DH, G]);
    return { dGate: this.wrap(dGate), dUp: this.wrap(dUp) };
  }

  async crossEntropy(
    logits: Buf,
    targets: Int32Array,
    weights: Float64Array,
    rows: number,
    vocab: number,
    temperature = 1,
  ): Promise<{ nll: Buf; dlogits: Buf }> {
    checkTemperature(temperature);
    const L = await this.dev(logits);
    const T = asF32(targets);
    // the kernels scale each logit by 1/temperature as they read it; the gradient's 1/temperature
    // rides on the weights
    const invT = Float32Array.of(1 / temperature);
    const w = asF32(temperature === 1 ? weights : weights.map((x) => x / temperature));
    const chunk = Math.min(CE_CHUNK, vocab);
    const nch = Math.ceil(vocab / chunk);
    const c = { vocab, chunk, nch };
    const cMax = await this.run('ceChunkMax', K.ceChunkMax, rows * nch, c, [L, T, invT]);
    const cSum = await this.run('ceChunkSum', K.ceChunkSum, rows * nch, c, [L, T, invT, cMax]);
    const nll = await this.run('ceNll', K.ceNll, rows, c, [L, T, invT, cMax, cSum]);
    this.release(cMax, cSum);
    const dl = await this.run('ceGrad', K.ceGrad, rows * vocab, { vocab }, [L, T, invT, w, nll]);
    return { nll: this.wrap(nll), dlogits: this.wrap(dl) };
  }

  async sumSquares(x: Buf): Promise<number> {
    const X = await this.dev(x);
    const n = devLength(X);
    const parts = Math.ceil(n / SUMSQ_CHUNK);
    const partial = await this.run('sumSquares', K.sumSquaresPartial, parts, { chunk: SUMSQ_CHUNK, n }, [X]);
    const host = partial instanceof Float32Array ? partial : await readHandle(partial);
    this.release(partial);
    let total = 0;
    for (let i = 0; i < parts; i++) total += host[i];
    return total;
  }

  async adamw(p: Buf, g: Buf, m: Buf, v: Buf, h: AdamWHyper): Promise<{ p: Buf; m: Buf; v: Buf }> {
    const hp = adamwHyperVector(h);
    const [P, G, M, V] = [await this.dev(p), await this.dev(g), await this.dev(m), await this.dev(v)];
    const n = devLength(P);
    const nm = await this.run('adamwM', K.adamwM, n, {}, [G, M, hp]);
    const nv = await this.run('adamwV', K.adamwV, n, {}, [G, V, hp]);
    const np = await this.run('adamwP', K.adamwP, n, {}, [P, nm, nv, hp]);
    return { p: this.wrap(np), m: this.wrap(nm), v: this.wrap(nv) };
  }

  private async tensor(x: Buf): Promise<{ buffer: object; n: number }> {
    const d = await this.dev(x);
    if (d instanceof Float32Array || !d.buffer) throw new TypeError('not a device-resident webgpu tensor');
    return { buffer: d.buffer, n: d.output[0] };
  }

  private async sumSquaresManyOnDevice(xs: Buf[]): Promise<number[]> {
    if (this.disposed) throw new Error(`${this.name} backend used after dispose()`);
    const ts = await Promise.all(xs.map((x) => this.tensor(x)));
    return (this.optimizer as WgslOptimizer).sumSquares(ts);
  }

  private async adamwInPlaceOnDevice(
    items: { p: Buf; g: Buf; m: Buf; v: Buf; h: AdamWHyper }[],
  ): Promise<void> {
    if (this.disposed) throw new Error(`${this.name} backend used after dispose()`);
    const ts = await Promise.all(
      items.map(async (it) => ({
        p: await this.tensor(it.p),
        g: await this.tensor(it.g),
        m: await this.tensor(it.m),
        v: await this.tensor(it.v),
        h: it.h,
      })),
    );
    (this.optimizer as WgslOptimizer).adamw(ts);
  }

  async scatterRows(dst: Buf, src: Buf, index: Int32Array, rowDim: number): Promise<Buf> {
    const D = await this.dev(dst);
    const n = devLength(D);
    const inverse = buildInverse(index, n / rowDim);
    const args = [D, await this.dev(src), inverse];
    return this.wrap(await this.run('scatterRows', K.scatterRows, n, { dim: rowDim }, args));
  }

  async gatherRows(x: Buf, index: Int32Array, rowDim: number): Promise<Buf> {
    const args = [await this.dev(x), asF32(index)];
    return this.wrap(
      await this.run('gatherRows', K.gatherRows, index.length * rowDim, { dim: rowDim }, args),
    );
  }
}
