import { appendFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { truncateMetrics } from '../train/metrics-log.js';
import { TensorBoardWriter } from './tensorboard.js';

/** Where a job's per-step metrics go besides metrics.jsonl, which is always written (resume reads it). */
export const REPORT_TARGETS = ['jsonl', 'tensorboard'] as const;
export type ReportTarget = (typeof REPORT_TARGETS)[number];

/**
 * The metrics of one job folder: `metrics.jsonl` and, when asked, TensorBoard event files under
 * `tensorboard/`. A fresh job starts both anew; a resumed one keeps the rows up to its checkpoint
 * and logs the rest again.
 */
export class RunMetrics {
  readonly jsonlPath: string;
  private readonly tb: TensorBoardWriter | null;

  constructor(out: string, opts: { resumeStep: number | null; reportTo: readonly ReportTarget[] }) {
    this.jsonlPath = join(out, 'metrics.jsonl');
    const tbDir = join(out, 'tensorboard');
    if (opts.resumeStep !== null) {
      truncateMetrics(this.jsonlPath, opts.resumeStep);
    } else {
      if (existsSync(this.jsonlPath)) rmSync(this.jsonlPath);
      if (existsSync(tbDir)) rmSync(tbDir, { recursive: true, force: true });
    }
    this.tb = opts.reportTo.includes('tensorboard')
      ? new TensorBoardWriter(tbDir, opts.resumeStep !== null ? { resumeStep: opts.resumeStep } : {})
      : null;
  }

  /** The files a person opens: printed at the end of a job. */
  get files(): string[] {
    return [this.jsonlPath, ...(this.tb ? [this.tb.path] : [])];
  }

  append(row: Record<string, number>): void {
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
