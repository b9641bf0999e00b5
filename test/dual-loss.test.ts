import test, { type ExecutionContext } from 'ava';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { AdamW } from '../shared/model/adamw.js';
import { padBatch, type TokenBatch } from '../shared/model/batch.js';
import type { Decoder } from '../shared/model/decoder.js';
import { lossOnly } from '../shared/model/loss.js';
import { paramSpecs } from '../shared/model/params.js';
import { logSoftmax } from '../shared/model/sampling.js';
import { dualLossAndGrad, keyRowsInWindows, responseBatch } from '../shared/rl/dual-loss.js';
import { dynamicSampling, groupAdvantages } from '../shared/rl/grpo.js';
import { type KeyPosition, stepKeySet } from '../shared/rl/key-positions.js';
import type { Rollout } from '../shared/rl/rollouts.js';
import { Rng } from '../shared/util/rng.js';
import { makeDecoder, randomParams, TINY_CONFIGS } from './helpers/tiny-models.js';

/**
 * The learner's gradient against central finite differences of the objective it stands for, in
 * float64: L(theta) = -(1/N) sum_tokens rho_i A_i [+ beta (1/N) sum_tokens k3(logp_i, logp_ref_i)]
 * + lambda * mean NTP nll over non-key tokens, with rho = exp(logp(theta) - logp(theta_0)) (one update
 * per batch, so the clip is inactive at theta_0). logp (and logp_ref) are log-probs of
 * softmax(logits / T) at the sampling temperature T, computed here from the models' logits in float64
 * (logSoftmax of shared/model/sampling.ts, the sampler's definition); the NTP term is at temperature 1.
 * Tolerance 1e-6 relative (h = 1e-5).
 */
const config = TINY_CONFIGS['qwen3-gqa'];

