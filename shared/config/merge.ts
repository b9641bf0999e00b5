/**
 * A run config that does not fit its schema (schema/): names the file (or other source) and the
 * dotted field, e.g. `configs/rmt.yaml: train.steps: must be an integer >= 1, got 2.5`.
 */
export class RunConfigError extends Error {
  constructor(
    readonly source: string,
    readonly field: string,
    /** What is wrong with the field, without source and field (for callers that name them). */
    readonly reason: string,
  ) {
    super(`${source}: ${field}: ${reason}`);
    this.name = 'RunConfigError';
  }
}
