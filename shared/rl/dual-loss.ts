import type { ClipParams } from '../config/rmt-defaults.js';
import type { LossTargets, TokenBatch } from '../model/batch.js';
import { padBatch } from '../model/batch.js';
import type { Decoder, Params } from '../model/decoder.js';
import { accumulateGrads, lossAndGrad, lossAndGradWeightedBy, lossOnly } from '../model/loss.js';
import { groupAdvantages, policyLoss } from './grpo.js';
import type { KeyPosition } from './key-positions.js';
import type { Rollout } from './rollouts.js';

/**
 * The dual objective of RMT (docs/method.md section 5): L = L_RL + lambda * L_NTP, one gradient for one
 * optimizer step.
 *
 * L_RL is GRPO over every response token of the batch (token-mean), with group-normalised
 * advantages. The learner takes one update per batch of rollouts. When a group was sampled at the
 * weights being updated (on-policy), pi_old is the learner's own forward pass (recomputed, as verl
 * does): the ratio is exactly 1 and the clip never acts. When it was sampled at an older weight
 * version (`distributed.max_staleness >= 1`), recomputing would give the newer policy and hide the
 * staleness, so pi_old is the sampler's own log-probs that travel with the rollout (as verl and
 * OpenRLHF do when generation overlaps training): the ratio pi_theta / pi_old then corrects for the
 * policy having moved, and the clip bounds how far one stale token may push. Both sides are
 * log-probs of softmax(logits / T) at the rollouts' sampling temperature T
 * (`DualLossOptions.temperature`; the sampler records them so, shared/model/sampling.ts), as are the
 * reference's for the k3 KL.
 *
 * L_NTP is the next-token cross-entropy on the same text windows the key positions come from, on
 * every token that is not a position of the step's key set C (m_pos = 1[pos not in C]), mean over
 * those tokens. C is every key position the step trains on (`ntpPositions`), so a window that holds
 * another key position besides its own leaves that one out too: otherwise the NTP term would teach
 * the direct answer at a position the RL term is teaching to reason about.
 */
/** Sequence lengths are padded to multiples of this so the learner's kernels are compiled once per bucket. */
const SHAPE_BUCKET = 32;

export interface DualLossOptions {
  clip: ClipParams;
  adv_eps: number;
  G: number;
  /** Weight of L_NTP; 0 (or useNtp false) drops the term. */
  lambda: number;
  useNtp: boolean;
  /**
   * Sampling temperature of the rollouts (grpo.temperature): L_RL's log-probs, and the reference
   * model's for the k3 KL, are those of softmax(logits / temperature). Why: the rollouts were drawn
   * from the temperature-scaled policy, so that is the policy whose log-probs the ratio and the
   * gradient must use; at temperature 1 the learner would optimise a different (sharper or flatter)
   * distribution than the one that sampled. verl and TRL divide the actor's (and the reference's)
   * logits by the sampling temperature for the same reason. L_NTP stays at temperature 1 (it fits
   * the data, not the sampler). A temperature <= 0 (greedy sampling) is taken as 1, as in the
   * rollouts' own log-probs (shared/model/sampling.ts).
   */
  temperature: number;
  /** Sequences per forward/backward; the gradients add up to the whole batch's. */
  microBatch: number;
  padId: number;
  /**
   * The whole step's normalisers when `groups` and `ntpPositions` are one shard of it (data-parallel
   * learners): the GRPO token mean and the NTP mean divide by the step's counts and the NTP term
   * leaves out the step's whole key set, so the shards' losses and gradients add up to the step's.
   * Unset: the given groups and positions are the whole step.
   */
  totals?: StepTotals;
}

/** What a step's dual loss is normalised by: its token counts and its key set C. */
export interface StepTotals {
  /** Response tokens of every rollout of the step. */
  rlTokens: number;
  /** Next-token targets of every NTP window of the step (key positions of C left out). */
  ntpTokens: number;
  /** The ids of every key position of the step. */
  keyIds: ReadonlySet<number>;
}

/** The normalisers of a whole step (the same counts dualLossAndGrad uses when not given them). */
export function stepTotals(groups: readonly Rollout[][], positions: readonly KeyPosition[]): StepTotals {
  const keyIds = new Set(positions.map((p) => p.id));
  return {
    rlTokens: groups.reduce((n, g) => n + g.reduce((m, r) => m + r.responseIds.length, 0), 0),
    ntpTokens: ntpTokenCount(positions, keyRowsInWindows(positions, keyIds)),
    keyIds,
  };
}

