/**
 * `Backend` on gpu.js, modes cpu (transpiled JavaScript), webasm (WebAssembly + SIMD + worker threads)
 * and webgpu (WGSL compute shaders), all under gpu.js's async contract: every kernel call returns a
 * Promise. Kernel bodies live in `kernels.ts`; host-side index building in `host.ts`.
 *
 * Kernels have fixed output and argument sizes once built, so one instance is cached per
 * (kernel, constants, output size, argument sizes). All kernels run with `pipeline: true` and
 * `immutable: true`: on cpu/webasm a call yields a fresh Float32Array; on webgpu a device-resident
 * handle (`WebGPUBufferResult`) that feeds the next kernel without readback. On webgpu:
 * - a `Buf` is a `DeviceBuf`, which may still be pending (uploads run a copy kernel, which is async
 *   while the `Backend` contract makes `upload`/`zeros` synchronous); ops await it;
 * - every argument position of a kernel always gets the same kind (a device handle for tensors, a
 *   Float32Array for host data), because gpu.js fixes the kind at the first call;
 * - intermediates are deleted as soon as their consumer has been submitted;
 * - reads copy through a staging buffer of their own (not the producing kernel's, which the LRU
 *   kernel cache may have destroyed).
 * Shapes with more than 2^24 elements are handled: index arithmetic stays in i32 (see kernels.ts).
 */
import gpujs from 'gpu.js';
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
import { WasmMatmul } from '../wasm/matmul.js';
import { WasmOps } from '../wasm/ops.js';
import { embeddingBackwardF32, gatherRowsF32, scatterRowsF32 } from '../wasm/rows.js';
import { setupWebgpu } from '../webgpu-setup.js';
import { adamwHyperVector } from './adamw-hyper.js';
import {
  type BatchableDevice,
  DeviceBatching,
  type DeviceBatchingOptions,
  type DeviceBatchingStats,
} from './device-batching.js';
import { asF32, buildCsr, buildInverse, ropeTables } from './host.js';
import * as K from './kernels.js';
import { WgslOptimizer } from './wgsl-optimizer.js';

export { adamwHyperVector } from './adamw-hyper.js';

export type GpujsMode = 'cpu' | 'webasm' | 'webgpu';

export interface GpujsOptions {
  /** Compiled kernels kept (least recently used destroyed first); default 512. */
  kernelCacheLimit?: number;
  /**
   * cpu/webasm: run matmul on the WebAssembly SIMD kernel (shared/kernels/wasm, all cores) where it
   * loads; default true, also off with RMT_WASM_MATMUL=0. gpu.js's matmul is the fallback.
   */
  wasmMatmul?: boolean;
  /**
   * cpu/webasm: run the other heavy ops (attention, crossEntropy, rmsnorm, rope, swiglu, adamw,
   * sumSquares, add) on the WebAssembly SIMD ops (asm/ops.ts via shared/kernels/wasm/ops.ts, all cores)
   * and the row copies (embedding, gatherRows, scatterRows) on typed-array copies; default true, also
   * off with RMT_WASM_KERNELS=0. gpu.js's kernels are the fallback.
   */
  wasmKernels?: boolean;
  /**
   * webgpu: the buffer pool and submit batching around gpu.js's device (`device-batching.ts`); both
   * on by default, off with RMT_WEBGPU_POOL=0 / RMT_WEBGPU_BATCH=0.
   */
  deviceBatching?: Partial<DeviceBatchingOptions>;
  /**
   * webgpu: clipping's sums of squares and AdamW as one WGSL pass each over all tensors
   * (`wgsl-optimizer.ts`, `sumSquaresMany` / `adamwInPlace`); default true, also off with
   * RMT_WEBGPU_WGSL_OPTIMIZER=0.
   */
  wgslOptimizer?: boolean;
}

