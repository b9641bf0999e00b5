/**
 * Small tokenizer folders in the layouts Hugging Face models ship, built by the tests (nothing is
 * downloaded): the pipeline of each family (normalizer, pre-tokenizer, model flags, decoder, added
 * tokens, tokenizer_config.json) is the one transformers' converters write; the vocabulary and
 * merges are learned here by a plain BPE trainer from a short multilingual text.
 *
 *  - `qwen`:    byte-level BPE, NFC, Qwen2/3's split regex (one digit a piece), ChatML added tokens,
 *               `<think>`/`</think>` as non-special added tokens, a chat template.
 *  - `llama3`:  byte-level BPE, Llama 3's split regex (digits in groups of up to three), a
 *               TemplateProcessing post-processor that adds `<|begin_of_text|>`.
 *  - `llama2`:  SentencePiece BPE with byte fallback, legacy layout: Prepend + Replace normalizer,
 *               no pre-tokenizer, decoder Replace / ByteFallback / Fuse / Strip.
 *  - `mistral`: SentencePiece BPE with byte fallback, current layout: no normalizer, a Metaspace
 *               pre-tokenizer that prepends `▁` to the first piece only, the same decoder.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { byteToUnicodeTable } from '../../shared/data/gpt2-bpe.js';

export type HfFamily = 'qwen' | 'llama3' | 'llama2' | 'mistral';

export const TRAINING_TEXT = [
  'The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs on and on.',
  'Then there is the other thing: these three theories, they say, are the best there is.',
  "It's a number: 12345 and 2024-01-02, 3.14159 or 42, 123 and 123 and 1234. Don't stop, we'll see, I'm here.",
  'Über naïve café résumé — déjà vu. Ελληνικά κείμενα εδώ. Привет, как дела? Привет мир.',
  '东京是日本的首都。我们在东京。日本的东京很大。 こんにちは世界、こんにちは。',
  '    indented code\n\tand tabs\n\n\nand blank lines   with   runs of spaces.',
].join('\n');

/** Learns `count` merges over `words` (each a list of symbols), most frequent pair first, ties by first seen. */
function learnMerges(words: string[][], count: number): [string, string][] {
  const merges: [string, string][] = [];
  let seqs = words.map((w) => [...w]);
  for (let m = 0; m < count; m++) {
    const counts = new Map<string, number>();
    for (const s of seqs) {
      for (let i = 0; i + 1 < s.length; i++) {
        const key = JSON.stringify([s[i], s[i + 1]]);
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    let best: string | null = null;
    let bestCount = 1;
    for (const [k, c] of counts) {
      if (c > bestCount) {
        best = k;
        bestCount = c;
      }
    }
    if (best === null) break;
    const [a, b] = JSON.parse(best) as [string, string];
    merges.push([a, b]);
    seqs = seqs.map((s) => {
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(s[i]);
      }
      return out;
    });
  }
  return merges;
}

function addedToken(id: number, content: string, special: boolean) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special };
}

/** JS-compatible stand-ins for the split regexes, used only to cut the training text into words. */
const TRAINING_SPLIT = {
  qwen: /'(?:s|t|re|ve|m|ll|d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu,
  llama3:
    /'(?:s|t|re|ve|m|ll|d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu,
};

// Qwen2's and Llama 3's pre-tokenizer patterns as their tokenizer.json files hold them (Oniguruma syntax).
export const QWEN_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
export const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * A chat template in the style of Qwen3's (written for these tests): a system turn when given, the
 * reasoning of earlier assistant turns dropped, and `enable_thinking=false` closing an empty think
 * block in the generation prompt. It uses the Jinja features such templates rely on: namespace,
 * loop variables, string methods, filters and tests.
 */
