/**
 * Writes a copy of a Hugging Face checkpoint folder whose tokenizer has `<think>` and `</think>`
 * (added as special tokens when missing) and whose embedding has rows for them, ready to be a run's
 * `model.init_from`. A tokenizer that already has both is copied unchanged apart from the ids in
 * config.json / generation_config.json being made consistent with it.
 *
 *   npx tsx scripts/add-think-tokens.ts --from <checkpoint> --out <folder>
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { addThinkTokens } from '../shared/model/think-tokens.js';

const USAGE = 'usage: npx tsx scripts/add-think-tokens.ts --from <checkpoint> --out <folder>';

function main(): void {
  const { values } = parseArgs({
    options: {
      from: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (!values.from || !values.out) throw new Error(`--from and --out are required\n${USAGE}`);
  if (resolve(values.from) === resolve(values.out)) throw new Error('--out must differ from --from');
  const r = addThinkTokens(values.from, values.out);
  if (r.added.length === 0) console.log('the tokenizer already has <think> and </think>');
  for (const a of r.added) console.log(`added ${a.content} as id ${a.id}`);
  console.log(`vocab_size: ${r.vocabSizeBefore} -> ${r.vocabSizeAfter}`);
  console.log(`wrote ${values.out}`);
}

try {
  main();
} catch (e) {
  console.error(`add-think-tokens: ${(e as Error).message}`);
  process.exit(1);
}
