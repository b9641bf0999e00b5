import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { METHOD_TABLE, type Method } from '../shared/config/rmt-defaults.js';
import { tierMix } from '../shared/curriculum/schedule.js';
import { budgetAt } from '../shared/rl/budget.js';
import { train } from '../shared/train/rmt-train.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

const root = mkdtempSync(join(tmpdir(), 'rmt-train-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

const base = tinyBaseCheckpoint(root);

const T = 3;
const cfgFor = (method: Method) => tinyRunConfig(base, join(root, method), method, T);

for (const method of ['ntp', 'rpt', 'rmt', 'rmt-no-dtb', 'rmt-no-cas', 'rmt-no-ntp'] as const) {
  test(`rmt train --method ${method}: loss terms, budget, tier mix, rewards, checkpoint`, async (t) => {
    const cfg = cfgFor(method);
    const spec = METHOD_TABLE[method];
    const summary = await train(cfg, { log: () => {} });
    t.is(summary.steps, T);
    t.true(existsSync(join(summary.final_checkpoint, 'model.safetensors')));
    t.true(existsSync(join(cfg.run.out_dir, 'eval.json')));
    // what the model answered and what was right, counted: they account for every position
    const ev = JSON.parse(readFileSync(join(cfg.run.out_dir, 'eval.json'), 'utf8'));
    for (const key of ['top_predictions', 'top_targets']) {
      const counts = (ev[key] as [string, number][]).map(([, n]) => n);
      t.true(
        counts.length >= 1 && counts.length <= 5 && counts.every((n, i) => i === 0 || n <= counts[i - 1]),
        key,
      );
      t.true(counts.reduce((a, b) => a + b, 0) <= ev.positions, key);
    }
    const rows = readFileSync(join(cfg.run.out_dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    t.deepEqual(
      rows.map((r) => r.step),
      [1, 2, 3],
    );
    rows.forEach((r, t0) => {
      const expectedBudget = spec.budget === 'dtb' ? budgetAt(t0, T, cfg.budget) : cfg.budget.hard_cap;
      t.is(r['budget/current'], expectedBudget, `step ${r.step} budget`);
      if (spec.curriculum === 'cas') {
        // The scheduled mix p_t, renormalised over the tiers that have positions.
        const p = tierMix(t0, T, cfg.curriculum);
        const q = [r['curriculum/p_easy'], r['curriculum/p_medium'], r['curriculum/p_hard']];
        t.true(Math.abs(q[0] + q[1] + q[2] - 1) < 1e-12);
        const scale = q.map((x, i) => (x > 0 ? x / p[i] : null)).filter((x) => x !== null) as number[];
        t.true(scale.length > 0 && scale.every((x) => Math.abs(x - scale[0]) < 1e-12), `mix ${q} vs ${p}`);
      } else {
        t.false('curriculum/p_easy' in r);
      }
      if (spec.reward === 'none') {
        t.false('critic/score/mean' in r);
        t.true(r['actor/ntp_loss'] > 0);
      } else {
        for (const key of ['critic/score/mean', 'critic/rewards/mean']) {
          t.true(r[key] >= 0 && r[key] <= 1, `${key} = ${r[key]}`);
        }
        t.true(r['response_length/mean'] <= cfg.budget.hard_cap);
        t.true(Number.isFinite(r['actor/pg_loss']));
        t.is(r['actor/ntp_loss'] > 0, spec.ntp_loss, 'NTP term present iff the method has it');
      }
      t.true(Number.isFinite(r['actor/grad_norm']));
    });
  });
}

test('dynamic sampling drops zero-variance groups and reports replacements', async (t) => {
  const cfg = cfgFor('rmt');
  cfg.run.out_dir = join(root, 'rmt-dynamic');
  // A random model never answers: every group has all-zero rewards and no replacement can help.
  cfg.grpo.dynamic_sampling = true;
  cfg.grpo.max_replacement_draws = 3;
  const steps: Record<string, number>[] = [];
  await train(cfg, { log: () => {}, onStep: (_s, row) => steps.push(row) });
  t.is(steps.length, T);
  for (const r of steps) {
    t.is(r.frac_reward_zero_std, 1);
    t.is(r['dynamic_sampling/replaced'], 0);
    // the score of the drawn positions, before any replacement
    t.is(r['critic/score/drawn_mean'], 0);
    t.true(r['actor/ntp_loss'] > 0);
  }
});

test('ntr is an evaluation mode, not a training method', async (t) => {
  await t.throwsAsync(() => train(cfgFor('ntr'), { log: () => {} }), { message: /rmt eval --mode ntr/ });
});

test('an interrupted run resumes to the same trajectory as an uninterrupted one', async (t) => {
  const steps = 5;
  const shape = {
    train: { steps, positions_per_step: 2, micro_batch: 8, generation_batch: 8 },
    checkpoint: { every: 100, keep: 1 },
  };
  const whole = tinyRunConfig(base, join(root, 'whole'), 'rmt', steps, shape);
  const parts = tinyRunConfig(base, join(root, 'parts'), 'rmt', steps, shape);
  await train(whole, { log: () => {} });
  const stop = new AbortController();
  const first = await train(parts, {
    log: () => {},
    signal: stop.signal,
    onStep: (s) => s === 2 && stop.abort(),
  });
  t.is(first.steps, 2);
  const second = await train(parts, { log: () => {} });
  t.is(second.steps, steps);
  const rows = (dir: string) =>
    readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>)
      .map((r) =>
        Object.fromEntries(
          Object.entries(r).filter(([k]) => !k.startsWith('timing_s/') && k !== 'perf/throughput'),
        ),
      );
  t.deepEqual(rows(parts.run.out_dir), rows(whole.run.out_dir));
});
