import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { createBackend } from '../shared/kernels/index.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import type { Decoder } from '../shared/model/decoder.js';
import { generate } from '../shared/model/generate.js';
import { paramSpecs } from '../shared/model/params.js';
import { logSoftmax } from '../shared/model/sampling.js';
import { dualLossAndGrad, responseBatch } from '../shared/rl/dual-loss.js';
import type { Rollout } from '../shared/rl/rollouts.js';
import { Learner } from '../shared/run/learner.js';
import { Rng } from '../shared/util/rng.js';
import { makeDecoder, randomParams, TINY_CONFIGS } from './helpers/tiny-models.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

/**
 * A step built from rollouts one weight version behind: the learner holds theta_1, the rollouts were
 * sampled (with the KV-cache sampler) at theta_0, so pi_old must be the sampler's recorded log-probs,
 * not a recomputation at theta_1. Everything here is float64 on the reference backend; the objective
 * is written out by hand from the sampler's log-probs:
 *   L(theta) = (1/N) sum_tokens max(-A rho, -A clip(rho, 1 - eps_low, 1 + eps_high)),
 *   rho = exp(logp_theta - logp_sampler), logp at the sampling temperature T.
 * Tolerances: the loss and ppo_kl within 1e-12 absolute (same float64 sums in another order), the
 * gradient within 1e-6 relative of central finite differences (h = 1e-5), the sampler's log-probs
 * within 1e-9 of a full forward pass (KV-cache decoding sums in another order).
 */
const config = TINY_CONFIGS['qwen3-gqa'];
const T = 0.8;
const clip = { eps_low: 0.2, eps_high: 0.28, beta: 0 };
const ADV_EPS = 1e-6;
const be = new ReferenceBackend();
const host0 = randomParams(config, 21);
const noise = new Rng(5);
/** theta_1: theta_0 after a change large enough that some ratios leave the trust region. */
const host1 = new Map([...host0].map(([k, v]) => [k, v.map((x) => x + 0.08 * noise.normal())]));

async function sampledGroups(): Promise<Rollout[][]> {
  const model0 = makeDecoder(be, config, host0);
  const rng = new Rng(9);
  const rewards = [
    [0, 1, 0.3],
    [1, 0.2, 0],
  ];
  const groups: Rollout[][] = [];
  for (const [p, rs] of rewards.entries()) {
    const prompt = Array.from({ length: 5 + p }, () => 1 + rng.int(config.vocab_size - 1));
    const gens = await generate(
      model0,
      rs.map(() => prompt),
      { temperature: T, topK: 0, topP: 1, maxNewTokens: 4, stopTokens: [], rng },
    );
    groups.push(
      gens.map((g, i) => ({
        positionId: p,
        promptIds: prompt,
        responseIds: g.tokens,
        logprobs: g.logprobs,
        parsed: {
          reasoningIds: [],
          predictionIds: [],
          predictionBytes: new Uint8Array(),
          finishReason: 'stop',
        },
        reward: { reward: rs[i], rMatch: rs[i], rLen: 0 },
        budget: 4,
      })),
    );
  }
  return groups;
}

/** log softmax(logits / T) of each response token, from a full forward pass of `m`. */
async function responseLogProbs(m: Decoder, rollouts: readonly Rollout[]): Promise<number[]> {
  const { batch, targets, rows } = responseBatch(rollouts, 0);
  const tape = await m.forward(batch);
  const logits = await m.backend.read(await m.logits(tape));
  m.releaseTape(tape);
  const V = config.vocab_size;
  return rows.map(({ row }) => logSoftmax(logits.subarray(row * V, (row + 1) * V), T)[targets[row]]);
}

/** Group-normalised advantages written out: (r - mean) / (sample std + eps). */
function handAdvantages(groups: readonly Rollout[][]): number[] {
  return groups.flatMap((g) => {
    const r = g.map((x) => x.reward.reward);
    const mean = r.reduce((a, b) => a + b, 0) / r.length;
    const std = Math.sqrt(r.reduce((a, b) => a + (b - mean) ** 2, 0) / (r.length - 1));
    return r.map((x) => (x - mean) / (std + ADV_EPS));
  });
}

