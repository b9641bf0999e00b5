/**
 * Host-side preparation for the gpu.js kernels: index structures that turn scatters into gathers, and
 * conversions of host integer data into the Float32Arrays gpu.js takes. Everything here is O(input).
 */
/** Integer host data as floats (exact below 2^24). Never empty: gpu.js cannot bind a 0-length array. */
export function asF32(data: ArrayLike<number>): Float32Array {
  const out = new Float32Array(Math.max(1, data.length));
  for (let i = 0; i < data.length; i++) out[i] = data[i];
  return out;
}

/**
 * CSR index of ids: the rows using vocab entry v are rowList[offsets[v] .. offsets[v+1]), in
 * increasing row order (the reference's summation order).
 */
export function buildCsr(ids: Int32Array, vocab: number): { offsets: Float32Array; rowList: Float32Array } {
  const counts = new Int32Array(vocab + 1);
  for (let r = 0; r < ids.length; r++) {
    const id = ids[r];
    if (id < 0 || id >= vocab)
      throw new RangeError(`embeddingBackward: id ${id} at row ${r} outside [0, ${vocab})`);
    counts[id + 1]++;
  }
  for (let v = 0; v < vocab; v++) counts[v + 1] += counts[v];
  const offsets = Float32Array.from(counts);
  const cursor = counts.slice(0, vocab);
  const rowList = new Float32Array(Math.max(1, ids.length));
  for (let r = 0; r < ids.length; r++) rowList[cursor[ids[r]]++] = r;
  return { offsets, rowList };
}

/** inverse[row] = the last i with index[i] = row (later writes win, as in the reference), else -1. */
export function buildInverse(index: Int32Array, rows: number): Float32Array {
  const inverse = new Float32Array(rows).fill(-1);
  index.forEach((row, i) => {
    if (row < 0 || row >= rows) throw new RangeError(`scatterRows: index ${row} outside [0, ${rows})`);
    inverse[row] = i;
  });
  return inverse;
}
