/**
 * The WebAssembly SIMD matmul (asm/matmul.ts) behind a plain Float32Array interface, on every core.
 *
 * One process-wide instance owns a grow-once arena (arena.ts):
 *   [0, 64 KiB)           reserved (the module's own statics, if any)
 *   P work areas          packing buffers, one per participant (main thread + P - 1 workers)
 *   resident              copies of operands the backend uses again (resident.ts), when it asks
 *   A | B | C             the operands of the current call, 64-byte aligned
 * A call copies A and B in (unless resident), splits C's rows (or columns) between the main thread and the workers,
 * runs its own share, waits for the others, and copies C out into a fresh Float32Array.
 *
 * Semantics are the Backend's: C[m, n] = op(A) op(B), A stored [k, m] when transA, B stored [n, k]
 * when transB.
 *
 * Environment: RMT_WASM_THREADS caps the participants (default: available cores, at most 8);
 * RMT_WASM_VARIANT=simd|relaxed picks the build (see loader.ts).
 */
import type { MatmulShape } from '../backend.js';
import { align, defaultThreads, PAGE, WasmArena } from './arena.js';
import {
  type LoadedModule,
  loadMatmulModule,
  type MatmulExports,
  SharedInstance,
  type WasmVariant,
} from './loader.js';
import { JOB_DOT, JOB_GEMM, JOB_PARAMS, MAX_CHUNKS, POOL_SPIN, WorkerPool } from './pool.js';
import { ResidentSet } from './resident.js';

const RESERVED = PAGE;
/** Below this many flops (2 m n k) a call runs on the main thread alone. */
export const PARALLEL_MIN_FLOPS = 1 << 19;
/** Above this many flops a job is cut into 2 chunks per participant (packing is repeated per chunk), else 4. */
const BIG_FLOPS = 1 << 26;
/** Rows at or below which A B^T (no transA) uses the unpacked dot-product kernel. */
export const DOT_MAX_ROWS = 16;
const MR = 4;
const NR = 8;
/**
 * Most bytes of resident operands: the weights and activations of the bench models many times over;
 * a model whose weights pass it gains nothing (each use copies again, as without residency) but costs
 * at most this much more memory.
 */
const RESIDENT_CAP_BYTES = 512 * 2 ** 20;
/**
 * An operand is kept resident only when the other side of the product is at most this many rows
 * (columns): copying B costs one float moved per 2m flops, a large share when decoding (m = a few
 * sequences), a small one for training's hundreds of rows, where residency would only hold memory
 * (a fifth more for the medium bench model's step, for no measurable gain).
 */
const RESIDENT_MAX_OTHER = 64;

export interface MatmulRunOptions {
  /** Participants for this call (1 = main thread only); default: the instance's, by problem size. */
  threads?: number;
  /**
   * Keep A and B in wasm memory from their second use on (resident.ts), B when m and A when n is at
   * most RESIDENT_MAX_OTHER. Only for callers whose arrays never change after they are made, and
   * who call `release` when one is freed or changed.
   */
  resident?: boolean;
}

export class WasmMatmul {
  /** Which build runs: plain SIMD, or relaxed SIMD with fused multiply-add. */
  readonly variant: WasmVariant;
  private readonly arena = new WasmArena(1);
  private readonly ex: MatmulExports;
  private readonly workBytes: number;
  private readonly pool: WorkerPool | null;
  private readonly job = new Array<number>(JOB_PARAMS).fill(0);
  private readonly resident: ResidentSet;

  private constructor(
    loaded: LoadedModule,
    /** Participants (main thread included). */
    readonly threads: number,
  ) {
    this.variant = loaded.variant;
    const { memory } = this.arena;
    this.ex = new WebAssembly.Instance(loaded.module, { env: { memory } })
      .exports as unknown as MatmulExports;
    this.workBytes = align(this.ex.workBytes(), 64);
    this.resident = new ResidentSet(
      this.arena,
      align(RESERVED + threads * this.workBytes, 64),
      RESIDENT_CAP_BYTES,
    );
    this.pool =
      threads > 1
        ? new WorkerPool(loaded.module, memory, threads - 1, { spin: POOL_SPIN, timeoutMs: 600_000 })
        : null;
  }

  private static readonly shared = new SharedInstance(
    'wasm matmul',
    loadMatmulModule,
    (loaded) => new WasmMatmul(loaded, defaultThreads()),
  );

  /** The shared instance, or null where the module is missing or WebAssembly threads are unavailable. */
  static get(): WasmMatmul | null {
    return WasmMatmul.shared.get();
  }

  /** Why `get()` returned null ('' when it did not). */
  static unavailableReason(): string {
    return WasmMatmul.shared.unavailableReason();
  }

  /** Stops the shared instance's workers; the next `get()` builds a new instance. */
  static shutdown(): Promise<void> {
    return WasmMatmul.shared.shutdown();
  }

  /** Stops this instance's workers (through `shutdown()`). */
  async close(): Promise<void> {
    await this.pool?.close();
  }

