import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { AdamW } from '../model/adamw.js';
import {
  checkpointDir,
  checkpointStep,
  latestCheckpoint,
  listCheckpoints,
  type SaveCheckpointOptions,
  saveCheckpoint,
  type TrainingState,
} from '../model/checkpoint.js';
import { downloadParams, uploadParams } from '../model/weights.js';
import { type ReportTarget, RunMetrics } from '../obs/run-metrics.js';

/** The file a run's folder is recognised by: the resolved config, written before anything else. */
export const RUN_CONFIG_FILE = 'config.resolved.json';

/** Where a training job's progress lines go: one line each, without its newline. */
export type LineLog = (line: string) => void;

/** The default of every training job: stderr, so stdout stays free for what a command prints. */
export const stderrLog: LineLog = (line) => process.stderr.write(`${line}\n`);

/** The fields of a run configuration (pre-training and RMT alike) the output folder depends on. */
export interface RunDirConfig {
  run: { out_dir: string; report_to: readonly ReportTarget[] };
  checkpoint: { keep: number };
  train: { steps: number };
}

/**
 * The output folder of one training job, the same for pre-training, the learner and the
 * coordinator: `config.resolved.json`, `metrics.jsonl` (and `tensorboard/`), training checkpoints
 * under `checkpoints/step-XXXXXXX/` of which the newest `checkpoint.keep` are kept (and always the
 * one of the last step, `train.steps`), `final/` (weights only), `summary.json` and plots. A job
 * resumes from the newest checkpoint here; its metrics log then keeps every row up to that step.
 * Nothing is written until a method says so: the learner of a service shares the folder's
 * checkpoints but not its config or metrics, which the coordinator writes.
 */
export class RunDir {
  readonly path: string;
  readonly log: LineLog;

  constructor(
    private readonly cfg: RunDirConfig,
    log?: LineLog,
  ) {
    this.path = resolve(cfg.run.out_dir);
    this.log = log ?? stderrLog;
  }

  /** Creates the folder and records the configuration the job runs with, defaults filled in. */
  writeConfig(resolved: unknown): void {
    mkdirSync(this.path, { recursive: true });
    this.writeJson(RUN_CONFIG_FILE, resolved);
  }

  /** The newest training checkpoint, to resume from; undefined for a fresh job. */
  latestCheckpoint(): string | undefined {
    return latestCheckpoint(this.path);
  }

  /**
   * A training checkpoint at `step` (written whole or not at all, see saveCheckpoint), then the
   * older ones beyond `checkpoint.keep` removed. Returns its folder.
   */
  saveCheckpoint(step: number, opts: SaveCheckpointOptions): string {
    const dir = checkpointDir(this.path, step);
    saveCheckpoint(dir, opts);
    const all = listCheckpoints(this.path);
    for (const old of all.slice(0, Math.max(0, all.length - this.cfg.checkpoint.keep))) {
      if (checkpointStep(old) !== this.cfg.train.steps) rmSync(old, { recursive: true, force: true });
    }
    return dir;
  }

  /** `final/`: the finished model without optimizer state, a stable name for configs that start from it. */
  saveFinal(opts: Omit<SaveCheckpointOptions, 'training'>): string {
    const dir = join(this.path, 'final');
    saveCheckpoint(dir, opts);
    return dir;
  }

  /**
   * The job's metrics log, continuing from `resumeStep` (null or 0: a fresh job, which starts the
   * log anew): see RunMetrics.
   */
  metrics(resumeStep: number | null): RunMetrics {
    return new RunMetrics(this.path, { resumeStep, reportTo: this.cfg.run.report_to });
  }

  file(name: string): string {
    return join(this.path, name);
  }

  /** Writes `name` in the folder; returns its path. */
  write(name: string, text: string): string {
    const path = this.file(name);
    writeFileSync(path, text);
    return path;
  }

  writeJson(name: string, value: unknown): string {
    return this.write(name, `${JSON.stringify(value, null, 2)}\n`);
  }
}

/** The optimizer's part of a training checkpoint: its moments, read back from the backend. */
export async function optimizerState(
  opt: AdamW,
  hyper: Record<string, number>,
): Promise<TrainingState['optimizer']> {
  return {
    m: await downloadParams(opt.backend, opt.m),
    v: await downloadParams(opt.backend, opt.v),
    hyper,
  };
}

/** Puts a checkpoint's optimizer state back: the step count and both moments, on the backend. */
export function restoreOptimizer(opt: AdamW, training: TrainingState): void {
  opt.step = training.step;
  opt.m = uploadParams(opt.backend, training.optimizer.m);
  opt.v = uploadParams(opt.backend, training.optimizer.v);
}