/** gpu.js's pipeline handle on webgpu (`WebGPUBufferResult`). */
interface Handle {
  output: number[];
  /** The GPUBuffer (public field of gpu.js's WebGPUBufferResult). */
  buffer?: GpuBuffer;
  toArray(): Promise<Float32Array>;
  delete(): void;
}
interface GpuBuffer {
  mapAsync(mode: number): Promise<void>;
  getMappedRange(): ArrayBuffer;
  unmap(): void;
  destroy(): void;
}
type Dev = Float32Array | Handle;

interface InnerKernel {
  outputBuffer?: { _refs: number } | null;
  immutable?: boolean;
  pipeline?: boolean;
  bindGroupDirty?: boolean;
}
interface KernelRun {
  (...args: Dev[]): Promise<Dev>;
  destroy(removeCanvasReferences?: boolean): void;
  kernel?: InnerKernel;
}
interface GpuInstance {
  createKernel(fn: unknown, settings: Record<string, unknown>): KernelRun;
  destroy(): Promise<void>;
}
interface GpuDevice {
  queue: { onSubmittedWorkDone(): Promise<void>; submit(commands: unknown[]): void };
  createBuffer(desc: { size: number; usage: number }): GpuBuffer;
  createCommandEncoder(): {
    copyBufferToBuffer(
      src: GpuBuffer,
      srcOffset: number,
      dst: GpuBuffer,
      dstOffset: number,
      size: number,
    ): void;
    finish(): unknown;
  };
}
// WebGPU's constants (fixed by the spec)
const MAP_READ = 0x0001;
const COPY_DST = 0x0008;
interface GpujsModule {
  GPU: (new (settings: { mode: string }) => GpuInstance) & { isWebAssemblySupported: boolean };
  WebGPUContext: { acquire(): Promise<{ device: GpuDevice & BatchableDevice }>; destroy(): Promise<void> };
}
const { GPU, WebGPUContext } = gpujs as unknown as GpujsModule;

export const isWebAssemblySupported = (): boolean => GPU.isWebAssemblySupported;

type KernelFn = (this: K.KernelThis, ...args: Float32Array[]) => number;
interface CachedKernel {
  run: KernelRun;
  /** Calls in progress. */
  busy: number;
}

/** A webgpu tensor: the gpu.js handle, possibly still being produced. */
class DeviceBuf {
  handle: Handle | null = null;
  pending: Promise<Handle> | null = null;
  freed = false;
  constructor(readonly n: number) {}
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
const EMPTY = new Float32Array(0);
/** RoPE table sets kept on the device (one per frequency set; see ropeTable). */
const ROPE_TABLES_KEPT = 4;

let liveWebgpuBackends = 0;

export class GpujsBackend implements Backend {
  readonly precision = 'f32' as const;
  private readonly kernels = new Map<string, CachedKernel>();
  private readonly ropeCache = new Map<string, { count: number; cos: Dev; sin: Dev }>();
  /** Uploads still being copied to the device; dispose() waits for them before it tears down. */
  private readonly inFlight = new Set<Promise<unknown>>();
  private disposed = false;
  private wasmMatmul: WasmMatmul | null = null;
  private wasmOps: WasmOps | null = null;
  private batching: DeviceBatching | null = null;
  private optimizer: WgslOptimizer | null = null;
  /** webgpu only (see Backend): the optimizer's passes in WGSL, one pass for all tensors. */
  sumSquaresMany?: (xs: Buf[]) => Promise<number[]>;
  adamwInPlace?: (items: { p: Buf; g: Buf; m: Buf; v: Buf; h: AdamWHyper }[]) => Promise<void>;

  private constructor(
    readonly name: GpujsMode,
    private readonly gpu: GpuInstance,
    private readonly kernelCacheLimit: number,
  ) {}