export const QWEN_CHAT_TEMPLATE = [
  '{%- set ns = namespace(last_user=-1) %}',
  '{%- for m in messages %}{%- if m.role == "user" %}{%- set ns.last_user = loop.index0 %}{%- endif %}{%- endfor %}',
  '{%- for message in messages %}',
  '{%- set content = message.content if message.content is string else "" %}',
  '{%- if message.role == "assistant" and "</think>" in content %}',
  '{%- set content = content.split("</think>")[-1].lstrip("\\n") %}',
  '{%- endif %}',
  "{{- '<|im_start|>' + message.role + '\\n' + content | trim + '<|im_end|>\\n' }}",
  '{%- endfor %}',
  '{%- if add_generation_prompt %}',
  "{{- '<|im_start|>assistant\\n' }}",
  "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}",
  '{%- endif %}',
].join('\n');

export interface BuiltTokenizer {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfigJson: Record<string, unknown>;
  generationConfigJson?: Record<string, unknown>;
}

function byteLevel(family: 'qwen' | 'llama3', merges: number, withThink: boolean): BuiltTokenizer {
  const table = byteToUnicodeTable();
  const enc = new TextEncoder();
  const words = [...TRAINING_TEXT.normalize('NFC').matchAll(TRAINING_SPLIT[family])].map((m) =>
    [...enc.encode(m[0])].map((b) => table[b]),
  );
  const learned = learnMerges(words, merges);
  const vocab = new Map<string, number>();
  for (const ch of table) vocab.set(ch, vocab.size);
  for (const [a, b] of learned) if (!vocab.has(a + b)) vocab.set(a + b, vocab.size);
  const n = vocab.size;
  const specials =
    family === 'qwen'
      ? [
          addedToken(n, '<|endoftext|>', true),
          addedToken(n + 1, '<|im_start|>', true),
          addedToken(n + 2, '<|im_end|>', true),
        ]
      : [
          addedToken(n, '<|begin_of_text|>', true),
          addedToken(n + 1, '<|end_of_text|>', true),
          addedToken(n + 2, '<|eot_id|>', true),
        ];
  // Qwen3 marks its reasoning tags as added but not special (they survive skip_special_tokens).
  if (withThink) specials.push(addedToken(n + 3, '<think>', false), addedToken(n + 4, '</think>', false));
  const split = {
    type: 'Split',
    pattern: { Regex: family === 'qwen' ? QWEN_SPLIT : LLAMA3_SPLIT },
    behavior: 'Isolated',
    invert: false,
  };
  const tokenizerJson: Record<string, unknown> = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials,
    normalizer: family === 'qwen' ? { type: 'NFC' } : null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        split,
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor:
      family === 'qwen'
        ? { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }
        : {
            type: 'TemplateProcessing',
            single: [
              { SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } },
              { Sequence: { id: 'A', type_id: 0 } },
            ],
            pair: [
              { SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } },
              { Sequence: { id: 'A', type_id: 0 } },
              { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } },
              { Sequence: { id: 'B', type_id: 1 } },
            ],
            special_tokens: {
              '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [n], tokens: ['<|begin_of_text|>'] },
            },
          },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: family === 'llama3',
      vocab: Object.fromEntries(vocab),
      merges: learned,
    },
  };
  const decoderEntries = Object.fromEntries(specials.map(({ id, ...rest }) => [String(id), rest]));
  const tokenizerConfigJson: Record<string, unknown> =
    family === 'qwen'
      ? {
          add_bos_token: false,
          add_prefix_space: false,
          added_tokens_decoder: decoderEntries,
          bos_token: null,
          chat_template: QWEN_CHAT_TEMPLATE,
          clean_up_tokenization_spaces: false,
          eos_token: '<|im_end|>',
          errors: 'replace',
          model_max_length: 131072,
          pad_token: '<|endoftext|>',
          split_special_tokens: false,
          tokenizer_class: 'Qwen2Tokenizer',
          unk_token: null,
        }
      : {
          added_tokens_decoder: decoderEntries,
          bos_token: '<|begin_of_text|>',
          clean_up_tokenization_spaces: true,
          eos_token: '<|eot_id|>',
          model_input_names: ['input_ids', 'attention_mask'],
          model_max_length: 131072,
          tokenizer_class: 'PreTrainedTokenizerFast',
        };
  const generationConfigJson =
    family === 'qwen'
      ? { bos_token_id: n, eos_token_id: [n + 2, n], pad_token_id: n, do_sample: true, temperature: 0.6 }
      : { bos_token_id: n, eos_token_id: [n + 1, n + 2], do_sample: true, temperature: 0.6 };
  return { tokenizerJson, tokenizerConfigJson, generationConfigJson };
}

