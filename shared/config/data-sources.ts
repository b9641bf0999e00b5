import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { RunConfigError } from './merge.js';

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

const SOURCE_DEFAULTS: Omit<SourceSpec, 'path' | 'corpus' | 'format'> = {
  field: 'text',
  id_field: null,
  weight: 1,
};

/** The format a path implies when none is given: by extension, a folder is text. */
function impliedFormat(path: string): SourceFormat | null {
  if (path.endsWith('/')) return 'text';
  const lower = path.toLowerCase();
  if (lower.endsWith('.jsonl')) return 'jsonl';
  if (lower.endsWith('.parquet')) return 'parquet';
  if (lower.endsWith('.txt') || lower.endsWith('.md')) return 'text';
  return null;
}

/** Validates a list of sources from a run config (the list as YAML gave it) and fills defaults. */
export function parseSources(raw: unknown, source: string, field: string): SourceSpec[] {
  if (!Array.isArray(raw)) throw new RunConfigError(source, field, 'expected a list of sources');
  return raw.map((entry, i) => parseSource(entry, source, `${field}[${i}]`));
}

function parseSource(entry: unknown, source: string, field: string): SourceSpec {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
    throw new RunConfigError(source, field, 'expected a mapping such as { path: corpus/train.jsonl }');
  }
  const e = entry as Record<string, unknown>;
  const known = ['path', 'corpus', 'format', 'field', 'id_field', 'weight'];
  for (const key of Object.keys(e)) {
    if (!known.includes(key))
      throw new RunConfigError(source, `${field}.${key}`, `unknown setting (known: ${known.join(', ')})`);
  }
  const str = (key: string): string | null => {
    const v = e[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string' || v.length === 0)
      throw new RunConfigError(source, `${field}.${key}`, 'expected a non-empty string');
    return v;
  };
  const path = str('path');
  const corpus = str('corpus');
  if ((path === null) === (corpus === null)) {
    throw new RunConfigError(
      source,
      field,
      'needs exactly one of path (a file or folder) or corpus (built-in)',
    );
  }
  const format = str('format');
  if (corpus !== null && format !== null) {
    throw new RunConfigError(source, `${field}.format`, 'a built-in corpus has no format');
  }
  let fmt: SourceFormat | null = null;
  if (path !== null) {
    fmt = (format ?? impliedFormat(path)) as SourceFormat | null;
    if (fmt === null) {
      throw new RunConfigError(
        source,
        `${field}.format`,
        `not given and not implied by the path's extension (one of ${SOURCE_FORMATS.join(', ')})`,
      );
    }
    if (!(SOURCE_FORMATS as readonly string[]).includes(fmt)) {
      throw new RunConfigError(
        source,
        `${field}.format`,
        `unknown format "${fmt}" (one of ${SOURCE_FORMATS.join(', ')})`,
      );
    }
  }
  const weight = e.weight ?? SOURCE_DEFAULTS.weight;
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
    throw new RunConfigError(
      source,
      `${field}.weight`,
      `must be a positive number, got ${JSON.stringify(weight)}`,
    );
  }
  return {
    path,
    corpus,
    format: fmt,
    field: str('field') ?? SOURCE_DEFAULTS.field,
    id_field: str('id_field') ?? SOURCE_DEFAULTS.id_field,
    weight,
  };
}

/** A short name of a source for logs and errors. */
export function sourceLabel(s: SourceSpec): string {
  return s.corpus !== null ? `corpus ${s.corpus}` : `${s.format} ${s.path}`;
}

/** The run config's data settings for the user's own corpora (`rmt train` and `rmt pretrain`). */
export interface SourceSettings {
  /**
   * The corpora, mixed by weight; [] = `data.corpora` (the built-in corpora). A document is a JSONL
   * line, a Parquet row or a text file; it is held out when the hash of its identity falls below
   * held_out_fraction.
   */
  sources: SourceSpec[];
  /** When non-empty: the held-out documents are these, whole, and `sources` are all trained on. */
  eval_sources: SourceSpec[];
  /**
   * The folder source paths are relative to and must stay inside; null = the run config file's
   * folder (the working directory for a config that did not come from a file). A relative root is
   * taken from the config file's folder.
   */
  root: string | null;
  /** Largest document (JSONL line, Parquet text, text file) in bytes; a larger one is an error. */
  max_document_bytes: number;
}

/** `rmt train`'s data settings: the sources and the context of a key position. */
export interface DataSettings extends SourceSettings {
  /**
   * Context of a key position: null = the fixed window of `context_len` tokens (positions need a
   * full window inside their document; for tiny models); a number = the document's whole prefix
   * before the position, cut to its last max_context tokens (the paper's setting; every position
   * with at least one token before it in its document is eligible).
   */
  max_context: number | null;
}

export function checkSourceSettings(d: SourceSettings, source: string): void {
  d.sources = parseSources(d.sources, source, 'data.sources');
  d.eval_sources = parseSources(d.eval_sources, source, 'data.eval_sources');
  if (d.sources.length === 0 && d.eval_sources.length > 0) {
    throw new RunConfigError(source, 'data.eval_sources', 'needs data.sources (the training side)');
  }
  if (d.root !== null && (typeof d.root !== 'string' || d.root.length === 0)) {
    throw new RunConfigError(source, 'data.root', 'expected a folder path or null');
  }
  if (!(Number.isInteger(d.max_document_bytes) && d.max_document_bytes > 0)) {
    throw new RunConfigError(
      source,
      'data.max_document_bytes',
      `must be a positive integer, got ${d.max_document_bytes}`,
    );
  }
}

export function checkDataSettings(d: DataSettings, source: string): void {
  checkSourceSettings(d, source);
  if (d.max_context !== null && !(Number.isInteger(d.max_context) && d.max_context > 0)) {
    throw new RunConfigError(
      source,
      'data.max_context',
      `must be null or a positive integer, got ${JSON.stringify(d.max_context)}`,
    );
  }
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
  const data = (raw as { data?: { sources?: unknown; root?: unknown } } | null)?.data;
  if (!data || !Array.isArray(data.sources) || data.sources.length === 0) return text;
  const root = resolve(dirname(resolve(file)), typeof data.root === 'string' ? data.root : '.');
  return JSON.stringify({ ...(raw as object), data: { ...data, root } });
}
