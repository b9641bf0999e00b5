/**
 * Peak memory of tokenizing a corpus larger than the streams it is cut into: writes a JSONL file of
 * `--mb` megabytes (varied prose-like rows of about 2 KB) and tokenizes it with data.sources' reader
 * into on-disk streams, then prints the file size, tokens, seconds and the process's peak RSS.
 *
 *   node --import tsx bench/tokenize-memory.ts --mb 1024 [--dir /tmp/rmt-tokenize] [--tokenizer <dir>]
 */
import { createWriteStream, mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseSources } from '../shared/config/data-sources.js';
import { writeGpt2Tokenizer } from '../shared/data/gpt2-bpe.js';
import { sourceStreams } from '../shared/data/source-streams.js';
import { loadTokenizer } from '../shared/data/tokenizer.js';
import { Rng } from '../shared/util/rng.js';

const { values } = parseArgs({
  options: { mb: { type: 'string', default: '64' }, dir: { type: 'string' }, tokenizer: { type: 'string' } },
});
const mb = Number(values.mb);
if (!(Number.isFinite(mb) && mb > 0)) throw new Error(`--mb must be a positive number, got ${values.mb}`);
const dir = resolve(values.dir ?? `/tmp/rmt-tokenize-${mb}mb`);
mkdirSync(dir, { recursive: true });

const WORDS = (
  'the of and to in is was that for on as with by at from his her an which were are this be had not ' +
  'whale sea ship captain number sum equals seven three forty answer because therefore water wind ' +
  'Ahab Ishmael harpoon deck voyage compute total half double prime digit 0 1 2 3 4 5 6 7 8 9 ' +
  'été naïve Straße 数学 こんにちは 🙂'
).split(' ');

async function writeCorpus(path: string, bytes: number): Promise<void> {
  try {
    if (statSync(path).size >= bytes) return;
  } catch {}
  const out = createWriteStream(path);
  const rng = new Rng(1);
  let written = 0;
  let row = 0;
  while (written < bytes) {
    const words: string[] = [];
    for (let i = 0; i < 350; i++) words.push(WORDS[rng.int(WORDS.length)]);
    const line = `${JSON.stringify({ id: `row-${row++}`, text: words.join(' ') })}\n`;
    written += Buffer.byteLength(line);
    if (!out.write(line)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r) => out.end(() => r()));
}

const corpus = join(dir, 'corpus.jsonl');
await writeCorpus(corpus, mb * 1024 * 1024);
const tokDir = values.tokenizer ?? join(dir, 'tok');
if (!values.tokenizer) writeGpt2Tokenizer(tokDir, { merges: 2000 });
const tok = await loadTokenizer(tokDir);
const t0 = performance.now();
const s = await sourceStreams(
  {
    sources: parseSources([{ path: 'corpus.jsonl', id_field: 'id' }], 'bench', 'data.sources'),
    eval_sources: [],
    root: dir,
    held_out_fraction: 0.05,
    seed: 1,
    stop_after: null,
    max_document_bytes: 64 * 1024 * 1024,
    max_chars_per_corpus: 0,
  },
  tok,
  join(dir, `streams-${Date.now()}`),
);
const seconds = (performance.now() - t0) / 1000;
const result = {
  corpus_bytes: statSync(corpus).size,
  train_tokens: s.train.tokens,
  held_out_tokens: s.held_out.tokens,
  seconds: Number(seconds.toFixed(1)),
  mb_per_s: Number((statSync(corpus).size / 1048576 / seconds).toFixed(2)),
  peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
};
process.stdout.write(`${JSON.stringify(result)}\n`);