function ntpTokenCount(positions: readonly KeyPosition[], keyRows: readonly (readonly number[])[]): number {
  return positions.reduce(
    (n, p, s) => n + p.context.length + p.continuation.length - 1 - keyRows[s].length,
    0,
  );
}

export interface DualLossMetrics {
  'actor/pg_loss': number;
  'actor/ntp_loss': number;
  'actor/pg_clipfrac': number;
  'actor/ppo_kl': number;
  'actor/kl_loss': number;
  /** Response tokens the RL term averaged over. */
  rl_tokens: number;
  ntp_tokens: number;
}

export async function dualLossAndGrad(
  model: Decoder,
  groups: readonly Rollout[][],
  ntpPositions: readonly KeyPosition[],
  o: DualLossOptions,
  reference?: Decoder,
  /**
   * One flag per group: true when the group was sampled at an older weight version than `model`
   * holds, so pi_old is its rollouts' recorded `logprobs`. Absent or false: on-policy.
   */
  stale?: readonly boolean[],
): Promise<{ grads: Params; metrics: DualLossMetrics }> {
  const grads: Params = new Map();
  if (stale !== undefined && stale.length !== groups.length)
    throw new Error(`dualLossAndGrad: ${stale.length} staleness flags for ${groups.length} groups`);
  const rollouts = groups.flat();
  const staleRollout = groups.flatMap((g, i) => g.map(() => stale?.[i] === true));
  rollouts.forEach((r, i) => {
    if (staleRollout[i] && r.logprobs.length !== r.responseIds.length)
      throw new Error(`dualLossAndGrad: a stale rollout needs one sampler log-prob per response token`);
  });
  const advantages = groups.flatMap((g) =>
    groupAdvantages(
      g.map((r) => r.reward.reward),
      g.length,
      o.adv_eps,
    ),
  );
  // This call's own response tokens (a shard's share; the whole step's when unsharded), and what the
  // GRPO token mean divides by (the whole step's).
  const ownRlTokens = rollouts.reduce((n, r) => n + r.responseIds.length, 0);
  const rlTokens = o.totals?.rlTokens ?? ownRlTokens;
  const temperature = o.temperature > 0 ? o.temperature : 1;
  let pg = 0;
  let kl = 0;
  let clipped = 0;
  let ppoKl = 0;
  for (let i = 0; i < rollouts.length; i += o.microBatch) {
    const part = rollouts.slice(i, i + o.microBatch);
    const adv = advantages.slice(i, i + o.microBatch);
    const partStale = staleRollout.slice(i, i + o.microBatch);
    const { batch, targets, rows } = responseBatch(part, o.padId);
    const tokenAdv = Float64Array.from(rows.map((r) => adv[r.seq]));
    // Row j of `rows` is response token j - first[seq] of rollout seq (rows are in rollout order).
    const first = new Map<number, number>();
    rows.forEach((r, j) => {
      if (!first.has(r.seq)) first.set(r.seq, j);
    });
    let refLogProbs: Float64Array | undefined;
    if (o.clip.beta !== 0) {
      if (!reference) throw new Error('beta > 0 needs a reference model');
      const { nll } = await lossOnly(
        reference,
        batch,
        { targets, weights: new Float64Array(targets.length) },
        temperature,
      );
      refLogProbs = Float64Array.from(rows, (r) => -nll[r.row]);
    }
    const weightsOf = (nll: Float64Array): Float64Array => {
      const logProbs = Float64Array.from(rows, (r) => -nll[r.row]);
      // On-policy tokens keep pi_old = pi_theta (the same array when no group is stale, so an
      // on-policy step computes exactly what it always did); stale ones take the sampler's.
      const oldLogProbs = partStale.some((x) => x)
        ? Float64Array.from(rows, (r, j) =>
            partStale[r.seq] ? part[r.seq].logprobs[j - (first.get(r.seq) ?? 0)] : logProbs[j],
          )
        : logProbs;
      const pl = policyLoss(
        { logProbs, oldLogProbs, advantages: tokenAdv, refLogProbs, tokenCount: rlTokens },
        o.clip,
      );
      // policyLoss reports token means over this micro-batch; weight them back to batch means.
      const share = rows.length / rlTokens;
      pg += pl.pgLoss;
      kl += pl.klLoss;
      clipped += pl.pgClipfrac * share;
      ppoKl += pl.ppoKl * share;
      const w = new Float64Array(nll.length);
      rows.forEach((r, j) => {
        w[r.row] = pl.dLossDNll[j];
      });
      return w;
    };
    const r = await lossAndGradWeightedBy(model, batch, targets, weightsOf, temperature);
    await accumulateGrads(model, grads, r.grads);
  }

  let ntpLoss = 0;
  let ntpTokens = 0;
  if (o.useNtp && o.lambda > 0 && ntpPositions.length > 0) {
    const windows = ntpPositions.map((p) => [...p.context, ...p.continuation]);
    const keyRows = keyRowsInWindows(ntpPositions, o.totals?.keyIds);
    ntpTokens = ntpTokenCount(ntpPositions, keyRows);
    const denominator = o.totals?.ntpTokens ?? ntpTokens;
    for (let i = 0; i < windows.length; i += o.microBatch) {
      const batch = padBatch(windows.slice(i, i + o.microBatch), o.padId, 'right', SHAPE_BUCKET);
      const t = ntpTargets(batch, keyRows.slice(i, i + o.microBatch), o.lambda / Math.max(1, denominator));
      const r = await lossAndGrad(model, batch, t);
      ntpLoss += r.loss / o.lambda;
      await accumulateGrads(model, grads, r.grads);
    }
  }
  return {
    grads,
    metrics: {
      'actor/pg_loss': pg,
      'actor/ntp_loss': ntpLoss,
      'actor/pg_clipfrac': clipped,
      'actor/ppo_kl': ppoKl,
      'actor/kl_loss': kl,
      rl_tokens: ownRlTokens,
      ntp_tokens: ntpTokens,
    },
  };
}

