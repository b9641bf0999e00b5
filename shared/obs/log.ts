// Structured logging for the service processes. Deliberately dependency-free: one JSON object per line
// on stderr is what container runtimes and log shippers collect, and stdout stays free for data a
// CLI may print.

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = 'json' | 'text';
export type LogFields = Record<string, unknown>;

export interface LoggerOptions {
  service: string;
  /** Threshold; default from `RMT_LOG_LEVEL`, else `info`. */
  level?: LogLevel;
  /** Default from `RMT_LOG_FORMAT`, else `json`. */
  format?: LogFormat;
  /** Fields on every line of this logger and its children. */
  fields?: LogFields;
  /** Receives each finished line, without its newline; default: stderr. */
  write?: (line: string) => void;
  /** Source of `RMT_LOG_LEVEL` / `RMT_LOG_FORMAT`; default `process.env`. */
  env?: Record<string, string | undefined>;
  now?: () => Date;
}

export interface Logger {
  readonly service: string;
  readonly level: LogLevel;
  readonly format: LogFormat;
  debug(msg: string, fields?: LogFields | Error): void;
  info(msg: string, fields?: LogFields | Error): void;
  warn(msg: string, fields?: LogFields | Error): void;
  error(msg: string, fields?: LogFields | Error): void;
  /** True when `level` would be written; guards fields that are expensive to compute. */
  enabled(level: LogLevel): boolean;
  child(fields: LogFields): Logger;
}

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  code?: unknown;
  cause?: unknown;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
// A field may not silently replace the envelope that log queries rely on; it is kept under `_<key>`.
const RESERVED = new Set(['ts', 'level', 'service', 'msg']);

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

export function serializeError(err: Error, depth = 0): SerializedError {
  const out: SerializedError = { name: err.name, message: err.message };
  if (err.stack) out.stack = err.stack;
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  // Bounded because cause chains can be cyclic.
  if (err.cause !== undefined && depth < 5) {
    out.cause = err.cause instanceof Error ? serializeError(err.cause, depth + 1) : err.cause;
  }
  return out;
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return serializeError(value);
  if (typeof value === 'bigint') return value.toString();
  return value;
}

// A log call must never throw because of what it was given (a cyclic object, a throwing getter).
function toJson(obj: unknown): string {
  try {
    return JSON.stringify(obj, replacer);
  } catch {
    const ancestors: object[] = [];
    return JSON.stringify(obj, function (this: unknown, key, value) {
      const v = replacer(key, value);
      if (typeof v !== 'object' || v === null) return v;
      while (ancestors.length > 0 && ancestors[ancestors.length - 1] !== this) ancestors.pop();
      if (ancestors.includes(v)) return '[Circular]';
      ancestors.push(v);
      return v;
    });
  }
}

function textValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(`${v.name}: ${v.message}`);
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v === undefined) return 'undefined';
  return toJson(v);
}

function resolveLevel(opt: LogLevel | undefined, env: Record<string, string | undefined>): LogLevel {
  if (opt !== undefined) return opt;
  const raw = env.RMT_LOG_LEVEL?.trim().toLowerCase();
  if (!raw) return 'info';
  // Fail loudly: a typo here would otherwise hide the debug output someone just asked for.
  if (!isLogLevel(raw)) throw new Error(`RMT_LOG_LEVEL=${raw}: expected one of ${LOG_LEVELS.join(', ')}`);
  return raw;
}

function resolveFormat(opt: LogFormat | undefined, env: Record<string, string | undefined>): LogFormat {
  if (opt !== undefined) return opt;
  const raw = env.RMT_LOG_FORMAT?.trim().toLowerCase();
  if (!raw) return 'json';
  if (raw !== 'json' && raw !== 'text') throw new Error(`RMT_LOG_FORMAT=${raw}: expected json or text`);
  return raw;
}

interface Core {
  service: string;
  level: LogLevel;
  format: LogFormat;
  write: (line: string) => void;
  now: () => Date;
}

class StructuredLogger implements Logger {
  constructor(
    private readonly core: Core,
    private readonly bound: LogFields,
  ) {}

  get service() {
    return this.core.service;
  }
  get level() {
    return this.core.level;
  }
  get format() {
    return this.core.format;
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.core.level];
  }

  child(fields: LogFields): Logger {
    return new StructuredLogger(this.core, { ...this.bound, ...fields });
  }

  debug(msg: string, fields?: LogFields | Error) {
    this.emit('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields | Error) {
    this.emit('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields | Error) {
    this.emit('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields | Error) {
    this.emit('error', msg, fields);
  }

  private emit(level: LogLevel, msg: string, fields: LogFields | Error | undefined) {
    if (!this.enabled(level)) return;
    const extra = fields instanceof Error ? { err: fields } : fields;
    const merged: LogFields = { ...this.bound, ...extra };
    const ts = this.core.now().toISOString();
    const line =
      this.core.format === 'json' ? this.json(ts, level, msg, merged) : this.text(ts, level, msg, merged);
    this.core.write(line);
  }

  private json(ts: string, level: LogLevel, msg: string, fields: LogFields): string {
    const rec: LogFields = { ts, level, service: this.core.service, msg };
    for (const [k, v] of Object.entries(fields)) rec[RESERVED.has(k) ? `_${k}` : k] = v;
    return toJson(rec);
  }

  private text(ts: string, level: LogLevel, msg: string, fields: LogFields): string {
    let line = `${ts} ${level.toUpperCase().padEnd(5)} [${this.core.service}] ${msg}`;
    const stacks: string[] = [];
    for (const [k, v] of Object.entries(fields)) {
      line += ` ${k}=${textValue(v)}`;
      if (v instanceof Error && v.stack) stacks.push(v.stack);
    }
    // The event stays one line; a stack is the one thing worth breaking that for on a terminal,
    // and it is indented so the next event is still easy to spot.
    for (const s of stacks) line += `\n${s.replace(/^/gm, '    ')}`;
    return line;
  }
}

export function createLogger(opts: LoggerOptions): Logger {
  const env = opts.env ?? process.env;
  const core: Core = {
    service: opts.service,
    level: resolveLevel(opts.level, env),
    format: resolveFormat(opts.format, env),
    // stderr writes are synchronous for files and pipes on Linux, so lines logged right before
    // process.exit() are not lost.
    write: opts.write ?? ((line) => process.stderr.write(`${line}\n`)),
    now: opts.now ?? (() => new Date()),
  };
  return new StructuredLogger(core, { ...opts.fields });
}
