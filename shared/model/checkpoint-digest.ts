import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tokenizerFingerprint } from '../data/tokenizer.js';

const OPTIMIZER_FILE = 'optimizer.safetensors';
const known = new Map<string, string>();

/**
 * sha256 over a checkpoint's config.json and weight files (model.safetensors, or the index and its
 * shards), read as streams. Remembered per process by path, size and modification time, since a
 * real model's weights take seconds to hash.
 */
export async function checkpointDigest(dir: string): Promise<string> {
  const root = resolve(dir);
  if (!existsSync(root)) throw new Error(`${root}: checkpoint folder not found`);
  const files = readdirSync(root)
    .filter((f) => f === 'config.json' || (f.includes('safetensors') && f !== OPTIMIZER_FILE))
    .sort();
  const stamp = files
    .map((f) => {
      const st = statSync(join(root, f));
      return `${f}:${st.size}:${st.mtimeMs}`;
    })
    .join('\n');
  const memo = known.get(`${root}\n${stamp}`);
  if (memo) return memo;
  const h = createHash('sha256');
  for (const f of files) {
    h.update(`${f}\n`);
    for await (const chunk of createReadStream(join(root, f))) h.update(chunk as Buffer);
  }
  const digest = h.digest('hex');
  known.set(`${root}\n${stamp}`, digest);
  return digest;
}

/**
 * The entropy proxy must tokenize as the policy does, or its entropies describe other positions:
 * its folder's tokenizer.json must have the policy tokenizer's fingerprint.
 */
export function checkProxyTokenizer(proxyDir: string, policy: { dir: string; fingerprint: string }): void {
  if (resolve(proxyDir) === resolve(policy.dir)) return;
  let fp: string;
  try {
    fp = tokenizerFingerprint(proxyDir);
  } catch {
    throw new Error(
      `model.proxy: ${resolve(proxyDir)} has no tokenizer.json; the proxy needs the policy's tokenizer`,
    );
  }
  if (fp !== policy.fingerprint) {
    throw new Error(
      `model.proxy: the tokenizer of ${resolve(proxyDir)} (sha256 ${fp.slice(0, 12)}) differs from the policy's in ${policy.dir} (sha256 ${policy.fingerprint.slice(0, 12)}); entropy scoring needs the same tokenizer`,
    );
  }
}