function fakeGroups(seq: (n: number) => number[]): Rollout[][] {
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

/** Log-probs of each response token under softmax(logits / temperature), from the model's logits. */
async function responseLogProbs(
  m: Decoder,
  batch: TokenBatch,
  targets: Int32Array,
  rows: readonly { row: number }[],
  temperature: number,
): Promise<number[]> {
  const tape = await m.forward(batch);
  const logits = await m.backend.read(await m.logits(tape));
  m.releaseTape(tape);
  const V = config.vocab_size;
  return rows.map(
    ({ row }) => logSoftmax(logits.subarray(row * V, (row + 1) * V), temperature)[targets[row]],
  );
}

const dualLossFiniteDifferences = test.macro(
  async (t: ExecutionContext, temperature: number, beta: number) => {
    const rng = new Rng(17);
    const seq = (n: number) => Array.from({ length: n }, () => 1 + rng.int(config.vocab_size - 1));
    const be = new ReferenceBackend();
    const host = randomParams(config, 3);
    const groups = fakeGroups(seq);
    // Stream positions far apart: no window holds the other's key (that case has its own test).
    const positions: KeyPosition[] = [100, 200].map((id) => ({
      id,
      context: seq(5),
      target: 3,
      continuation: seq(3),
      entropy: 1,
    }));
    const lambda = 0.3;
    const opts = {
      clip: { eps_low: 0.2, eps_high: 0.2, beta },
      adv_eps: 1e-6,
      G: 3,
      lambda,
      useNtp: true,
      temperature,
      microBatch: 4,
      padId: 0,
    };
    const model = makeDecoder(be, config, host);
    const reference = beta !== 0 ? makeDecoder(be, config, randomParams(config, 4)) : undefined;
    const { grads, metrics } = await dualLossAndGrad(model, groups, positions, opts, reference);
    t.true(metrics['actor/ntp_loss'] > 0);
    t.is(metrics.rl_tokens, 2 * (2 + 3 + 4));
    if (beta !== 0) t.true(metrics['actor/kl_loss'] > 0);

    const rollouts = groups.flat();
    const adv = groups.flatMap((g) =>
      groupAdvantages(
        g.map((r) => r.reward.reward),
        3,
      ),
    );
    const { batch, targets, rows } = responseBatch(rollouts, 0);
    const logp = (m: Decoder) => responseLogProbs(m, batch, targets, rows, temperature);
    const old = await logp(model);
    const refLogp = reference ? await logp(reference) : [];
    const windows = positions.map((p) => [...p.context, ...p.continuation]);
    const ntpBatch = padBatch(windows, 0);
    const objective = async () => {
      const m = makeDecoder(be, config, host);
      const lp = await logp(m);
      let rl = 0;
      lp.forEach((x, i) => {
        rl -= Math.exp(x - old[i]) * adv[rows[i].seq];
        if (beta !== 0) {
          const d = refLogp[i] - x;
          rl += beta * (Math.exp(d) - d - 1);
        }
      });
      rl /= lp.length;
      // NTP on every next token except the key position's (row context_len - 1), at temperature 1.
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
  },
);

test('dual loss gradient = finite differences of L_RL + lambda * L_NTP', dualLossFiniteDifferences, 1, 0);
test(
  'dual loss gradient at temperature 0.8, with a k3 KL to a reference = finite differences of L_RL(T) + lambda * L_NTP',
  dualLossFiniteDifferences,
  0.8,
  0.05,
);

test('GRPO steps with AdamW make the rewarded answer the likely one (the loop learns, in the right direction)', async (t) => {
  // One prompt, G = 8 one-token responses sampled from the model, reward 1 for token 5 only: the
  // learner's gradient and AdamW must move probability onto token 5 within a few dozen steps.
  const be = new ReferenceBackend();
  const model = makeDecoder(be, config, randomParams(config, 5));
  const specs = paramSpecs(config);
  const opt = new AdamW(be, specs, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 });
  const prompt = [3, 9, 14, 2];
  const WANT = 5;
  const probs = async () => {
    const tape = await model.forward(padBatch([prompt], 0));
    const logits = await be.read(await model.logits(tape));
    model.releaseTape(tape);
    const V = config.vocab_size;
    const row = Array.from(logits.slice((prompt.length - 1) * V, prompt.length * V));
    const m = Math.max(...row);
    const e = row.map((x) => Math.exp(x - m));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / z);
  };
  const sampler = new Rng(11);
  const before = (await probs())[WANT];
  for (let step = 0; step < 40; step++) {
    const p = await probs();
    const group: Rollout[] = Array.from({ length: 8 }, () => {
      let u = sampler.next();
      let tok = 0;
      while (tok < p.length - 1 && u >= p[tok]) u -= p[tok++];
      const reward = tok === WANT ? 1 : 0;
      return {
        positionId: 0,
        promptIds: prompt,
        responseIds: [tok],
        logprobs: [],
        parsed: {
          reasoningIds: [],
          predictionIds: [tok],
          predictionBytes: new Uint8Array(),
          finishReason: 'stop',
        },
        reward: { reward, rMatch: reward, rLen: 0 },
        budget: 1,
      };
    });
    const { grads } = await dualLossAndGrad(model, [group], [], {
      clip: { eps_low: 0.2, eps_high: 0.2, beta: 0 },
      adv_eps: 1e-6,
      G: 8,
      lambda: 0,
      useNtp: false,
      temperature: 1, // the responses above are drawn from softmax(logits) itself
      microBatch: 8,
      padId: 0,
    });
    await opt.update(model.params, grads, 0.05);
  }
  const after = (await probs())[WANT];
  t.log(`p(token ${WANT}): ${before.toFixed(3)} -> ${after.toFixed(3)}`);
  t.true(after > 0.5 && after > 4 * before, `p(token ${WANT}): ${before.toFixed(3)} -> ${after.toFixed(3)}`);
});

/** The key position at stream index `id` of `stream`, with its context and continuation windows. */
function positionAt(
  stream: readonly number[],
  id: number,
  contextLen: number,
  continuationLen: number,
): KeyPosition {
  return {
    id,
    context: stream.slice(id - contextLen, id),
    target: stream[id],
    continuation: stream.slice(id, id + continuationLen),
    entropy: 1,
  };
}

/** Mean NTP nll over the windows of `positions`, leaving out every row that predicts a stream index in `masked`. */
async function ntpReference(m: Decoder, positions: readonly KeyPosition[], masked: ReadonlySet<number>) {
  const batch = padBatch(
    positions.map((p) => [...p.context, ...p.continuation]),
    0,
  );
  const n = batch.batch * batch.seqLen;
  const targets = new Int32Array(n).fill(-1);
  let count = 0;
  positions.forEach((p, s) => {
    const len = p.context.length + p.continuation.length;
    for (let r = 0; r + 1 < len; r++) {
      if (masked.has(p.id - p.context.length + r + 1)) continue;
      targets[s * batch.seqLen + r] = batch.ids[s * batch.seqLen + r + 1];
      count++;
    }
  });
  const weights = Float64Array.from(targets, (x) => (x >= 0 ? 1 / count : 0));
  return { loss: (await lossOnly(m, batch, { targets, weights })).loss, count };
}