  /**
   * Where a call's operands go, from `base`: A and B only when not resident (address >= 0), then C,
   * then `packedBytes` for the operand packed once for all chunks.
   */
  private layout(
    s: MatmulShape,
    base: number,
    ra: number,
    rb: number,
    packedBytes: number,
  ): { a: number; b: number; c: number; packed: number; end: number } {
    const { m, k, n } = s;
    let at = align(base, 64);
    const a = ra >= 0 ? ra : at;
    if (ra < 0) at = align(at + m * k * 4, 64);
    const b = rb >= 0 ? rb : at;
    if (rb < 0) at = align(at + k * n * 4, 64);
    const c = at;
    const packed = align(c + m * n * 4, 64);
    return { a, b, c, packed, end: packed + packedBytes };
  }

  /** Forgets the resident copy of x (freed, or about to change in place). */
  release(x: Float32Array): void {
    this.resident.release(x);
  }

  /** C = op(A) op(B) as a fresh Float32Array; null if the operands do not fit in 4 GiB of wasm memory. */
  matmul(a: Float32Array, b: Float32Array, s: MatmulShape, opts: MatmulRunOptions = {}): Float32Array | null {
    const { m, k, n } = s;
    if (!(Number.isInteger(m) && Number.isInteger(k) && Number.isInteger(n) && m >= 0 && k >= 0 && n >= 0)) {
      throw new RangeError(`matmul: bad shape m=${m} k=${k} n=${n}`);
    }
    if (a.length < m * k) throw new RangeError(`matmul: A has ${a.length} elements, needs ${m * k}`);
    if (b.length < k * n) throw new RangeError(`matmul: B has ${b.length} elements, needs ${k * n}`);
    if (m === 0 || n === 0) return new Float32Array(m * n);
    if (k === 0) return new Float32Array(m * n);

    const flops = 2 * m * n * k;
    const threads = Math.max(
      1,
      Math.min(opts.threads ?? (flops < PARALLEL_MIN_FLOPS ? 1 : this.threads), this.threads),
    );
    const res = this.resident;
    let ra = -1;
    let rb = -1;
    if (opts.resident) {
      const gen = res.generation;
      ra = n <= RESIDENT_MAX_OTHER ? res.address(a, m * k) : -1;
      rb = m <= RESIDENT_MAX_OTHER ? res.address(b, k * n) : -1;
      // taking B's slot may have started the region over, over A's
      if (res.generation !== gen) ra = -1;
    }
    const transA = s.transA ? 1 : 0;
    const transB = s.transB ? 1 : 0;
    const dot = !transA && transB && m <= DOT_MAX_ROWS;
    const parallel = threads > 1 && this.pool !== null;
    // Split by C's rows, every chunk would pack all of op(B) again (by columns, all of op(A)): the
    // main thread packs that operand once for all of them instead.
    const byRows = !dot && m >= n;
    const packed = !parallel || dot ? 0 : this.ex.packedFloats(byRows ? n : m, k, byRows ? NR : MR);
    let lay = this.layout(s, res.top, ra, rb, packed * 4);
    if (!this.arena.reserve(lay.end)) {
      // no room beside the resident copies: drop them and lay everything out afresh
      res.reset();
      ra = rb = -1;
      lay = this.layout(s, res.top, ra, rb, packed * 4);
      if (!this.arena.reserve(lay.end)) return null;
    }

    const f32 = this.arena.f32;
    if (ra < 0) f32.set(m * k === a.length ? a : a.subarray(0, m * k), lay.a >> 2);
    if (rb < 0) f32.set(k * n === b.length ? b : b.subarray(0, k * n), lay.b >> 2);

    if (!parallel || !this.pool) {
      if (dot) this.ex.gemmDot(m, n, k, lay.a, lay.b, lay.c, 0, m, 0, n);
      else this.ex.gemm(transA, transB, m, n, k, lay.a, lay.b, lay.c, 0, m, 0, n, RESERVED, 0, 0);
    } else {
      if (packed && byRows) this.ex.packBWhole(transB, n, k, lay.b, lay.packed);
      else if (packed) this.ex.packAWhole(transA, m, k, lay.a, lay.packed);
      // Chunks of C's larger side (columns for the dot kernel), in whole micro-tiles: a few per
      // participant, so a late or busy thread only delays its own share.
      const extent = byRows ? m : n;
      const unit = byRows ? MR : dot ? 4 : NR;
      const units = Math.ceil(extent / unit);
      const perThread = flops >= BIG_FLOPS ? 2 : 4;
      const nChunks = Math.min(units, threads * perThread, MAX_CHUNKS);
      const chunk = Math.ceil(units / nChunks) * unit;
      const job = this.job;
      job[0] = dot ? JOB_DOT : JOB_GEMM;
      job[1] = transA;
      job[2] = transB;
      job[3] = m;
      job[4] = n;
      job[5] = k;
      job[6] = lay.a;
      job[7] = lay.b;
      job[8] = lay.c;
      job[9] = byRows ? 1 : 0;
      job[10] = extent;
      job[11] = chunk;
      job[12] = Math.ceil(extent / chunk);
      job[13] = RESERVED;
      job[14] = this.workBytes;
      job[15] = packed && !byRows ? lay.packed : 0;
      job[16] = packed && byRows ? lay.packed : 0;
      this.pool.run(job, this.ex);
    }
    return this.arena.take(lay.c, m * n);
  }

  /** Current size of the shared memory in bytes (for leak checks). */
  get memoryBytes(): number {
    return this.arena.bytes;
  }
}
