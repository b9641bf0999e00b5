/**
 * RoPE's cos/sin tables on the host, shared by the backends, and the cache that keeps them per
 * frequency set (the wasm backend keeps host arrays, the webgpu backend device copies).
 */
import type { RopeFrequencies } from './backend.js';

/**
 * cos/sin tables [positions, headDim/2] for positions 0 .. count-1, times the attention scale, in
 * float64 rounded to f32.
 */
export function ropeTables(
  count: number,
  headDim: number,
  freq: RopeFrequencies,
): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const inv = freq.invFreq;
  const scale = freq.attentionScale;
  const cos = new Float32Array(count * half);
  const sin = new Float32Array(count * half);
  for (let p = 0; p < count; p++) {
    for (let i = 0; i < half; i++) {
      const ang = p * inv[i];
      cos[p * half + i] = scale * Math.cos(ang);
      sin[p * half + i] = scale * Math.sin(ang);
    }
  }
  return { cos, sin };
}

/** RoPE table sets kept (one per frequency set; see RopeTableCache). */
const ROPE_TABLES_KEPT = 4;

/** Rows a table needs to cover `positions` (the largest plus one); a negative position is refused. */
export function ropeRowsFor(positions: Int32Array): number {
  let maxPos = 0;
  for (const p of positions) {
    if (p < 0) throw new RangeError(`rope: negative position ${p}`);
    if (p > maxPos) maxPos = p;
  }
  return maxPos + 1;
}

/**
 * Tables covering positions 0 .. count-1 (grown by doubling from 256, kept per frequency set) in the
 * backend's own form T. Dynamic NTK scaling makes a new frequency set per longer sequence, so only
 * the most recently used few are kept; `release` is called on every table set dropped.
 */
export class RopeTableCache<T> {
  private readonly entries = new Map<string, { count: number; cos: T; sin: T }>();

  constructor(
    private readonly make: (host: Float32Array) => Promise<T> | T,
    private readonly release: (cos: T, sin: T) => void,
  ) {}

  async get(count: number, headDim: number, freq: RopeFrequencies): Promise<{ cos: T; sin: T }> {
    const key = `${headDim}|${freq.attentionScale}|${freq.invFreq.join(',')}`;
    const have = this.entries.get(key);
    if (have && have.count >= count) {
      this.entries.delete(key);
      this.entries.set(key, have);
      return have;
    }
    let size = have ? have.count : 256;
    while (size < count) size *= 2;
    const t = ropeTables(size, headDim, freq);
    const entry = { count: size, cos: await this.make(t.cos), sin: await this.make(t.sin) };
    if (have) this.release(have.cos, have.sin);
    this.entries.delete(key);
    this.entries.set(key, entry);
    while (this.entries.size > ROPE_TABLES_KEPT) {
      const [oldest, old] = this.entries.entries().next().value as [string, { cos: T; sin: T }];
      this.release(old.cos, old.sin);
      this.entries.delete(oldest);
    }
    return entry;
  }

  /** Releases every table set. */
  clear(): void {
    for (const { cos, sin } of this.entries.values()) this.release(cos, sin);
    this.entries.clear();
  }
}
