import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { adamwConfig, lrSchedule } from '../config/optimizer-config.js';
import { METHOD_TABLE, type MethodSpec, type TierProbs } from '../config/rmt-defaults.js';
import type { TrainConfig } from '../config/train-config.js';
import { DifficultyTable, type DifficultyTableJson } from '../curriculum/difficulty-table.js';
import { CasSampler, filterByEntropy, type PositionSampler, UniformSampler } from '../curriculum/sampler.js';
import { tierMix } from '../curriculum/schedule.js';
import { scoreStream } from '../curriculum/scoring.js';
import { readInts, tokenStreams } from '../data/token-streams.js';
import { loadTokenizer, type Tokenizer } from '../data/tokenizer.js';
import type { Backend } from '../kernels/backend.js';
import { createBackend } from '../kernels/index.js';
import { AdamW } from '../model/adamw.js';
import {
  checkpointDir,
  checkpointStep,
  latestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  saveCheckpoint,
} from '../model/checkpoint.js';
import { Decoder } from '../model/decoder.js';
import { learningRate } from '../model/lr-schedule.js';
import { paramSpecs } from '../model/params.js';
import { downloadParams, uploadParams } from '../model/weights.js';
import { budgetSchedule } from '../rl/budget.js';
import { dualLossAndGrad } from '../rl/dual-loss.js';
import { dynamicSampling, fracRewardZeroStd } from '../rl/grpo.js';
import { type KeyPosition, keyPositions } from '../rl/key-positions.js';
import { makePromptFormat, type PromptFormat } from '../rl/prompt-format.js';
import { generateRollouts, type Rollout, type RolloutOptions } from '../rl/rollouts.js';
import { lineChartSvg } from '../util/plot.js';
import { progress } from '../util/progress.js';
import { Rng } from '../util/rng.js';
import { type EvalResult, evaluatePositions } from './evaluate.js';
import { readMetrics, truncateMetrics } from './metrics-log.js';

/**
 * `rmt train`: the whole RMT loop in one process (spec sections 1-6). Each step: the budget B_t and
 * tier mix p_t of step t; key positions drawn by the method's sampler; G rollouts each with the
 * KV-cache sampler; rewards; the dual loss; one AdamW step; the spec's metrics as a JSON line.
 * Methods differ only through their row of METHOD_TABLE.
 */
export interface TrainOptions {
  log?: (line: string) => void;
  signal?: AbortSignal;
  onStep?: (step: number, metrics: Record<string, number>) => void;
}

export interface TrainSummary {
  method: string;
  out_dir: string;
  backend: string;
  steps: number;
  wall_s: number;
  final_checkpoint: string;
  eval?: EvalResult;
}

/** The data every method and evaluation shares: tokenizer, scored key positions, prompt layout. */
export interface RlData {
  tokenizer: Tokenizer;
  format: PromptFormat;
  train: KeyPosition[];
  heldOut: KeyPosition[];
}

