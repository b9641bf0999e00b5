import test from 'ava';
import { RMT_DEFAULTS } from '../shared/config/rmt-defaults.js';
import {
  clippedTokenLoss,
  dynamicSampling,
  fracRewardZeroStd,
  groupAdvantages,
  isZeroStd,
  k3,
  policyLoss,
  tokenAdvantages,
  zeroStdGroups,
} from '../shared/rl/grpo.js';
import { Rng } from '../shared/util/rng.js';

const EPS = 1e-6;
const close = (a: number, b: number, tol = 1e-9) => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

test('advantages use the sample std (G - 1), as verl and TRL do', (t) => {
  // mean 0.25; sample std sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5 (population std would be 0.433).
  const a = groupAdvantages([1, 0, 0, 0], 4);
  t.true(close(a[0], 0.75 / (0.5 + EPS)));
  for (const i of [1, 2, 3]) t.true(close(a[i], -0.25 / (0.5 + EPS)));
  // G = 2: std = |r1 - r2| / sqrt(2), so A = +-1/sqrt(2) rather than +-1.
  const b = groupAdvantages([1, 0], 2);
  t.true(close(b[0], 0.5 / (Math.SQRT1_2 + EPS)));
  t.true(close(b[1], -0.5 / (Math.SQRT1_2 + EPS)));
});

test('advantages are per group; a zero-variance group gets exactly 0', (t) => {
  const a = groupAdvantages([1, 0, 0.5, 0.5, 0.3, 0.3], 2);
  t.true(close(a[0], 0.5 / (Math.SQRT1_2 + EPS)));
  t.deepEqual(a.slice(2), [0, 0, 0, 0]);
  t.true(close(a[0] + a[1], 0));
});

test('a group of one has A = r / (1 + eps) (verl: mean 0, std 1)', (t) => {
  t.true(close(groupAdvantages([0.3, 1], 1)[0], 0.3 / (1 + EPS)));
  t.false(isZeroStd([0.3]));
});

test('groups must be whole', (t) => {
  t.throws(() => groupAdvantages([1, 0, 1], 2));
  t.throws(() => groupAdvantages([1, 0], 0));
});

test('zero-std groups are counted as frac_reward_zero_std', (t) => {
  const r = [1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0.2, 0.2, 0.2, 0.2];
  t.is(zeroStdGroups(r, 4), 3);
  t.is(fracRewardZeroStd(r, 4), 0.75);
  t.is(fracRewardZeroStd([], 8), 0);
});

test('token advantages repeat each rollout advantage over its response tokens', (t) => {
  t.deepEqual(Array.from(tokenAdvantages([1, -2, 3], [2, 0, 3])), [1, 1, 3, 3, 3]);
  t.throws(() => tokenAdvantages([1], [1, 2]));
});

test('clipped objective, clipfrac and ppo_kl on hand-computed tokens', (t) => {
  const ln = Math.log;
  const old = [0, 0, 0, 0, 0].map((x, i) => x - 1 - i * 0.1);
  const ratios = [1, 1.5, 0.5, 1.5, 0.5];
  const advantages = [1, 1, -1, -1, 2];
  const logProbs = old.map((o, i) => o + ln(ratios[i]));
  const r = policyLoss({ logProbs, oldLogProbs: old, advantages }, RMT_DEFAULTS.grpo);
  // per-token: -1 (inside), -1.2 (A>0 clipped at 1.2), 0.8 (A<0 clipped at 0.8), 1.5 (A<0, rho>1: not
  // clipped), -1 (A>0, rho<1: not clipped)
  t.true(close(r.pgLoss, (-1 - 1.2 + 0.8 + 1.5 - 1) / 5));
  t.is(r.loss, r.pgLoss);
  t.is(r.klLoss, 0);
  t.true(close(r.pgClipfrac, 2 / 5));
  t.true(close(r.ppoKl, -(2 * ln(1.5) + 2 * ln(0.5)) / 5));
  // dL/dnll = A rho / N where the unclipped term is active, 0 where clipped.
  const want = [1, 0, 0, -1.5, 1].map((x) => x / 5);
  r.dLossDNll.forEach((d, i) => {
    t.true(close(d, want[i]), `token ${i}: ${d} vs ${want[i]}`);
  });
});

test('on-policy (rho = 1) dL/dnll is A / N: the token-mean policy gradient', (t) => {
  const lp = [-0.5, -2, -0.1];
  const r = policyLoss({ logProbs: lp, oldLogProbs: lp, advantages: [2, -1, 0.5] }, RMT_DEFAULTS.grpo);
  t.true(close(r.pgLoss, -(2 - 1 + 0.5) / 3));
  t.deepEqual(
    Array.from(r.dLossDNll).map((x) => Math.round(x * 1e12) / 1e12),
    [2 / 3, -1 / 3, 0.5 / 3].map((x) => Math.round(x * 1e12) / 1e12),
  );
  t.is(r.pgClipfrac, 0);
  t.is(r.ppoKl, 0);
});

