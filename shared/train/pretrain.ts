import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { dataRoot } from '../config/data-sources.js';
import { adamwConfig, lrSchedule } from '../config/optimizer-config.js';
import type { PretrainConfig } from '../config/pretrain-config.js';
import { writeGpt2Tokenizer } from '../data/gpt2-bpe.js';
import { readSourceStreams, sourceStreams } from '../data/source-streams.js';
import { tokenStreams } from '../data/token-streams.js';
import {
  evalStarts,
  randomStarts,
  unigramBaseline,
  windowBatch,
  windowTargets,
} from '../data/token-windows.js';
import { loadTokenizer, type Tokenizer } from '../data/tokenizer.js';
import { createBackend } from '../kernels/index.js';
import { AdamW } from '../model/adamw.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { type ModelConfig, parseModelConfig } from '../model/config.js';
import { Decoder } from '../model/decoder.js';
import { initParams } from '../model/init.js';
import { lossAndGrad, lossOnly } from '../model/loss.js';
import { learningRate } from '../model/lr-schedule.js';
import { paramSpecs } from '../model/params.js';
import { downloadParams, uploadParams } from '../model/weights.js';
import { readMetrics } from '../obs/metrics-log.js';
import { type LineLog, optimizerState, RunDir, restoreOptimizer } from '../run-dir/run-dir.js';
import { lineChartSvg } from '../util/plot.js';
import { progress } from '../util/progress.js';
import { Rng } from '../util/rng.js';

/**
 * `rmt pretrain`: next-token prediction on the prose corpora, nanoGPT-style (random windows of a
 * token stream), with held-out loss against the unigram baseline, checkpoints that resume exactly,
 * metrics as JSON lines and a loss plot.
 */
export interface PretrainSummary {
  out_dir: string;
  backend: string;
  steps: number;
  tokens_per_step: number;
  train_tokens: number;
  held_out_tokens: number;
  unigram_held_out_nll: number;
  initial_held_out_nll: number;
  final_held_out_nll: number;
  final_train_loss: number;
  tokens_per_s: number;
  wall_s: number;
  params: number;
}

interface EvalPoint {
  step: number;
  held_out_nll: number;
}

export interface PretrainOptions {
  log?: LineLog;
  /** Stops after the current step with a checkpoint (Ctrl-C in the CLI); the run resumes from it. */
  signal?: AbortSignal;
  onStep?: (step: number) => void;
}

