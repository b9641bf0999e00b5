import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { loadPretrainConfig } from '../shared/config/pretrain-config.js';
import { METHOD_TABLE } from '../shared/config/rmt-defaults.js';
import { BACKENDS } from '../shared/config/schema/common-fields.js';
import {
  defineFlags,
  FlagError,
  type FlagSchema,
  HelpRequested,
  helpText,
  parseServiceFlags,
  withoutEnv,
} from '../shared/config/service-flags.js';
import { loadTrainConfig, type TrainConfig } from '../shared/config/train-config.js';
import { createBackend } from '../shared/kernels/index.js';
import type { EvalResult } from '../shared/run/evaluate.js';
import { formatPairedDifference, pairedDifference, parseHits } from '../shared/run/paired-difference.js';
import { formatComparison, formatEvalResult } from '../shared/train/eval-table.js';
import { evaluateCheckpoint } from '../shared/train/evaluate-checkpoint.js';
import { pretrain } from '../shared/train/pretrain.js';
import { evalBudget, train } from '../shared/train/rmt-train.js';
import { didYouMean } from '../shared/util/did-you-mean.js';
import { type Progress, progress } from '../shared/util/progress.js';
import { status } from './status.js';
import { submit } from './submit.js';
import { up } from './up.js';

/** The front door for every rmt job: one verb each, `rmt <verb> --help` for its flags. */

interface Verb {
  summary: string;
  usage: string;
  flags: FlagSchema;
  run(values: Record<string, string | boolean | number | string[] | undefined>): Promise<number>;
}

const METHODS = Object.keys(METHOD_TABLE);

/**
 * The flags every job verb has. The shorthands are `--set` lines, checked by the config schema as
 * the file is; their help comes from the config fields they set.
 */
const common = withoutEnv(
  defineFlags({
    config: {
      type: 'string',
      arg: '<yaml>',
      doc: 'run configuration (configs/); unset fields take the defaults',
    },
    set: {
      type: 'list',
      env: false,
      arg: '<section.key=value>',
      doc: 'override one config field, checked as the file is, e.g. --set train.lr=3e-4',
    },
    out: { type: 'string', arg: '<dir>', doc: 'set run.out_dir' },
    backend: {
      type: 'enum',
      choices: BACKENDS,
      arg: '<name>',
      doc: `set run.backend: ${BACKENDS.join(' | ')}`,
    },
  }),
);
const steps = withoutEnv(defineFlags({ steps: { type: 'int', min: 1, arg: '<n>', doc: 'set train.steps' } }));
const method = withoutEnv(
  defineFlags({ method: { type: 'string', arg: '<m>', doc: `set method: ${METHODS.join(' | ')}` } }),
);

/** The CLI's shorthand flags are `--set` lines, so they are validated exactly like the file. */
function overrides(v: Record<string, unknown>): string[] {
  const sets = [...((v.set as string[] | undefined) ?? [])];
  if (typeof v.out === 'string') sets.push(`run.out_dir=${JSON.stringify(v.out)}`);
  if (typeof v.backend === 'string') sets.push(`run.backend=${JSON.stringify(v.backend)}`);
  if (typeof v.steps === 'number') sets.push(`train.steps=${v.steps}`);
  if (typeof v.method === 'string') sets.push(`method=${JSON.stringify(v.method)}`);
  return sets;
}

function needConfig(verb: string, v: Record<string, unknown>): string {
  if (typeof v.config !== 'string') throw new UsageError(`${verb} needs --config <yaml>`, verb);
  return v.config;
}

/** A first `rmt train` before `rmt pretrain` is the common case: say which field and what to run. */
function checkInitFrom(cfg: TrainConfig): void {
  const dir = cfg.model.init_from;
  if (!existsSync(join(dir, 'config.json')) || !existsSync(join(dir, 'tokenizer.json'))) {
    throw new Error(
      `model.init_from: ${resolve(dir)} is not a checkpoint folder (config.json, model.safetensors, ` +
        `tokenizer.json). Pre-train the default base first (rmt pretrain --config configs/base.yaml), ` +
        `or set model.init_from to your own Hugging Face checkpoint folder (docs/own-model.md).`,
    );
  }
}