  static async create(mode: GpujsMode, options: GpujsOptions = {}): Promise<GpujsBackend> {
    let device: (GpuDevice & BatchableDevice) | null = null;
    if (mode === 'webgpu') {
      const setup = await setupWebgpu();
      if (!setup.ok) throw new Error(`webgpu unavailable: ${setup.reason}`);
      device = (await WebGPUContext.acquire()).device;
      liveWebgpuBackends++;
    } else if (mode === 'webasm' && !GPU.isWebAssemblySupported) {
      throw new Error('webasm unavailable: WebAssembly not supported');
    }
    const backend = new GpujsBackend(mode, new GPU({ mode }), options.kernelCacheLimit ?? KERNEL_CACHE_LIMIT);
    if (device) {
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
    }
    if (mode !== 'webgpu' && options.wasmMatmul !== false && process.env.RMT_WASM_MATMUL !== '0') {
      backend.wasmMatmul = WasmMatmul.get();
    }
    if (mode !== 'webgpu' && options.wasmKernels !== false && process.env.RMT_WASM_KERNELS !== '0') {
      backend.wasmOps = WasmOps.get();
    }
    return backend;
  }

  /** webgpu: resolves when every queued kernel has run on the device (for profiling); else at once. */
  async sync(): Promise<void> {
    if (!this.onDevice) return;
    const { device } = await WebGPUContext.acquire();
    await device.queue.onSubmittedWorkDone();
  }

  /** The webgpu buffer pool and submit batching settings (null on cpu/webasm). */
  deviceBatchingSettings(): Readonly<DeviceBatchingOptions> | null {
    return this.batching ? { ...this.batching.settings } : null;
  }

  /** Counters of the webgpu buffer pool and submit batching (null on cpu/webasm). */
  deviceBatchingStats(): DeviceBatchingStats | null {
    return this.batching?.stats() ?? null;
  }

  /** The wasm ops where they are routed (cpu/webasm), after the disposed check. */
  private ops(): WasmOps | null {
    if (!this.wasmOps) return null;
    if (this.disposed) throw new Error(`${this.name} backend used after dispose()`);
    return this.wasmOps;
  }

  /** A cpu/webasm tensor's array (only called where the wasm ops are routed). */
  private async f32(x: Buf): Promise<Float32Array> {
    return (await this.dev(x)) as Float32Array;
  }

  private get onDevice(): boolean {
    return this.name === 'webgpu';
  }

  // -------------------------------------------------------------------------------------------------
  // kernel plumbing

  private getKernel(
    key: string,
    fn: KernelFn,
    size: number,
    constants: Record<string, number>,
  ): CachedKernel {
    let entry = this.kernels.get(key);
    if (entry) {
      // most recently used last: the Map's order is the eviction order
      this.kernels.delete(key);
      this.kernels.set(key, entry);
      return entry;
    }
    if (this.kernels.size >= this.kernelCacheLimit) {
      for (const [oldKey, old] of this.kernels) {
        if (old.busy > 0) continue; // never destroy a kernel under a call (it may still be compiling)
        this.kernels.delete(oldKey);
        old.run.destroy(true);
        break;
      }
    }
    const run = this.gpu.createKernel(fn, {
      output: [size],
      constants,
      asyncMode: true,
      pipeline: true,
      immutable: true,
      strictIntegers: true,
      functions: K.HELPERS,
      loopMaxIterations: 2 ** 30,
      precision: 'single',
      tactic: 'precision',
    });
    entry = { run, busy: 0 };
    this.kernels.set(key, entry);
    return entry;
  }

  /** Runs `fn` over a 1-D output of `size` cells. Arguments are device tensors or host Float32Arrays. */
  private async run(
    op: string,
    fn: KernelFn,
    size: number,
    constants: Record<string, number>,
    args: Dev[],
  ): Promise<Dev> {
    if (this.disposed) throw new Error(`${this.name} backend used after dispose()`);
    if (size === 0) return EMPTY;
    const key = `${op}|${size}|${args.map(devLength).join(',')}|${JSON.stringify(constants)}`;
    const entry = this.getKernel(key, fn, size, constants);
    entry.busy++;
    try {
      const out = await entry.run(...args);
      if (this.onDevice) detachOutput(entry.run);
      return out;
    } finally {
      entry.busy--;
    }
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
    return b as unknown as Buf;
  }

  private release(...ds: Dev[]): void {
    for (const d of ds) if (!(d instanceof Float32Array)) d.delete();
  }

