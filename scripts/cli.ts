import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadPretrainConfig } from '../shared/config/pretrain-config.js';
import { loadTrainConfig } from '../shared/config/train-config.js';
import { createBackend } from '../shared/kernels/index.js';
import { evaluateCheckpoint } from '../shared/train/evaluate-checkpoint.js';
import { pretrain } from '../shared/train/pretrain.js';
import { train } from '../shared/train/rmt-train.js';
import { status } from './status.js';
import { submit } from './submit.js';
import { up } from './up.js';

/** The front door for every rmt job. Each verb takes `--config <yaml>`; `--help` lists them. */
const USAGE = `usage: rmt <command> [options]

commands:
  pretrain --config <yaml>   next-token pre-training of a small decoder (progress, held-out loss,
                             checkpoints in run.out_dir; resumes from the newest checkpoint there)
  train --config <yaml> [--method M]
                             reinforcement mid-training from model.init_from; M is one of
                             ntp | rpt | rmt | rmt-no-dtb | rmt-no-cas | rmt-no-ntp (default: the
                             config's); metrics.jsonl, checkpoints, eval.json, plots in run.out_dir
  up --config <yaml> [--rollout-workers N] [--method M] [--steps N]
                             the same training job on a local cluster: nats-server, the scorer,
                             learner, N rollout workers and the coordinator as separate processes
  status [--coordinator host:port] [--watch] [--tls-ca PEM]
                             a run's progress and the rollout workers, from a coordinator
                             (flags and RMT_* env: rmt status --help)
  submit --config <yaml> [--coordinator host:port] [--no-watch]
                             start a run on a coordinator (or follow the active one) and print
                             its status until it ends (flags and RMT_* env: rmt submit --help)
  serve <scorer|rollout|learner|coordinator> [flags]
                             one service process (flags and RMT_* env: rmt serve <name> --help)
  eval --config <yaml> --checkpoint <dir> --mode <ntp|ntr> [--method M]
                             next-token accuracy on held-out positions split easy / medium / hard by
                             the proxy's entropy, their average, and mean reasoning length

options:
  --config <yaml>            run configuration (see configs/); unset fields take the spec's defaults
  --out <dir>                override run.out_dir
  --steps <n>                override train.steps
  --backend <name>           override run.backend (auto | webgpu | webasm | cpu | reference)
  -h, --help                 this text
`;

const SERVICES = ['scorer', 'rollout', 'learner', 'coordinator'] as const;

async function main(argv: string[]): Promise<number | 'serving'> {
  if (argv[0] === 'serve') {
    const name = argv[1] as (typeof SERVICES)[number];
    if (!SERVICES.includes(name)) throw new UsageError(`serve needs one of ${SERVICES.join(', ')}`);
    const mod = (await import(`../services/${name}/main.ts`)) as { main(argv: string[]): Promise<void> };
    await mod.main(argv.slice(2));
    return 'serving';
  }
  if (argv[0] === 'up') return up(argv.slice(1));
  if (argv[0] === 'status') return status(argv.slice(1));
  if (argv[0] === 'submit') return submit(argv.slice(1));
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      out: { type: 'string' },
      steps: { type: 'string' },
      backend: { type: 'string' },
      method: { type: 'string' },
      checkpoint: { type: 'string' },
      mode: { type: 'string' },
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
      const summary = await pretrain(cfg, { signal: stopOnSigint() });
      process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
      return 0;
    }
    case 'train': {
      if (!values.config) throw new UsageError('train needs --config <yaml>');
      const cfg = loadTrainConfig(values.config);
      if (values.method) cfg.method = values.method as typeof cfg.method;
      if (values.out) cfg.run.out_dir = values.out;
      if (values.backend) cfg.run.backend = values.backend;
      if (values.steps) cfg.train.steps = positiveInt('--steps', values.steps);
      const summary = await train(cfg, { signal: stopOnSigint() });
      process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
      return 0;
    }
    case 'eval': {
      if (!values.config || !values.checkpoint)
        throw new UsageError('eval needs --config <yaml> and --checkpoint <dir>');
      const mode = values.mode ?? 'ntr';
      if (mode !== 'ntp' && mode !== 'ntr') throw new UsageError(`--mode must be ntp or ntr, got "${mode}"`);
      const cfg = loadTrainConfig(values.config);
      // The method decides the prompt (whether and which budget is stated): `--method ntr` for a base model.
      if (values.method) cfg.method = values.method as typeof cfg.method;
      if (values.out) cfg.run.out_dir = values.out;
      if (values.backend) cfg.run.backend = values.backend;
      const backend = await createBackend(cfg.run.backend as Parameters<typeof createBackend>[0]);
      const { result } = await evaluateCheckpoint(backend, cfg, values.checkpoint, mode, (l) =>
        process.stderr.write(`${l}\n`),
      );
      writeFileSync(join(values.checkpoint, `eval-${mode}.json`), `${JSON.stringify(result, null, 2)}\n`);
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      await backend.dispose();
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

class UsageError extends Error {}

/** Ctrl-C asks a training job to stop after its current step with a checkpoint; a second one exits. */
function stopOnSigint(): AbortSignal {
  const stop = new AbortController();
  process.once('SIGINT', () => {
    process.stderr.write('\nstopping after this step (Ctrl-C again to abort without a checkpoint)\n');
    stop.abort();
    process.once('SIGINT', () => process.exit(130));
  });
  return stop.signal;
}

function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${flag} expects a positive integer, got "${v}"`);
  return n;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 'serving') process.exit(code);
  },
  (err: Error) => {
    process.stderr.write(`rmt: ${err.message}\n`);
    if (err instanceof UsageError) process.stderr.write(USAGE);
    else if (process.env.RMT_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
