import { z } from 'zod';
import { didYouMean } from '../../util/did-you-mean.js';
import { describeRange, inRange, type Range } from '../ranges.js';

/**
 * Building blocks of the run-config schema. Every setting is a zod schema with its default and an
 * entry in FIELDS (what it means, where its default comes from), so that the TypeScript types,
 * the validation, docs/config.md and the JSON Schema for editors all come from one declaration.
 * Error messages name what was expected and what came instead; the dotted field is added by
 * `issues.ts`.
 */

/**
 * Where a default comes from: *paper* (RMT, Tian et al. 2025), *RPT* (Dong et al. 2025), *verl* /
 * *DAPO* (the convention matched), or *ours* (this project's choice where the papers are silent).
 */
export type DefaultSource = 'paper' | 'RPT' | 'verl' | 'DAPO' | 'ours';

export interface FieldMeta {
  /** One line (or a few) for docs/config.md and the JSON Schema's description. */
  description: string;
  source: DefaultSource;
  /** The paper's value where the default differs from it (e.g. scaled down for small models). */
  paper?: unknown;
  /** How the default reads in the docs when its value alone would not (a long template, ln 16). */
  shown?: string;
  /** What the value must be, when more than its type and range says (cross-field rules). */
  rule?: string;
}

/** Settings' metadata, by schema. toJSONSchema reads descriptions from here as well. */
export const FIELDS = z.registry<FieldMeta>();

/** A section's one-line description for the docs. */
export const SECTIONS = z.registry<{ description: string }>();

/** Longest part of a user's value an error repeats: a config can be megabytes long. */
const ECHO_CHARS = 200;

export function echo(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > ECHO_CHARS ? `${s.slice(0, ECHO_CHARS)}... (${s.length} chars)` : s;
}

type Meta = Omit<FieldMeta, 'source'> & { source?: DefaultSource };

/** A setting with its default: the default is returned fresh each time (a config may be changed). */
function withDefault<T extends z.ZodType>(schema: T, def: z.output<T>, meta: Meta) {
  const s = schema.default(() => structuredClone(def) as never);
  FIELDS.add(s as z.ZodType, { source: 'ours', ...meta });
  return s;
}

/** A number in `r` (checked as ranges.ts describes it); messages give the whole range. */
export function number(r: Range = {}) {
  const error = (iss: { input?: unknown }) =>
    typeof iss.input === 'number'
      ? `must be ${describeRange(r)}, got ${String(iss.input)}`
      : `expected a number, got ${echo(iss.input)}`;
  let s = r.int ? z.int({ error }) : z.number({ error });
  if (r.min !== undefined) s = s.min(r.min, { error });
  if (r.max !== undefined) s = s.max(r.max, { error });
  if (r.above !== undefined) s = s.gt(r.above, { error });
  if (r.below !== undefined) s = s.lt(r.below, { error });
  return s;
}

export const num = (def: number, r: Range, meta: Meta) => withDefault(number(r), def, meta);
export const int = (def: number, r: Omit<Range, 'int'>, meta: Meta) =>
  withDefault(number({ ...r, int: true }), def, meta);

export function string(o: { nonEmpty?: boolean } = {}) {
  const error = (iss: { input?: unknown }) =>
    typeof iss.input === 'string'
      ? 'expected a non-empty string'
      : `expected a string, got ${echo(iss.input)}`;
  const s = z.string({ error });
  return o.nonEmpty ? s.min(1, { error }) : s;
}

export const str = (def: string, meta: Meta) => withDefault(string(), def, meta);

export const bool = (def: boolean, meta: Meta) =>
  withDefault(z.boolean({ error: (iss) => `expected a boolean, got ${echo(iss.input)}` }), def, meta);

/** One of `choices`; a near miss is named. */
export function choice<const C extends readonly [string, ...string[]]>(choices: C) {
  return z.enum(choices, {
    error: (iss) =>
      `must be one of ${choices.join(', ')}, got ${echo(iss.input)}${typeof iss.input === 'string' ? didYouMean(iss.input, choices) : ''}`,
  });
}

export const oneOf = <const C extends readonly [string, ...string[]]>(
  choices: C,
  def: C[number],
  meta: Meta,
) => withDefault(choice(choices), def as never, meta);

/** `null` or the value (an optional setting whose null has a meaning the description gives). */
export function nullable<T extends z.ZodType>(schema: T, meta: Meta) {
  return withDefault(
    z.union([z.null(), schema], { error: (iss) => unionMessage(schema, iss.input) }),
    null as never,
    meta,
  );
}

/** A union's error: the inner schema's own message for the value (e.g. its range). */
function unionMessage(schema: z.ZodType, input: unknown): string {
  const r = schema.safeParse(input);
  return r.success ? `expected null, got ${echo(input)}` : `${r.error.issues[0].message} (or null)`;
}

export function list<T extends z.ZodType>(item: T, o: { length?: number; nonEmpty?: boolean } = {}) {
  const error = (iss: { input?: unknown; code?: string }) =>
    !Array.isArray(iss.input)
      ? `expected a list, got ${echo(iss.input)}`
      : o.length !== undefined
        ? `must be a list of ${o.length}`
        : 'must not be empty';
  let s = z.array(item, { error });
  if (o.length !== undefined) s = s.length(o.length, { error });
  if (o.nonEmpty) s = s.min(1, { error });
  return s;
}

export const listOf = <T extends z.ZodType>(
  item: T,
  def: z.output<T>[],
  meta: Meta,
  o: { length?: number; nonEmpty?: boolean } = {},
) => withDefault(list(item, o), def, meta);

/** Any other schema with its default and meta. */
export const setting = <T extends z.ZodType>(schema: T, def: z.output<T>, meta: Meta) =>
  withDefault(schema, def, meta);

/** The mapping of a section: unknown keys are refused with the known ones listed. */
export function mapping<S extends z.ZodRawShape>(shape: S) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (iss) => {
      if (iss.code === 'unrecognized_keys') {
        const key = String(iss.keys[0]);
        return `unknown setting${didYouMean(key, known)} (known: ${known.join(', ')})`;
      }
      return `expected a mapping, got ${echo(iss.input)}`;
    },
  });
}

/** A section: its mapping (with any cross-field checks already added); missing, it is its defaults. */
export function section<T extends z.ZodType>(mappingSchema: T, description: string) {
  const s = mappingSchema.prefault({} as never);
  SECTIONS.add(s as z.ZodType, { description });
  return s;
}

/** A cross-field rule's issue: `path` is relative to the mapping the rule is on. */
export interface RuleContext {
  addIssue(issue: { code: 'custom'; message: string; path: (string | number)[]; input?: unknown }): void;
}

/** Adds the issue of a value outside a range that depends on another field. */
export function checkIn(ctx: RuleContext, path: (string | number)[], v: number, r: Range): void {
  if (!inRange(v, r))
    ctx.addIssue({ code: 'custom', path, message: `must be ${describeRange(r)}, got ${v}` });
}