  /** Host data as a kernel argument for a tensor slot: device-resident on webgpu. */
  private async deviceCopy(data: Float32Array): Promise<Dev> {
    if (!this.onDevice) return data;
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
    if (!this.onDevice || f32.length === 0) return f32 as unknown as Buf;
    return this.pendingBuf(f32.length, this.deviceCopy(f32));
  }

  zeros(n: number): Buf {
    if (!this.onDevice || n === 0) return new Float32Array(n) as unknown as Buf;
    return this.pendingBuf(n, this.run('fill', K.fill, n, {}, [new Float32Array(1)]));
  }

  private pendingBuf(n: number, p: Promise<Dev>): Buf {
    const b = new DeviceBuf(n);
    b.pending = p as Promise<Handle>;
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
    for (const { cos, sin } of this.ropeCache.values()) this.release(cos, sin);
    this.ropeCache.clear();
    for (const { run } of this.kernels.values()) run.destroy(true);
    this.kernels.clear();
    await this.gpu.destroy();
    if (this.onDevice && --liveWebgpuBackends === 0) {
      this.batching?.flush();
      this.batching?.trim();
      await WebGPUContext.destroy();
    }
  }

  // -------------------------------------------------------------------------------------------------
  // ops

  /**
   * Layouts: on webgpu B is brought to [k, n] (a transpose when transB) for coalesced reads; on
   * cpu/webasm both operands are brought to k-contiguous rows (A [m, k], B [n, k]) for the unrolled
   * dot-product kernel, unless the other dimension is too small for the transpose to pay off.
   */
  async matmul(a: Buf, b: Buf, s: MatmulShape): Promise<Buf> {
    const { m, k, n } = s;
    const A = await this.dev(a);
    const B = await this.dev(b);
    if (this.wasmMatmul) {
      if (this.disposed) throw new Error(`${this.name} backend used after dispose()`);
      const c = this.wasmMatmul.matmul(A as Float32Array, B as Float32Array, s);
      if (c) return this.wrap(c);
    }
    const temps: Dev[] = [];
    let out: Dev;
    if (this.onDevice) {
      let Bkn = B;
      if (s.transB) {
        Bkn = await this.transpose(B, n, k);
        temps.push(Bkn);
      }
      const c = { n, k, sai: s.transA ? 1 : k, sap: s.transA ? m : 1 };
      out = await this.run('matmulAB', K.matmulAB, m * n, c, [A, Bkn]);
    } else if ((s.transA && n < 4) || (!s.transB && m < 4)) {
      const c = {
        n,
        k,
        sai: s.transA ? 1 : k,
        sap: s.transA ? m : 1,
        sbp: s.transB ? 1 : n,
        sbj: s.transB ? k : 1,
      };
      out = await this.run('matmul', K.matmul, m * n, c, [A, B]);
    } else {
      let Amk = A;
      let Bnk = B;
      if (s.transA) {
        Amk = await this.transpose(A, k, m);
        temps.push(Amk);
      }
      if (!s.transB) {
        Bnk = await this.transpose(B, k, n);
        temps.push(Bnk);
      }
      const c = { n, k, k4: Math.floor(k / 4), krem: k % 4 };
      out = await this.run('matmulABt', K.matmulABt, m * n, c, [Amk, Bnk]);
    }
    this.release(...temps);
    return this.wrap(out);
  }

  private transpose(x: Dev, rows: number, cols: number): Promise<Dev> {
    return this.run('transpose', K.transpose, rows * cols, { rows, cols }, [x]);
  }

  async add(a: Buf, b: Buf): Promise<Buf> {
    const W = this.ops();
    if (W) return this.wrap(W.add(await this.f32(a), await this.f32(b)));
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
    if (this.ops()) return this.wrap(gatherRowsF32(await this.f32(table), ids, dim, 'embedding'));
    const args = [await this.dev(table), asF32(ids)];
    return this.wrap(await this.run('gatherRows', K.gatherRows, ids.length * dim, { dim }, args));
  }

