import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/** The JSON-lines metrics log every training job writes: one object per step, keyed by `step`. */
export function readMetrics(path: string): Record<string, number>[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, number>);
}

/** On resume, rows logged after the checkpoint's step are dropped: they will be logged again. */
export function truncateMetrics(path: string, step: number): void {
  if (!existsSync(path)) return;
  const kept = readMetrics(path).filter((r) => r.step <= step);
  writeFileSync(path, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
}