/** A progress bar over held-out positions, started at the first report (when the total is known). */
function evalProgress(label: string): (done: number, total: number) => void {
  let bar: Progress | null = null;
  return (done, total) => {
    bar ??= progress(`${label} positions`, total, 0, Math.max(1, Math.ceil(total / 10)));
    bar.update(done, {});
    if (done === total) bar.stop();
  };
}

function resultsIn(files: string[]): string {
  return `results in:\n${files.map((f) => `  ${f}`).join('\n')}\n`;
}

const MODE = {
  type: 'enum',
  choices: ['ntr', 'ntp'],
  default: 'ntr',
  doc: 'ntp: argmax, no reasoning; ntr: reason, then answer',
} as const;

const VERBS: Record<string, Verb> = {
  pretrain: {
    summary: 'next-token pre-training of a decoder; resumes from the newest checkpoint in run.out_dir',
    usage: 'rmt pretrain --config <yaml> [flags]',
    flags: { ...common, ...steps },
    async run(v) {
      const cfg = loadPretrainConfig(needConfig('pretrain', v), overrides(v));
      const summary = await pretrain(cfg, { signal: stopOnSigint() });
      const out = resolve(cfg.run.out_dir);
      process.stdout.write(
        `pretrain: ${summary.steps} steps, held-out nll ${summary.initial_held_out_nll.toFixed(4)} -> ` +
          `${summary.final_held_out_nll.toFixed(4)} (unigram ${summary.unigram_held_out_nll.toFixed(4)}), ` +
          `${summary.tokens_per_s.toFixed(0)} tokens/s\n`,
      );
      const files = ['final', 'metrics.jsonl', 'loss.svg', 'summary.json'].map((f) => join(out, f));
      process.stdout.write(resultsIn(files.filter((f) => existsSync(f))));
      return 0;
    },
  },
  train: {
    summary: 'reinforcement mid-training from model.init_from (metrics, checkpoints, eval.json, plots)',
    usage: 'rmt train --config <yaml> [--method M] [flags]',
    flags: { ...common, ...steps, ...method },
    async run(v) {
      const cfg = loadTrainConfig(needConfig('train', v), overrides(v));
      checkInitFrom(cfg);
      const summary = await train(cfg, { signal: stopOnSigint() });
      if (summary.eval)
        process.stdout.write(formatEvalResult(summary.eval, `${cfg.method}: held-out accuracy`));
      process.stdout.write(
        `${summary.steps} steps in ${summary.wall_s.toFixed(0)} s; model: ${summary.final_checkpoint || '(not finished)'}\n`,
      );
      process.stdout.write(resultsIn(summary.files));
      return 0;
    },
  },
  eval: {
    summary: 'next-token accuracy on held-out positions, split easy / medium / hard by proxy entropy',
    usage: 'rmt eval --config <yaml> --checkpoint <dir> [--mode ntp|ntr] [--method M] [--json] [flags]',
    flags: {
      ...common,
      ...withoutEnv(
        defineFlags({
          checkpoint: { type: 'string', arg: '<dir>', doc: 'the checkpoint folder to evaluate' },
          mode: MODE,
          json: { type: 'bool', doc: 'print the result as JSON instead of a table' },
        }),
      ),
      ...method,
    },
    async run(v) {
      const config = needConfig('eval', v);
      if (typeof v.checkpoint !== 'string') throw new UsageError('eval needs --checkpoint <dir>', 'eval');
      const mode = v.mode as 'ntp' | 'ntr';
      // The method decides the prompt (whether and which budget is stated): `--method ntr` for a base model.
      const cfg = loadTrainConfig(config, overrides(v));
      const backend = await createBackend(cfg.run.backend);
      try {
        const { result } = await evaluateCheckpoint(
          backend,
          cfg,
          v.checkpoint,
          mode,
          (l) => process.stderr.write(`${l}\n`),
          evalProgress(`eval ${mode}`),
        );
        const out = resolve(cfg.run.out_dir);
        mkdirSync(out, { recursive: true });
        const file = join(out, `eval-${mode}-${basename(resolve(v.checkpoint))}.json`);
        writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
        if (v.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        else {
          process.stdout.write(formatEvalResult(result, `${v.checkpoint} (${mode}, method ${cfg.method})`));
          process.stdout.write(resultsIn([file]));
        }
      } finally {
        await backend.dispose();
      }
      return 0;
    },
  },
};

VERBS.compare = {
  summary: 'checkpoints evaluated on the same held-out positions under one prompt, side by side',
  usage:
    'rmt compare --config <yaml> --checkpoint <dir> --checkpoint <dir> [--name N --name N] [--mode ntr|ntp] [--json]',
  flags: {
    ...common,
    ...withoutEnv(
      defineFlags({
        checkpoint: { type: 'list', env: false, arg: '<dir>', doc: 'a checkpoint folder (one per row)' },
        name: {
          type: 'list',
          env: false,
          arg: '<name>',
          doc: 'its row name in the table (default: the folder)',
        },
        mode: MODE,
        json: { type: 'bool', doc: 'print the results as JSON instead of a table' },
      }),
    ),
    ...method,
  },
  async run(v) {
    const config = needConfig('compare', v);
    const dirs = (v.checkpoint as string[] | undefined) ?? [];
    if (dirs.length === 0) throw new UsageError('compare needs --checkpoint <dir> at least once', 'compare');
    const names = (v.name as string[] | undefined) ?? [];
    if (names.length > 0 && names.length !== dirs.length) {
      throw new UsageError(`--name given ${names.length} times for ${dirs.length} checkpoints`, 'compare');
    }
    const mode = v.mode as 'ntp' | 'ntr';
    // One method, so one prompt and one stated budget for every checkpoint: like against like.
    const cfg = loadTrainConfig(config, overrides(v));
    const backend = await createBackend(cfg.run.backend);
    const rows: { name: string; checkpoint: string; result: EvalResult }[] = [];
    try {
      for (const [i, dir] of dirs.entries()) {
        const { result } = await evaluateCheckpoint(backend, cfg, dir, mode, (l) =>
          process.stderr.write(`${l}\n`),
        );
        rows.push({ name: names[i] ?? basename(resolve(dir)), checkpoint: dir, result });
      }
    } finally {
      await backend.dispose();
    }
    const out = resolve(cfg.run.out_dir);
    mkdirSync(out, { recursive: true });
    const file = join(out, `compare-${mode}.json`);
    // every later row against the first (the base), pair by pair on the same positions
    const paired = rows.slice(1).map((r) => ({
      a: rows[0].name,
      b: r.name,
      ...pairedDifference(parseHits(rows[0].result.hits ?? ''), parseHits(r.result.hits ?? '')),
    }));
    writeFileSync(
      file,
      `${JSON.stringify({ method: cfg.method, budget: evalBudget(cfg), rows, paired }, null, 2)}\n`,
    );
    if (v.json) process.stdout.write(`${JSON.stringify({ rows, paired }, null, 2)}\n`);
    else {
      const b = evalBudget(cfg);
      process.stdout.write(
        `held-out next-token accuracy (${mode}, prompt of ${cfg.method}, ${b === null ? 'no budget stated' : `budget ${b} stated`}, same positions)\n\n`,
      );
      process.stdout.write(formatComparison(rows));
      if (paired.length) process.stdout.write('\n');
      for (const d of paired) process.stdout.write(formatPairedDifference(d.a, d.b, d));
      process.stdout.write(resultsIn([file]));
    }
    return 0;
  },
};

/** Verbs with parsers of their own (service flags and RMT_* environment variables). */
const DELEGATED: Record<string, { summary: string; usage: string; run(argv: string[]): Promise<number> }> = {
  up: {
    summary: 'the training job on a local cluster: nats-server and the four services as processes',
    usage: 'rmt up --config <yaml> [--rollout-workers N] [--method M] [--steps N]',
    run: up,
  },
  status: {
    summary: "a run's progress and the rollout workers, from a coordinator",
    usage: 'rmt status [--coordinator host:port] [--watch] (rmt status --help)',
    run: status,
  },
  submit: {
    summary: 'start a run on a coordinator (or follow the active one) and print its status until it ends',
    usage: 'rmt submit --config <yaml> [--coordinator host:port] [--no-watch] (rmt submit --help)',
    run: submit,
  },
};

const SERVICES = ['scorer', 'rollout', 'learner', 'coordinator'] as const;
const SERVE_USAGE = `usage: rmt serve <${SERVICES.join('|')}> [flags]

one service process; rmt serve <name> --help lists its flags and RMT_* environment variables
`;

function usage(): string {
  const lines = [
    ...Object.entries(VERBS).map(([name, v]) => [name, v.summary] as const),
    ...Object.entries(DELEGATED).map(([name, v]) => [name, v.summary] as const),
    ['serve', 'one gRPC service process (scorer | rollout | learner | coordinator)'] as const,
  ];
  return `usage: rmt <command> [flags]   (rmt <command> --help for its flags)

commands:
${lines.map(([n, s]) => `  ${n.padEnd(10)} ${s}`).join('\n')}
`;
}

function verbUsage(verb: Verb): string {
  return helpText(verb.flags, `usage: ${verb.usage}\n\n${verb.summary}`);
}

class UsageError extends Error {
  constructor(
    message: string,
    readonly verb?: string,
  ) {
    super(message);
  }
}

async function main(argv: string[]): Promise<number | 'serving'> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === 'serve') {
    const svc = rest[0];
    if (svc === '-h' || svc === '--help') {
      process.stdout.write(SERVE_USAGE);
      return 0;
    }
    if (!SERVICES.includes(svc as (typeof SERVICES)[number])) {
      throw new UsageError(
        `serve needs one of ${SERVICES.join(', ')}${didYouMean(svc ?? '', SERVICES)}`,
        'serve',
      );
    }
    const mod = (await import(`../services/${svc}/main.ts`)) as { main(argv: string[]): Promise<void> };
    await mod.main(rest.slice(1));
    return 'serving';
  }
  if (name in DELEGATED) return DELEGATED[name].run(rest);
  const verb = VERBS[name];
  if (!verb) {
    throw new UsageError(
      `unknown command "${name}"${didYouMean(name, [...Object.keys(VERBS), ...Object.keys(DELEGATED), 'serve'])}`,
    );
  }
  let values: Record<string, string | boolean | number | string[] | undefined>;
  try {
    values = parseServiceFlags(verb.flags, rest, {}) as typeof values;
  } catch (e) {
    if (e instanceof HelpRequested) {
      process.stdout.write(verbUsage(verb));
      return 0;
    }
    if (e instanceof FlagError) throw new UsageError(`rmt ${name}: ${e.message}`, name);
    throw e;
  }
  if (typeof values.method === 'string' && !METHODS.includes(values.method)) {
    throw new UsageError(
      `unknown method "${values.method}"${didYouMean(values.method, METHODS)}; one of ${METHODS.join(', ')}`,
      name,
    );
  }
  return verb.run(values);
}

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

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 'serving') process.exit(code);
  },
  (err: Error) => {
    process.stderr.write(`rmt: ${err.message}\n`);
    if (err instanceof UsageError) {
      const verb = err.verb ? VERBS[err.verb] : undefined;
      process.stderr.write(
        verb
          ? `usage: ${verb.usage} (rmt ${err.verb} --help)\n`
          : err.verb === 'serve'
            ? SERVE_USAGE
            : usage(),
      );
    } else if (process.env.RMT_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
