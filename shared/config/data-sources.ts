import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { PretrainConfig } from './pretrain-config.js';
import {
  echo,
  int,
  list,
  listOf,
  mapping,
  nullable,
  number,
  type RuleContext,
  string,
} from './schema/field.js';
import { configError } from './schema/issues.js';
import type { TrainConfig } from './train-config.js';

/** The formats a user's corpus can come in; a built-in corpus is named by `corpus:` instead. */
export const SOURCE_FORMATS = ['jsonl', 'text', 'parquet'] as const;
export type SourceFormat = (typeof SOURCE_FORMATS)[number];

/**
 * One entry of `data.sources` / `data.eval_sources`, defaults filled in. Either `path` (a file or
 * folder under the data root, read as `format`) or `corpus` (a built-in corpus: math, sotu,
 * moby-dick, brown).
 */
export interface SourceSpec {
  path: string | null;
  corpus: string | null;
  format: SourceFormat | null;
  /** The text field of a JSONL row or Parquet column. */
  field: string;
  /** A field that names the document for the held-out split; null = the document's text. */
  id_field: string | null;
  /** Share of the mixed stream's tokens while every source still has documents. */
  weight: number;
}

/** The format a path implies when none is given: by extension, a folder is text. */
function impliedFormat(path: string): SourceFormat | null {
  if (path.endsWith('/')) return 'text';
  const lower = path.toLowerCase();
  if (lower.endsWith('.jsonl')) return 'jsonl';
  if (lower.endsWith('.parquet')) return 'parquet';
  if (lower.endsWith('.txt') || lower.endsWith('.md')) return 'text';
  return null;
}

const text = string({ nonEmpty: true }).nullish();

/** One source as a run config gives it; the parsed value is a SourceSpec with its defaults. */
export const sourceSchema = mapping({
  path: text.meta({ description: 'a file or folder under data.root' }),
  corpus: text.meta({ description: 'a built-in corpus: math, sotu, moby-dick or brown' }),
  format: text.meta({
    description: `${SOURCE_FORMATS.join(' | ')}; default: implied by the path's extension (a folder is text)`,
  }),
  field: text.meta({ description: 'the text field of a JSONL row or Parquet column (default text)' }),
  id_field: text.meta({
    description: 'a field naming the document for the held-out split (default: its text)',
  }),
  weight: z
    .number({ error: (iss) => `must be a positive number, got ${echo(iss.input)}` })
    .gt(0, { error: (iss) => `must be a positive number, got ${echo(iss.input)}` })
    .optional()
    .meta({ description: "share of the mixed stream's tokens (default 1)" }),
}).transform((e, ctx): SourceSpec => {
  const path = e.path ?? null;
  const corpus = e.corpus ?? null;
  const format = e.format ?? null;
  const fail = (where: string[], message: string) => {
    ctx.addIssue({ code: 'custom', path: where, message });
    return z.NEVER;
  };
  if ((path === null) === (corpus === null))
    return fail([], 'needs exactly one of path (a file or folder) or corpus (built-in)');
  if (corpus !== null && format !== null) return fail(['format'], 'a built-in corpus has no format');
  let fmt: SourceFormat | null = null;
  if (path !== null) {
    const f = format ?? impliedFormat(path);
    if (f === null) {
      return fail(
        ['format'],
        `not given and not implied by the path's extension (one of ${SOURCE_FORMATS.join(', ')})`,
      );
    }
    if (!(SOURCE_FORMATS as readonly string[]).includes(f))
      return fail(['format'], `unknown format "${f}" (one of ${SOURCE_FORMATS.join(', ')})`);
    fmt = f as SourceFormat;
  }
  return {
    path,
    corpus,
    format: fmt,
    field: e.field ?? 'text',
    id_field: e.id_field ?? null,
    weight: e.weight ?? 1,
  };
});

const sourceList = list(sourceSchema);

/** Validates a list of sources from a run config (the list as YAML gave it) and fills defaults. */
export function parseSources(raw: unknown, source: string, field: string): SourceSpec[] {
  const r = sourceList.safeParse(raw);
  if (!r.success) throw configError(source, r.error, field);
  return r.data;
}

/** A short name of a source for logs and errors. */
export function sourceLabel(s: SourceSpec): string {
  return s.corpus !== null ? `corpus ${s.corpus}` : `${s.format} ${s.path}`;
}

