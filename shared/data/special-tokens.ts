/**
 * The ids of the tokens tokenizer_config.json names as bos / eos / pad, looked up in tokenizer.json
 * without building a tokenizer: what a checkpoint's config.json and generation_config.json must
 * agree with so transformers pads, starts and stops generation with the tokenizer's own tokens.
 */

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { isJsonObject, readJsonObject } from '../util/json-file.js';

export interface SpecialTokenIds {
  bos: number | null;
  eos: number | null;
  pad: number | null;
  /** Number of ids the tokenizer defines (largest id + 1). */
  vocabSize: number;
}

const isObject = isJsonObject;
const readObject = readJsonObject;

/**
 * The token a tokenizer_config.json field names (`"</s>"` or `{"content": "</s>", ...}`); null when
 * the field is absent or null. `path` names the file in the error for any other value.
 */
export function namedToken(config: Record<string, unknown>, key: string, path: string): string | null {
  const v = config[key];
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  throw new Error(`${path}: ${key} must be a token string or {"content": ...}`);
}

/** bos / eos / pad ids of the tokenizer folder `dir` (null where tokenizer_config.json names none). */
export function specialTokenIds(dir: string): SpecialTokenIds {
  const jsonPath = join(dir, 'tokenizer.json');
  if (!existsSync(jsonPath)) throw new Error(`${jsonPath}: file not found`);
  const json = readObject(jsonPath);
  const configPath = join(dir, 'tokenizer_config.json');
  const config = existsSync(configPath) ? readObject(configPath) : {};
  const ids = new Map<string, number>();
  const vocab = isObject(json.model) && isObject(json.model.vocab) ? json.model.vocab : {};
  for (const [tok, id] of Object.entries(vocab)) if (Number.isSafeInteger(id)) ids.set(tok, id as number);
  if (Array.isArray(json.added_tokens)) {
    for (const t of json.added_tokens) {
      if (isObject(t) && typeof t.content === 'string' && Number.isSafeInteger(t.id))
        ids.set(t.content, t.id as number);
    }
  }
  let vocabSize = 0;
  for (const id of ids.values()) vocabSize = Math.max(vocabSize, id + 1);
  const idOf = (key: string): number | null => {
    const token = namedToken(config, key, configPath);
    if (token === null) return null;
    const id = ids.get(token);
    if (id === undefined) {
      throw new Error(`${configPath}: ${key} ${JSON.stringify(token)} is not a token of tokenizer.json`);
    }
    return id;
  };
  return { bos: idOf('bos_token'), eos: idOf('eos_token'), pad: idOf('pad_token'), vocabSize };
}