const options = (microBatch: number) => ({
  clip,
  adv_eps: ADV_EPS,
  G: 3,
  lambda: 0,
  useNtp: false,
  temperature: T,
  microBatch,
  padId: 0,
});

test('the sampler records log-probs of softmax(logits / T), the quantity the learner recomputes', async (t) => {
  const groups = await sampledGroups();
  const rollouts = groups.flat();
  const full = await responseLogProbs(makeDecoder(be, config, host0), rollouts);
  const recorded = rollouts.flatMap((r) => r.logprobs);
  t.is(recorded.length, full.length);
  for (let i = 0; i < full.length; i++) t.true(Math.abs(recorded[i] - full[i]) <= 1e-9, `token ${i}`);
});

test('a step one version behind: pi_old is the sampler, loss, clip fraction, ppo_kl and gradient as by hand', async (t) => {
  const groups = await sampledGroups();
  const rollouts = groups.flat();
  const old = rollouts.flatMap((r) => r.logprobs);
  const N = old.length;
  const adv = handAdvantages(groups).flatMap((a, s) => rollouts[s].responseIds.map(() => a));

  const objective = async (host: Map<string, Float64Array>) => {
    const lp = await responseLogProbs(makeDecoder(be, config, host), rollouts);
    let loss = 0;
    let clipped = 0;
    let kl = 0;
    lp.forEach((x, i) => {
      const rho = Math.exp(x - old[i]);
      const unclipped = -adv[i] * rho;
      const cut = -adv[i] * Math.min(Math.max(rho, 1 - clip.eps_low), 1 + clip.eps_high);
      loss += Math.max(unclipped, cut);
      if (cut > unclipped) clipped++;
      kl += old[i] - x;
    });
    return { loss: loss / N, clipfrac: clipped / N, ppoKl: kl / N };
  };

  const model1 = makeDecoder(be, config, host1);
  // Micro-batches of 2 split a group: the sampler's log-probs must follow their rollouts.
  const { grads, metrics } = await dualLossAndGrad(model1, groups, [], options(2), undefined, [true, true]);
  const hand = await objective(host1);
  t.true(hand.clipfrac > 0 && hand.clipfrac < 1, `the clip acts on some tokens, not all (${hand.clipfrac})`);
  t.true(
    Math.abs(metrics['actor/pg_loss'] - hand.loss) <= 1e-12,
    `${metrics['actor/pg_loss']} vs ${hand.loss}`,
  );
  t.true(Math.abs(metrics['actor/pg_clipfrac'] - hand.clipfrac) <= 1e-12);
  t.true(Math.abs(metrics['actor/ppo_kl'] - hand.ppoKl) <= 1e-12);
  t.not(metrics['actor/ppo_kl'], 0);
  t.is(metrics.rl_tokens, N);

  const rng = new Rng(3);
  const h = 1e-5;
  for (const s of paramSpecs(config).filter((_, i) => i % 2 === 0)) {
    const g = (await be.read(grads.get(s.name)!)) as Float64Array;
    const p = host1.get(s.name)!;
    const i = rng.int(p.length);
    const orig = p[i];
    p[i] = orig + h;
    const up = (await objective(host1)).loss;
    p[i] = orig - h;
    const down = (await objective(host1)).loss;
    p[i] = orig;
    const numeric = (up - down) / (2 * h);
    t.true(
      Math.abs(g[i] - numeric) <= 1e-6 * Math.max(1, Math.abs(numeric)),
      `${s.name}[${i}] ${g[i]} vs ${numeric}`,
    );
  }
});

