/**
 * Choosing the key positions of an RL step (docs/method.md section 4 and the curriculum column of section 6).
 * Every slot is an independent draw (with replacement), so the batch follows p_t exactly in
 * expectation and a sampler never runs dry; the coordinator decides what a repeat means.
 */
import type { TierMixParams, TierProbs } from '../config/rmt-defaults.js';
import type { Rng } from '../util/rng.js';
import { tierMix } from './schedule.js';
import { isEligible, TIERS, type Tier } from './tiers.js';

export interface PositionSampler {
  /** `n` position ids for step `t` of `T`. */
  sample(n: number, t: number, T: number, rng: Rng): number[];
}

function pick(ids: readonly number[], rng: Rng): number {
  return ids[rng.int(ids.length)];
}

/**
 * The mix actually drawn from when some tiers have no positions: an empty tier's mass goes to the
 * non-empty tiers in proportion to their own p, so their ratios stay as scheduled. If the
 * non-empty tiers all have p = 0, they share the mass equally (the schedule says nothing then).
 */
export function effectiveMix(p: TierProbs, sizes: readonly [number, number, number]): TierProbs {
  const present = sizes.map((s) => s > 0);
  if (!present.some(Boolean)) throw new Error('no positions in any tier');
  const mass = p.reduce((s, pi, i) => s + (present[i] ? pi : 0), 0);
  if (mass > 0) return p.map((pi, i) => (present[i] ? pi / mass : 0)) as TierProbs;
  const k = present.filter(Boolean).length;
  return present.map((on) => (on ? 1 / k : 0)) as TierProbs;
}

/** Index of a draw from a distribution (sums to 1 up to rounding; the last positive entry absorbs it). */
export function drawIndex(p: readonly number[], rng: Rng): number {
  const u = rng.next();
  let acc = 0;
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    if (p[i] <= 0) continue;
    acc += p[i];
    last = i;
    if (u < acc) return i;
  }
  if (last < 0) throw new Error('drawIndex: no positive probability');
  return last;
}

/** CAS: each slot draws a tier from p_t (redistributed over non-empty tiers), then a position uniformly in it. */
export class CasSampler implements PositionSampler {
  constructor(
    private readonly tiers: Readonly<Record<Tier, readonly number[]>>,
    private readonly mix: TierMixParams,
  ) {}

  /** The mix a step draws from (`curriculum/p_easy|p_medium|p_hard`). */
  mixAt(t: number, T: number): TierProbs {
    const sizes = TIERS.map((tier) => this.tiers[tier].length) as [number, number, number];
    return effectiveMix(tierMix(t, T, this.mix), sizes);
  }

  sample(n: number, t: number, T: number, rng: Rng): number[] {
    const p = this.mixAt(t, T);
    return Array.from({ length: n }, () => pick(this.tiers[TIERS[drawIndex(p, rng)]], rng));
  }
}

/** Uniform over a fixed set of positions (`rmt-no-cas`: the filtered positions, no curriculum). */
export class UniformSampler implements PositionSampler {
  constructor(private readonly ids: readonly number[]) {
    if (ids.length === 0) throw new Error('UniformSampler: no positions');
  }

  sample(n: number, _t: number, _T: number, rng: Rng): number[] {
    return Array.from({ length: n }, () => pick(this.ids, rng));
  }
}

export interface EntropyScored {
  id: number;
  entropy: number;
}

/** Ids of the positions above the entropy threshold, in input order. */
export function filterByEntropy(positions: Iterable<EntropyScored>, threshold: number): number[] {
  const out: number[] = [];
  for (const p of positions) if (isEligible(p.entropy, threshold)) out.push(p.id);
  return out;
}

/** RPT: uniform over the positions whose proxy entropy is above a threshold. */
export class EntropyFilterSampler extends UniformSampler {
  constructor(positions: Iterable<EntropyScored>, threshold: number) {
    super(filterByEntropy(positions, threshold));
  }
}
