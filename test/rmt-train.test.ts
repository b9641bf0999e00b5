import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { METHOD_TABLE, type Method } from '../shared/config/rmt-defaults.js';
import { parseTrainConfig } from '../shared/config/train-config.js';
import { tierMix } from '../shared/curriculum/schedule.js';
import { writeGpt2Tokenizer } from '../shared/data/gpt2-bpe.js';
import { saveCheckpoint } from '../shared/model/checkpoint.js';
import { parseModelConfig } from '../shared/model/config.js';
import { initParams } from '../shared/model/init.js';
import { budgetAt } from '../shared/rl/budget.js';
import { train } from '../shared/train/rmt-train.js';

const root = mkdtempSync(join(tmpdir(), 'rmt-train-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

/** A random-weight tiny model with a 300-merge tokenizer: enough to drive every code path. */
function baseCheckpoint(): string {
  const tokDir = join(root, 'tok');
  const tok = writeGpt2Tokenizer(tokDir, { merges: 300 });
  const config = parseModelConfig({
    model_type: 'qwen3',
    vocab_size: tok.vocabSize,
    hidden_size: 16,
    intermediate_size: 32,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 8,
    max_position_embeddings: 128,
  });
  const dir = join(root, 'base');
  saveCheckpoint(dir, { config, params: initParams(config, 1, 0.5), tokenizerDir: tokDir });
  return dir;
}
const base = baseCheckpoint();

const T = 3;
const cfgFor = (method: Method) =>
  parseTrainConfig(
    {
      method,
      run: { out_dir: join(root, method), seed: 3, backend: 'cpu' },
      model: { init_from: base },
      data: {
        corpora: ['moby-dick'],
        max_chars_per_corpus: 20000,
        rl_tokens: 400,
        eval_tokens: 200,
        context_len: 8,
        continuation_len: 3,
        score_window: 32,
      },
      budget: { B_0: 8, hard_cap: 10 },
      // A random model's top-16 entropy is near ln 16 everywhere: one tier, and a low filter.
      curriculum: { min_entropy: 0.1, edges: [2.5, 2.7] },
      grpo: { G: 2 },
      train: { steps: T, positions_per_step: 2, micro_batch: 8, generation_batch: 8 },
      eval: { positions: 4 },
      checkpoint: { every: 2, keep: 1 },
    },
    'test',
  );

for (const method of ['ntp', 'rpt', 'rmt', 'rmt-no-dtb', 'rmt-no-cas', 'rmt-no-ntp'] as const) {
  test(`rmt train --method ${method}: loss terms, budget, tier mix, rewards, checkpoint`, async (t) => {
    const cfg = cfgFor(method);
    const spec = METHOD_TABLE[method];
    const summary = await train(cfg, { log: () => {} });
    t.is(summary.steps, T);
    t.true(existsSync(join(summary.final_checkpoint, 'model.safetensors')));
    t.true(existsSync(join(cfg.run.out_dir, 'eval.json')));
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
    t.true(r['actor/ntp_loss'] > 0);
  }
});

test('ntr is an evaluation mode, not a training method', async (t) => {
  await t.throwsAsync(() => train(cfgFor('ntr'), { log: () => {} }), { message: /rmt eval --mode ntr/ });
});
