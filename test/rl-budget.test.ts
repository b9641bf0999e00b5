import test from 'ava';
import { METHOD_TABLE, RMT_DEFAULTS } from '../shared/config/rmt-defaults.js';
import { budgetAt, budgetSchedule, fixedBudget } from '../shared/rl/budget.js';
import { lengthReward } from '../shared/rl/length-reward.js';

const paper = RMT_DEFAULTS.budget; // B_0 = 800, B_min = 1, gamma = 0.2
const small = { ...paper, ...RMT_DEFAULTS.small_model }; // B_0 = 64

test('DTB at t = 0 is B_0 and at t = T is floor(B_0 * gamma)', (t) => {
  t.is(budgetAt(0, 1000, paper), 800);
  t.is(budgetAt(1000, 1000, paper), 160); // 800 * 0.2
  t.is(budgetAt(0, 1000, small), 64);
  t.is(budgetAt(1000, 1000, small), 12); // floor(12.8)
});

test('DTB between the ends follows B_0 * gamma^(t/T), floored', (t) => {
  t.is(budgetAt(500, 1000, paper), 357); // 800 * sqrt(0.2) = 357.77
  t.is(budgetAt(250, 1000, paper), 534); // 800 * 0.2^0.25 = 534.99
  t.is(budgetAt(500, 1000, small), 28); // 64 * 0.4472 = 28.62
});

test('DTB never goes below B_min and stays at the final budget after T', (t) => {
  const p = { B_0: 10, B_min: 5, gamma: 0.01 };
  t.is(budgetAt(1000, 1000, p), 5); // floor(0.1) = 0 -> B_min
  t.is(budgetAt(2000, 1000, paper), budgetAt(1000, 1000, paper));
  t.is(budgetAt(-5, 1000, paper), 800);
  t.throws(() => budgetAt(0, 0, paper));
});

test('DTB is non-increasing in t', (t) => {
  for (const p of [paper, small, { B_0: 17, B_min: 3, gamma: 0.05 }]) {
    let prev = Number.POSITIVE_INFINITY;
    for (let step = 0; step <= 777; step++) {
      const b = budgetAt(step, 777, p);
      t.true(b <= prev && b >= p.B_min && Number.isInteger(b));
      prev = b;
    }
  }
});

test('fixed budget is the hard cap at every step, and the schedule follows the method', (t) => {
  t.is(fixedBudget(0, 100, paper), 2048);
  t.is(fixedBudget(100, 100, paper), 2048);
  t.is(budgetSchedule('fixed', small)(50, 100), 256);
  t.is(budgetSchedule('dtb', small)(100, 100), 12);
  t.is(METHOD_TABLE.rmt.budget, 'dtb');
  t.is(METHOD_TABLE['rmt-no-dtb'].budget, 'fixed');
  t.is(METHOD_TABLE.rpt.budget, 'fixed');
});

test('length reward is triangular: 0 at l = 0, r_max at l = B, 0 at l = 2B and beyond', (t) => {
  const r = RMT_DEFAULTS.reward; // r_max = 1
  t.is(lengthReward(0, 4, r), 0);
  t.is(lengthReward(2, 4, r), 0.5);
  t.is(lengthReward(4, 4, r), 1);
  t.is(lengthReward(6, 4, r), 0.5);
  t.is(lengthReward(8, 4, r), 0);
  t.is(lengthReward(9, 4, r), 0);
  t.is(lengthReward(4000, 4, r), 0);
  t.is(lengthReward(4, 4, { r_max: 2 }), 2);
  t.is(lengthReward(3, 4, { r_max: 2 }), 1.5);
});

test('length reward with B = 1', (t) => {
  const r = RMT_DEFAULTS.reward;
  t.is(lengthReward(0, 1, r), 0);
  t.is(lengthReward(1, 1, r), 1);
  t.is(lengthReward(2, 1, r), 0);
  t.is(lengthReward(3, 1, r), 0);
  t.throws(() => lengthReward(1, 0, r));
});
