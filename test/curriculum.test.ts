import test from 'ava';
import { METHOD_TABLE, RMT_DEFAULTS, type TierProbs } from '../shared/config/rmt-defaults.js';
import { DifficultyTable } from '../shared/curriculum/difficulty-table.js';
import {
  CasSampler,
  drawIndex,
  EntropyFilterSampler,
  effectiveMix,
  filterByEntropy,
  UniformSampler,
} from '../shared/curriculum/sampler.js';
import { tierMix } from '../shared/curriculum/schedule.js';
import { evalSplits, groupByTier, isEligible, tierOf } from '../shared/curriculum/tiers.js';
import { Rng } from '../shared/util/rng.js';

const C = RMT_DEFAULTS.curriculum;
const near = (a: readonly number[], b: readonly number[], tol = 1e-12) =>
  a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) <= tol);

test('training tiers are disjoint bins: easy <= 1.0 < medium <= 1.5 < hard', (t) => {
  t.is(tierOf(0.3), 'easy');
  t.is(tierOf(1.0), 'easy');
  t.is(tierOf(1.01), 'medium');
  t.is(tierOf(1.5), 'medium');
  t.is(tierOf(1.51), 'hard');
  t.is(tierOf(0.7, { edges: [0.5, 0.8] }), 'medium');
  t.throws(() => tierOf(1, { edges: [2, 1] }));
  t.deepEqual(
    groupByTier([
      { id: 7, difficulty: 2 },
      { id: 3, difficulty: 0.9 },
      { id: 5, difficulty: 1.2 },
      { id: 1, difficulty: 0.6 },
    ]),
    { easy: [3, 1], medium: [5], hard: [7] },
  );
});

test("RPT's evaluation splits are nested (> 0.5, > 1.0, > 1.5 nats) and the RL filter is > min_entropy", (t) => {
  t.deepEqual(evalSplits(0.5), { easy: false, medium: false, hard: false });
  t.deepEqual(evalSplits(0.7), { easy: true, medium: false, hard: false });
  t.deepEqual(evalSplits(1.2), { easy: true, medium: true, hard: false });
  t.deepEqual(evalSplits(2.0), { easy: true, medium: true, hard: true });
  t.false(isEligible(0.5));
  t.true(isEligible(0.51));
});

test('tier mix: p1 up to t1 = 0.3 T, linear to p2 at t2 = 0.7 T, then p2', (t) => {
  const T = 100;
  t.deepEqual(tierMix(0, T, C), [0.6, 0.3, 0.1]);
  t.deepEqual(tierMix(29, T, C), [0.6, 0.3, 0.1]);
  t.true(near(tierMix(30, T, C), [0.6, 0.3, 0.1])); // at t1
  t.true(near(tierMix(40, T, C), [0.475, 0.3, 0.225])); // a quarter of the way
  t.true(near(tierMix(50, T, C), [0.35, 0.3, 0.35])); // midpoint: the average of p1 and p2
  t.true(near(tierMix(70, T, C), [0.1, 0.3, 0.6])); // at t2
  t.deepEqual(tierMix(85, T, C), [0.1, 0.3, 0.6]);
  t.deepEqual(tierMix(100, T, C), [0.1, 0.3, 0.6]);
  for (let s = 0; s <= T; s++) t.true(Math.abs(tierMix(s, T, C).reduce((a, b) => a + b, 0) - 1) < 1e-12);
  t.throws(() => tierMix(0, T, { ...C, t1_frac: 0.8 }));
});

test("an empty tier's mass goes to the others in proportion to their p", (t) => {
  const p: TierProbs = [0.6, 0.3, 0.1];
  t.true(near(effectiveMix(p, [0, 5, 5]), [0, 0.75, 0.25]));
  t.true(near(effectiveMix(p, [4, 0, 2]), [6 / 7, 0, 1 / 7]));
  t.true(near(effectiveMix(p, [3, 0, 0]), [1, 0, 0]));
  t.true(near(effectiveMix(p, [1, 1, 1]), p));
  t.deepEqual(effectiveMix([1, 0, 0], [0, 2, 2]), [0, 0.5, 0.5]);
  t.throws(() => effectiveMix(p, [0, 0, 0]));
});

test('drawIndex follows the distribution and never picks a zero entry', (t) => {
  const rng = new Rng(3);
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 20000; i++) counts[drawIndex([0.5, 0, 0.25, 0.25], rng)]++;
  t.is(counts[1], 0);
  t.true(Math.abs(counts[0] / 20000 - 0.5) < 0.02);
  t.true(Math.abs(counts[2] / 20000 - 0.25) < 0.02);
});

const tiers = { easy: [1, 2, 3, 4], medium: [10, 11], hard: [20, 21, 22] };
const tierOfId = (id: number) => (id < 10 ? 0 : id < 20 ? 1 : 2);

test('CAS draws a tier from p_t, then a position uniformly within it', (t) => {
  const cas = new CasSampler(tiers, C);
  const n = 30000;
  for (const [step, p] of [
    [0, [0.6, 0.3, 0.1]],
    [50, [0.35, 0.3, 0.35]],
    [100, [0.1, 0.3, 0.6]],
  ] as const) {
    const ids = cas.sample(n, step, 100, new Rng(step + 1));
    const byTier = [0, 0, 0];
    for (const id of ids) byTier[tierOfId(id)]++;
    byTier.forEach((c, i) => {
      t.true(Math.abs(c / n - p[i]) < 0.015, `step ${step} tier ${i}: ${c / n} vs ${p[i]}`);
    });
    const easy = ids.filter((id) => id < 10);
    for (const id of tiers.easy)
      t.true(Math.abs(easy.filter((x) => x === id).length / easy.length - 0.25) < 0.03);
  }
});

