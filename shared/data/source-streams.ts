import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { type SourceFormat, type SourceSpec, sourceLabel } from '../config/data-sources.js';
import { jsonlDocuments } from './jsonl-source.js';
import { parquetDocuments } from './parquet-source.js';
import { type ReadLimits, resolveInside, type SourceDocument, SourceError } from './source-documents.js';
import { readStreamPrefix, StreamFileWriter, type StreamInfo } from './stream-file.js';
import { mathKeyTokenIndices } from './synthetic-math.js';
import { sourceFiles, textDocuments } from './text-source.js';
import { corpusSplit, isMathDocument } from './token-streams.js';
import type { Tokenizer } from './tokenizer.js';

export interface SourceStreamOptions {
  /** Mixed into the train stream; split by document into train and held-out unless eval_sources is set. */
  sources: SourceSpec[];
  /** When non-empty: the held-out stream, whole (and `sources` all train). */
  eval_sources: SourceSpec[];
  /** The folder source paths are relative to and must stay inside. */
  root: string;
  held_out_fraction: number;
  seed: number;
  /**
   * Reading stops once both streams hold at least this many tokens (what a run will score), or when
   * the sources end; null = read every source to its end.
   */
  stop_after: { train: number; held_out: number } | null;
  max_document_bytes: number;
  /** Characters read per built-in prose corpus (0 = all). */
  max_chars_per_corpus: number;
  /** The run config's `data.math` (snake_case keys). */
  math?: Readonly<Record<string, unknown>>;
}

/** The two streams on disk (in the cache folder) and what they hold. */
export interface SourceStreams {
  dir: string;
  train: StreamInfo;
  held_out: StreamInfo;
}

const VERSION = 1;

/**
 * A document goes to the held-out side when the hash of its identity (with the run's seed) falls
 * below the fraction: the split depends on what a document is, not where it sits, so reordering,
 * appending or mixing sources never moves a document between sides, and duplicates share a side.
 */
export function isHeldOut(identity: string, seed: number, fraction: number): boolean {
  const h = createHash('sha256').update(`${seed}\n`).update(identity).digest();
  return h.readUIntBE(0, 6) / 2 ** 48 < fraction;
}

/**
 * Tokenizes the configured sources into a train and a held-out stream (each document's tokens then
 * the end-of-text token), mixing sources by weight: the next document always comes from the source
 * furthest below its share of the tokens so far. Documents are read one at a time and the streams
 * written to `cacheDir` as they grow, so memory stays bounded by the largest document (or Parquet
 * row group), whatever the corpus size. The result is cached, keyed by the sources' files (size and
 * modification time), the options and the tokenizer's fingerprint.
 */
