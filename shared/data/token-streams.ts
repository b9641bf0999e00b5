import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CorpusName, type Document, isCorpusName, loadCorpus, splitDocuments } from './corpora.js';
import {
  generateMathDocuments,
  type MathDocument,
  mathKeyTokenIndices,
  mathOptionsFromConfig,
} from './synthetic-math.js';
import type { Tokenizer } from './tokenizer.js';

export interface StreamOptions {
  corpora: string[];
  /** Characters read per corpus (0 = all), held-out side scaled by the held-out fraction. */
  max_chars_per_corpus: number;
  held_out_fraction: number;
  seed: number;
  /**
   * The run config's `data.math` (snake_case keys, `mathOptionsFromConfig`): options of the synthetic
   * math corpus (corpus name `math`); its held-out side uses `split: held_out`.
   */
  math?: Readonly<Record<string, unknown>>;
}

/** A token stream and, per token, whether it is a math answer digit (the generator's key positions). */
export interface TokenStream {
  tokens: Int32Array;
  answers: Uint8Array;
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
): { train: Int32Array; heldOut: Int32Array; trainAnswers: Uint8Array; heldOutAnswers: Uint8Array } {
  const key = JSON.stringify({ ...o, tokenizer: tok.fingerprint, version: 2 });
  const metaPath = join(cacheDir, 'meta.json');
  const files = ['train.bin', 'held_out.bin', 'train-answers.bin', 'held_out-answers.bin'];
  if (
    existsSync(metaPath) &&
    readFileSync(metaPath, 'utf8') === key &&
    files.every((f) => existsSync(join(cacheDir, f)))
  ) {
    return {
      train: readInts(join(cacheDir, 'train.bin')),
      heldOut: readInts(join(cacheDir, 'held_out.bin')),
      trainAnswers: new Uint8Array(readFileSync(join(cacheDir, 'train-answers.bin'))),
      heldOutAnswers: new Uint8Array(readFileSync(join(cacheDir, 'held_out-answers.bin'))),
    };
  }
  const train = new StreamBuilder();
  const heldOut = new StreamBuilder();
  for (const name of o.corpora) {
    const split = corpusSplit(name, o, (piece) => tok.encode(piece).length === 1);
    const budget = o.max_chars_per_corpus;
    const take = (list: readonly Document[], chars: number, into: StreamBuilder) => {
      let used = 0;
      for (const d of list) {
        if (chars > 0 && used >= chars) break;
        if (isMathDocument(d)) {
          // Math documents go in whole: their answer offsets refer to the full text.
          const ids = tok.encode(d.text);
          into.push(ids, mathKeyTokenIndices(d, ids, tok));
          used += d.text.length;
        } else {
          const text = chars > 0 ? d.text.slice(0, chars - used) : d.text;
          used += text.length;
          into.push(tok.encode(text), []);
        }
        into.push([tok.eosId], []);
      }
    };
    take(split.train, budget, train);
    take(split.heldOut, budget > 0 ? Math.ceil(budget * o.held_out_fraction) : 0, heldOut);
    log(`corpus ${name}: ${split.train.length} train / ${split.heldOut.length} held-out documents`);
  }
  mkdirSync(cacheDir, { recursive: true });
  const out = {
    train: Int32Array.from(train.tokens),
    heldOut: Int32Array.from(heldOut.tokens),
    trainAnswers: train.answerMask(),
    heldOutAnswers: heldOut.answerMask(),
  };
  writeFileSync(join(cacheDir, 'train.bin'), out.train);
  writeFileSync(join(cacheDir, 'held_out.bin'), out.heldOut);
  writeFileSync(join(cacheDir, 'train-answers.bin'), out.trainAnswers);
  writeFileSync(join(cacheDir, 'held_out-answers.bin'), out.heldOutAnswers);
  writeFileSync(metaPath, key);
  return out;
}

class StreamBuilder {
  readonly tokens: number[] = [];
  private readonly answers: number[] = [];

  /** Appends ids; `answerIdx` are indices into `ids` of math answer digits. */
  push(ids: readonly number[], answerIdx: readonly number[]): void {
    const base = this.tokens.length;
    for (const id of ids) this.tokens.push(id);
    for (const i of answerIdx) this.answers.push(base + i);
  }

  answerMask(): Uint8Array {
    const m = new Uint8Array(this.tokens.length);
    for (const i of this.answers) m[i] = 1;
    return m;
  }
}

export const isMathDocument = (d: Document): d is MathDocument => Array.isArray((d as MathDocument).problems);

/**
 * Train and held-out documents of one corpus. Prose corpora split by document; the math corpus is
 * generated twice from disjoint problem buckets (the generator's `split`), so no held-out problem is
 * ever trained on.
 */
export function corpusSplit(
  name: string,
  o: StreamOptions,
  isOneToken?: (piece: string) => boolean,
): { train: Document[]; heldOut: Document[] } {
  if (name === 'math') {
    const m = mathOptionsFromConfig(o.math ?? {});
    const docs = m.documents ?? 1000;
    return {
      train: generateMathDocuments({ ...m, isOneToken, split: 'train' }, o.seed),
      heldOut: generateMathDocuments(
        {
          ...m,
          isOneToken,
          split: 'held_out',
          documents: Math.max(1, Math.ceil(docs * o.held_out_fraction)),
        },
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
