import type { z } from 'zod';
import { RunConfigError } from '../merge.js';

/** `['data', 'sources', 0, 'weight']` -> `data.sources[0].weight`. */
export function dottedPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(root)';
}

/** Which issue a config error reports first: a misspelt key, then a wrong type, then a value. */
function rank(i: z.core.$ZodIssue): number {
  if (i.code === 'unrecognized_keys') return 0;
  if (i.code === 'invalid_type' && typeof i.input !== 'number') return 1;
  return i.code === 'custom' ? 3 : 2;
}

/**
 * The first issue of a failed parse as a RunConfigError naming `source` and the dotted field (an
 * unknown key is named itself, not its section).
 */
export function configError(source: string, error: z.ZodError, prefix = ''): RunConfigError {
  const issues = [...error.issues].sort((a, b) => rank(a) - rank(b));
  const first = issues[0];
  const path: PropertyKey[] = [...first.path];
  if (first.code === 'unrecognized_keys') path.push(first.keys[0]);
  const rest = path.length ? dottedPath(path) : '';
  const field = !prefix
    ? dottedPath(path)
    : !rest
      ? prefix
      : rest.startsWith('[')
        ? prefix + rest
        : `${prefix}.${rest}`;
  return new RunConfigError(source, field, first.message);
}