test('tokenCount sets the token-mean denominator (micro-batches of one batch)', (t) => {
  const input = { logProbs: [-1, -2], oldLogProbs: [-1.1, -1.9], advantages: [1, -1] };
  const whole = policyLoss(input, RMT_DEFAULTS.grpo);
  const part = policyLoss({ ...input, tokenCount: 8 }, RMT_DEFAULTS.grpo);
  t.true(close(part.loss * 8, whole.loss * 2));
  t.true(close(part.dLossDNll[0] * 8, whole.dLossDNll[0] * 2));
  t.is(part.pgClipfrac, whole.pgClipfrac);
});

test('k3 is 0 at the reference, positive elsewhere, with derivative 1 - exp(ref - lp)', (t) => {
  t.deepEqual(k3(-1.3, -1.3), { value: 0, dLogProb: 0 });
  const { value, dLogProb } = k3(-1, -2);
  t.true(close(value, Math.exp(-1) + 1 - 1));
  t.true(close(dLogProb, 1 - Math.exp(-1)));
  t.true(k3(-3, -1).value > 0);
  t.throws(() =>
    policyLoss({ logProbs: [0], oldLogProbs: [0], advantages: [1] }, { ...RMT_DEFAULTS.grpo, beta: 0.1 }),
  );
});

test('clippedTokenLoss marks exactly the tokens whose gradient is cut', (t) => {
  t.false(clippedTokenLoss(Math.log(1.1), 0, 1, 0.2, 0.2).clipped);
  t.true(clippedTokenLoss(Math.log(1.3), 0, 1, 0.2, 0.2).clipped);
  t.false(clippedTokenLoss(Math.log(1.3), 0, -1, 0.2, 0.2).clipped);
  t.true(clippedTokenLoss(Math.log(0.7), 0, -1, 0.2, 0.2).clipped);
  t.false(clippedTokenLoss(Math.log(1.25), 0, 1, 0.2, 0.28).clipped); // DAPO's clip-higher
});

test('dL/dnll matches central finite differences of the loss (clip, k3, token-mean)', (t) => {
  const rng = new Rng(17);
  const n = 40;
  const params = { eps_low: 0.2, eps_high: 0.28, beta: 0.05 };
  const oldLogProbs = Array.from({ length: n }, () => -3 * rng.next());
  const refLogProbs = Array.from({ length: n }, () => -3 * rng.next());
  const advantages = Array.from({ length: n }, () => 2 * rng.normal());
  // Ratios spread over both sides of the clip range, away from the kinks at 0.8 and 1.28.
  const logRatios = Array.from({ length: n }, (_, i) => {
    const rho = [0.6, 0.9, 1.0, 1.1, 1.2, 1.5][i % 6] + 0.02 * rng.next();
    return Math.log(rho);
  });
  const logProbs = oldLogProbs.map((o, i) => o + logRatios[i]);
  const input = { logProbs, oldLogProbs, advantages, refLogProbs, tokenCount: 64 };
  const r = policyLoss(input, params);
  t.true(r.pgClipfrac > 0 && r.pgClipfrac < 1);
  t.true(r.klLoss > 0);
  const h = 1e-6;
  for (let i = 0; i < n; i++) {
    // nll = -lp, so raising nll by h lowers lp by h.
    const at = (dNll: number) => {
      const lp = logProbs.slice();
      lp[i] -= dNll;
      return policyLoss({ ...input, logProbs: lp }, params).loss;
    };
    const fd = (at(h) - at(-h)) / (2 * h);
    t.true(Math.abs(fd - r.dLossDNll[i]) < 1e-7, `token ${i}: fd ${fd} vs ${r.dLossDNll[i]}`);
  }
});

test('dynamic sampling drops zero-variance groups and replaces them while draws last', async (t) => {
  const groups = [{ r: [1, 1] }, { r: [1, 0] }, { r: [0, 0] }];
  const queue = [{ r: [0, 0] }, { r: [0, 1] }, { r: [1, 0.5] }];
  const res = await dynamicSampling(
    groups,
    (g) => g.r,
    () => queue.shift(),
    10,
  );
  t.is(res.dropped, 2);
  t.is(res.replaced, 2);
  t.is(res.draws, 3);
  t.deepEqual(
    res.groups.map((g) => g.r),
    [
      [1, 0],
      [0, 1],
      [1, 0.5],
    ],
  );
  const capped = await dynamicSampling(
    groups,
    (g) => g.r,
    () => ({ r: [0, 0] }),
    5,
  );
  t.is(capped.replaced, 0);
  t.is(capped.draws, 5);
  t.is(capped.groups.length, 1);
  const dry = await dynamicSampling(
    groups,
    (g) => g.r,
    async () => undefined,
    5,
  );
  t.is(dry.draws, 0);
  t.is(dry.groups.length, 1);
  const clean = await dynamicSampling(
    [{ r: [1, 0] }],
    (g) => g.r,
    () => t.fail('no draw needed'),
  );
  t.is(clean.replaced, 0);
});