export async function pretrain(cfg: PretrainConfig, opts: PretrainOptions = {}): Promise<PretrainSummary> {
  const dir = new RunDir(cfg, opts.log);
  const { log, path: out } = dir;
  dir.writeConfig(cfg);

  const tokenizer = await prepareTokenizer(cfg, out);
  const { train, heldOut } =
    cfg.data.sources.length > 0
      ? readSourceStreams(
          await sourceStreams(
            { ...cfg.data, root: dataRoot(cfg.data), seed: cfg.run.seed, stop_after: null },
            tokenizer,
            join(out, 'data'),
            log,
          ),
          0,
          0,
        )
      : tokenStreams({ ...builtinData(cfg), seed: cfg.run.seed }, tokenizer, join(out, 'data'), log);
  const unigram = unigramBaseline(train, heldOut, tokenizer.vocabSize);
  log(
    `data: ${train.length} train tokens, ${heldOut.length} held-out tokens; unigram held-out nll ${unigram.toFixed(4)}`,
  );

  const backend = await createBackend(cfg.run.backend as Parameters<typeof createBackend>[0]);
  log(`backend: ${backend.name}`);
  const resumeFrom = dir.latestCheckpoint();
  const start = resumeFrom
    ? loadCheckpoint(resumeFrom)
    : cfg.model.init_from
      ? loadCheckpoint(cfg.model.init_from)
      : null;
  const config: ModelConfig =
    start?.config ??
    parseModelConfig(
      {
        ...cfg.model.config,
        vocab_size: tokenizer.vocabSize,
        eos_token_id: tokenizer.eosId,
        bos_token_id: tokenizer.eosId,
      },
      `${cfg.run.out_dir} model.config`,
    );
  if (config.vocab_size < tokenizer.vocabSize) {
    throw new Error(
      `model vocab_size ${config.vocab_size} is smaller than the tokenizer's ${tokenizer.vocabSize}`,
    );
  }
  if (cfg.data.seq_len > config.max_position_embeddings) {
    throw new Error(
      `data.seq_len ${cfg.data.seq_len} exceeds max_position_embeddings ${config.max_position_embeddings}`,
    );
  }
  const specs = paramSpecs(config);
  const model = new Decoder(
    config,
    backend,
    uploadParams(backend, start?.params ?? initParams(config, cfg.run.seed, cfg.model.init_std)),
  );
  const opt = new AdamW(backend, specs, adamwConfig(cfg.train));
  let step = 0;
  let rng = new Rng(cfg.run.seed);
  let evals: EvalPoint[] = [];
  let resumeStep: number | null = null;
  if (resumeFrom && start?.training) {
    const t = start.training;
    step = t.step;
    rng = new Rng(t.rng);
    restoreOptimizer(opt, t);
    evals = (t.extra?.evals as EvalPoint[]) ?? [];
    log(`resuming from ${resumeFrom} at step ${step}`);
    resumeStep = step;
  }
  const metrics = dir.metrics(resumeStep);

  const seqLen = cfg.data.seq_len;
  const B = cfg.train.batch_size;
  const schedule = lrSchedule(cfg.train);
  const heldStarts = evalStarts(heldOut, cfg.eval.batches * B, seqLen);
  const evaluate = async (): Promise<number> => {
    let sum = 0;
    let count = 0;
    for (let i = 0; i < heldStarts.length; i += B) {
      const batch = windowBatch(heldOut, heldStarts.slice(i, i + B), seqLen);
      const t = windowTargets(batch);
      const { nll } = await lossOnly(model, batch, t);
      for (let r = 0; r < nll.length; r++) {
        if (t.targets[r] >= 0) {
          sum += nll[r];
          count++;
        }
      }
    }
    return sum / count;
  };
  const save = async (atStep: number) => {
    dir.saveCheckpoint(atStep, {
      config,
      params: await downloadParams(backend, model.params),
      tokenizerDir: tokenizer.dir,
      training: {
        step: atStep,
        rng: rng.state(),
        dataPosition: { kind: 'random-windows', seed_stream: 'rng' },
        optimizer: await optimizerState(opt, { ...cfg.train }),
        extra: { evals },
      },
    });
  };

  if (step === 0) {
    const nll = await evaluate();
    evals.push({ step: 0, held_out_nll: nll });
    metrics.append({ step: 0, 'eval/held_out_nll': nll, 'eval/unigram_nll': unigram });
    log(`step 0 held-out nll ${nll.toFixed(4)} (unigram ${unigram.toFixed(4)})`);
  }
  const bar = progress('pretrain', cfg.train.steps, step);
  const t0 = performance.now();
  const startStep = step;
  let lastLoss = Number.NaN;
  while (step < cfg.train.steps) {
    const ts = performance.now();
    const batch = windowBatch(train, randomStarts(train, B, seqLen, rng), seqLen);
    const { loss, grads } = await lossAndGrad(model, batch, windowTargets(batch));
    if (!Number.isFinite(loss))
      throw new Error(`loss became ${loss} at step ${step}; lower train.lr or check the data`);
    const lr = learningRate(schedule, step);
    const { gradNorm } = await opt.update(model.params, grads, lr);
    step++;
    lastLoss = loss;
    const dt = (performance.now() - ts) / 1000;
    const row: Record<string, number> = {
      step,
      'train/loss': loss,
      'train/lr': lr,
      'actor/grad_norm': gradNorm,
      'perf/throughput': (B * seqLen) / dt,
      'timing_s/step': dt,
    };
    if (step % cfg.eval.every === 0 || step === cfg.train.steps) {
      const nll = await evaluate();
      evals.push({ step, held_out_nll: nll });
      row['eval/held_out_nll'] = nll;
      row['eval/unigram_nll'] = unigram;
    }
    metrics.append(row);
    bar.update(step, {
      loss,
      lr,
      ...(row['eval/held_out_nll'] !== undefined ? { held_out: row['eval/held_out_nll'] } : {}),
    });
    opts.onStep?.(step);
    const interrupted = opts.signal?.aborted === true;
    if (step % cfg.checkpoint.every === 0 || step === cfg.train.steps || interrupted) await save(step);
    if (interrupted) {
      log(`interrupted at step ${step}; checkpoint saved, rerun the same command to resume`);
      break;
    }
  }
  bar.stop();
  metrics.close();
  const wall = (performance.now() - t0) / 1000;
  const summary: PretrainSummary = {
    out_dir: cfg.run.out_dir,
    backend: backend.name,
    steps: step,
    tokens_per_step: B * seqLen,
    train_tokens: train.length,
    held_out_tokens: heldOut.length,
    unigram_held_out_nll: unigram,
    initial_held_out_nll: evals[0]?.held_out_nll ?? Number.NaN,
    final_held_out_nll: evals[evals.length - 1]?.held_out_nll ?? Number.NaN,
    final_train_loss: lastLoss,
    tokens_per_s: ((step - startStep) * B * seqLen) / Math.max(wall, 1e-9),
    wall_s: wall,
    params: specs.reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0),
  };
  if (step === cfg.train.steps) {
    dir.saveFinal({
      config,
      params: await downloadParams(backend, model.params),
      tokenizerDir: tokenizer.dir,
    });
  }
  dir.writeJson('summary.json', summary);
  dir.write('loss.svg', lossChart(metrics.jsonlPath, unigram));
  await backend.dispose();
  return summary;
}

async function prepareTokenizer(cfg: PretrainConfig, out: string): Promise<Tokenizer> {
  if (cfg.tokenizer.dir) return loadTokenizer(cfg.tokenizer.dir);
  const dir = join(out, 'tokenizer');
  if (!existsSync(join(dir, 'tokenizer.json')))
    writeGpt2Tokenizer(dir, { merges: cfg.tokenizer.gpt2_merges });
  return loadTokenizer(dir);
}

export function lossChart(metricsPath: string, unigram: number): string {
  const rows = readMetrics(metricsPath);
  return lineChartSvg({
    title: 'rmt pretrain: next-token loss',
    xLabel: 'step',
    yLabel: 'nats / token',
    series: [
      {
        name: 'train loss',
        points: rows.filter((r) => r['train/loss'] !== undefined).map((r) => [r.step, r['train/loss']]),
      },
      {
        name: 'held-out nll',
        points: rows
          .filter((r) => r['eval/held_out_nll'] !== undefined)
          .map((r) => [r.step, r['eval/held_out_nll']]),
      },
      { name: 'unigram baseline', points: [], y: unigram },
    ],
  });
}

/** The data settings of the built-in corpora, as their token-stream cache has always been keyed. */
function builtinData(cfg: PretrainConfig) {
  const { sources, eval_sources, root, max_document_bytes, ...rest } = cfg.data;
  return rest;
}
