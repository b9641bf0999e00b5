import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CorpusName, type Document, isCorpusName, loadCorpus, splitDocuments } from './corpora.js';
import { generateMathDocuments, MATH_CORPUS_DEFAULTS, type MathCorpusOptions } from './synthetic-math.js';
import type { Tokenizer } from './tokenizer.js';

export interface StreamOptions {
  corpora: string[];
  /** Characters read per corpus (0 = all), held-out side scaled by the held-out fraction. */
  max_chars_per_corpus: number;
  held_out_fraction: number;
  seed: number;
  /** Options of the synthetic math corpus (corpus name `math`); its held-out side uses `split: held_out`. */
  math?: MathCorpusOptions;
}

/**
 * The corpora as two token streams, train and held-out: documents split by a seeded shuffle, each
 * document's tokens followed by the end-of-text token. Tokenising is the slow part, so the streams
 * are cached in `cacheDir`, keyed by the options and the tokenizer's fingerprint.
 */
export function tokenStreams(
  o: StreamOptions,
  tok: Tokenizer,
  cacheDir: string,
  log: (line: string) => void = () => {},
): { train: Int32Array; heldOut: Int32Array } {
  const key = JSON.stringify({ ...o, tokenizer: tok.fingerprint });
  const metaPath = join(cacheDir, 'meta.json');
  if (existsSync(metaPath) && readFileSync(metaPath, 'utf8') === key) {
    return {
      train: readInts(join(cacheDir, 'train.bin')),
      heldOut: readInts(join(cacheDir, 'held_out.bin')),
    };
  }
  const train: number[] = [];
  const heldOut: number[] = [];
  for (const name of o.corpora) {
    const split = corpusSplit(name, o);
    const budget = o.max_chars_per_corpus;
    const take = (list: readonly Document[], chars: number, into: number[]) => {
      let used = 0;
      for (const d of list) {
        if (chars > 0 && used >= chars) break;
        const text = chars > 0 ? d.text.slice(0, chars - used) : d.text;
        used += text.length;
        for (const id of tok.encode(text)) into.push(id);
        into.push(tok.eosId);
      }
    };
    take(split.train, budget, train);
    take(split.heldOut, budget > 0 ? Math.ceil(budget * o.held_out_fraction) : 0, heldOut);
    log(`corpus ${name}: ${split.train.length} train / ${split.heldOut.length} held-out documents`);
  }
  mkdirSync(cacheDir, { recursive: true });
  const trainArr = Int32Array.from(train);
  const heldArr = Int32Array.from(heldOut);
  writeFileSync(join(cacheDir, 'train.bin'), trainArr);
  writeFileSync(join(cacheDir, 'held_out.bin'), heldArr);
  writeFileSync(metaPath, key);
  return { train: trainArr, heldOut: heldArr };
}

/**
 * Train and held-out documents of one corpus. Prose corpora split by document; the math corpus is
 * generated twice from disjoint problem buckets (the generator's `split`), so no held-out problem is
 * ever trained on.
 */
function corpusSplit(name: string, o: StreamOptions): { train: Document[]; heldOut: Document[] } {
  if (name === 'math') {
    const m = o.math ?? {};
    for (const key of Object.keys(m)) {
      if (!(key in MATH_CORPUS_DEFAULTS))
        throw new Error(
          `data.math.${key}: unknown setting (known: ${Object.keys(MATH_CORPUS_DEFAULTS).join(', ')})`,
        );
    }
    const docs = m.documents ?? 1000;
    return {
      train: generateMathDocuments({ ...m, split: 'train' }, o.seed),
      heldOut: generateMathDocuments(
        { ...m, split: 'held_out', documents: Math.max(1, Math.ceil(docs * o.held_out_fraction)) },
        o.seed + 1,
      ),
    };
  }
  if (!isCorpusName(name))
    throw new Error(`data.corpora: unknown corpus "${name}" (math, or one of the prose corpora)`);
  return splitDocuments(loadCorpus(name as CorpusName), o.held_out_fraction, o.seed);
}

export function readInts(path: string): Int32Array {
  const b = readFileSync(path);
  return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice();
}
