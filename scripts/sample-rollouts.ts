/**
 * What a checkpoint writes when it reasons, and how much room RL has: G sampled rollouts at each of a
 * config's held-out key positions, scored with the match reward. Prints mean accuracy (pass@1 in
 * expectation), pass@G (some rollout of the group is right) and the share of groups whose rewards all
 * agree (no GRPO signal), then the first positions' rollouts verbatim, as Markdown. A base whose
 * pass@G is far above its mean accuracy has right answers in reach that RL can make likely.
 *
 * Usage: npx tsx scripts/sample-rollouts.ts --config <yaml> --checkpoint <dir>
 *          [--positions 200] [--G <grpo.G>] [--temperature <grpo.temperature>] [--budget <final B_t>]
 *          [--show 10] [--seed 1] [--json <file>]
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { METHOD_TABLE } from '../shared/config/rmt-defaults.js';
import { loadTrainConfig } from '../shared/config/train-config.js';
import { createBackend } from '../shared/kernels/index.js';
import { generateRollouts } from '../shared/rl/rollouts.js';
import { evalBudget } from '../shared/run/coordinator.js';
import { MATCH_ONLY_REWARD } from '../shared/run/evaluate.js';
import { checkpointOnHeldOut } from '../shared/train/evaluate-checkpoint.js';
import { Rng } from '../shared/util/rng.js';

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    checkpoint: { type: 'string' },
    positions: { type: 'string', default: '200' },
    G: { type: 'string' },
    temperature: { type: 'string' },
    budget: { type: 'string' },
    show: { type: 'string', default: '10' },
    seed: { type: 'string', default: '1' },
    json: { type: 'string' },
  },
});
if (!values.config || !values.checkpoint) {
  console.error('usage: npx tsx scripts/sample-rollouts.ts --config <yaml> --checkpoint <dir> [options]');
  process.exit(2);
}
function num(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const x = Number(v);
  if (!Number.isFinite(x) || x < 0) {
    console.error(`--${name} must be a number >= 0 (got ${JSON.stringify(v)})`);
    process.exit(2);
  }
  return x;
}

const cfg = loadTrainConfig(values.config);
const G = num('G', values.G, cfg.grpo.G);
const temperature = num('temperature', values.temperature, cfg.grpo.temperature);
const budget = num('budget', values.budget, evalBudget(cfg) ?? cfg.budget.hard_cap);
const backend = await createBackend(cfg.run.backend);
const { run, positions, model, release } = await checkpointOnHeldOut(
  backend,
  cfg,
  values.checkpoint,
  num('positions', values.positions, 200),
  (l) => console.error(l),
);
const groups = await generateRollouts(
  model,
  run.tokenizer,
  run.format,
  positions,
  {
    G,
    temperature,
    budget,
    stateBudget: METHOD_TABLE[cfg.method].budget === 'dtb',
    hardCap: cfg.budget.hard_cap,
    rewardKind: 'match',
    reward: MATCH_ONLY_REWARD,
    maxBatch: cfg.train.generation_batch,
  },
  new Rng(num('seed', values.seed, 1)),
);

const right = groups.map((g) => g.filter((r) => r.reward.rMatch === 1).length);
const mean = right.reduce((s, c) => s + c / G, 0) / groups.length;
const passAtG = right.filter((c) => c > 0).length / groups.length;
const agree = right.filter((c) => c === 0 || c === G).length / groups.length;
const length = groups.flat().reduce((s, r) => s + r.parsed.reasoningIds.length, 0) / (groups.length * G);

const show = Math.min(groups.length, num('show', values.show, 10));
const lines = [
  `Checkpoint \`${values.checkpoint}\`, config \`${values.config}\`: ${groups.length} held-out positions, G = ${G}, temperature ${temperature}, budget ${budget}.`,
  '',
  '| mean accuracy | pass@G | groups all right or all wrong | mean reasoning tokens |',
  '|---|---|---|---|',
  `| ${mean.toFixed(3)} | ${passAtG.toFixed(3)} | ${agree.toFixed(3)} | ${length.toFixed(1)} |`,
  '',
  `The first ${show} positions (context tail, true next token, right/G, then each rollout):`,
  '',
];
for (let i = 0; i < show; i++) {
  const p = positions[i];
  lines.push(
    `- \`${JSON.stringify(run.tokenizer.decode(p.context).slice(-32))}\` → \`${run.tokenizer.decode([p.target])}\`: ${right[i]}/${G}`,
  );
  for (const r of groups[i]) lines.push(`  - \`${JSON.stringify(run.tokenizer.decode(r.responseIds))}\``);
}
console.log(lines.join('\n'));
if (values.json) {
  writeFileSync(
    values.json,
    `${JSON.stringify(
      {
        config: values.config,
        checkpoint: values.checkpoint,
        G,
        temperature,
        budget,
        positions: groups.length,
        mean_accuracy: mean,
        pass_at_G: passAtG,
        frac_groups_agree: agree,
        reasoning_length: length,
        backend: backend.name,
      },
      null,
      2,
    )}\n`,
  );
}
release();
