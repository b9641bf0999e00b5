/**
 * Copies of host arrays kept in a wasm arena between calls, so an operand used again (a weight at
 * every decoding step, an activation read by several matmuls) is not copied in again each time.
 *
 * Only the backend may use it: it relies on its Bufs never changing after they are made, and tells
 * this set when one is freed (`release`) or changed in place (`release` before the change). An array
 * becomes resident on its second use (`address`), so a buffer used once costs one copy, as before.
 * Freed slots are kept per size and handed to the next array of that size (training replaces every
 * weight and activation with one of the same shape each step, so the region stops growing). The
 * region is bounded: when a new array would pass `capBytes`, everything is dropped and the region
 * starts over (arrays are copied in again on demand; dropped entries are never read again).
 */
import { align, type WasmArena } from './arena.js';

interface Slot {
  ptr: number;
  bytes: number;
  /** Floats copied in. */
  floats: number;
}

export class ResidentSet {
  private where = new WeakMap<Float32Array, Slot>();
  private seen = new WeakSet<Float32Array>();
  private spare = new Map<number, number[]>();
  private end: number;
  /** Counts resets: an address taken before a reset is no longer valid. */
  generation = 0;

  constructor(
    private readonly arena: WasmArena,
    /** First byte of the region (64-byte aligned). */
    readonly base: number,
    /** Most bytes the region may span. */
    readonly capBytes: number,
  ) {
    this.end = base;
  }

  /** First free byte after the region: where a call's own operands may start. */
  get top(): number {
    return this.end;
  }

  /**
   * The byte address of the resident copy of x's first n floats, copying them in on x's second
   * use; -1 when x is to be copied per call (first use, or no room).
   */
  address(x: Float32Array, n: number): number {
    const have = this.where.get(x);
    if (have && have.floats >= n) return have.ptr;
    if (have) this.release(x);
    if (!this.seen.has(x)) {
      this.seen.add(x);
      return -1;
    }
    const bytes = align(n * 4, 64);
    let ptr = this.spare.get(bytes)?.pop();
    if (ptr === undefined) {
      if (this.end + bytes > this.base + this.capBytes) this.reset();
      if (this.end + bytes > this.base + this.capBytes || !this.arena.reserve(this.end + bytes)) return -1;
      ptr = this.end;
      this.end += bytes;
    }
    this.arena.f32.set(x.length === n ? x : x.subarray(0, n), ptr >> 2);
    this.where.set(x, { ptr, bytes, floats: n });
    return ptr;
  }

  /** Forgets x's copy (x was freed or is about to change); its slot goes to the next array of its size. */
  release(x: Float32Array): void {
    const slot = this.where.get(x);
    if (!slot) return;
    this.where.delete(x);
    const list = this.spare.get(slot.bytes);
    if (list) list.push(slot.ptr);
    else this.spare.set(slot.bytes, [slot.ptr]);
  }

  /** Writes rows into x's copy, if it has one, as `writeRowsF32` wrote them into x (indices checked there). */
  patchRows(x: Float32Array, src: Float32Array, index: Int32Array, dim: number): void {
    const slot = this.where.get(x);
    if (!slot) return;
    const f32 = this.arena.f32;
    const base = slot.ptr >> 2;
    for (let i = 0; i < index.length; i++) {
      const at = index[i] * dim;
      if (at + dim <= slot.floats) f32.set(src.subarray(i * dim, (i + 1) * dim), base + at);
      else {
        // the copy holds fewer floats than x (a shorter use): drop it rather than half-patch it
        this.release(x);
        return;
      }
    }
  }

  /** Drops every copy (the region is empty afterwards). */
  reset(): void {
    this.where = new WeakMap();
    this.seen = new WeakSet();
    this.spare.clear();
    this.end = this.base;
    this.generation++;
  }
}