/** The run config's data settings for the user's own corpora (`rmt train` and `rmt pretrain`). */
export const SOURCE_SETTINGS = {
  sources: listOf(sourceSchema, [], {
    description:
      'your corpora, mixed by weight: `{ path, format: jsonl | parquet | text, field, id_field, weight }` or `{ corpus: math | sotu | moby-dick | brown }`; `[]` = `data.corpora` (`docs/own-model.md`). A document is a JSONL line, a Parquet row or a text file; it is held out when the hash of its identity falls below held_out_fraction',
  }),
  eval_sources: listOf(sourceSchema, [], {
    description:
      'when set, the held-out documents are these, whole, and every `data.sources` document is trained on',
    rule: 'needs data.sources',
  }),
  root: nullable(string({ nonEmpty: true }), {
    description:
      "the folder source paths are relative to and must stay inside; null = the config file's folder (the working directory for a config from no file); a relative root is taken from the config file's folder",
  }),
  max_document_bytes: int(
    64 * 1024 * 1024,
    { min: 1 },
    {
      description:
        'largest document (JSONL line, Parquet value, text file) in bytes; a larger one is an error naming it',
    },
  ),
};

/** eval_sources are the held-out side of `sources`: alone they leave nothing to train on. */
export function checkEvalSources(d: { sources: unknown[]; eval_sources: unknown[] }, ctx: RuleContext): void {
  if (d.sources.length === 0 && d.eval_sources.length > 0)
    ctx.addIssue({
      code: 'custom',
      path: ['eval_sources'],
      message: 'needs data.sources (the training side)',
    });
}

/** The source settings as the schema gives them (SOURCE_SETTINGS above). */
export type SourceSettings = Pick<PretrainConfig['data'], keyof typeof SOURCE_SETTINGS>;

/** `rmt train`'s data settings: the sources and the context of a key position. */
export type DataSettings = SourceSettings & Pick<TrainConfig['data'], 'max_context'>;

/** `rmt train`'s context of a key position. */
export const MAX_CONTEXT = nullable(number({ int: true, min: 1 }), {
  description:
    "null: the fixed window of `data.context_len` tokens (positions need a full window inside their document; for tiny models); a number: the document's whole prefix before a key position, cut to its last N tokens (the paper's setting; every position with a token before it is eligible)",
});

const dataSettingsSchema = mapping({ ...SOURCE_SETTINGS, max_context: MAX_CONTEXT }).superRefine(
  checkEvalSources,
);

/** Checks (and fills in) the data settings of an RL config already resolved elsewhere. */
export function checkDataSettings(d: DataSettings, source: string): void {
  const r = dataSettingsSchema.safeParse(pick(d, [...Object.keys(SOURCE_SETTINGS), 'max_context']));
  if (!r.success) throw configError(source, r.error, 'data');
  Object.assign(d, r.data);
}

function pick(o: object, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, (o as Record<string, unknown>)[k]]));
}

/** A config read from `file`: its data root made absolute (default: the file's folder). */
export function resolveDataRoot<T extends { data: SourceSettings }>(c: T, file: string): T {
  c.data.root = resolve(dirname(resolve(file)), c.data.root ?? '.');
  return c;
}

/** The data root of a parsed config (the working directory when it came from no file). */
export function dataRoot(d: SourceSettings): string {
  return resolve(d.root ?? '.');
}

/**
 * A run config file's text for a coordinator that parses it elsewhere (`rmt up`): when it reads
 * data.sources, its data root is made absolute first, so the sources resolve as `rmt train` resolves
 * them, whatever the coordinator's working directory.
 */
export function configTextForCoordinator(file: string): string {
  const text = readFileSync(file, 'utf8');
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch {
    return text; // the coordinator reports the parse error with its field
  }
  const sent = withAbsoluteRoot(raw, file);
  return sent === raw ? text : JSON.stringify(sent);
}

/** A parsed config whose data.sources are read relative to `file`'s folder, with that root made absolute. */
export function withAbsoluteRoot(raw: unknown, file: string): unknown {
  const data = (raw as { data?: { sources?: unknown; root?: unknown } } | null)?.data;
  if (!data || !Array.isArray(data.sources) || data.sources.length === 0) return raw;
  const root = resolve(dirname(resolve(file)), typeof data.root === 'string' ? data.root : '.');
  return { ...(raw as object), data: { ...data, root } };
}
