/**
 * What values a numeric setting may take. Every check names the field; a value outside its range
 * is refused when the config is loaded, before anything runs (a negative learning rate trains
 * backwards, a NaN one fails a service much later with a message about JSON nulls).
 */
export interface Range {
  int?: boolean;
  /** Inclusive bounds. */
  min?: number;
  max?: number;
  /** Exclusive bounds. */
  above?: number;
  below?: number;
}

/** The range in words, e.g. `an integer >= 1` (what error messages and docs/config.md say). */
export function describeRange(r: Range): string {
  const parts: string[] = [];
  if (r.min !== undefined) parts.push(`>= ${r.min}`);
  if (r.above !== undefined) parts.push(`> ${r.above}`);
  if (r.max !== undefined) parts.push(`<= ${r.max}`);
  if (r.below !== undefined) parts.push(`< ${r.below}`);
  const what = r.int ? 'an integer' : 'a finite number';
  return parts.length ? `${what} ${parts.join(' and ')}` : what;
}

export function inRange(v: unknown, r: Range): boolean {
  if (typeof v !== 'number' || !Number.isFinite(v)) return false;
  if (r.int && !Number.isSafeInteger(v)) return false;
  if (r.min !== undefined && v < r.min) return false;
  if (r.max !== undefined && v > r.max) return false;
  if (r.above !== undefined && !(v > r.above)) return false;
  if (r.below !== undefined && !(v < r.below)) return false;
  return true;
}
