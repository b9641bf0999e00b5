// The one command-line parser of rmt: every verb of the CLI, every service process and the bench
// scripts declare their flags here. A service's settings come from flags and environment variables,
// so that a container image needs no baked-in config file: Kubernetes sets env from ConfigMaps and
// args from the pod spec, a developer types flags. Precedence is flag > env > default. A flag with
// `env: false` (the CLI's job verbs) has no variable; `list` flags repeat (`--set a=1 --set b=2`).
//
// The schema is keyed by the flag name (kebab-case); the parsed object uses the camelCase of it, and
// its type is inferred from a `const` schema:
//
//   const FLAGS = defineFlags({
//     'rollout-workers': { type: 'int', default: 2, min: 1, doc: 'rollout worker processes' },
//   });
//   const flags = parseServiceFlags(FLAGS, argv, env); // flags.rolloutWorkers: number

import { didYouMean } from '../util/did-you-mean.js';

interface BaseSpec {
  /** Environment variable; default `RMT_` + the flag name in upper snake case; false: none. */
  env?: string | false;
  /** One line for --help. */
  doc: string;
  /** How --help shows the value, e.g. `<yaml>` (default: the type). */
  arg?: string;
}
export interface StringFlag extends BaseSpec {
  type: 'string';
  default?: string;
  required?: boolean;
}
export interface IntFlag extends BaseSpec {
  type: 'int';
  default?: number;
  required?: boolean;
  min?: number;
  max?: number;
}
export interface NumberFlag extends BaseSpec {
  type: 'number';
  default?: number;
  required?: boolean;
  min?: number;
  max?: number;
}
/** Absent means false; `--x`, `--x=false`, `--no-x`, env true/false/1/0/yes/no/on/off. */
export interface BoolFlag extends BaseSpec {
  type: 'bool';
  default?: boolean;
}
export interface EnumFlag extends BaseSpec {
  type: 'enum';
  choices: readonly string[];
  default?: string;
  required?: boolean;
}
/** Repeatable: every `--name value` adds one; no environment variable. Absent means []. */
export interface ListFlag extends BaseSpec {
  type: 'list';
  env: false;
}
export type FlagSpec = StringFlag | IntFlag | NumberFlag | BoolFlag | EnumFlag | ListFlag;
export type FlagSchema = Readonly<Record<string, FlagSpec>>;