/**
 * prompt + response of each rollout, right-padded; targets on the rows that predict response tokens
 * (row promptLen - 1 + j predicts response[j]). `rows` lists them in rollout order.
 */
export function responseBatch(
  rollouts: readonly Rollout[],
  padId: number,
): { batch: TokenBatch; targets: Int32Array; rows: { seq: number; row: number }[] } {
  const batch = padBatch(
    rollouts.map((r) => [...r.promptIds, ...r.responseIds]),
    padId,
    'right',
    SHAPE_BUCKET,
  );
  const targets = new Int32Array(batch.batch * batch.seqLen).fill(-1);
  const rows: { seq: number; row: number }[] = [];
  rollouts.forEach((r, s) => {
    for (let j = 0; j < r.responseIds.length; j++) {
      const row = s * batch.seqLen + r.promptIds.length - 1 + j;
      targets[row] = r.responseIds[j];
      rows.push({ seq: s, row });
    }
  });
  return { batch, targets, rows };
}

/**
 * For each key position's NTP window (`context` then `continuation`, the stream from
 * `id - context.length`), the rows whose next token is a position of the key set C (the ids of
 * `positions`): row r predicts stream position `id - context.length + r + 1`. The window's own key is
 * row `context.length - 1`; any other member of C inside the window is left out as well. `keys` is C
 * (by default the ids of `positions`; the whole step's when `positions` is one shard of it).
 */
export function keyRowsInWindows(
  positions: readonly KeyPosition[],
  keys: ReadonlySet<number> = new Set(positions.map((p) => p.id)),
): number[][] {
  return positions.map((p) => {
    const start = p.id - p.context.length;
    const length = p.context.length + p.continuation.length;
    const rows: number[] = [];
    for (let r = 0; r + 1 < length; r++) if (keys.has(start + r + 1)) rows.push(r);
    return rows;
  });
}

/** Every next-token target of each window except the rows of `keyRows` (C), each weighted `weight`. */
function ntpTargets(batch: TokenBatch, keyRows: readonly (readonly number[])[], weight: number): LossTargets {
  const n = batch.batch * batch.seqLen;
  const targets = new Int32Array(n).fill(-1);
  const weights = new Float64Array(n);
  for (let s = 0; s < batch.batch; s++) {
    const skip = new Set(keyRows[s]);
    for (let t = 0; t + 1 < batch.seqLen; t++) {
      const i = s * batch.seqLen + t;
      if (!batch.mask[i] || !batch.mask[i + 1] || skip.has(t)) continue;
      targets[i] = batch.ids[i + 1];
      weights[i] = weight;
    }
  }
  return { targets, weights };
}
