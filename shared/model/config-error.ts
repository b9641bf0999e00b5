/** A config.json (or run config) field that rmt cannot read or will not run with; names the field. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly field: string,
    message: string,
  ) {
    super(`${source}: field "${field}": ${message}`);
    this.name = 'ConfigError';
  }
}
