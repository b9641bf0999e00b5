import test from 'ava';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { padBatch } from '../shared/model/batch.js';
import { lossOnly } from '../shared/model/loss.js';
import { paramSpecs } from '../shared/model/params.js';
import { dualLossAndGrad, responseBatch } from '../shared/rl/dual-loss.js';
import { groupAdvantages } from '../shared/rl/grpo.js';
import type { KeyPosition } from '../shared/rl/key-positions.js';
import type { Rollout } from '../shared/rl/rollouts.js';
import { Rng } from '../shared/util/rng.js';
import { makeDecoder, randomParams, TINY_CONFIGS } from './helpers/tiny-models.js';

/**
 * The learner's gradient against central finite differences of the objective it stands for, in
 * float64: L(theta) = -(1/N) sum_tokens rho_i A_i + lambda * mean NTP nll over non-key tokens, with
 * rho = exp(logp(theta) - logp(theta_0)) (one update per batch, so the clip is inactive at theta_0).
 * Tolerance 1e-6 relative (h = 1e-5).
 */
const config = TINY_CONFIGS['qwen3-gqa'];
const rng = new Rng(17);
const seq = (n: number) => Array.from({ length: n }, () => 1 + rng.int(config.vocab_size - 1));

function fakeGroups(): Rollout[][] {
  return [0, 1].map((p) => {
    const prompt = seq(4 + p);
    return [0.0, 1.0, 0.2].map((reward, g) => ({
      positionId: p,
      promptIds: prompt,
      responseIds: seq(2 + g),
      logprobs: [],
      parsed: {
        reasoningIds: [],
        predictionIds: [],
        predictionBytes: new Uint8Array(),
        finishReason: 'stop' as const,
      },
      reward: { reward, rMatch: reward, rLen: 0 },
      budget: 4,
    }));
  });
}

test('dual loss gradient = finite differences of L_RL + lambda * L_NTP', async (t) => {
  const be = new ReferenceBackend();
  const host = randomParams(config, 3);
  const groups = fakeGroups();
  const positions: KeyPosition[] = [0, 1].map((id) => ({
    id,
    context: seq(5),
    target: 3,
    continuation: seq(3),
    entropy: 1,
  }));
  const lambda = 0.3;
  const opts = {
    clip: { eps_low: 0.2, eps_high: 0.2, beta: 0 },
    adv_eps: 1e-6,
    G: 3,
    lambda,
    useNtp: true,
    microBatch: 4,
    padId: 0,
  };
  const model = makeDecoder(be, config, host);
  const { grads, metrics } = await dualLossAndGrad(model, groups, positions, opts);
  t.true(metrics['actor/ntp_loss'] > 0);
  t.is(metrics.rl_tokens, 2 * (2 + 3 + 4));

  const rollouts = groups.flat();
  const adv = groups.flatMap((g) =>
    groupAdvantages(
      g.map((r) => r.reward.reward),
      3,
    ),
  );
  const { batch, targets, rows } = responseBatch(rollouts, 0);
  const logp = async (m: ReturnType<typeof makeDecoder>) => {
    const { nll } = await lossOnly(m, batch, { targets, weights: new Float64Array(targets.length) });
    return rows.map((r) => -nll[r.row]);
  };
  const old = await logp(model);
  const windows = positions.map((p) => [...p.context, ...p.continuation]);
  const ntpBatch = padBatch(windows, 0);
  const objective = async () => {
    const m = makeDecoder(be, config, host);
    const lp = await logp(m);
    let rl = 0;
    lp.forEach((x, i) => {
      rl -= Math.exp(x - old[i]) * adv[rows[i].seq];
    });
    rl /= lp.length;
    // NTP on every next token except the key position's (row context_len - 1).
    const n = ntpBatch.batch * ntpBatch.seqLen;
    const tg = new Int32Array(n).fill(-1);
    const w = new Float64Array(n);
    let count = 0;
    for (let s = 0; s < ntpBatch.batch; s++) {
      for (let i = 0; i + 1 < ntpBatch.seqLen; i++) {
        if (i === positions[s].context.length - 1) continue;
        tg[s * ntpBatch.seqLen + i] = ntpBatch.ids[s * ntpBatch.seqLen + i + 1];
        count++;
      }
    }
    for (let i = 0; i < n; i++) if (tg[i] >= 0) w[i] = 1 / count;
    return rl + lambda * (await lossOnly(m, ntpBatch, { targets: tg, weights: w })).loss;
  };
  const h = 1e-5;
  for (const s of paramSpecs(config).filter((_, i) => i % 3 === 0)) {
    const g = (await be.read(grads.get(s.name)!)) as Float64Array;
    const p = host.get(s.name)!;
    const i = rng.int(p.length);
    const orig = p[i];
    p[i] = orig + h;
    const up = await objective();
    p[i] = orig - h;
    const down = await objective();
    p[i] = orig;
    const numeric = (up - down) / (2 * h);
    t.true(
      Math.abs(g[i] - numeric) <= 1e-6 * Math.max(1, Math.abs(numeric)),
      `${s.name}[${i}] ${g[i]} vs ${numeric}`,
    );
  }
});
