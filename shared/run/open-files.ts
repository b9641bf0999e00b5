import { loadTokenizer, type Tokenizer } from '../data/tokenizer.js';
import { type LoadedCheckpoint, loadCheckpoint } from '../model/checkpoint.js';
import { ConfigError } from '../model/config.js';
import { RequestError } from './request-error.js';

/**
 * Why a file a client named could not be loaded, in words that never quote the file: a parser's
 * message can carry the first characters of whatever the path held.
 */
function reason(e: unknown): string {
  // A model config that parses but is refused names its field (and at most a short value), which
  // is what a user needs to fix it.
  if (e instanceof ConfigError)
    return `config.json field "${e.field}" refused: ${e.message.split(': ').slice(2).join(': ').slice(0, 200)}`;
  const m = e instanceof Error ? e.message : '';
  const code = (e as { code?: unknown } | null)?.code;
  if (code === 'ENOENT' || /not found/i.test(m)) return 'not found';
  if (code === 'EACCES' || code === 'EPERM') return 'not readable';
  if (code === 'ENOTDIR' || /not a folder/i.test(m)) return 'not a folder';
  if (/JSON/.test(m)) return 'a file in it is not valid JSON';
  return 'its files are not a valid one';
}

/**
 * A tokenizer folder a request names (FAILED_PRECONDITION when it cannot be loaded: the folder may
 * appear later, e.g. while a models volume is filled).
 */
export async function openTokenizer(dir: string, field: string): Promise<Tokenizer> {
  try {
    return await loadTokenizer(dir);
  } catch (e) {
    throw new RequestError(`${field}: cannot load the tokenizer: ${reason(e)}`, 'precondition', field);
  }
}

/** A checkpoint folder a request names (as openTokenizer). */
export function openCheckpoint(dir: string, field: string): LoadedCheckpoint {
  try {
    return loadCheckpoint(dir);
  } catch (e) {
    throw new RequestError(`${field}: cannot load the checkpoint: ${reason(e)}`, 'precondition', field);
  }
}
