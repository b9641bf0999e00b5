/**
 * Gives a checkpoint the `<think>` and `</think>` tokens next-token reasoning writes. A tokenizer
 * that has them (Qwen3) is used as it is; otherwise the missing ones are appended as special added
 * tokens with the next free ids, and the checkpoint is saved again with the embedding rows (and an
 * untied lm_head's rows) for them, so transformers loads the result like any other checkpoint:
 *
 *  - the new ids are the tokenizer's next ids; config.json's vocab_size grows only when they do not
 *    fit in the rows the model already has (Qwen pads its embedding past the tokenizer);
 *  - each new row starts at the mean of the tokenizer's existing rows (transformers'
 *    `resize_token_embeddings` centres new rows on that mean too), so the new tokens start as an
 *    average token rather than as noise that would dominate the logits.
 */

import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { END_THINK_TOKEN, THINK_TOKEN } from '../data/gpt2-bpe.js';
import { readJsonObject } from '../util/json-file.js';
import { CheckpointError, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import type { ModelConfig } from './config.js';
import { GENERATION_CONFIG_FILE } from './generation-config.js';

export const THINK_TOKENS = [THINK_TOKEN, END_THINK_TOKEN] as const;

/** Tokenizer files carried over unchanged (the two edited ones are written anew). */
const CARRIED = ['special_tokens_map.json', 'chat_template.jinja', GENERATION_CONFIG_FILE];

export interface AddThinkTokensResult {
  /** The tokens that were added, with their ids (empty when the tokenizer had both). */
  added: { content: string; id: number }[];
  /** config.json's vocab_size before and after. */
  vocabSizeBefore: number;
  vocabSizeAfter: number;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function readObject(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new CheckpointError(path, 'file not found');
  try {
    return readJsonObject(path);
  } catch (e) {
    throw new CheckpointError(path, (e as Error).message.slice(path.length + 2));
  }
}

/** Every token id tokenizer.json defines, by content. */
function tokenIds(path: string, json: Record<string, unknown>): Map<string, number> {
  const model = json.model;
  if (!isObject(model) || !isObject(model.vocab))
    throw new CheckpointError(path, 'missing field "model.vocab"');
  const ids = new Map<string, number>();
  for (const [tok, id] of Object.entries(model.vocab)) {
    if (!Number.isSafeInteger(id) || (id as number) < 0) {
      throw new CheckpointError(path, `model.vocab[${JSON.stringify(tok)}] is not an id`);
    }
    ids.set(tok, id as number);
  }
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) throw new CheckpointError(path, 'field "added_tokens" must be an array');
  added.forEach((t: unknown, i: number) => {
    if (
      !isObject(t) ||
      typeof t.content !== 'string' ||
      !Number.isSafeInteger(t.id) ||
      (t.id as number) < 0
    ) {
      throw new CheckpointError(
        path,
        `added_tokens[${i}] must have a non-negative integer "id" and a string "content"`,
      );
    }
    ids.set(t.content, t.id as number);
  });
  return ids;
}

/** `rows` x `width` matrix grown to `newRows`, rows from `meanOf` on set to the mean of rows [0, meanOf). */
function growRows(
  data: Float32Array,
  width: number,
  newRows: number,
  newIds: number[],
  meanOf: number,
): Float32Array {
  const out = new Float32Array(newRows * width);
  out.set(data.subarray(0, Math.min(data.length, out.length)));
  const mean = new Float64Array(width);
  for (let r = 0; r < meanOf; r++) for (let c = 0; c < width; c++) mean[c] += data[r * width + c];
  for (let c = 0; c < width; c++) mean[c] /= Math.max(meanOf, 1);
  for (const id of newIds) for (let c = 0; c < width; c++) out[id * width + c] = mean[c];
  return out;
}

/**
 * Writes to `outDir` the checkpoint of `fromDir` with `<think>`/`</think>` in its tokenizer and
 * rows for them in its weights (see the module comment). Training state is not carried: the
 * result is a starting point, like a downloaded model.
 */
export function addThinkTokens(fromDir: string, outDir: string): AddThinkTokensResult {
  const tokPath = join(fromDir, 'tokenizer.json');
  const cfgPath = join(fromDir, 'tokenizer_config.json');
  const tokJson = readObject(tokPath);
  const tokConfig = existsSync(cfgPath) ? readObject(cfgPath) : {};
  const ids = tokenIds(tokPath, tokJson);
  let next = 0;
  for (const id of ids.values()) next = Math.max(next, id + 1);
  const tokenizerSize = next;
  const added = THINK_TOKENS.filter((t) => !ids.has(t)).map((content) => ({ content, id: next++ }));

  const ck = loadCheckpoint(fromDir);
  if (ck.config.vocab_size < tokenizerSize) {
    throw new CheckpointError(
      join(fromDir, 'config.json'),
      `vocab_size ${ck.config.vocab_size} is smaller than the tokenizer's ${tokenizerSize} ids`,
    );
  }
  const vocabSize = Math.max(ck.config.vocab_size, next);
  const config: ModelConfig = { ...ck.config, vocab_size: vocabSize };
  const params = new Map(ck.params);
  const newIds = added.map((a) => a.id);
  const D = ck.config.hidden_size;
  for (const name of ['model.embed_tokens.weight', 'lm_head.weight']) {
    const p = params.get(name);
    if (p) params.set(name, growRows(p, D, vocabSize, newIds, tokenizerSize));
  }

  const entry = (content: string) => ({
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const newTokJson = {
    ...tokJson,
    added_tokens: [
      ...((tokJson.added_tokens as unknown[]) ?? []),
      ...added.map((a) => ({ id: a.id, ...entry(a.content) })),
    ],
  };
  const decoder = isObject(tokConfig.added_tokens_decoder) ? { ...tokConfig.added_tokens_decoder } : {};
  for (const a of added) decoder[String(a.id)] = entry(a.content);
  const newTokConfig: Record<string, unknown> = { ...tokConfig, added_tokens_decoder: decoder };
  const extra = Array.isArray(tokConfig.additional_special_tokens) ? tokConfig.additional_special_tokens : [];
  if (added.length > 0) newTokConfig.additional_special_tokens = [...extra, ...added.map((a) => a.content)];

  const staging = mkdtempSync(join(tmpdir(), 'rmt-think-'));
  try {
    writeFileSync(join(staging, 'tokenizer.json'), `${JSON.stringify(newTokJson)}\n`);
    writeFileSync(join(staging, 'tokenizer_config.json'), `${JSON.stringify(newTokConfig, null, 2)}\n`);
    for (const f of CARRIED)
      if (existsSync(join(fromDir, f))) copyFileSync(join(fromDir, f), join(staging, f));
    const mapPath = join(staging, 'special_tokens_map.json');
    if (added.length > 0 && existsSync(mapPath)) {
      const map = readObject(mapPath);
      const list = Array.isArray(map.additional_special_tokens) ? map.additional_special_tokens : [];
      map.additional_special_tokens = [...list, ...added.map((a) => a.content)];
      writeFileSync(mapPath, `${JSON.stringify(map, null, 2)}\n`);
    }
    saveCheckpoint(outDir, { config, params, tokenizerDir: staging });
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return { added, vocabSizeBefore: ck.config.vocab_size, vocabSizeAfter: vocabSize };
}