const NTP_ONLY = {
  clip: { eps_low: 0.2, eps_high: 0.2, beta: 0 },
  adv_eps: 1e-6,
  G: 3,
  lambda: 1,
  useNtp: true,
  temperature: 1,
  microBatch: 4,
  padId: 0,
};

test("NTP mask leaves out every key position of the step inside a window, not only the window's own", async (t) => {
  const rng = new Rng(23);
  const stream = Array.from({ length: 40 }, () => 1 + rng.int(config.vocab_size - 1));
  // Context 5, continuation 3: the window of 10 spans stream [5, 13), that of 12 spans [7, 15).
  const a = positionAt(stream, 10, 5, 3);
  const b = positionAt(stream, 12, 5, 3);
  const far = positionAt(stream, 30, 5, 3);
  t.deepEqual(keyRowsInWindows([a, b, far]), [[4, 6], [2, 4], [4]]);
  t.deepEqual(keyRowsInWindows([a]), [[4]], 'alone, a window masks only its own key');

  const be = new ReferenceBackend();
  const model = makeDecoder(be, config, randomParams(config, 6));
  const { metrics } = await dualLossAndGrad(model, [], [a, b, far], NTP_ONLY);
  const want = await ntpReference(model, [a, b, far], new Set([10, 12, 30]));
  t.is(metrics.ntp_tokens, want.count);
  t.is(want.count, 3 * 7 - 5);
  t.true(
    Math.abs(metrics['actor/ntp_loss'] - want.loss) < 1e-12,
    `${metrics['actor/ntp_loss']} vs ${want.loss}`,
  );
  // The old mask (own key only) is a different objective on this batch.
  const ownOnly = await ntpReference(model, [a, b, far], new Set());
  t.not(ownOnly.count, want.count);
});

test('a position added by dynamic sampling gets its NTP window, and its key is masked in the others', async (t) => {
  const rng = new Rng(29);
  const stream = Array.from({ length: 40 }, () => 1 + rng.int(config.vocab_size - 1));
  const byId = new Map([10, 20, 13].map((id) => [id, positionAt(stream, id, 5, 3)]));
  const group = (positionId: number, rewards: number[]): Rollout[] =>
    rewards.map((reward) => ({
      positionId,
      promptIds: [1, 2],
      responseIds: [3],
      logprobs: [],
      parsed: {
        reasoningIds: [],
        predictionIds: [3],
        predictionBytes: new Uint8Array(),
        finishReason: 'stop',
      },
      reward: { reward, rMatch: reward, rLen: 0 },
      budget: 1,
    }));
  const drawn = [byId.get(10)!, byId.get(20)!];
  // Position 20's group has zero variance and is replaced by a fresh group at position 13.
  const ds = await dynamicSampling(
    [group(10, [0, 1, 0]), group(20, [1, 1, 1])],
    (g) => g.map((r) => r.reward.reward),
    () => group(13, [1, 0, 0]),
    4,
  );
  t.is(ds.replaced, 1);
  const keySet = stepKeySet(drawn, ds.groups, byId);
  t.deepEqual(
    keySet.map((p) => p.id),
    [10, 20, 13],
  );
  t.throws(() => stepKeySet(drawn, [group(99, [0, 1, 0])], byId), { message: /position 99/ });

  const be = new ReferenceBackend();
  const model = makeDecoder(be, config, randomParams(config, 7));
  const { metrics } = await dualLossAndGrad(model, [], keySet, NTP_ONLY);
  const want = await ntpReference(model, keySet, new Set([10, 20, 13]));
  // 10 lies in the window of 13 (rows predict stream 9..15): 3 windows of 7 rows, minus 3 own keys, minus 10 in 13's.
  t.is(want.count, 3 * 7 - 4);
  t.is(metrics.ntp_tokens, want.count);
  t.true(Math.abs(metrics['actor/ntp_loss'] - want.loss) < 1e-12);
});