export async function sourceStreams(
  o: SourceStreamOptions,
  tok: Tokenizer,
  cacheDir: string,
  log: (line: string) => void = () => {},
): Promise<SourceStreams> {
  if (o.sources.length === 0) throw new SourceError('data.sources: the list is empty');
  const key = JSON.stringify({
    version: VERSION,
    sources: o.sources.map((s, i) => stamped(s, o.root, `data.sources[${i}]`)),
    eval_sources: o.eval_sources.map((s, i) => stamped(s, o.root, `data.eval_sources[${i}]`)),
    tokenizer: tok.fingerprint,
    seed: o.seed,
    held_out_fraction: o.eval_sources.length > 0 ? null : o.held_out_fraction,
    stop_after: o.stop_after,
    max_document_bytes: o.max_document_bytes,
    max_chars_per_corpus: o.max_chars_per_corpus,
    math: o.math ?? {},
  });
  const metaPath = join(cacheDir, 'meta.json');
  const paths = {
    train: join(cacheDir, 'train.bin'),
    trainAnswers: join(cacheDir, 'train-answers.bin'),
    heldOut: join(cacheDir, 'held_out.bin'),
    heldOutAnswers: join(cacheDir, 'held_out-answers.bin'),
  };
  const cached = readMeta(metaPath);
  if (
    cached?.key === key &&
    fileSize(paths.train) === cached.train.tokens * 4 &&
    fileSize(paths.heldOut) === cached.held_out.tokens * 4
  ) {
    return { dir: cacheDir, train: cached.train, held_out: cached.held_out };
  }
  mkdirSync(cacheDir, { recursive: true });
  const train = new StreamFileWriter(paths.train, paths.trainAnswers);
  const heldOut = new StreamFileWriter(paths.heldOut, paths.heldOutAnswers);
  const limits: ReadLimits = { maxDocumentBytes: o.max_document_bytes };
  const enough = (side: 'train' | 'held_out') =>
    o.stop_after !== null && (side === 'train' ? train : heldOut).length >= o.stop_after[side];
  try {
    if (o.eval_sources.length > 0) {
      await mix(
        o.sources,
        'data.sources',
        'train',
        o,
        tok,
        limits,
        { train, heldOut },
        () => enough('train'),
        log,
      );
      await mix(
        o.eval_sources,
        'data.eval_sources',
        'held_out',
        o,
        tok,
        limits,
        { train, heldOut },
        () => enough('held_out'),
        log,
      );
    } else {
      await mix(
        o.sources,
        'data.sources',
        'split',
        o,
        tok,
        limits,
        { train, heldOut },
        () => enough('train') && enough('held_out'),
        log,
      );
    }
  } catch (e) {
    train.abort();
    heldOut.abort();
    throw e;
  }
  if (train.length === 0 || heldOut.length === 0) {
    train.abort();
    heldOut.abort();
  }
  if (train.length === 0)
    throw new SourceError('data.sources: no training documents (every document was empty)');
  if (heldOut.length === 0) {
    throw new SourceError(
      o.eval_sources.length > 0
        ? 'data.eval_sources: no documents'
        : `data.sources: no document fell in the held-out split (held_out_fraction ${o.held_out_fraction}); add documents, raise data.held_out_fraction or set data.eval_sources`,
    );
  }
  const meta = { key, train: train.finish(), held_out: heldOut.finish() };
  writeFileSync(metaPath, JSON.stringify(meta));
  log(`data: ${meta.train.tokens} train tokens, ${meta.held_out.tokens} held-out tokens`);
  return { dir: cacheDir, train: meta.train, held_out: meta.held_out };
}

/** The first `trainTokens` / `heldOutTokens` tokens of the streams (0 = all) and their answer marks. */
export function readSourceStreams(
  s: SourceStreams,
  trainTokens: number,
  heldOutTokens: number,
): { train: Int32Array; heldOut: Int32Array; trainAnswers: Uint8Array; heldOutAnswers: Uint8Array } {
  const train = readStreamPrefix(join(s.dir, 'train.bin'), join(s.dir, 'train-answers.bin'), trainTokens);
  const held = readStreamPrefix(
    join(s.dir, 'held_out.bin'),
    join(s.dir, 'held_out-answers.bin'),
    heldOutTokens,
  );
  return {
    train: train.tokens,
    heldOut: held.tokens,
    trainAnswers: train.answers,
    heldOutAnswers: held.answers,
  };
}

type Role = 'split' | 'train' | 'held_out';

async function mix(
  specs: SourceSpec[],
  field: string,
  role: Role,
  o: SourceStreamOptions,
  tok: Tokenizer,
  limits: ReadLimits,
  out: { train: StreamFileWriter; heldOut: StreamFileWriter },
  done: () => boolean,
  log: (line: string) => void,
): Promise<void> {
  const active = specs.map((spec, i) => ({
    spec,
    label: `${field}[${i}] (${sourceLabel(spec)})`,
    docs: openSource(spec, `${field}[${i}]`, role, o, limits),
    read: 0,
    tokens: 0,
    sides: { train: 0, held_out: 0 },
  }));
  const all = active.slice();
  try {
    while (active.length > 0 && !done()) {
      let at = 0;
      for (let i = 1; i < active.length; i++) {
        if (active[i].tokens / active[i].spec.weight < active[at].tokens / active[at].spec.weight) at = i;
      }
      const a = active[at];
      const next = await a.docs.next();
      if (next.done) {
        if (a.read === 0) throw new SourceError(`${a.label}: no documents`);
        active.splice(at, 1);
        continue;
      }
      a.read++;
      const doc = next.value;
      if (doc.text.length === 0) continue;
      const side =
        role === 'split'
          ? (doc.side ?? (isHeldOut(doc.identity, o.seed, o.held_out_fraction) ? 'held_out' : 'train'))
          : role;
      const ids = tok.encode(doc.text);
      const w = side === 'train' ? out.train : out.heldOut;
      w.push(ids, doc.answers?.(ids, tok) ?? []);
      w.push([tok.eosId]);
      a.tokens += ids.length + 1;
      a.sides[side]++;
    }
  } finally {
    for (const a of all) await a.docs.return?.(undefined);
  }
  for (const a of all) {
    log(`${a.label}: ${a.sides.train} train / ${a.sides.held_out} held-out documents, ${a.tokens} tokens`);
  }
}

