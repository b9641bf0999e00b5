import { BACKEND_FLAG } from '../../shared/config/config-flags.js';
import { defineFlags, parseServiceFlagsOrExit } from '../../shared/config/service-flags.js';
import { SERVICE_LIMITS } from '../../shared/config/service-limits.js';
import { createBackend } from '../../shared/kernels/index.js';
import { Scorer } from '../../shared/run/scorer.js';
import { commonFlags, dataRootOf, startServiceProcess } from '../process.js';
import { scorerService } from './service.js';

/** This service's flags (each also an RMT_* environment variable). */
export const FLAGS = defineFlags({
  ...commonFlags(50051, 9451, SERVICE_LIMITS.max_receive_mib.scorer),
  backend: BACKEND_FLAG,
  'max-tokenize-chars': {
    type: 'int',
    default: SERVICE_LIMITS.max_tokenize_chars,
    min: 1,
    doc: 'longest Tokenize text, in characters',
  },
  'max-detokenize-ids': {
    type: 'int',
    default: SERVICE_LIMITS.max_detokenize_ids,
    min: 1,
    doc: 'most token ids of one Detokenize',
  },
  tokenizer: {
    type: 'string',
    doc: 'default tokenizer folder for Tokenize/Detokenize requests that name none',
  },
});

export async function main(argv: string[]): Promise<void> {
  const f = parseServiceFlagsOrExit(FLAGS, 'rmt serve scorer [flags]', argv);
  const backend = await createBackend(f.backend);
  const p = await startServiceProcess('scorer', f, async ({ bus }) => [
    scorerService({
      scorer: new Scorer(backend),
      bus,
      tokenizer: f.tokenizer,
      root: dataRootOf(f),
      maxConfigBytes: f.maxConfigBytes,
      maxTokenizeChars: f.maxTokenizeChars,
      maxDetokenizeIds: f.maxDetokenizeIds,
    }),
  ]);
  p.log.info('backend', { backend: backend.name });
}
