/**
 * Per-position difficulty for CAS (docs/method.md section 4). It starts as the proxy's top-k entropy; with
 * `adaptive: true` the outcomes of rollouts move it, so positions the policy has learned drift to
 * easier tiers and positions it keeps failing drift to harder ones. The table is plain data and
 * serialises to JSON so the coordinator can ship or checkpoint it.
 */
import { type AdaptiveDifficultyParams, RMT_DEFAULTS, type TierEdges } from '../config/rmt-defaults.js';
import { groupByTier, isEligible, type Tier } from './tiers.js';

interface Entry {
  entropy: number;
  /** EMA of (1 - group accuracy); null before the first observation. */
  failure: number | null;
  observations: number;
}

export interface DifficultyTableJson {
  version: 1;
  params: AdaptiveDifficultyParams;
  /** [position id, entropy, failure EMA or null, observations]. */
  entries: [number, number, number | null, number][];
}

export class DifficultyTable {
  private readonly entries = new Map<number, Entry>();
  readonly params: AdaptiveDifficultyParams;

  /** Takes the four adaptive fields of `params` (a whole curriculum config section will do). */
  constructor(
    { adaptive, ema_alpha, blend, failure_scale }: AdaptiveDifficultyParams = RMT_DEFAULTS.curriculum,
  ) {
    if (!(ema_alpha > 0 && ema_alpha <= 1)) throw new Error(`ema_alpha must be in (0, 1] (got ${ema_alpha})`);
    if (!(blend >= 0 && blend <= 1)) throw new Error(`blend must be in [0, 1] (got ${blend})`);
    this.params = { adaptive, ema_alpha, blend, failure_scale };
  }

  get size(): number {
    return this.entries.size;
  }

  has(id: number): boolean {
    return this.entries.has(id);
  }

  /** Registers a scored position (a re-score replaces the entropy and keeps the observations). */
  setEntropy(id: number, entropy: number): void {
    const e = this.entries.get(id);
    if (e) e.entropy = entropy;
    else this.entries.set(id, { entropy, failure: null, observations: 0 });
  }

  entropy(id: number): number {
    return this.get(id).entropy;
  }

  /**
   * Records a group's accuracy at a position. The first observation sets the EMA (no pull towards
   * an arbitrary prior). Recorded even when not adaptive, so switching `adaptive` on mid-run has
   * history. Returns false for an unknown position (an update may outrun the score).
   */
  observe(id: number, groupAccuracy: number): boolean {
    if (!(groupAccuracy >= 0 && groupAccuracy <= 1)) {
      throw new Error(`group accuracy must be in [0, 1] (got ${groupAccuracy})`);
    }
    const e = this.entries.get(id);
    if (!e) return false;
    const x = 1 - groupAccuracy;
    e.failure = e.failure === null ? x : (1 - this.params.ema_alpha) * e.failure + this.params.ema_alpha * x;
    e.observations++;
    return true;
  }

  /**
   * Entropy, or with `adaptive` and at least one observation
   * (1 - blend) * entropy + blend * failure_scale * EMA(1 - accuracy): the failure rate is put on
   * the entropy's scale (nats) so the same tier edges apply.
   */
  difficulty(id: number): number {
    const e = this.get(id);
    if (!this.params.adaptive || e.failure === null) return e.entropy;
    const { blend, failure_scale } = this.params;
    return (1 - blend) * e.entropy + blend * failure_scale * e.failure;
  }

  /** Eligible positions (entropy above `min_entropy`) grouped by the tier of their difficulty. */
  tiers(edges: TierEdges, min_entropy: number): Record<Tier, number[]> {
    const scored: { id: number; difficulty: number }[] = [];
    for (const [id, e] of this.entries) {
      if (isEligible(e.entropy, min_entropy)) scored.push({ id, difficulty: this.difficulty(id) });
    }
    return groupByTier(scored, edges);
  }

  toJSON(): DifficultyTableJson {
    const entries: DifficultyTableJson['entries'] = [];
    for (const [id, e] of this.entries) entries.push([id, e.entropy, e.failure, e.observations]);
    return { version: 1, params: { ...this.params }, entries };
  }

  static fromJSON(json: DifficultyTableJson): DifficultyTable {
    if (json.version !== 1) throw new Error(`difficulty table: unsupported version ${json.version}`);
    const table = new DifficultyTable(json.params);
    for (const [id, entropy, failure, observations] of json.entries) {
      table.entries.set(id, { entropy, failure, observations });
    }
    return table;
  }

  private get(id: number): Entry {
    const e = this.entries.get(id);
    if (!e) throw new Error(`difficulty table: unknown position ${id}`);
    return e;
  }
}
