/**
 * Row copies of the CPU backends (embedding lookup and its gradient, gatherRows, scatterRows) on plain
 * typed arrays: they move memory and compute nothing, so TypedArray.set (a memcpy) beats both a gpu.js
 * kernel and a round trip through wasm memory. Semantics are the kernel interface's
 * (shared/kernels/backend.ts); out-of-range indices throw a RangeError.
 */

function fresh(n: number): Float32Array {
  return new Float32Array(n);
}

/** out[i, :] = x[index[i], :]. */
export function gatherRowsF32(
  x: Float32Array,
  index: Int32Array,
  dim: number,
  what = 'gatherRows',
): Float32Array {
  const rows = dim > 0 ? Math.floor(x.length / dim) : 0;
  const out = fresh(index.length * dim);
  for (let i = 0; i < index.length; i++) {
    const r = index[i];
    if (!(r >= 0 && r < rows)) throw new RangeError(`${what}: index ${r} at ${i} outside [0, ${rows})`);
    out.set(x.subarray(r * dim, (r + 1) * dim), i * dim);
  }
  return out;
}

/** A copy of dst[rows, dim] with row index[i] replaced by src[i, :] (later writes win). */
export function scatterRowsF32(
  dst: Float32Array,
  src: Float32Array,
  index: Int32Array,
  dim: number,
): Float32Array {
  const out = dst.slice();
  writeRowsF32(out, src, index, dim);
  return out;
}

/** dst[index[i], :] = src[i, :] in place (later writes win); every index is checked before the first write. */
export function writeRowsF32(dst: Float32Array, src: Float32Array, index: Int32Array, dim: number): void {
  const rows = dim > 0 ? Math.floor(dst.length / dim) : 0;
  for (let i = 0; i < index.length; i++) {
    const r = index[i];
    if (!(r >= 0 && r < rows)) throw new RangeError(`scatterRows: index ${r} outside [0, ${rows})`);
  }
  if (src.length < index.length * dim)
    throw new RangeError(`scatterRows: src has ${src.length} elements, needs ${index.length * dim}`);
  for (let i = 0; i < index.length; i++) dst.set(src.subarray(i * dim, (i + 1) * dim), index[i] * dim);
}

/** d table[v, :] = sum over r with ids[r] = v of dOut[r, :], summed in row order in f32. */
export function embeddingBackwardF32(
  dOut: Float32Array,
  ids: Int32Array,
  vocab: number,
  dim: number,
): Float32Array {
  const out = fresh(vocab * dim);
  for (let r = 0; r < ids.length; r++) {
    const id = ids[r];
    if (!(id >= 0 && id < vocab))
      throw new RangeError(`embeddingBackward: id ${id} at row ${r} outside [0, ${vocab})`);
    const o = id * dim;
    const s = r * dim;
    for (let c = 0; c < dim; c++) out[o + c] += dOut[s + c];
  }
  return out;
}
