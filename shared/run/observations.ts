import type { DifficultyTable } from '../curriculum/difficulty-table.js';

export interface DifficultyObservation {
  run_id: string;
  step: number;
  position_id: number;
  accuracy: number;
}

/**
 * The coordinator's side of `rmt.difficulty.observed`: applies each observation of its run to the
 * difficulty table and lets a step wait until all of its groups have been heard from, so the next
 * step samples from a table that includes them (what makes a distributed run match the embedded
 * one). Observations of steps before the current run segment (replayed history) are ignored.
 */
export class ObservationInbox {
  private readonly seen = new Map<number, Map<number, number>>();
  private wake: (() => void) | null = null;
  private closedThrough = -1;

  constructor(
    private readonly runId: string,
    private readonly table: DifficultyTable,
    private readonly fromStep: number,
  ) {}

  receive(m: DifficultyObservation): void {
    if (m.run_id !== this.runId || m.step < this.fromStep || m.step <= this.closedThrough) return;
    this.table.observe(m.position_id, m.accuracy);
    const perStep = this.seen.get(m.step) ?? new Map<number, number>();
    perStep.set(m.position_id, (perStep.get(m.position_id) ?? 0) + 1);
    this.seen.set(m.step, perStep);
    this.wake?.();
  }

  /**
   * Waits until step `step` has an observation for every position in `expected` (with
   * multiplicity). On timeout, applies the missing ones from `fallback` and returns how many it
   * had to fill in; 0 means the bus delivered everything.
   */
  async settle(
    step: number,
    expected: readonly { positionId: number; accuracy: number }[],
    timeoutMs: number,
  ): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const missing = this.missing(step, expected);
      if (missing.length === 0) break;
      const left = deadline - Date.now();
      if (left <= 0) {
        for (const m of missing) this.table.observe(m.positionId, m.accuracy);
        this.close(step);
        return missing.length;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
    this.close(step);
    return 0;
  }

  /** Late copies of a settled step's observations must not count twice. */
  private close(step: number): void {
    this.seen.delete(step);
    this.closedThrough = Math.max(this.closedThrough, step);
  }

  private missing(step: number, expected: readonly { positionId: number; accuracy: number }[]) {
    const have = new Map(this.seen.get(step) ?? []);
    const out: { positionId: number; accuracy: number }[] = [];
    for (const e of expected) {
      const n = have.get(e.positionId) ?? 0;
      if (n > 0) have.set(e.positionId, n - 1);
      else out.push(e);
    }
    return out;
  }
}
