/**
 * The token ids of a saved checkpoint, made consistent with its tokenizer: config.json's
 * bos/eos/pad ids are filled from tokenizer_config.json where the model config leaves them null,
 * and generation_config.json keeps what the source folder's generation_config.json says (an
 * instruction model's end-of-turn ids, its sampling defaults) with the ids filled the same way.
 * transformers pads with `pad_token_id` and stops at any of `eos_token_id`, so a null there while
 * the tokenizer has the token makes `generate` warn and pad with eos.
 */

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { specialTokenIds } from '../data/special-tokens.js';
import { readJsonObject } from '../util/json-file.js';
import type { ModelConfig } from './config.js';

export const GENERATION_CONFIG_FILE = 'generation_config.json';

export interface CheckpointTokenIds {
  /** The model config with bos/eos/pad filled from the tokenizer where they were null. */
  config: ModelConfig;
  /** generation_config.json's contents. */
  generation: Record<string, unknown>;
}

function _isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function checkId(path: string, field: string, v: unknown, vocabSize: number): void {
  const ok = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) < vocabSize;
  const valid = v === null || ok(v) || (Array.isArray(v) && v.length > 0 && v.every(ok));
  if (!valid) {
    throw new Error(`${path}: ${field} must be null, a token id or a list of ids in [0, ${vocabSize})`);
  }
}

/**
 * generation_config.json of `dir` (an object), with its id fields checked against `vocabSize`;
 * null when the folder has none.
 */
export function readGenerationConfig(dir: string, vocabSize: number): Record<string, unknown> | null {
  const path = join(dir, GENERATION_CONFIG_FILE);
  if (!existsSync(path)) return null;
  const v = readJsonObject(path);
  for (const field of ['bos_token_id', 'eos_token_id', 'pad_token_id']) {
    if (v[field] !== undefined) checkId(path, field, v[field], vocabSize);
  }
  return v;
}

/** The ids and generation config to save with `config` and the tokenizer folder `tokenizerDir`. */
export function checkpointTokenIds(config: ModelConfig, tokenizerDir?: string): CheckpointTokenIds {
  const tok = tokenizerDir === undefined ? null : specialTokenIds(tokenizerDir);
  const filled: ModelConfig = {
    ...config,
    bos_token_id: config.bos_token_id ?? tok?.bos ?? null,
    eos_token_id: config.eos_token_id ?? tok?.eos ?? null,
    pad_token_id: config.pad_token_id ?? tok?.pad ?? null,
  };
  const source = tokenizerDir === undefined ? null : readGenerationConfig(tokenizerDir, config.vocab_size);
  const generation: Record<string, unknown> = source ? { ...source } : { _from_model_config: true };
  for (const [field, value] of [
    ['bos_token_id', filled.bos_token_id],
    ['eos_token_id', filled.eos_token_id],
    ['pad_token_id', filled.pad_token_id],
  ] as const) {
    if (generation[field] === undefined || generation[field] === null) {
      if (value !== null && value !== undefined) generation[field] = value;
      else delete generation[field];
    }
  }
  return { config: filled, generation };
}
