import { defineFlags, parseServiceFlagsOrExit } from '../../shared/config/service-flags.js';
import { createBackend } from '../../shared/kernels/index.js';
import { Scorer } from '../../shared/run/scorer.js';
import { commonFlags, startServiceProcess } from '../process.js';
import { scorerService } from './service.js';

/** This service's flags (each also an RMT_* environment variable). */
export const FLAGS = defineFlags({
  ...commonFlags(50051, 9451),
  backend: {
    type: 'enum',
    choices: ['auto', 'webgpu', 'webasm', 'cpu'],
    default: 'auto',
    doc: 'kernel backend',
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
    scorerService({ scorer: new Scorer(backend), bus, tokenizer: f.tokenizer }),
  ]);
  p.log.info('backend', { backend: backend.name });
}