function openSource(
  spec: SourceSpec,
  field: string,
  role: Role,
  o: SourceStreamOptions,
  limits: ReadLimits,
): AsyncGenerator<SourceDocument> {
  if (spec.corpus !== null) return builtinDocuments(spec.corpus, role, o);
  const path = resolveInside(o.root, spec.path as string, `${field}.path`);
  switch (spec.format) {
    case 'jsonl':
      return eachFile(sourceFiles(path, o.root, EXTENSIONS.jsonl), (f) =>
        jsonlDocuments(f, spec.field, spec.id_field, limits),
      );
    case 'parquet':
      return eachFile(sourceFiles(path, o.root, EXTENSIONS.parquet), (f) =>
        parquetDocuments(f, spec.field, spec.id_field, limits),
      );
    case 'text':
      return textDocuments(path, o.root, limits);
    default:
      throw new SourceError(`${field}.format: unknown format "${spec.format}"`);
  }
}

/**
 * A built-in corpus keeps its own split (the prose corpora's seeded split by document, the math
 * corpus's disjoint problem buckets); prose is cut at max_chars_per_corpus as in data.corpora.
 */
async function* builtinDocuments(
  name: string,
  role: Role,
  o: SourceStreamOptions,
): AsyncGenerator<SourceDocument> {
  const split = corpusSplit(name, {
    corpora: [name],
    max_chars_per_corpus: o.max_chars_per_corpus,
    held_out_fraction: o.held_out_fraction,
    seed: o.seed,
    math: o.math,
  });
  const sides: ['train' | 'held_out', typeof split.train][] = [];
  if (role !== 'held_out') sides.push(['train', split.train]);
  if (role !== 'train') sides.push(['held_out', split.heldOut]);
  for (const [side, docs] of sides) {
    const budget =
      o.max_chars_per_corpus > 0
        ? Math.ceil(o.max_chars_per_corpus * (side === 'train' ? 1 : o.held_out_fraction))
        : 0;
    let used = 0;
    for (const d of docs) {
      if (budget > 0 && used >= budget) break;
      if (isMathDocument(d)) {
        used += d.text.length;
        yield { identity: d.id, text: d.text, side, answers: (ids, tok) => mathKeyTokenIndices(d, ids, tok) };
      } else {
        const text = budget > 0 ? d.text.slice(0, budget - used) : d.text;
        used += text.length;
        yield { identity: d.id, text, side };
      }
    }
  }
}

/** A source with what identifies its content on disk, for the cache key. */
function stamped(spec: SourceSpec, root: string, field: string): unknown {
  if (spec.path === null) return spec;
  const path = resolveInside(root, spec.path, `${field}.path`);
  const stamp = (f: string) => {
    const st = statSync(f);
    return `${relative(root, f)}:${st.size}:${st.mtimeMs}`;
  };
  const files = sourceFiles(path, root, EXTENSIONS[spec.format as SourceFormat]);
  const h = createHash('sha256');
  for (const f of files) h.update(`${stamp(f)}\n`);
  return { ...spec, files: h.digest('hex') };
}

function readMeta(path: string): { key: string; train: StreamInfo; held_out: StreamInfo } | null {
  if (!existsSync(path)) return null;
  try {
    const m = JSON.parse(readFileSync(path, 'utf8'));
    return typeof m?.key === 'string' && m.train && m.held_out ? m : null;
  } catch {
    return null;
  }
}

function fileSize(path: string): number {
  return existsSync(path) ? statSync(path).size : -1;
}

/** What a folder source reads, by format: a folder of shards is read file by file, in path order. */
const EXTENSIONS: Record<SourceFormat, readonly string[]> = {
  jsonl: ['.jsonl'],
  parquet: ['.parquet'],
  text: ['.txt', '.md'],
};

async function* eachFile(
  files: string[],
  read: (file: string) => AsyncGenerator<SourceDocument>,
): AsyncGenerator<SourceDocument> {
  for (const f of files) yield* read(f);
}
