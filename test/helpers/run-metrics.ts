import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The rows of a run's metrics.jsonl (under its out_dir). */
export function metricsRows(outDir: string): Record<string, number>[] {
  return readFileSync(join(outDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>);
}

/** Everything a run computes, without the wall-clock timings: what two runs of one config share. */
export function trajectory(rows: Record<string, number>[]): Record<string, number>[] {
  return rows.map((r) =>
    Object.fromEntries(
      Object.entries(r).filter(([k]) => !k.startsWith('timing_s/') && k !== 'perf/throughput'),
    ),
  );
}
