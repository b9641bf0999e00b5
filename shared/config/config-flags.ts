import type { z } from 'zod';
import { METHODS } from './rmt-defaults.js';
import type { BACKENDS } from './schema/common-fields.js';
import { FIELDS } from './schema/field.js';
import { trainSchema } from './train-config.js';

/**
 * Command-line flags that set a run-config field take their choices, range and help from the field's
 * schema, so a flag and the field it stands for cannot drift apart.
 */

/** A run-config field's schema by dotted name (`run.backend`). */
export function configField(path: string, root: z.ZodType = trainSchema): z.ZodType {
  let node: unknown = root;
  for (const key of path.split('.')) {
    let inner = node as { shape?: Record<string, z.ZodType>; unwrap?: () => unknown };
    // A section is its mapping under a prefault: unwrap to reach the shape.
    while (!inner.shape && inner.unwrap) inner = inner.unwrap() as typeof inner;
    const next = inner.shape?.[key];
    if (!next) throw new Error(`config schema has no field ${path}`);
    node = next;
  }
  return node as z.ZodType;
}

/** The field's description, for a flag's help. */
export function configDoc(path: string, root: z.ZodType = trainSchema): string {
  const meta = FIELDS.get(configField(path, root));
  if (!meta) throw new Error(`config schema: ${path} has no description`);
  return meta.description;
}

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
