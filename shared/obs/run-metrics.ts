import { appendFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { keepMetricsThrough } from './metrics-log.js';
import { TensorBoardWriter } from './tensorboard.js';

/** Where a job's per-step metrics go besides metrics.jsonl, which is always written (resume reads it). */
export const REPORT_TARGETS = ['jsonl', 'tensorboard'] as const;
export type ReportTarget = (typeof REPORT_TARGETS)[number];

/**
 * The metrics of one job folder: `metrics.jsonl` and, when asked, TensorBoard event files under
 * `tensorboard/`. A job continues from `resumeStep` (null or 0: a fresh job): rows up to that step
 * are kept, later ones (logged by an earlier attempt past its last checkpoint) are replaced, and a
 * fresh job starts both anew. Nothing is removed until the job logs its first row: a job that fails
 * before its first step (a learner that refuses the step it was asked for, say) leaves the folder's
 * history as it found it.
 */
export class RunMetrics {
  readonly jsonlPath: string;
  private readonly tbDir: string;
  private readonly resumeStep: number;
  private tb: TensorBoardWriter | null = null;
  private started = false;

  constructor(
    out: string,
    private readonly opts: { resumeStep: number | null; reportTo: readonly ReportTarget[] },
  ) {
    this.jsonlPath = join(out, 'metrics.jsonl');
    this.tbDir = join(out, 'tensorboard');
    this.resumeStep = opts.resumeStep ?? 0;
  }

  /** Drops what the job will log again, once it is about to log. */
  private start(): void {
    this.started = true;
    const resumed = this.resumeStep > 0;
    if (resumed) {
      keepMetricsThrough(this.jsonlPath, this.resumeStep);
    } else {
      if (existsSync(this.jsonlPath)) rmSync(this.jsonlPath);
      if (existsSync(this.tbDir)) rmSync(this.tbDir, { recursive: true, force: true });
    }
    this.tb = this.opts.reportTo.includes('tensorboard')
      ? new TensorBoardWriter(this.tbDir, resumed ? { resumeStep: this.resumeStep } : {})
      : null;
  }

  /** The files a person opens: printed at the end of a job. */
  get files(): string[] {
    return [this.jsonlPath, ...(this.tb ? [this.tb.path] : [])];
  }

  append(row: Record<string, number>): void {
    if (!this.started) this.start();
    appendFileSync(this.jsonlPath, `${JSON.stringify(row)}\n`);
    this.tb?.scalars(row.step, row);
  }

  close(): void {
    this.tb?.close();
  }
}

/** Checks a config's `run.report_to`; `field` names it in the error. */
export function parseReportTo(v: unknown, fail: (message: string) => never): ReportTarget[] {
  if (!Array.isArray(v)) fail(`must be a list of ${REPORT_TARGETS.join(', ')}`);
  const list = v as unknown[];
  for (const t of list) {
    if (!REPORT_TARGETS.includes(t as ReportTarget)) {
      fail(`unknown target ${JSON.stringify(t).slice(0, 40)}; known: ${REPORT_TARGETS.join(', ')}`);
    }
  }
  return [...new Set(list as ReportTarget[])];
}
