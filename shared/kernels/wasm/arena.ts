/**
 * The grow-once arena both WebAssembly kernel modules (the matmul, asm/matmul.ts, and the ops,
 * asm/ops.ts) run in: one shared WebAssembly.Memory per module, which the main thread and the worker
 * pool (pool.ts) see alike. A call places its operands from a fixed base, copies its inputs in, runs,
 * and copies its outputs out into fresh Float32Arrays: nothing is kept between calls, and the memory
 * only grows, to the largest call seen.
 */
import { availableParallelism } from 'node:os';

export const PAGE = 65536;
/** The modules declare at most 65536 pages (4 GiB). */
export const MAX_PAGES = 65536;
/** Participants at most (main thread included). */
const MAX_THREADS = 8;

export function align(x: number, to: number): number {
  return Math.ceil(x / to) * to;
}

export type ArenaInput = Float32Array | Int32Array | Uint8Array;

export class WasmArena {
  readonly memory: WebAssembly.Memory;
  f32!: Float32Array;
  i32!: Int32Array;
  u8!: Uint8Array;
  f64!: Float64Array;

  constructor(initialPages: number) {
    this.memory = new WebAssembly.Memory({ initial: initialPages, maximum: MAX_PAGES, shared: true });
    this.views();
  }

  private views(): void {
    const b = this.memory.buffer;
    this.f32 = new Float32Array(b);
    this.i32 = new Int32Array(b);
    this.u8 = new Uint8Array(b);
    this.f64 = new Float64Array(b);
  }

  /** Current size of the memory in bytes (for leak checks). */
  get bytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** Grows the memory to at least `bytes`; false if that exceeds the maximum or the grow fails. */
  reserve(bytes: number): boolean {
    const have = this.memory.buffer.byteLength;
    if (bytes <= have) return true;
    const pages = Math.ceil(bytes / PAGE);
    if (pages > MAX_PAGES) return false;
    try {
      this.memory.grow(pages - have / PAGE);
    } catch {
      return false;
    }
    this.views();
    return true;
  }

  /**
   * Places regions of the given byte sizes from `base`, each 64-byte aligned, growing the memory;
   * returns their addresses. `what` names the caller in the error when they do not fit.
   */
  place(base: number, bytes: number[], what: string): number[] {
    const ptrs: number[] = [];
    let at = base;
    for (const n of bytes) {
      at = align(at, 64);
      ptrs.push(at);
      at += n;
    }
    if (!this.reserve(at)) throw new RangeError(`${what}: ${at} bytes exceed the 4 GiB wasm memory`);
    return ptrs;
  }

  /** Copies the first n elements of x to byte address ptr. */
  put(ptr: number, x: ArenaInput, n: number, what: string): void {
    if (x.length < n) throw new RangeError(`${what}: input has ${x.length} elements, needs ${n}`);
    const src = x.length === n ? x : x.subarray(0, n);
    if (x instanceof Float32Array) this.f32.set(src as Float32Array, ptr >> 2);
    else if (x instanceof Int32Array) this.i32.set(src as Int32Array, ptr >> 2);
    else this.u8.set(src as Uint8Array, ptr);
  }

  /** A fresh Float32Array copy of n floats at byte address ptr. */
  take(ptr: number, n: number): Float32Array {
    // Uninitialised (every element is written next): skips zero-filling a fresh allocation.
    const raw = Buffer.allocUnsafeSlow(n * 4);
    const out = new Float32Array(raw.buffer, raw.byteOffset, n);
    out.set(this.f32.subarray(ptr >> 2, (ptr >> 2) + n));
    return out;
  }
}

/** Participants of a module's calls: RMT_WASM_THREADS if set, else the available cores, at most 8. */
export function defaultThreads(): number {
  const env = process.env.RMT_WASM_THREADS;
  if (env !== undefined && env !== '') {
    const t = Number(env);
    if (!Number.isInteger(t) || t < 1)
      throw new Error(`RMT_WASM_THREADS=${env}: expected a positive integer`);
    return Math.min(t, MAX_THREADS);
  }
  return Math.max(1, Math.min(availableParallelism(), MAX_THREADS));
}
