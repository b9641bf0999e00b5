import { parseArgs } from 'node:util';
import { loadPretrainConfig } from '../shared/config/pretrain-config.js';
import { pretrain } from '../shared/train/pretrain.js';

/** The front door for every rmt job. Each verb takes `--config <yaml>`; `--help` lists them. */
const USAGE = `usage: rmt <command> [options]

commands:
  pretrain --config <yaml>   next-token pre-training of a small decoder (progress, held-out loss,
                             checkpoints in run.out_dir; resumes from the newest checkpoint there)

options:
  --config <yaml>            run configuration (see configs/); unset fields take the spec's defaults
  --out <dir>                override run.out_dir
  --steps <n>                override train.steps
  --backend <name>           override run.backend (auto | webgpu | webasm | cpu | reference)
  -h, --help                 this text
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      out: { type: 'string' },
      steps: { type: 'string' },
      backend: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command] = positionals;
  if (values.help || !command) {
    process.stdout.write(USAGE);
    return command || values.help ? 0 : 2;
  }
  switch (command) {
    case 'pretrain': {
      if (!values.config) throw new UsageError('pretrain needs --config <yaml>');
      const cfg = loadPretrainConfig(values.config);
      if (values.out) cfg.run.out_dir = values.out;
      if (values.backend) cfg.run.backend = values.backend;
      if (values.steps) cfg.train.steps = positiveInt('--steps', values.steps);
      const stop = new AbortController();
      process.once('SIGINT', () => {
        process.stderr.write('\nstopping after this step (Ctrl-C again to abort without a checkpoint)\n');
        stop.abort();
        process.once('SIGINT', () => process.exit(130));
      });
      const summary = await pretrain(cfg, { signal: stop.signal });
      process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

class UsageError extends Error {}

function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${flag} expects a positive integer, got "${v}"`);
  return n;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`rmt: ${err.message}\n`);
    if (err instanceof UsageError) process.stderr.write(USAGE);
    else if (process.env.RMT_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
