/**
 * The float32 kernels' error measure against a reference: max|got - want| / max(1, max|want|).
 * A NaN anywhere, or outputs of different lengths, give Infinity so that no tolerance passes them.
 */
export function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Number.POSITIVE_INFINITY;
  let maxDiff = 0;
  let maxRef = 1;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
    maxRef = Math.max(maxRef, Math.abs(want[i]));
  }
  return maxDiff / maxRef;
}