test('CAS is reproducible from the seed and skips empty tiers', (t) => {
  const cas = new CasSampler(tiers, C);
  t.deepEqual(cas.sample(50, 10, 100, new Rng(9)), cas.sample(50, 10, 100, new Rng(9)));
  const noHard = new CasSampler({ ...tiers, hard: [] }, C);
  t.true(near(noHard.mixAt(100, 100), [0.25, 0.75, 0]));
  t.true(noHard.sample(2000, 100, 100, new Rng(2)).every((id) => id < 20));
});

test('uniform and entropy-filter samplers', (t) => {
  const positions = [
    { id: 0, entropy: 0.2 },
    { id: 1, entropy: 0.5 },
    { id: 2, entropy: 0.9 },
    { id: 3, entropy: 2.1 },
  ];
  t.deepEqual(filterByEntropy(positions, 0.5), [2, 3]);
  const rpt = new EntropyFilterSampler(positions, 0.5);
  const drawn = rpt.sample(4000, 0, 10, new Rng(5));
  t.true(drawn.every((id) => id === 2 || id === 3));
  t.true(Math.abs(drawn.filter((id) => id === 2).length / 4000 - 0.5) < 0.03);
  const uni = new UniformSampler([5, 6, 7]);
  const u = uni.sample(3000, 0, 10, new Rng(6));
  for (const id of [5, 6, 7]) t.true(Math.abs(u.filter((x) => x === id).length / 3000 - 1 / 3) < 0.03);
  t.throws(() => new EntropyFilterSampler(positions, 5));
});

test('the curriculum column of the method table', (t) => {
  t.is(METHOD_TABLE.rmt.curriculum, 'cas');
  t.is(METHOD_TABLE['rmt-no-cas'].curriculum, 'uniform');
  t.is(METHOD_TABLE.rpt.curriculum, 'filter');
  t.is(METHOD_TABLE['rmt-no-dtb'].curriculum, 'cas');
  t.is(METHOD_TABLE['rmt-no-ntp'].ntp_loss, false);
  t.is(METHOD_TABLE.rmt.ntp_loss, true);
  t.is(METHOD_TABLE.rpt.ntp_loss, false);
});

test('difficulty is the entropy until adaptive blends in the failure EMA', (t) => {
  const fixed = new DifficultyTable(C); // adaptive: false
  fixed.setEntropy(1, 1.2);
  t.true(fixed.observe(1, 0));
  t.is(fixed.difficulty(1), 1.2);

  const table = new DifficultyTable({ ...C, adaptive: true }); // ema_alpha 0.3, blend 0.5, scale ln 16
  table.setEntropy(1, 1.2);
  table.setEntropy(2, 0.8);
  t.is(table.difficulty(1), 1.2); // no observation yet
  table.observe(1, 0); // EMA starts at the first value: 1
  t.true(Math.abs(table.difficulty(1) - (0.6 + 0.5 * Math.log(16))) < 1e-12);
  table.observe(1, 1); // 0.7 * 1 + 0.3 * 0 = 0.7
  t.true(Math.abs(table.difficulty(1) - (0.6 + 0.5 * Math.log(16) * 0.7)) < 1e-12);
  t.is(table.entropy(1), 1.2);
  t.false(table.observe(99, 0.5));
  t.throws(() => table.observe(1, 1.5));
  t.throws(() => table.difficulty(99));
});

test('adaptive difficulty moves positions between tiers; the filter stays on entropy', (t) => {
  const table = new DifficultyTable({ ...C, adaptive: true });
  table.setEntropy(1, 1.2); // medium
  table.setEntropy(2, 0.8); // easy
  table.setEntropy(3, 0.4); // below min_entropy: never a key position
  t.deepEqual(table.tiers(C, C.min_entropy), { easy: [2], medium: [1], hard: [] });
  table.observe(1, 0); // always failed: 0.6 + 1.386 = 1.99 -> hard
  table.observe(2, 1); // always solved: 0.4 -> easy
  table.observe(3, 0);
  t.deepEqual(table.tiers(C, C.min_entropy), { easy: [2], medium: [], hard: [1] });
});

test('the difficulty table survives a JSON round trip', (t) => {
  const table = new DifficultyTable({ ...C, adaptive: true });
  for (let id = 0; id < 20; id++) table.setEntropy(id, 0.1 * id);
  const rng = new Rng(4);
  for (let k = 0; k < 50; k++) table.observe(rng.int(20), rng.int(9) / 8);
  const json = JSON.parse(JSON.stringify(table));
  t.deepEqual(Object.keys(json.params).sort(), ['adaptive', 'blend', 'ema_alpha', 'failure_scale']);
  const back = DifficultyTable.fromJSON(json);
  t.is(back.size, 20);
  t.deepEqual(back.params, table.params);
  for (let id = 0; id < 20; id++) t.is(back.difficulty(id), table.difficulty(id));
  t.deepEqual(back.tiers(C, C.min_entropy), table.tiers(C, C.min_entropy));
  t.deepEqual(back.toJSON(), table.toJSON());
  t.throws(() => DifficultyTable.fromJSON({ ...json, version: 2 }));
});
