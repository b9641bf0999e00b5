import { METHODS } from './rmt-defaults.js';
import type { BACKENDS } from './schema/common-fields.js';

/**
 * Command-line flags that stand for a run-config field take their choices from the field's schema,
 * so a flag and the field cannot drift apart.
 */

/** run.backend's choices but `reference`, the float64 oracle of the tests, too slow to serve with. */
export const SERVICE_BACKENDS = [
  'auto',
  'webgpu',
  'webasm',
  'cpu',
] as const satisfies readonly (typeof BACKENDS)[number][];

/** The `--backend` flag of a service process. */
export const BACKEND_FLAG = {
  type: 'enum',
  choices: SERVICE_BACKENDS,
  default: 'auto',
  doc: `kernel backend (as run.backend): ${SERVICE_BACKENDS.join(', ')}`,
} as const;

/** `--method M`: the config's `method`, one of the method table's rows. */
export const METHOD_FLAG = {
  type: 'enum',
  choices: METHODS,
  arg: '<method>',
  doc: `override the config's method: ${METHODS.join(' | ')}`,
} as const;
