import test from 'ava';
import { entropyBits, mutualInformation, topShare } from '../scripts/paper/information.js';
import { Rng } from '../shared/util/rng.js';

/**
 * The estimators against distributions whose entropy and mutual information are known in closed
 * form. Tolerances are a few standard errors at the sample sizes used (stated per check).
 */
const h2 = (p: number) => -(p * Math.log2(p) + (1 - p) * Math.log2(1 - p));

test('entropy of a uniform distribution over k values is log2 k', (t) => {
  const rng = new Rng(1);
  const xs = Array.from({ length: 20000 }, () => rng.int(8));
  t.true(Math.abs(entropyBits(xs) - 3) < 0.01, String(entropyBits(xs)));
  t.is(entropyBits([5, 5, 5]), 0);
  t.true(Number.isNaN(entropyBits([])));
});

test('independent variables: Miller-Madow removes the plug-in bias of I(X; Y)', (t) => {
  // 61 budget-like values x 10 digits, 20000 samples: the plug-in bias is about 540 / (2 N ln 2) = 0.019 bits.
  const rng = new Rng(2);
  const pairs = Array.from({ length: 20000 }, () => [4 + rng.int(61), rng.int(10)] as const);
  const mi = mutualInformation(pairs);
  t.true(mi.plug_in_bits > 0.012, `plug-in ${mi.plug_in_bits}`);
  t.true(Math.abs(mi.bits) < 0.005, `Miller-Madow ${mi.bits}`);
  t.true(Math.abs(mi.target_entropy_bits - Math.log2(10)) < 0.01);
});

test('Y a function of X: I(X; Y) = H(Y)', (t) => {
  const rng = new Rng(3);
  const pairs = Array.from({ length: 10000 }, () => {
    const x = rng.int(16);
    return [x, x % 4] as const;
  });
  t.true(Math.abs(mutualInformation(pairs).bits - 2) < 0.01);
});

test('binary symmetric channel: I(X; Y) = 1 - h(p)', (t) => {
  const rng = new Rng(4);
  for (const p of [0.1, 0.3]) {
    const pairs = Array.from({ length: 40000 }, () => {
      const x = rng.int(2);
      return [x, rng.next() < p ? 1 - x : x] as const;
    });
    const want = 1 - h2(p);
    const got = mutualInformation(pairs).bits;
    t.true(Math.abs(got - want) < 0.01, `p ${p}: ${got} vs ${want}`);
  }
});

test('topShare: the most frequent value and its share', (t) => {
  t.deepEqual(topShare(['1', '1', '2', '3']), { value: '1', share: 0.5, n: 4 });
  t.deepEqual(topShare([]), { value: null, share: 0, n: 0 });
});