type CamelCase<S extends string> = S extends `${infer H}-${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S;
type ValueOf<F> = F extends { type: 'string' }
  ? string
  : F extends { type: 'list' }
    ? string[]
    : F extends { type: 'int' | 'number' }
      ? number
      : F extends { type: 'bool' }
        ? boolean
        : F extends { type: 'enum'; choices: readonly (infer C)[] }
          ? C
          : never;
type AlwaysSet<F> = F extends { type: 'bool' | 'list' }
  ? true
  : F extends { default: string | number | boolean }
    ? true
    : F extends { required: true }
      ? true
      : false;

/** The parsed settings of schema S: camelCase keys, `undefined` only where no default and not required. */
export type ServiceFlags<S extends FlagSchema> = {
  -readonly [K in keyof S & string as CamelCase<K>]: AlwaysSet<S[K]> extends true
    ? ValueOf<S[K]>
    : ValueOf<S[K]> | undefined;
};

/** Identity; keeps literal types (flag types, enum choices) so that ServiceFlags can infer from them. */
export function defineFlags<const S extends FlagSchema>(schema: S): S {
  return schema;
}

/** A bad flag or environment value. `flag` and `env` name the option when there is one. */
export class FlagError extends Error {
  constructor(
    message: string,
    readonly flag?: string,
    readonly env?: string,
  ) {
    super(message);
    this.name = 'FlagError';
  }
}

/** Thrown by parseServiceFlags for `--help` / `-h`: the caller prints helpText and exits 0. */
export class HelpRequested extends Error {
  constructor() {
    super('help requested');
    this.name = 'HelpRequested';
  }
}

export function camelCase(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** The flag's environment variable ('' for a flag without one). */
export function envName(name: string, spec: FlagSpec): string {
  if (spec.env === false) return '';
  return spec.env ?? `RMT_${name.toUpperCase().replace(/-/g, '_')}`;
}

/** The same flags without environment variables: a CLI verb's flags are typed, not inherited. */
export function withoutEnv<const S extends FlagSchema>(schema: S): S {
  return Object.fromEntries(
    Object.entries(schema).map(([k, v]) => [k, { ...v, env: false }]),
  ) as unknown as S;
}

const FLAG_NAME = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;
const BOOL_WORDS: Record<string, boolean> = {
  true: true,
  false: false,
  '1': true,
  '0': false,
  yes: true,
  no: false,
  on: true,
  off: false,
};

// Mistakes in a schema are programming errors; catching them on every parse means the first test
// that touches a service's flags finds them.
function checkSchema(schema: FlagSchema): void {
  const envs = new Map<string, string>();
  for (const [name, spec] of Object.entries(schema)) {
    const where = `flag schema: --${name}`;
    if (!FLAG_NAME.test(name))
      throw new Error(`${where}: name must be kebab-case ([a-z0-9] words joined by -)`);
    if (name === 'help') throw new Error(`${where}: --help is reserved`);
    if (name.startsWith('no-') && schema[name.slice(3)]?.type === 'bool') {
      throw new Error(`${where}: clashes with the negation of bool flag --${name.slice(3)}`);
    }
    if (spec.type === 'list' && spec.env !== false) throw new Error(`${where}: a list flag has no env var`);
    const env = envName(name, spec);
    if (env !== '' && !ENV_NAME.test(env))
      throw new Error(`${where}: env var ${env} must be upper snake case`);
    const other = envs.get(env);
    if (other !== undefined) throw new Error(`${where}: env var ${env} is also used by --${other}`);
    if (env !== '') envs.set(env, name);
    if (spec.type === 'enum') {
      if (spec.choices.length === 0) throw new Error(`${where}: enum needs at least one choice`);
      if (spec.default !== undefined && !spec.choices.includes(spec.default)) {
        throw new Error(`${where}: default ${JSON.stringify(spec.default)} is not one of its choices`);
      }
    }
    if (spec.type === 'int' || spec.type === 'number') {
      if (spec.default !== undefined && !numberFits(spec, spec.default)) {
        throw new Error(`${where}: default ${spec.default} is not ${expected(spec)}`);
      }
    }
  }
}

function expected(spec: FlagSpec): string {
  switch (spec.type) {
    case 'string':
    case 'list':
      return 'a string';
    case 'bool':
      return 'a boolean (true/false, 1/0, yes/no, on/off)';
    case 'enum':
      return `one of ${spec.choices.join(', ')}`;
    case 'int':
    case 'number': {
      const what = spec.type === 'int' ? 'an integer' : 'a number';
      if (spec.min !== undefined && spec.max !== undefined) return `${what} in [${spec.min}, ${spec.max}]`;
      if (spec.min !== undefined) return `${what} >= ${spec.min}`;
      if (spec.max !== undefined) return `${what} <= ${spec.max}`;
      return what;
    }
  }
}

function numberFits(spec: IntFlag | NumberFlag, v: number): boolean {
  if (spec.type === 'int' ? !Number.isSafeInteger(v) : !Number.isFinite(v)) return false;
  return (spec.min === undefined || v >= spec.min) && (spec.max === undefined || v <= spec.max);
}

/** Parses one raw value; returns undefined when it does not fit the spec. */
function convert(spec: FlagSpec, raw: string): string | number | boolean | undefined {
  switch (spec.type) {
    case 'string':
    case 'list':
      return raw;
    case 'bool':
      return BOOL_WORDS[raw.trim().toLowerCase()];
    case 'enum':
      return spec.choices.includes(raw) ? raw : undefined;
    case 'int':
    case 'number': {
      const s = raw.trim();
      // Number() alone would accept '', '0x10' and '1e3' for an int, all of which are likelier typos.
      const ok = spec.type === 'int' ? /^[+-]?\d+$/.test(s) : s !== '' && !/^[+-]?0[xob]/i.test(s);
      const v = ok ? Number(s) : Number.NaN;
      return numberFits(spec, v) ? v : undefined;
    }
  }
}

/** ` (did you mean "cpu"?)` for an enum value close to a choice. */
const nearMiss = (spec: FlagSpec, raw: string) => (spec.type === 'enum' ? didYouMean(raw, spec.choices) : '');

function label(name: string, spec: FlagSpec, source: 'flag' | 'env'): string {
  const env = envName(name, spec);
  if (env === '') return `--${name}`;
  return source === 'flag' ? `--${name} (env ${env})` : `${env} (flag --${name})`;
}

function unknownFlag(schema: FlagSchema, name: string): FlagError {
  const best = /"(.*)"/.exec(didYouMean(name, Object.keys(schema)))?.[1];
  const env = best === undefined ? '' : envName(best, schema[best]);
  const hint = best === undefined ? '' : ` (did you mean "--${best}"?${env ? ` env ${env}` : ''})`;
  return new FlagError(`unknown flag --${name}${hint} (see --help)`, `--${name}`);
}

/**
 * Reads the settings of `schema` from `argv` (without node and script, e.g. `process.argv.slice(2)`)
 * and `env`. Flags are `--name value` or `--name=value`; bools also `--name` and `--no-name`.
 * Throws FlagError for anything that does not fit and HelpRequested for `--help` / `-h`.
 */
export function parseServiceFlags<const S extends FlagSchema>(
  schema: S,
  argv: readonly string[],
  env: Record<string, string | undefined>,
): ServiceFlags<S> {
  checkSchema(schema);
  const dashdash = argv.indexOf('--');
  const options = dashdash < 0 ? argv : argv.slice(0, dashdash);
  if (options.includes('--help') || options.includes('-h')) throw new HelpRequested();
  if (dashdash >= 0 && dashdash < argv.length - 1) {
    throw new FlagError(
      `unexpected argument ${JSON.stringify(argv[dashdash + 1])}: this command takes only flags`,
    );
  }

  const fromFlags = new Map<string, string | number | boolean | string[]>();
  for (let i = 0; i < options.length; i++) {
    const arg = options[i];
    if (!arg.startsWith('--') || arg === '--') {
      throw new FlagError(`unexpected argument ${JSON.stringify(arg)}: this command takes only flags`);
    }
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    const spec: FlagSpec | undefined = Object.hasOwn(schema, name) ? schema[name] : undefined;

    if (spec === undefined) {
      const base = name.slice(3);
      if (name.startsWith('no-') && Object.hasOwn(schema, base) && schema[base].type === 'bool') {
        if (inline !== undefined) {
          throw new FlagError(
            `--${name} takes no value; use --${base}=${inline} (env ${envName(base, schema[base])})`,
            `--${base}`,
            envName(base, schema[base]),
          );
        }
        fromFlags.set(base, false);
        continue;
      }
      throw unknownFlag(schema, name);
    }

    let raw: string;
    if (inline !== undefined) {
      raw = inline;
    } else if (spec.type === 'bool') {
      fromFlags.set(name, true);
      continue;
    } else {
      const next = options[i + 1];
      // A following option is far likelier a forgotten value than a value that starts with --.
      if (next === undefined || next.startsWith('--')) {
        throw new FlagError(
          `${label(name, spec, 'flag')}: missing value, expected ${expected(spec)}`,
          `--${name}`,
          envName(name, spec),
        );
      }
      raw = next;
      i++;
    }
    const v = convert(spec, raw);
    if (v === undefined) {
      throw new FlagError(
        `${label(name, spec, 'flag')}: expected ${expected(spec)}, got ${JSON.stringify(raw)}${nearMiss(spec, raw)}`,
        `--${name}`,
        envName(name, spec),
      );
    }
    // Repeats: the last one wins, so a wrapper script can append an override; a list collects them.
    if (spec.type === 'list') fromFlags.set(name, [...((fromFlags.get(name) as string[]) ?? []), raw]);
    else fromFlags.set(name, v);
  }

  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(schema)) {
    const envVar = envName(name, spec);
    let value: unknown = fromFlags.get(name);
    const rawEnv = envVar === '' ? undefined : env[envVar];
    // Empty counts as unset: manifests and compose files render an unset template value as "".
    if (value === undefined && rawEnv !== undefined && rawEnv !== '') {
      value = convert(spec, rawEnv);
      if (value === undefined) {
        throw new FlagError(
          `${label(name, spec, 'env')}: expected ${expected(spec)}, got ${JSON.stringify(rawEnv)}${nearMiss(spec, rawEnv)}`,
          `--${name}`,
          envVar,
        );
      }
    }
    value ??= spec.type === 'list' ? [] : (spec.default ?? (spec.type === 'bool' ? false : undefined));
    if (value === undefined && spec.type !== 'bool' && spec.type !== 'list' && spec.required) {
      throw new FlagError(`${label(name, spec, 'flag')} is required: ${spec.doc}`, `--${name}`, envVar);
    }
    out[camelCase(name)] = value;
  }
  return out as ServiceFlags<S>;
}

function shownDefault(spec: FlagSpec): string {
  if (spec.type === 'list') return '-';
  if (spec.type !== 'bool' && spec.required && spec.default === undefined) return '(required)';
  const d = spec.default ?? (spec.type === 'bool' ? false : undefined);
  if (d === undefined) return '-';
  if (typeof d === 'string' && (d === '' || /\s/.test(d))) return JSON.stringify(d);
  return String(d);
}

/** `--help` text: the usage line(s), then flag, env var, default and doc of each option in columns. */
export function helpText(schema: FlagSchema, usage: string): string {
  checkSchema(schema);
  const withEnv = Object.entries(schema).some(([name, spec]) => envName(name, spec) !== '');
  const rows: string[][] = [['FLAG', 'ENV', 'DEFAULT', 'DESCRIPTION']];
  for (const [name, spec] of Object.entries(schema)) {
    const flag =
      spec.type === 'bool'
        ? `--${name}, --no-${name}`
        : spec.type === 'enum' && spec.arg === undefined
          ? `--${name} <${spec.choices.join('|')}>`
          : `--${name} ${spec.arg ?? `<${spec.type === 'list' ? 'string' : spec.type}>`}`;
    const doc = spec.type === 'int' || spec.type === 'number' ? withRange(spec) : spec.doc;
    rows.push([
      flag,
      envName(name, spec),
      shownDefault(spec),
      spec.type === 'list' ? `${doc} (repeatable)` : doc,
    ]);
  }
  rows.push(['-h, --help', '', '', 'show this help and exit']);
  const shown = rows.map((r) => (withEnv ? r : [r[0], r[2], r[3]]));
  const n = shown[0].length - 1;
  const widths = [...Array(n).keys()].map((c) => Math.max(...shown.map((r) => r[c].length)));
  const lines = shown.map((r) =>
    `  ${r.map((cell, c) => (c < n ? cell.padEnd(widths[c]) : cell)).join('   ')}`.trimEnd(),
  );
  const head = withEnv ? 'Options (a flag overrides its env var, which overrides the default):' : 'Options:';
  return `${usage.trimEnd()}\n\n${head}\n${lines.join('\n')}\n`;
}

function withRange(spec: IntFlag | NumberFlag): string {
  if (spec.min === undefined && spec.max === undefined) return spec.doc;
  return `${spec.doc} (${expected(spec)})`;
}

/**
 * For a service's main(): parses, and on `--help` prints the help to stdout and exits 0; on a
 * FlagError prints it to stderr and exits 2, the usual code for a usage error.
 */
export function parseServiceFlagsOrExit<const S extends FlagSchema>(
  schema: S,
  usage: string,
  argv: readonly string[] = process.argv.slice(2),
  env: Record<string, string | undefined> = process.env,
): ServiceFlags<S> {
  try {
    return parseServiceFlags(schema, argv, env);
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(helpText(schema, usage));
      process.exit(0);
    }
    if (err instanceof FlagError) {
      process.stderr.write(`error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