test('an on-policy step is unchanged: recomputed pi_old, ratio 1, no clip, bit for bit with or without flags', async (t) => {
  const groups = await sampledGroups();
  const model0 = makeDecoder(be, config, host0);
  const plain = await dualLossAndGrad(model0, groups, [], options(2));
  const flagged = await dualLossAndGrad(model0, groups, [], options(2), undefined, [false, false]);
  t.deepEqual(flagged.metrics, plain.metrics);
  for (const [name, g] of plain.grads) {
    const a = await be.read(g);
    const b = await be.read(flagged.grads.get(name)!);
    t.true(
      a.every((x, i) => Object.is(x, b[i])),
      name,
    );
  }
  t.is(plain.metrics['actor/pg_clipfrac'], 0);
  t.is(plain.metrics['actor/ppo_kl'], 0);
  // With rho = 1 the loss is -(1/N) sum A over tokens, whatever pi_old the sampler recorded.
  const rollouts = groups.flat();
  const adv = handAdvantages(groups);
  const N = rollouts.reduce((n, r) => n + r.responseIds.length, 0);
  const want = -rollouts.reduce((s, r, i) => s + adv[i] * r.responseIds.length, 0) / N;
  t.true(Math.abs(plain.metrics['actor/pg_loss'] - want) <= 1e-12);
});

test('a stale group needs one sampler log-prob per response token', async (t) => {
  const groups = await sampledGroups();
  groups[1][2] = { ...groups[1][2], logprobs: [] };
  const model1 = makeDecoder(be, config, host1);
  await t.throwsAsync(dualLossAndGrad(model1, groups, [], options(2), undefined, [false, true]), {
    message: /one sampler log-prob per response token/,
  });
  await t.throwsAsync(dualLossAndGrad(model1, groups, [], options(2), undefined, [true]), {
    message: /1 staleness flags for 2 groups/,
  });
});

test('the learner trains a group older than its weights off-policy, and its version is part of the request', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'rmt-off-policy-'));
  const cpu = await createBackend('cpu');
  const cfg = tinyRunConfig(tinyBaseCheckpoint(root), join(root, 'run'), 'rmt', 4, {
    distributed: { max_staleness: 1 },
  });
  const learner = new Learner(cfg, cpu, 0);
  t.teardown(async () => {
    learner.dispose();
    await cpu.dispose();
    rmSync(root, { recursive: true, force: true });
  });
  // Rollouts sampled by the learner's step-0 weights, used at step 0 (on-policy) and at step 1.
  const gen = new Rng(4);
  const positions = [0, 1].map((p) => ({
    id: 100 * (p + 1),
    context: Array.from({ length: 8 }, () => 1 + gen.int(200)),
    target: 5,
    continuation: [6, 7, 8],
    entropy: 2,
  }));
  const groups: Rollout[][] = [];
  for (const [p, pos] of positions.entries()) {
    const prompt = [...pos.context, 9];
    const gens = await generate(learner.model, [prompt, prompt], {
      temperature: cfg.grpo.temperature,
      topK: 0,
      topP: 1,
      maxNewTokens: 3,
      stopTokens: [],
      rng: gen,
    });
    groups.push(
      gens.map((g, i) => ({
        positionId: pos.id,
        promptIds: prompt,
        responseIds: g.tokens,
        logprobs: g.logprobs,
        parsed: {
          reasoningIds: [],
          predictionIds: [],
          predictionBytes: new Uint8Array(),
          finishReason: 'stop',
        },
        reward: { reward: i === p ? 1 : 0, rMatch: i === p ? 1 : 0, rLen: 0 },
        budget: 8,
      })),
    );
  }
  const onPolicy = await learner.trainStep(0, groups, positions, [0, 0]);
  t.is(onPolicy['actor/ppo_kl'], 0);
  t.is(onPolicy['actor/pg_clipfrac'], 0);
  const stale = await learner.trainStep(1, groups, positions, [0, 0]);
  t.true(Number.isFinite(stale['actor/ppo_kl']) && stale['actor/ppo_kl'] !== 0, `${stale['actor/ppo_kl']}`);
  t.is(learner.step, 2);
  // The same rollouts claimed at another version are another request.
  await t.throwsAsync(learner.trainStep(1, groups, positions, [1, 1]), {
    message: /already taken with a different request/,
  });
  t.deepEqual(await learner.trainStep(1, groups, positions, [0, 0]), stale, 'the identical retry');
});
