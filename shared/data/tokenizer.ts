/**
 * Loads a Hugging Face tokenizer folder (`tokenizer.json` + optional `tokenizer_config.json`) with
 * @huggingface/tokenizers. The tokenizer is built directly from the parsed JSON, so any folder works and
 * nothing is ever fetched. BPE models of both Hugging Face families load: byte-level (GPT-2, Qwen2/3,
 * Llama 3) and SentencePiece-style with byte fallback (Llama 2, Mistral); see token-bytes.ts.
 */

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { isJsonObject, parseJsonText } from '../util/json-file.js';
import { END_THINK_TOKEN, EOS_TOKEN, THINK_TOKEN } from './gpt2-bpe.js';
import { namedToken } from './special-tokens.js';
import { tokenBytesFor } from './token-bytes.js';

export interface Tokenizer {
  /** Absolute path of the folder the tokenizer was loaded from. */
  readonly dir: string;
  /** Number of ids, added (special) tokens included: every id is in [0, vocabSize). */
  readonly vocabSize: number;
  readonly eosId: number;
  /** Id of tokenizer_config.json's `bos_token`; null when it names none. */
  readonly bosId: number | null;
  /** Id of tokenizer_config.json's `pad_token`; null when it names none. */
  readonly padId: number | null;
  readonly thinkId: number;
  readonly endThinkId: number;
  /** sha256 (hex) of tokenizer.json's bytes. */
  readonly fingerprint: string;
  /** Token ids of `text`. No special tokens are added, but special-token strings in `text` map to their ids. */
  encode(text: string): number[];
  /** Text of `ids` (special tokens are kept as their strings; invalid UTF-8 becomes U+FFFD). */
  decode(ids: readonly number[]): string;
  /** The UTF-8 bytes one token stands for (a special token: the UTF-8 of its string). */
  tokenBytes(id: number): Uint8Array;
  /** Id of a vocabulary entry (byte-level form, e.g. `Ġthe`) or special token; undefined if absent. */
  idOf(token: string): number | undefined;
  /** Vocabulary entry of an id (byte-level form for BPE tokens). */
  tokenOf(id: number): string;
  /** True for added tokens marked special (`<|endoftext|>`; `<think>` too in rmt's own tokenizers). */
  isSpecial(id: number): boolean;
}

/** sha256 (hex) of `dir/tokenizer.json`. */
export function tokenizerFingerprint(dir: string): string {
  const path = join(resolve(dir), 'tokenizer.json');
  return createHash('sha256').update(readRequired(path)).digest('hex');
}

function readRequired(path: string): Buffer {
  if (!existsSync(path)) throw new Error(`${path}: file not found`);
  return readFileSync(path);
}

