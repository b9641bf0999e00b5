/**
 * Writes a GPT-2-derived byte-level BPE tokenizer folder (tokenizer.json + tokenizer_config.json).
 *
 *   npx tsx scripts/make-tokenizer.ts --out <dir> [--merges N] [--max-length L]
 */
import { parseArgs } from 'node:util';
import { writeGpt2Tokenizer } from '../shared/data/gpt2-bpe.js';
import { tokenizerFingerprint } from '../shared/data/tokenizer.js';

const USAGE = 'usage: npx tsx scripts/make-tokenizer.ts --out <dir> [--merges N] [--max-length L]';

function parseCount(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

function main(): void {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      merges: { type: 'string' },
      'max-length': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (!values.out) throw new Error(`--out is required\n${USAGE}`);
  const built = writeGpt2Tokenizer(values.out, {
    merges: parseCount('merges', values.merges),
    modelMaxLength: parseCount('max-length', values['max-length']),
  });
  const s = built.specialTokens;
  console.log(`wrote ${values.out}/tokenizer.json and tokenizer_config.json`);
  console.log(`merges: ${built.mergeCount}`);
  console.log(
    `vocab size: ${built.vocabSize} (${built.bpeVocabSize} BPE + ${built.vocabSize - built.bpeVocabSize} special)`,
  );
  console.log(
    `special ids: ${s.eos.content}=${s.eos.id} ${s.think.content}=${s.think.id} ${s.endThink.content}=${s.endThink.id}`,
  );
  console.log(`fingerprint: ${tokenizerFingerprint(values.out)}`);
}

try {
  main();
} catch (e) {
  console.error(`make-tokenizer: ${(e as Error).message}`);
  process.exit(1);
}