function sentencePiece(family: 'llama2' | 'mistral', merges: number, withThink: boolean): BuiltTokenizer {
  const words = TRAINING_TEXT.split(/ +/)
    .filter((w) => w.length > 0)
    .map((w) => [...`▁${w}`]);
  const learned = learnMerges(words, merges);
  const vocab = new Map<string, number>();
  for (const t of ['<unk>', '<s>', '</s>']) vocab.set(t, vocab.size);
  for (let b = 0; b < 256; b++) vocab.set(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, vocab.size);
  // Base symbols: the characters of the training text, except the rarest (they go through byte fallback).
  const charCounts = new Map<string, number>();
  for (const w of words) for (const ch of w) charCounts.set(ch, (charCounts.get(ch) ?? 0) + 1);
  for (const [ch, c] of charCounts)
    if (c > 1 || learned.some(([a, b]) => a === ch || b === ch)) vocab.set(ch, vocab.size);
  const kept = learned.filter(([a, b]) => vocab.has(a) && vocab.has(b));
  for (const [a, b] of kept) if (!vocab.has(a + b)) vocab.set(a + b, vocab.size);
  const added = [addedToken(0, '<unk>', true), addedToken(1, '<s>', true), addedToken(2, '</s>', true)];
  if (withThink)
    added.push(addedToken(vocab.size, '<think>', true), addedToken(vocab.size + 1, '</think>', true));
  const legacy = family === 'llama2';
  const tokenizerJson: Record<string, unknown> = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: legacy
      ? {
          type: 'Sequence',
          normalizers: [
            { type: 'Prepend', prepend: '▁' },
            { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
          ],
        }
      : null,
    pre_tokenizer: legacy
      ? null
      : { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      merges: legacy ? kept.map(([a, b]) => `${a} ${b}`) : kept,
    },
  };
  const tokenizerConfigJson: Record<string, unknown> = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: Object.fromEntries(added.map(({ id, ...rest }) => [String(id), rest])),
    bos_token: '<s>',
    clean_up_tokenization_spaces: false,
    eos_token: '</s>',
    legacy,
    model_max_length: 1e30,
    pad_token: null,
    sp_model_kwargs: {},
    tokenizer_class: 'LlamaTokenizer',
    unk_token: '<unk>',
    use_default_system_prompt: false,
  };
  return { tokenizerJson, tokenizerConfigJson, generationConfigJson: { bos_token_id: 1, eos_token_id: 2 } };
}

export interface HfTokenizerOptions {
  /** Merges to learn (fewer when the text runs out of repeated pairs). Default 300. */
  merges?: number;
  /** Include `<think>` and `</think>` as added tokens. Default true. */
  think?: boolean;
}

export function buildHfTokenizer(family: HfFamily, opts: HfTokenizerOptions = {}): BuiltTokenizer {
  const merges = opts.merges ?? 300;
  const think = opts.think ?? true;
  return family === 'qwen' || family === 'llama3'
    ? byteLevel(family, merges, think)
    : sentencePiece(family, merges, think);
}

/** Writes tokenizer.json, tokenizer_config.json and generation_config.json of a family into `dir`. */
export function writeHfTokenizer(
  dir: string,
  family: HfFamily,
  opts: HfTokenizerOptions = {},
): BuiltTokenizer {
  const built = buildHfTokenizer(family, opts);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(built.tokenizerJson));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(built.tokenizerConfigJson));
  if (built.generationConfigJson) {
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(built.generationConfigJson));
  }
  return built;
}