function parseJson(path: string, bytes: Buffer): Record<string, unknown> {
  const value = parseJsonText(path, bytes.toString('utf8'));
  if (!isJsonObject(value)) throw new Error(`${path}: expected a JSON object at the top level`);
  return value;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

/** Checks the parts of tokenizer.json this module relies on (in place: merges become [left, right] pairs). */
function validateTokenizerJson(path: string, json: Record<string, unknown>): void {
  const problem = (what: string) => new Error(`${path}: ${what}`);
  const model = json.model;
  if (model === undefined) throw problem('missing field "model"');
  if (!isObject(model)) throw problem('field "model" must be an object');
  if (model.type !== undefined && model.type !== 'BPE') {
    throw problem(`unsupported model.type ${JSON.stringify(model.type)} (only "BPE")`);
  }
  const vocab = model.vocab;
  if (vocab === undefined) throw problem('missing field "model.vocab"');
  if (!isObject(vocab)) throw problem('field "model.vocab" must be an object of token -> id');
  for (const [tok, id] of Object.entries(vocab)) {
    if (!Number.isSafeInteger(id) || (id as number) < 0)
      throw problem(`model.vocab[${JSON.stringify(tok)}] is not an id`);
  }
  const merges = model.merges;
  if (merges === undefined) throw problem('missing field "model.merges"');
  if (!Array.isArray(merges)) throw problem('field "model.merges" must be an array');
  // Older `tokenizers` versions write merges as "a b", newer ones as ["a", "b"] (which also allows
  // tokens holding a space); one list may not mix them, so every merge becomes a pair.
  model.merges = merges.map((m: unknown, i: number) => {
    if (typeof m === 'string') {
      const parts = m.split(' ');
      if (parts.length === 2 && parts[0] && parts[1]) return parts;
    } else if (Array.isArray(m) && m.length === 2 && m.every((x) => typeof x === 'string' && x.length > 0)) {
      return m;
    }
    throw problem(`model.merges[${i}] must be "left right" or ["left", "right"]`);
  });
  if (model.byte_fallback !== undefined && typeof model.byte_fallback !== 'boolean') {
    throw problem('field "model.byte_fallback" must be a boolean');
  }
  if (json.added_tokens === undefined) json.added_tokens = [];
  const added = json.added_tokens;
  if (!Array.isArray(added)) throw problem('field "added_tokens" must be an array');
  added.forEach((t: unknown, i: number) => {
    if (
      !isObject(t) ||
      !Number.isSafeInteger(t.id) ||
      (t.id as number) < 0 ||
      typeof t.content !== 'string'
    ) {
      throw problem(`added_tokens[${i}] must have a non-negative integer "id" and a string "content"`);
    }
    if (t.content.length === 0) throw problem(`added_tokens[${i}].content must not be empty`);
  });
  for (const key of ['normalizer', 'pre_tokenizer', 'post_processor']) {
    if (json[key] === undefined) json[key] = null;
  }
  // Without a decoder the library joins tokens with spaces: decoding would not invert encoding.
  if (json.decoder === undefined || json.decoder === null) throw problem('missing field "decoder"');
}

/** Loads the tokenizer in `dir`. Throws an Error naming the file and the problem when something is wrong. */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const absDir = resolve(dir);
  if (!existsSync(absDir)) throw new Error(`${absDir}: tokenizer folder not found`);
  if (!statSync(absDir).isDirectory())
    throw new Error(`${absDir}: not a folder (expected a tokenizer folder)`);

  const jsonPath = join(absDir, 'tokenizer.json');
  const jsonBytes = readRequired(jsonPath);
  const fingerprint = createHash('sha256').update(jsonBytes).digest('hex');
  const tokJson = parseJson(jsonPath, jsonBytes);
  validateTokenizerJson(jsonPath, tokJson);

  const configPath = join(absDir, 'tokenizer_config.json');
  const config = existsSync(configPath) ? parseJson(configPath, readFileSync(configPath)) : {};
  // Decoding must be the exact inverse of encoding: never "clean up" spaces before punctuation.
  config.clean_up_tokenization_spaces = false;

  const model = tokJson.model as { vocab: Record<string, number> };
  const vocab = new Map<string, number>(Object.entries(model.vocab));
  const added = tokJson.added_tokens as AddedTokenJson[];
  const specialIds = new Set<number>();
  const addedIds = new Set<number>();
  for (const t of added) {
    vocab.set(t.content, t.id);
    addedIds.add(t.id);
    if (t.special) specialIds.add(t.id);
  }
  let vocabSize = 0;
  const idToToken: string[] = [];
  for (const [tok, id] of vocab) {
    if (idToToken[id] !== undefined && idToToken[id] !== tok) {
      throw new Error(`${jsonPath}: id ${id} is given to two tokens`);
    }
    idToToken[id] = tok;
    if (id + 1 > vocabSize) vocabSize = id + 1;
  }
  for (let id = 0; id < vocabSize; id++) {
    if (idToToken[id] === undefined)
      throw new Error(`${jsonPath}: ids are not dense (no token has id ${id})`);
  }

  const requireId = (token: string, what: string): number => {
    const id = vocab.get(token);
    if (id === undefined) throw new Error(`${jsonPath}: missing ${what} token ${JSON.stringify(token)}`);
    return id;
  };
  const optionalId = (key: string): number | null => {
    const token = namedToken(config, key, configPath);
    if (token === null) return null;
    return requireId(token, `${key} (named in tokenizer_config.json)`);
  };
  const eosId = requireId(namedToken(config, 'eos_token', configPath) ?? EOS_TOKEN, 'end-of-text');
  const bosId = optionalId('bos_token');
  const padId = optionalId('pad_token');
  const reasoningId = (token: string): number => {
    const id = vocab.get(token);
    if (id === undefined) {
      throw new Error(
        `${jsonPath}: missing reasoning token ${JSON.stringify(token)} (add <think> and </think> to the checkpoint with: npx tsx scripts/add-think-tokens.ts --from <checkpoint> --out <folder>)`,
      );
    }
    return id;
  };
  const thinkId = reasoningId(THINK_TOKEN);
  const endThinkId = reasoningId(END_THINK_TOKEN);

  const bytesOfEntry = tokenBytesFor(tokJson.decoder, `${jsonPath}: decoder`);
  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(tokJson, config);
  } catch (e) {
    throw new Error(`${jsonPath}: cannot build tokenizer (${(e as Error).message})`);
  }

  const encoder = new TextEncoder();
  const bytesCache: (Uint8Array | undefined)[] = new Array(vocabSize);
  const checkId = (id: number): void => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new Error(`token id ${id} out of range [0, ${vocabSize}) for tokenizer ${absDir}`);
    }
  };

  const tokenBytes = (id: number): Uint8Array => {
    checkId(id);
    let bytes = bytesCache[id];
    if (bytes === undefined) {
      const tok = idToToken[id];
      if (addedIds.has(id)) {
        bytes = encoder.encode(tok);
      } else {
        try {
          bytes = bytesOfEntry(tok);
        } catch (e) {
          throw new Error(`${jsonPath}: id ${id}: ${(e as Error).message}`);
        }
      }
      bytesCache[id] = bytes;
    }
    return bytes;
  };

  return {
    dir: absDir,
    vocabSize,
    eosId,
    bosId,
    padId,
    thinkId,
    endThinkId,
    fingerprint,
    encode(text: string): number[] {
      if (text.length === 0) return [];
      const ids = hf.encode(text, { add_special_tokens: false }).ids;
      // A piece the model cannot spell (no byte fallback, no unk) comes back undefined, not an id.
      for (const id of ids) {
        if (!Number.isInteger(id)) {
          throw new Error(`tokenizer ${absDir}: the text holds a character the vocabulary cannot encode`);
        }
      }
      return ids;
    },
    decode(ids: readonly number[]): string {
      for (const id of ids) checkId(id);
      if (ids.length === 0) return '';
      return hf.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    },
    tokenBytes,
    idOf(token: string): number | undefined {
      return vocab.get(token);
    },
    tokenOf(id: number): string {
      checkId(id);
      return idToToken[id];
    },
    isSpecial(id: number): boolean {
      return specialIds.has(id);
    },
  };
}
