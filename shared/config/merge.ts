import { didYouMean } from '../util/did-you-mean.js';

/**
 * Overlays a user's YAML onto the defaults. Every key must exist in the defaults (a misspelt key is
 * an error, not a silently ignored setting) and keep the default's type; a default of `null` marks an
 * optional setting that accepts any value. Errors name the file and the dotted field.
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

type Plain = Record<string, unknown>;

/** Longest part of a user's value an error repeats: a config can be megabytes long. */
const ECHO_CHARS = 200;

function echo(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > ECHO_CHARS ? `${s.slice(0, ECHO_CHARS)}... (${s.length} chars)` : s;
}

const isPlain = (v: unknown): v is Plain => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * `open` lists dotted paths of mappings that take keys beyond the defaults (a Hugging Face model
 * config, validated later by its own parser).
 */
export function overlay<T>(
  defaults: T,
  user: unknown,
  source: string,
  open: ReadonlySet<string> = new Set(),
  path = '',
): T {
  if (user === undefined) return structuredClone(defaults);
  const here = path || '(root)';
  if (defaults === null) return user as T;
  if (isPlain(defaults)) {
    if (!isPlain(user)) throw new RunConfigError(source, here, `expected a mapping, got ${echo(user)}`);
    const out: Plain = {};
    for (const key of Object.keys(user)) {
      if (open.has(here)) {
        if (!(key in defaults)) out[key] = user[key];
        continue;
      }
      if (!(key in defaults)) {
        throw new RunConfigError(
          source,
          path ? `${path}.${key}` : key,
          `unknown setting${didYouMean(key, Object.keys(defaults))} (known: ${Object.keys(defaults).join(', ')})`,
        );
      }
    }
    for (const [key, def] of Object.entries(defaults)) {
      out[key] =
        open.has(here) && !isPlain(def) && user[key] !== undefined
          ? user[key]
          : overlay(def, user[key], source, open, path ? `${path}.${key}` : key);
    }
    return out as T;
  }
  if (Array.isArray(defaults)) {
    if (!Array.isArray(user)) throw new RunConfigError(source, here, `expected a list, got ${echo(user)}`);
    return user as T;
  }
  if (typeof user !== typeof defaults) {
    throw new RunConfigError(source, here, `expected a ${typeof defaults}, got ${echo(user)}`);
  }
  // YAML's .nan and .inf are numbers too; JSON (how services pass a config on) has no such value.
  if (typeof user === 'number' && !Number.isFinite(user)) {
    throw new RunConfigError(source, here, `expected a finite number, got ${user}`);
  }
  return user as T;
}