  async embeddingBackward(dOut: Buf, ids: Int32Array, vocab: number, dim: number): Promise<Buf> {
    if (this.ops()) return this.wrap(embeddingBackwardF32(await this.f32(dOut), ids, vocab, dim));
    const { offsets, rowList } = buildCsr(ids, vocab);
    const args = [await this.dev(dOut), offsets, rowList];
    return this.wrap(await this.run('embeddingBackward', K.embeddingBackward, vocab * dim, { dim }, args));
  }

  async rmsnorm(x: Buf, w: Buf, rows: number, dim: number, eps: number): Promise<{ y: Buf; rstd: Buf }> {
    const W = this.ops();
    if (W) {
      const r = W.rmsnorm(await this.f32(x), await this.f32(w), rows, dim, eps);
      return { y: this.wrap(r.y), rstd: this.wrap(r.rstd) };
    }
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
    const ops = this.ops();
    if (ops) {
      const [DY, X, Wt, RS] = [
        await this.f32(dy),
        await this.f32(x),
        await this.f32(w),
        await this.f32(rstd),
      ];
      const r = ops.rmsnormBackward(DY, X, Wt, RS, rows, dim);
      return { dx: this.wrap(r.dx), dw: this.wrap(r.dw) };
    }
    const [DY, X, W, RS] = [await this.dev(dy), await this.dev(x), await this.dev(w), await this.dev(rstd)];
    const dot = await this.run('rmsnormDot', K.rmsnormDot, rows, { dim }, [DY, X, W]);
    const dx = await this.run('rmsnormDx', K.rmsnormDx, rows * dim, { dim }, [DY, X, W, RS, dot]);
    this.release(dot);
    const dw = await this.run('rmsnormDw', K.rmsnormDw, dim, { rows, dim }, [DY, X, RS]);
    return { dx: this.wrap(dx), dw: this.wrap(dw) };
  }

  /**
   * Device cos/sin tables covering positions 0 .. count-1 (grown by doubling, kept per frequency set).
   * Dynamic NTK scaling makes a new frequency set per longer sequence, so only the most recently used
   * few are kept.
   */
  private async ropeTable(
    count: number,
    headDim: number,
    freq: RopeFrequencies,
  ): Promise<{ cos: Dev; sin: Dev }> {
    const key = `${headDim}|${freq.attentionScale}|${freq.invFreq.join(',')}`;
    const have = this.ropeCache.get(key);
    if (have && have.count >= count) {
      this.ropeCache.delete(key);
      this.ropeCache.set(key, have);
      return have;
    }
    let size = have ? have.count : 256;
    while (size < count) size *= 2;
    const t = ropeTables(size, headDim, freq);
    const entry = { count: size, cos: await this.deviceCopy(t.cos), sin: await this.deviceCopy(t.sin) };
    if (have) this.release(have.cos, have.sin);
    this.ropeCache.delete(key);
    this.ropeCache.set(key, entry);
    while (this.ropeCache.size > ROPE_TABLES_KEPT) {
      const [oldest, old] = this.ropeCache.entries().next().value as [string, { cos: Dev; sin: Dev }];
      this.release(old.cos, old.sin);
      this.ropeCache.delete(oldest);
    }
    return entry;
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
    let maxPos = 0;
    for (const p of positions) {
      if (p < 0) throw new RangeError(`rope: negative position ${p}`);
      if (p > maxPos) maxPos = p;
    }
    const X = await this.dev(x);
    const table = await this.ropeTable(maxPos + 1, headDim, freq);
    const W = this.ops();
    if (W) {
      const cos = table.cos as Float32Array;
      const sin = table.sin as Float32Array;
      return this.wrap(W.rope(X as Float32Array, positions, heads, headDim, cos, sin, inverse ? -1 : 1));
    }
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
    const W = this.ops();
    if (W) {
      const r = W.attention(await this.f32(q), await this.f32(k), await this.f32(v), s);
      return { out: this.wrap(r.out), probs: this.wrap(r.probs) };
    }
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
    const W = this.ops();
    if (W) {
      const [DO, Q, Kd, V, P] = await Promise.all([dOut, q, k, v, probs].map((b) => this.f32(b)));
      const r = W.attentionBackward(DO, Q, Kd, V, P, s);
      return { dq: this.wrap(r.dq), dk: this.wrap(r.dk), dv: this.wrap(r.dv) };
    }
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
    const W = this.ops();
    if (W) return this.wrap(W.swiglu(await this.f32(gate), await this.f32(up)));
    const G = await this.dev(gate);
    return this.wrap(await this.run('swiglu', K.swiglu, devLength(G), {}, [G, await this.dev(up)]));
  }