export async function prepareRlData(
  cfg: TrainConfig,
  backend: Backend,
  out: string,
  log: (line: string) => void,
): Promise<RlData> {
  const tokenizer = await loadTokenizer(cfg.model.init_from);
  const streams = tokenStreams(
    {
      corpora: cfg.data.corpora,
      max_chars_per_corpus: cfg.data.max_chars_per_corpus,
      held_out_fraction: cfg.data.held_out_fraction,
      seed: cfg.run.seed,
      math: cfg.data.math,
    },
    tokenizer,
    join(out, 'data'),
    log,
  );
  const trainStream = streams.train.subarray(0, cfg.data.rl_tokens);
  const evalStream = streams.heldOut.subarray(0, cfg.data.eval_tokens);
  const proxyDir = cfg.model.proxy ?? cfg.model.init_from;
  const proxy = loadCheckpoint(proxyDir);
  const scores = async (name: string, tokens: Int32Array): Promise<Float32Array> => {
    const path = join(out, 'data', `entropy-${name}.bin`);
    const key = JSON.stringify({
      proxy: resolve(proxyDir),
      n: tokens.length,
      w: cfg.data.score_window,
      k: cfg.curriculum.k,
    });
    if (existsSync(path) && existsSync(`${path}.key`) && readFileSync(`${path}.key`, 'utf8') === key) {
      return new Float32Array(readInts(path).buffer);
    }
    const model = new Decoder(proxy.config, backend, uploadParams(backend, proxy.params));
    const bar = progress(`score ${name}`, Math.ceil(tokens.length / (cfg.data.score_window / 2)));
    const e = await scoreStream(model, tokens, {
      window: cfg.data.score_window,
      k: cfg.curriculum.k,
      batch: 8,
      progress: bar,
    });
    bar.stop();
    for (const b of model.params.values()) backend.free(b);
    mkdirSync(join(out, 'data'), { recursive: true });
    writeFileSync(path, e);
    writeFileSync(`${path}.key`, key);
    return e;
  };
  const excluded = [tokenizer.eosId, tokenizer.thinkId, tokenizer.endThinkId];
  const opts = (allowed: Uint8Array) => ({
    context_len: cfg.data.context_len,
    continuation_len: cfg.data.continuation_len,
    excluded,
    allowed: cfg.data.positions === 'answers' ? allowed : undefined,
  });
  const train = keyPositions(
    trainStream,
    await scores('train', trainStream),
    opts(streams.trainAnswers.subarray(0, cfg.data.rl_tokens)),
    tokenizer.eosId,
  );
  const heldOut = keyPositions(
    evalStream,
    await scores('held-out', evalStream),
    opts(streams.heldOutAnswers.subarray(0, cfg.data.eval_tokens)),
    tokenizer.eosId,
  );
  if (train.length === 0 || heldOut.length === 0) {
    throw new Error(
      `no key positions (train ${train.length}, held-out ${heldOut.length}): check data.positions and data.corpora`,
    );
  }
  log(`key positions: ${train.length} train, ${heldOut.length} held-out (proxy ${proxyDir})`);
  return { tokenizer, format: makePromptFormat(tokenizer, cfg.prompt), train, heldOut };
}

/** The budget an `ntr` evaluation states (see `eval.budget`). */
export function evalBudget(cfg: TrainConfig): number | null {
  if (cfg.eval.budget !== null) return cfg.eval.budget;
  const spec = METHOD_TABLE[cfg.method];
  return spec.budget === 'dtb' ? budgetSchedule('dtb', cfg.budget)(cfg.train.steps, cfg.train.steps) : null;
}

/** Held-out positions an evaluation uses: an evenly spaced, fixed subset. */
export function evalSubset(positions: readonly KeyPosition[], n: number): KeyPosition[] {
  if (positions.length <= n) return [...positions];
  const stride = positions.length / n;
  return Array.from({ length: n }, (_, i) => positions[Math.floor(i * stride)]);
}

function makeSampler(
  spec: MethodSpec,
  cfg: TrainConfig,
  positions: readonly KeyPosition[],
  table: DifficultyTable,
): PositionSampler {
  const eligible = filterByEntropy(positions, cfg.curriculum.min_entropy);
  if (eligible.length === 0) {
    throw new Error(
      `no key position has entropy above curriculum.min_entropy = ${cfg.curriculum.min_entropy}`,
    );
  }
  if (spec.curriculum === 'cas') {
    const tiers = table.tiers(cfg.curriculum, cfg.curriculum.min_entropy);
    return new CasSampler(tiers, cfg.curriculum);
  }
  if (spec.curriculum === 'none') return new UniformSampler(positions.map((p) => p.id));
  return new UniformSampler(eligible);
}

