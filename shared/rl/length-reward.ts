/**
 * Triangular length reward (docs/method.md section 2): reasoning for exactly B_t tokens earns r_max, less or
 * more earns linearly less, and more than 2 B_t earns nothing. It makes the stated budget a target
 * rather than only a ceiling, which is what lets DTB shorten reasoning over training.
 */
import type { LengthRewardParams } from '../config/rmt-defaults.js';

/** r_len for reasoning length `l` (tokens) under budget `B` (>= 1). */
export function lengthReward(l: number, B: number, { r_max }: LengthRewardParams): number {
  if (!(B >= 1)) throw new Error(`lengthReward: budget must be >= 1 (got ${B})`);
  if (!(l >= 0)) throw new Error(`lengthReward: length must be >= 0 (got ${l})`);
  if (l <= B) return (r_max * l) / B;
  if (l <= 2 * B) return (r_max * (2 * B - l)) / B;
  return 0;
}