  async swigluBackward(dh: Buf, gate: Buf, up: Buf): Promise<{ dGate: Buf; dUp: Buf }> {
    const W = this.ops();
    if (W) {
      const r = W.swigluBackward(await this.f32(dh), await this.f32(gate), await this.f32(up));
      return { dGate: this.wrap(r.dGate), dUp: this.wrap(r.dUp) };
    }
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
    const W = this.ops();
    if (W) {
      const r = W.crossEntropy(await this.f32(logits), targets, weights, rows, vocab, temperature);
      return { nll: this.wrap(r.nll), dlogits: this.wrap(r.dlogits) };
    }
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
    const W = this.ops();
    if (W) return W.sumSquares(await this.f32(x));
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
    const W = this.ops();
    if (W) {
      const r = W.adamw(P as Float32Array, G as Float32Array, M as Float32Array, V as Float32Array, hp);
      return { p: this.wrap(r.p), m: this.wrap(r.m), v: this.wrap(r.v) };
    }
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
    if (this.ops()) return this.wrap(scatterRowsF32(await this.f32(dst), await this.f32(src), index, rowDim));
    const D = await this.dev(dst);
    const n = devLength(D);
    const inverse = buildInverse(index, n / rowDim);
    const args = [D, await this.dev(src), inverse];
    return this.wrap(await this.run('scatterRows', K.scatterRows, n, { dim: rowDim }, args));
  }

  async gatherRows(x: Buf, index: Int32Array, rowDim: number): Promise<Buf> {
    if (this.ops()) return this.wrap(gatherRowsF32(await this.f32(x), index, rowDim));
    const args = [await this.dev(x), asF32(index)];
    return this.wrap(
      await this.run('gatherRows', K.gatherRows, index.length * rowDim, { dim: rowDim }, args),
    );
  }
}

/**
 * Reads a webgpu tensor back through a staging buffer of its own. `handle.toArray()` would go through
 * the producing kernel, which the cache may have destroyed (or destroy mid-read).
 */
async function readHandle(h: Handle): Promise<Float32Array> {
  const n = h.output[0];
  if (!h.buffer) {
    const a = await h.toArray();
    return a.length === n ? a : a.slice(0, n);
  }
  const { device } = await WebGPUContext.acquire();
  const staging = device.createBuffer({ size: n * 4, usage: MAP_READ | COPY_DST });
  try {
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(h.buffer, 0, staging, 0, n * 4);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(MAP_READ);
    const out = new Float32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    return out;
  } finally {
    staging.destroy();
  }
}

function devLength(d: Dev): number {
  return d instanceof Float32Array ? d.length : d.output[0];
}

/**
 * An immutable pipeline kernel on webgpu keeps a reference to its latest output buffer until its next
 * call, which would keep a freed tensor alive. Drop that reference now; the handle we return owns the
 * buffer alone and `free` releases it. (gpu.js 2.24 internals: refcount `_refs` on the GPUBuffer.)
 */
function detachOutput(k: KernelRun): void {
  const inner = k.kernel;
  const buf = inner?.outputBuffer;
  if (!inner || !buf || !inner.immutable || !inner.pipeline || buf._refs < 2) return;
  buf._refs--;
  inner.outputBuffer = null;
  inner.bindGroupDirty = true;
}