export async function train(cfg: TrainConfig, opts: TrainOptions = {}): Promise<TrainSummary> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const spec = METHOD_TABLE[cfg.method];
  if (spec.reasoning === 'untrained') {
    throw new Error(
      `method "${cfg.method}" is an evaluation mode, not a training run: use \`rmt eval --mode ntr\``,
    );
  }
  if (!cfg.model.init_from) throw new Error('model.init_from: a pre-trained checkpoint folder is required');
  const out = resolve(cfg.run.out_dir);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'config.resolved.json'), `${JSON.stringify(cfg, null, 2)}\n`);
  const backend = await createBackend(cfg.run.backend as Parameters<typeof createBackend>[0]);
  log(`method ${cfg.method} on backend ${backend.name}`);
  const data = await prepareRlData(cfg, backend, out, log);
  const byId = new Map(data.train.map((p) => [p.id, p]));

  const resumeFrom = latestCheckpoint(out);
  const start = loadCheckpoint(resumeFrom ?? cfg.model.init_from);
  const config = start.config;
  const model = new Decoder(config, backend, uploadParams(backend, start.params));
  const reference =
    cfg.grpo.beta !== 0
      ? new Decoder(config, backend, uploadParams(backend, loadCheckpoint(cfg.model.init_from).params))
      : undefined;
  const specs = paramSpecs(config);
  const opt = new AdamW(backend, specs, adamwConfig(cfg.train));
  const saved = start.training?.extra?.difficulty as DifficultyTableJson | undefined;
  // A resumed run keeps its observations (the adaptive state); entropies come from this scoring.
  const table = resumeFrom && saved ? DifficultyTable.fromJSON(saved) : new DifficultyTable(cfg.curriculum);
  for (const p of data.train) table.setEntropy(p.id, p.entropy);
  let step = 0;
  let rng = new Rng(cfg.run.seed);
  const metricsPath = join(out, 'metrics.jsonl');
  if (resumeFrom && start.training) {
    step = start.training.step;
    rng = new Rng(start.training.rng);
    opt.step = step;
    opt.m = uploadParams(backend, start.training.optimizer.m);
    opt.v = uploadParams(backend, start.training.optimizer.v);
    log(`resuming from ${resumeFrom} at step ${step}`);
    truncateMetrics(metricsPath, step);
  } else if (existsSync(metricsPath)) {
    rmSync(metricsPath);
  }

  const T = cfg.train.steps;
  const schedule = budgetSchedule(spec.budget === 'dtb' ? 'dtb' : 'fixed', cfg.budget);
  const evalPositions = evalSubset(data.heldOut, cfg.eval.positions);
  const save = async (atStep: number) => {
    const dir = checkpointDir(out, atStep);
    saveCheckpoint(dir, {
      config,
      params: await downloadParams(backend, model.params),
      tokenizerDir: cfg.model.init_from,
      training: {
        step: atStep,
        rng: rng.state(),
        dataPosition: { kind: 'sampled-key-positions' },
        optimizer: {
          m: await downloadParams(backend, opt.m),
          v: await downloadParams(backend, opt.v),
          hyper: {
            lr: cfg.train.lr,
            beta1: cfg.train.beta1,
            beta2: cfg.train.beta2,
            weight_decay: cfg.train.weight_decay,
          },
        },
        extra: { method: cfg.method, difficulty: table.toJSON() },
      },
    });
    const all = listCheckpoints(out);
    for (const old of all.slice(0, Math.max(0, all.length - cfg.checkpoint.keep))) {
      if (checkpointStep(old) !== T) rmSync(old, { recursive: true, force: true });
    }
    return dir;
  };
  const evaluate = () =>
    evaluatePositions(model, data.tokenizer, data.format, evalPositions, {
      mode: spec.reasoning === 'no' ? 'ntp' : 'ntr',
      eval_splits: cfg.curriculum.eval_splits,
      budget: evalBudget(cfg),
      hardCap: cfg.budget.hard_cap,
      batch: cfg.train.generation_batch,
    });

  const bar = progress(`train ${cfg.method}`, T, step);
  const t0 = performance.now();
  let lastEval: EvalResult | undefined;
  let finalDir = '';
  while (step < T) {
    const tStep = performance.now();
    const B_t = schedule(step, T);
    const sampler = makeSampler(spec, cfg, data.train, table);
    const ids = sampler.sample(cfg.train.positions_per_step, step, T, rng);
    const positions = ids.map((id) => byId.get(id)!);
    const row: Record<string, number> = { step: step + 1, 'budget/current': B_t };
    const mix: TierProbs =
      spec.curriculum === 'cas' ? (sampler as CasSampler).mixAt(step, T) : tierMix(step, T, cfg.curriculum);
    if (spec.curriculum === 'cas') {
      row['curriculum/p_easy'] = mix[0];
      row['curriculum/p_medium'] = mix[1];
      row['curriculum/p_hard'] = mix[2];
    }
    let groups: Rollout[][] = [];
    const tGen = performance.now();
    if (spec.reward !== 'none') {
      const rolloutOpts: RolloutOptions = {
        G: cfg.grpo.G,
        temperature: cfg.grpo.temperature,
        budget: B_t,
        stateBudget: spec.budget === 'dtb',
        hardCap: cfg.budget.hard_cap,
        rewardKind: spec.reward,
        reward: cfg.reward,
        maxBatch: cfg.train.generation_batch,
      };
      const rollout = (at: KeyPosition[]) =>
        generateRollouts(model, data.tokenizer, data.format, at, rolloutOpts, rng);
      groups = await rollout(positions);
      row.frac_reward_zero_std = fracRewardZeroStd(
        groups.flatMap((g) => g.map((r) => r.reward.reward)),
        cfg.grpo.G,
      );
      if (cfg.grpo.dynamic_sampling) {
        // DAPO: zero-variance groups are replaced by groups at freshly drawn positions.
        const ds = await dynamicSampling(
          groups,
          (g) => g.map((r) => r.reward.reward),
          async () => (await rollout(sampler.sample(1, step, T, rng).map((id) => byId.get(id)!)))[0],
          cfg.grpo.max_replacement_draws,
        );
        groups = ds.groups;
        row['dynamic_sampling/replaced'] = ds.replaced;
      }
      Object.assign(row, rolloutMetrics(groups, cfg.budget.hard_cap));
      for (const g of groups) {
        table.observe(g[0].positionId, g.filter((r) => r.reward.rMatch > 0).length / g.length);
      }
    }
    row['timing_s/gen'] = (performance.now() - tGen) / 1000;
    const tUpd = performance.now();
    const { grads, metrics } = await dualLossAndGrad(
      model,
      groups,
      positions,
      {
        clip: cfg.grpo,
        adv_eps: cfg.grpo.adv_eps,
        G: cfg.grpo.G,
        lambda: spec.reward === 'none' ? 1 : cfg.loss.lambda,
        useNtp: spec.ntp_loss || spec.reward === 'none',
        microBatch: cfg.train.micro_batch,
        padId: data.tokenizer.eosId,
      },
      reference,
    );
    const lr = learningRate(lrSchedule(cfg.train), step);
    const { gradNorm } = await opt.update(model.params, grads, lr);
    step++;
    const tokens = metrics.rl_tokens + metrics.ntp_tokens;
    Object.assign(row, {
      'actor/pg_loss': metrics['actor/pg_loss'],
      'actor/ntp_loss': metrics['actor/ntp_loss'],
      'actor/pg_clipfrac': metrics['actor/pg_clipfrac'],
      'actor/ppo_kl': metrics['actor/ppo_kl'],
      'actor/grad_norm': gradNorm,
      'actor/lr': lr,
      'timing_s/update': (performance.now() - tUpd) / 1000,
      'timing_s/step': (performance.now() - tStep) / 1000,
    });
    row['perf/throughput'] = tokens / row['timing_s/step'];
    if (cfg.eval.every > 0 && step % cfg.eval.every === 0 && step < T) {
      lastEval = await evaluate();
      Object.assign(row, evalMetrics(lastEval));
    }
    appendFileSync(metricsPath, `${JSON.stringify(row)}\n`);
    opts.onStep?.(step, row);
    bar.update(step, {
      score: row['critic/score/mean'] ?? 0,
      len: row['response_length/mean'] ?? 0,
      B: B_t,
    });
    const interrupted = opts.signal?.aborted === true;
    if (step % cfg.checkpoint.every === 0 || step === T || interrupted) finalDir = await save(step);
    if (interrupted) {
      log(`interrupted at step ${step}; rerun the same command to resume`);
      break;
    }
  }
  bar.stop();
  if (step === T) {
    saveCheckpoint(join(out, 'final'), {
      config,
      params: await downloadParams(backend, model.params),
      tokenizerDir: cfg.model.init_from,
    });
    lastEval = await evaluate();
    writeFileSync(join(out, 'eval.json'), `${JSON.stringify(lastEval, null, 2)}\n`);
    writeFileSync(join(out, 'training.svg'), trainingChart(metricsPath, cfg.method));
    writeFileSync(join(out, 'schedule.svg'), scheduleChart(metricsPath));
  }
  const summary: TrainSummary = {
    method: cfg.method,
    out_dir: cfg.run.out_dir,
    backend: backend.name,
    steps: step,
    wall_s: (performance.now() - t0) / 1000,
    final_checkpoint: finalDir,
    eval: lastEval,
  };
  writeFileSync(join(out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  await backend.dispose();
  return summary;
}

/** The spec's rollout metrics (section 8). score = correctness, rewards = the total incl. length. */
export function rolloutMetrics(groups: readonly Rollout[][], hardCap: number): Record<string, number> {
  const all = groups.flat();
  if (all.length === 0) return {};
  const mean = (f: (r: Rollout) => number) => all.reduce((s, r) => s + f(r), 0) / all.length;
  const tokens = all.reduce((s, r) => s + r.logprobs.length, 0);
  return {
    'critic/score/mean': mean((r) => r.reward.rMatch),
    'critic/rewards/mean': mean((r) => r.reward.reward),
    'critic/length_reward/mean': mean((r) => r.reward.rLen),
    'response_length/mean': mean((r) => r.responseIds.length),
    'response_length/reasoning_mean': mean((r) => r.parsed.reasoningIds.length),
    'response_length/clip_ratio': mean((r) => (r.responseIds.length >= hardCap ? 1 : 0)),
    'response/no_answer_rate': mean((r) => (r.parsed.finishReason === 'stop' ? 0 : 1)),
    // An estimate of the policy's entropy: mean surprisal of the tokens it sampled.
    'actor/entropy': tokens
      ? -all.reduce((s, r) => s + r.logprobs.reduce((a, b) => a + b, 0), 0) / tokens
      : 0,
  };
}

function evalMetrics(e: EvalResult): Record<string, number> {
  return {
    'eval/easy': e.easy.mean,
    'eval/medium': e.medium.mean,
    'eval/hard': e.hard.mean,
    'eval/avg': e.avg,
    'eval/reasoning_length': e.reasoning_length,
  };
}

const series = (rows: Record<string, number>[], key: string): [number, number][] =>
  rows.filter((r) => r[key] !== undefined).map((r) => [r.step, r[key]]);

export function trainingChart(metricsPath: string, method: string): string {
  const rows = readMetrics(metricsPath);
  return lineChartSvg({
    title: `rmt train ${method}: score and response length`,
    xLabel: 'step',
    yLabel: 'score (0-1) / length ÷ budget',
    series: [
      { name: 'critic/score/mean', points: series(rows, 'critic/score/mean') },
      { name: 'critic/rewards/mean', points: series(rows, 'critic/rewards/mean') },
      {
        name: 'reasoning / B_t',
        points: rows
          .filter((r) => r['response_length/reasoning_mean'] !== undefined)
          .map((r) => [r.step, r['response_length/reasoning_mean'] / r['budget/current']]),
      },
    ],
  });
}

export function scheduleChart(metricsPath: string): string {
  const rows = readMetrics(metricsPath);
  const maxB = Math.max(...rows.map((r) => r['budget/current'] ?? 0), 1);
  return lineChartSvg({
    title: 'budget B_t (÷ B_0) and tier mix p_t',
    xLabel: 'step',
    yLabel: 'fraction',
    series: [
      { name: 'B_t / B_0', points: rows.map((r) => [r.step, (r['budget/current'] ?? 0) / maxB]) },
      {
        name: 'reasoning / B_0',
        points: rows
          .filter((r) => r['response_length/reasoning_mean'] !== undefined)
          .map((r) => [r.step, r['response_length/reasoning_mean'] / maxB]),
      },
      { name: 'p_easy', points: series(rows, 'curriculum/p_easy') },
      { name: 'p_medium', points: series(rows, 'curriculum/p_medium') },
      { name: 'p_hard', points: series(rows, 'curriculum/p_hard') },
    ],
  });
}
