import { realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import type { Tokenizer } from './tokenizer.js';

/** One document of a user's source: a JSONL row, a Parquet row or a text file. */
export interface SourceDocument {
  /** What the held-out split hashes: the id field's value, or the text itself. */
  identity: string;
  text: string;
  /** Set by sources whose split is fixed (the synthetic math corpus's disjoint buckets). */
  side?: 'train' | 'held_out';
  /** Indices into the document's token ids of math answer digits (the built-in math corpus only). */
  answers?: (ids: readonly number[], tok: Pick<Tokenizer, 'tokenBytes'>) => number[];
}

/** Bad input in a source: the message names the file, the line or row, and the field. */
export class SourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SourceError';
  }
}

/** Limits every reader applies. */
export interface ReadLimits {
  /** Largest document (a line, a row's text, a file) in bytes. */
  maxDocumentBytes: number;
}

/**
 * `path` resolved against `root`, refused when it leaves the root, lexically or through a symbolic
 * link (the data root is the only folder a run config may read corpora from).
 */
export function resolveInside(root: string, path: string, field: string): string {
  const absRoot = resolve(root);
  const abs = resolve(absRoot, path);
  if (!within(absRoot, abs))
    throw new SourceError(`${field}: path "${path}" leaves the data root ${absRoot}`);
  let real: string;
  try {
    real = realpathSync(abs);
  } catch {
    throw new SourceError(`${field}: ${abs}: file not found`);
  }
  if (!within(realpathSync(absRoot), real)) {
    throw new SourceError(`${field}: path "${path}" leads outside the data root ${absRoot} through a link`);
  }
  return abs;
}

export function within(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 text of `bytes`, or null when they are not valid UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return fatalUtf8.decode(bytes);
  } catch {
    return null;
  }
}

/** What a value is, for an error that must not echo it. */
export function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Uint8Array) return 'binary';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/**
 * The text and identity of one row (a parsed JSONL line or a Parquet row), checked: `where` is
 * "file:line N" or "file: row N".
 */
export function rowDocument(
  row: Record<string, unknown>,
  field: string,
  idField: string | null,
  where: string,
  limits: ReadLimits,
): SourceDocument {
  const text = row[field];
  if (text === undefined || text === null) throw new SourceError(`${where}: field "${field}" is missing`);
  if (text instanceof InvalidUtf8) throw new SourceError(`${where}: field "${field}" is not valid UTF-8`);
  if (typeof text !== 'string')
    throw new SourceError(`${where}: field "${field}" is ${kindOf(text)}, expected a string`);
  if (Buffer.byteLength(text) > limits.maxDocumentBytes) {
    throw new SourceError(
      `${where}: field "${field}" is longer than data.max_document_bytes (${limits.maxDocumentBytes})`,
    );
  }
  let identity = text;
  if (idField !== null) {
    const id = row[idField];
    if (id instanceof InvalidUtf8) throw new SourceError(`${where}: field "${idField}" is not valid UTF-8`);
    if (typeof id === 'string') identity = id;
    else if (typeof id === 'number' && Number.isFinite(id)) identity = String(id);
    else if (typeof id === 'bigint') identity = id.toString();
    else if (id === undefined || id === null)
      throw new SourceError(`${where}: field "${idField}" is missing`);
    else throw new SourceError(`${where}: field "${idField}" is ${kindOf(id)}, expected a string or number`);
  }
  return { identity, text };
}

/** A Parquet string that was not valid UTF-8: kept as a marker so the row's error can name it. */
export class InvalidUtf8 {}
