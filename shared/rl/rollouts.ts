import type { RewardConfig } from '../config/rmt-defaults.js';
import type { Tokenizer } from '../data/tokenizer.js';
import type { Decoder } from '../model/decoder.js';
import { generate } from '../model/generate.js';
import type { Rng } from '../util/rng.js';
import type { KeyPosition } from './key-positions.js';
import type { ParsedResponse, PromptFormat } from './prompt-format.js';
import { type RolloutReward, rolloutReward } from './rewards.js';
import type { RolloutSettings } from './rollout-job.js';

/** One sampled response to a key position, parsed and scored. */
export interface Rollout {
  positionId: number;
  promptIds: number[];
  responseIds: number[];
  /** Log-probabilities of the response tokens under the sampling policy (temperature-scaled). */
  logprobs: number[];
  parsed: ParsedResponse;
  reward: RolloutReward;
  /** The budget B_t the prompt stated and the length reward used. */
  budget: number;
}

/** A job's settings (shared/rl/rollout-job.ts) plus the run's reward parameters. */
export interface RolloutOptions extends RolloutSettings {
  reward: RewardConfig;
}

/**
 * G rollouts per key position with the KV-cache sampler, parsed by the prompt format and rewarded.
 * Returns one group per position, in order.
 */
export async function generateRollouts(
  model: Decoder,
  tokenizer: Tokenizer,
  format: PromptFormat,
  positions: readonly KeyPosition[],
  o: RolloutOptions,
  rng: Rng,
): Promise<Rollout[][]> {
  const groups: Rollout[][] = [];
  const perCall = Math.max(1, Math.floor(o.maxBatch / o.G));
  for (let i = 0; i < positions.length; i += perCall) {
    const chunk = positions.slice(i, i + perCall);
    const prompts = chunk.flatMap((p) => {
      const prompt = format.buildPrompt(p.context, o.stateBudget ? o.budget : null);
      return Array.from({ length: o.G }, () => prompt);
    });
    const gens = await generate(model, prompts, {
      temperature: o.temperature,
      topK: 0,
      topP: 1,
      maxNewTokens: o.hardCap,
      stopTokens: [...format.stopIds],
      rng,
      padId: tokenizer.eosId,
      usableVocab: tokenizer.vocabSize,
    });
    chunk.forEach((p, c) => {
      const group: Rollout[] = [];
      for (let g = 0; g < o.G; g++) {
        const gen = gens[c * o.G + g];
        const parsed = format.parseResponse(gen.tokens);
        const reward = rolloutReward(
          o.rewardKind,
          parsed,
          { targetId: p.target, continuationIds: p.continuation },
          o.budget,
          o.reward,
          tokenizer,
        );
        group.push({
          positionId: p.id,
          promptIds: prompts[c * o.G + g],
          responseIds: gen.tokens,
          logprobs: gen.logprobs,
          parsed,
          reward,
          budget: o.budget,
        });
      }
      groups.push(group);
    });
  }
  return groups;
}
