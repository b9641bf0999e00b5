/**
 * `npm run bench:model`: rmt's learner step and KV-cache generation against PyTorch float32 eager on
 * the same machine, the same model shapes and the same batch, in one invocation.
 *
 * Cases, for each bench model (BENCH_MODELS below):
 * - learner step: forward + weighted next-token loss (read on the host) + backward + global-norm
 *   clipping + AdamW on a fixed random batch of `batch x seq` tokens; tokens/s = batch*seq / median
 *   step time. rmt's step ends with a read of the last updated parameter, so queued GPU work counts.
 * - generation: greedy decoding of G sequences with the KV cache (prompt P, N new tokens: a prefill
 *   and N-1 single-token steps, every step's logits read on the host); tokens/s = G*N / median time
 *   of the whole generation, prefill included.
 *
 * The PyTorch side is bench/torch_model.py (spawned with a JSON spec on stdin; it refuses the
 * reference BLAS). ratio = rmt / PyTorch: higher is better. Writes bench/results/model-<machine>.json
 * and .md (machine `cpu` or `gpu`, chosen from the backend unless --machine is given).
 *
 * Usage: npm run bench:model -- [--backend auto|webgpu|webasm|cpu|reference] [--machine cpu|gpu]
 *   [--torch-device cpu|cuda] [--python EXE] [--threads 2] [--models tiny,small] [--warmup 2]
 *   [--repeats 10] [--gen-repeats 3] [--max-seconds 60] [--out bench/results] [--no-torch] [--quick]
 *   [--webgpu-variants off,pool,pool+batch,pool+batch+staged,wgsl-optimizer,all,all-batch-256,all-batch-16]
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend } from '../shared/kernels/backend.js';
import { GpujsBackend, type GpujsOptions } from '../shared/kernels/gpujs/backend.js';
import { BACKEND_CHOICES, type BackendChoice, createBackend, setupWebgpu } from '../shared/kernels/index.js';
import type { ModelConfig } from '../shared/model/config.js';
import { paramSpecs } from '../shared/model/params.js';
import { BENCH_MODELS, generationCase, learnerCase, OPTIMIZER, SHAPES } from './models.js';

/**
 * The webgpu host-cost settings `--webgpu-variants` compares (shared/kernels/gpujs/device-batching.ts
 * and wgsl-optimizer.ts), each run in the same process against the same PyTorch numbers.
 */
const WEBGPU_VARIANTS: Record<string, GpujsOptions> = {
  off: { deviceBatching: { bufferPool: false, batchSubmits: false }, wgslOptimizer: false },
  pool: { deviceBatching: { bufferPool: true, batchSubmits: false }, wgslOptimizer: false },
  'pool+batch': {
    deviceBatching: { bufferPool: true, batchSubmits: true, stageWrites: false },
    wgslOptimizer: false,
  },
  'pool+batch+staged': {
    deviceBatching: { bufferPool: true, batchSubmits: true, stageWrites: true },
    wgslOptimizer: false,
  },
  'wgsl-optimizer': { deviceBatching: { bufferPool: false, batchSubmits: false }, wgslOptimizer: true },
  all: { deviceBatching: { bufferPool: true, batchSubmits: true, stageWrites: true }, wgslOptimizer: true },
  'all-batch-256': { deviceBatching: { maxBatch: 256 }, wgslOptimizer: true },
  'all-batch-16': { deviceBatching: { maxBatch: 16 }, wgslOptimizer: true },
};

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

interface Args {
  backend: BackendChoice;
  machine: string | null;
  torchDevice: string | null;
  python: string | null;
  threads: number;
  models: string[];
  warmup: number;
  repeats: number;
  genWarmup: number;
  genRepeats: number;
  maxSeconds: number;
  out: string;
  torch: boolean;
  /** webgpu: device-batching settings also measured, by name (WEBGPU_VARIANTS). */
  variants: string[];
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    backend: 'auto',
    machine: null,
    torchDevice: null,
    python: process.env.RMT_PYTHON ?? null,
    threads: 2,
    models: Object.keys(BENCH_MODELS),
    warmup: 2,
    repeats: 10,
    genWarmup: 1,
    genRepeats: 3,
    maxSeconds: 60,
    out: join(ROOT, 'bench', 'results'),
    torch: true,
    variants: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const int = (): number => {
      const v = Number(value());
      if (!Number.isInteger(v) || v < 0) throw new Error(`${flag} needs a non-negative integer`);
      return v;
    };
    switch (flag) {
      case '--backend': {
        const b = value() as BackendChoice;
        if (!BACKEND_CHOICES.includes(b)) throw new Error(`--backend: one of ${BACKEND_CHOICES.join(', ')}`);
        a.backend = b;
        break;
      }
      case '--machine':
        a.machine = value();
        if (!/^[a-z0-9-]+$/.test(a.machine)) throw new Error('--machine: lowercase letters, digits, -');
        break;
      case '--torch-device':
        a.torchDevice = value();
        break;
      case '--python':
        a.python = value();
        break;
      case '--threads':
        a.threads = int();
        break;
      case '--models':
        a.models = value().split(',');
        for (const m of a.models) if (!BENCH_MODELS[m]) throw new Error(`--models: unknown model ${m}`);
        break;
      case '--warmup':
        a.warmup = int();
        break;
      case '--repeats':
        a.repeats = Math.max(1, int());
        break;
      case '--gen-warmup':
        a.genWarmup = int();
        break;
      case '--gen-repeats':
        a.genRepeats = Math.max(1, int());
        break;
      case '--max-seconds':
        a.maxSeconds = int();
        break;
      case '--out':
        a.out = resolve(value());
        break;
      case '--no-torch':
        a.torch = false;
        break;
      case '--webgpu-variants':
        a.variants = value().split(',');
        for (const v of a.variants) {
          if (!WEBGPU_VARIANTS[v])
            throw new Error(`--webgpu-variants: one of ${Object.keys(WEBGPU_VARIANTS).join(', ')}`);
        }
        break;
      case '--quick':
        a.warmup = 1;
        a.repeats = 3;
        a.genWarmup = 0;
        a.genRepeats = 1;
        a.maxSeconds = 10;
        break;
      case '-h':
      case '--help':
        console.log(readUsage());
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${flag}\n${readUsage()}`);
    }
  }
  return a;
}

function readUsage(): string {
  return 'usage: bench/model.ts [--backend auto|webgpu|webasm|cpu|reference] [--machine cpu|gpu] [--torch-device cpu|cuda] [--python EXE] [--threads N] [--models tiny,small] [--warmup N] [--repeats N] [--gen-warmup N] [--gen-repeats N] [--max-seconds S] [--out DIR] [--no-torch] [--quick]';
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
};

/** Warm-up calls, then timed calls until `repeats` (or at least 3 and `maxSeconds` spent). */
async function timed(fn: () => Promise<void>, warmup: number, repeats: number, maxSeconds: number) {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < repeats) {
    const t0 = performance.now();
    await fn();
    times.push((performance.now() - t0) / 1000);
    if (times.length >= 3 && (performance.now() - start) / 1000 > maxSeconds) break;
  }
  return times;
}

interface TrainResult {
  tokens_per_step: number;
  step_seconds: number[];
  tokens_per_s: number;
  first_loss: number;
  last_loss: number;
}
interface GenResult {
  tokens_per_generation: number;
  generation_seconds: number[];
  tokens_per_s: number;
}

async function rmtTrain(be: Backend, c: ModelConfig, a: Args): Promise<TrainResult> {
  const learner = learnerCase(be, c);
  const losses: number[] = [];
  const times = await timed(
    async () => void losses.push(await learner.run()),
    a.warmup,
    a.repeats,
    a.maxSeconds,
  );
  learner.free();
  const tokens = SHAPES.batch * SHAPES.seq;
  return {
    tokens_per_step: tokens,
    step_seconds: times,
    tokens_per_s: tokens / median(times),
    first_loss: losses[0],
    last_loss: losses[losses.length - 1],
  };
}

async function rmtGenerate(be: Backend, c: ModelConfig, a: Args): Promise<GenResult> {
  const gen = generationCase(be, c);
  const times = await timed(gen.run, a.genWarmup, a.genRepeats, a.maxSeconds);
  gen.free();
  const tokens = SHAPES.genBatch * SHAPES.newTokens;
  return { tokens_per_generation: tokens, generation_seconds: times, tokens_per_s: tokens / median(times) };
}

interface TorchOutput {
  info: Record<string, unknown>;
  results: Record<string, { params: number; train?: TrainResult; generate?: GenResult }>;
}

function findPython(a: Args): string {
  const candidates = [a.python, 'python3', '/usr/bin/python3'].filter((p): p is string => !!p);
  for (const exe of candidates) {
    const r = spawnSync(exe, ['-c', 'import torch'], { stdio: 'ignore' });
    if (r.status === 0) return exe;
  }
  throw new Error(
    `no Python with torch among ${candidates.join(', ')} (Debian: apt-get install -y python3-torch libopenblas0-pthread; or --python / RMT_PYTHON)`,
  );
}

function runTorch(a: Args, device: string): Promise<TorchOutput> {
  const python = findPython(a);
  const spec = {
    device,
    threads: a.threads,
    batch: SHAPES.batch,
    seq: SHAPES.seq,
    gen_batch: SHAPES.genBatch,
    prompt: SHAPES.prompt,
    new_tokens: SHAPES.newTokens,
    warmup: a.warmup,
    repeats: a.repeats,
    gen_warmup: a.genWarmup,
    gen_repeats: a.genRepeats,
    max_seconds: a.maxSeconds,
    optimizer: OPTIMIZER,
    models: Object.fromEntries(a.models.map((m) => [m, BENCH_MODELS[m]])),
  };
  console.log(`PyTorch: ${python} bench/torch_model.py (device ${device})`);
  return new Promise((res, rej) => {
    const child = spawn(python, [join(ROOT, 'bench', 'torch_model.py')], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, PYTHONUNBUFFERED: '1' },
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.on('error', rej);
    child.on('close', (code) => {
      if (code === 3)
        rej(new Error('PyTorch uses the reference BLAS: refusing to compare (see message above)'));
      else if (code !== 0) rej(new Error(`bench/torch_model.py exited with status ${code}`));
      else {
        try {
          res(JSON.parse(out) as TorchOutput);
        } catch (e) {
          rej(new Error(`bench/torch_model.py printed no JSON: ${String(e)}\n${out.slice(0, 2000)}`));
        }
      }
    });
    child.stdin.end(JSON.stringify(spec));
  });
}

function gitCommit(): string {
  if (process.env.RMT_COMMIT) return process.env.RMT_COMMIT;
  const r = spawnSync('git', ['describe', '--always', '--dirty', '--abbrev=12'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

function cpuDescription(): string {
  const cpus = os.cpus();
  return `${cpus[0]?.model ?? 'unknown CPU'} x ${cpus.length} (${(os.totalmem() / 2 ** 30).toFixed(0)} GiB)`;
}

interface Case {
  name: string;
  model: string;
  kind: 'learner_step' | 'generation';
  unit: 'tokens/s';
  shape: Record<string, number>;
  rmt: number;
  baseline: number | null;
  ratio: number | null;
  rmt_seconds: number[];
  baseline_seconds: number[] | null;
  rmt_loss?: [number, number];
  baseline_loss?: [number, number];
}

const round2 = (x: number) => Math.round(x * 100) / 100;
const fmt = (x: number | null, d = 0) => (x === null ? '-' : x.toFixed(d));

function table(cases: Case[], rmtLabel: string, baseLabel: string): string {
  const rows = [
    ['case', `rmt (${rmtLabel})`, `PyTorch (${baseLabel})`, 'ratio', 'unit'],
    ...cases.map((c) => [c.name, fmt(c.rmt), fmt(c.baseline), fmt(c.ratio, 3), c.unit]),
  ];
  const widths = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  return rows
    .map((r) => r.map((s, j) => (j === 0 ? s.padEnd(widths[j]) : s.padStart(widths[j]))).join('  '))
    .join('\n');
}

interface VariantCell {
  learner_step: number;
  learner_step_ratio: number | null;
  generation: number;
  generation_ratio: number | null;
}

/** The `--webgpu-variants` rows: tokens/s and ratio to the same PyTorch numbers, per setting. */
function variantTable(variants: Record<string, Record<string, VariantCell>>): string[] {
  const names = Object.keys(variants);
  if (names.length === 0) return [''];
  const models = Object.keys(variants[names[0]]).filter((k) => k !== 'settings');
  const cell = (x: number, r: number | null) => `${fmt(x)}${r === null ? '' : ` (${fmt(r, 3)})`}`;
  return [
    '',
    'Host-cost settings (`--webgpu-variants`: shared/kernels/gpujs/device-batching.ts and wgsl-optimizer.ts), same process, tokens/s (ratio to PyTorch):',
    '',
    `| setting | ${models.map((m) => `${m} learner step | ${m} generation`).join(' | ')} |`,
    `|---|${models.map(() => '---:|---:').join('|')}|`,
    ...names.map(
      (v) =>
        `| ${v} | ${models
          .map((m) => {
            const c = variants[v][m];
            return `${cell(c.learner_step, c.learner_step_ratio)} | ${cell(c.generation, c.generation_ratio)}`;
          })
          .join(' | ')} |`,
    ),
    '',
  ];
}

function markdown(
  report: Record<string, unknown>,
  cases: Case[],
  rmtLabel: string,
  baseLabel: string,
): string {
  const d = report.description as Record<string, unknown>;
  const lines = [
    `# bench:model on \`${report.machine}\``,
    '',
    `Commit ${report.commit}, ${report.created}. Written by \`npm run bench:model -- ${(report.argv as string[]).join(' ')}\`.`,
    '',
    `- machine: ${d.cpu}; ${d.os}; Node ${d.node}; 1-minute load average ${(d.load_average as { start: number }).start} at the start, ${(d.load_average as { end: number }).end} at the end`,
    `- rmt backend: ${d.rmt_backend}${d.webgpu ? ` (WebGPU: ${d.webgpu})` : ''}`,
    `- baseline: ${d.baseline}`,
    `- learner step: forward + loss + backward + clip + AdamW on batch ${SHAPES.batch} x seq ${SHAPES.seq}; generation: G = ${SHAPES.genBatch}, prompt ${SHAPES.prompt}, ${SHAPES.newTokens} new tokens, greedy, KV cache, prefill included`,
    '- medians over the repeats; ratio = rmt / PyTorch (higher is better)',
    '',
    `| case | rmt (${rmtLabel}) | PyTorch (${baseLabel}) | ratio | unit |`,
    '|---|---:|---:|---:|---|',
    ...cases.map(
      (c) => `| ${c.name} | ${fmt(c.rmt)} | ${fmt(c.baseline)} | ${fmt(c.ratio, 3)} | ${c.unit} |`,
    ),
    ...variantTable(report.webgpu_variants as Record<string, Record<string, VariantCell>>),
    '| model | layers | hidden | intermediate | heads / kv | head_dim | vocab | params |',
    '|---|---:|---:|---:|---|---:|---:|---:|',
    ...Object.entries(report.models as Record<string, { config: ModelConfig; params: number }>).map(
      ([n, m]) =>
        `| ${n} | ${m.config.num_hidden_layers} | ${m.config.hidden_size} | ${m.config.intermediate_size} | ${m.config.num_attention_heads} / ${m.config.num_key_value_heads} | ${m.config.head_dim} | ${m.config.vocab_size} | ${m.params} |`,
    ),
    '',
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const loadBefore = os.loadavg();
  const be = await createBackend(a.backend);
  const gpu = be.name === 'webgpu' ? await setupWebgpu() : null;
  const onGpu = gpu?.ok === true && !gpu.software;
  const machine = a.machine ?? (onGpu ? 'gpu' : 'cpu');
  const torchDevice = a.torchDevice ?? (machine === 'gpu' ? 'cuda' : 'cpu');
  console.log(`rmt backend: ${be.name}${gpu ? ` (${gpu.reason})` : ''}; machine: ${machine}`);

  // PyTorch first: a machine whose PyTorch uses the reference BLAS is refused before the long part
  const torch = a.torch ? await runTorch(a, torchDevice) : null;

  const rmt: Record<string, { train: TrainResult; generate: GenResult }> = {};
  for (const name of a.models) {
    const c = BENCH_MODELS[name];
    const train = await rmtTrain(be, c, a);
    console.log(`rmt: ${name} train ${train.tokens_per_s.toFixed(0)} tok/s`);
    const gen = await rmtGenerate(be, c, a);
    console.log(`rmt: ${name} generate ${gen.tokens_per_s.toFixed(0)} tok/s`);
    rmt[name] = { train, generate: gen };
  }

  // the same cases under other device-batching settings, on the same device, after the main run
  const variants: Record<string, Record<string, unknown>> = {};
  if (be.name === 'webgpu') {
    for (const v of a.variants) {
      const vb = await GpujsBackend.create('webgpu', WEBGPU_VARIANTS[v]);
      const row: Record<string, unknown> = { settings: WEBGPU_VARIANTS[v] };
      for (const name of a.models) {
        const c = BENCH_MODELS[name];
        const before = vb.deviceBatchingStats();
        const train = await rmtTrain(vb, c, a);
        const after = vb.deviceBatchingStats();
        const gen = await rmtGenerate(vb, c, a);
        const t = torch?.results[name];
        row[name] = {
          learner_step: train.tokens_per_s,
          learner_step_ratio: t?.train ? train.tokens_per_s / t.train.tokens_per_s : null,
          generation: gen.tokens_per_s,
          generation_ratio: t?.generate ? gen.tokens_per_s / t.generate.tokens_per_s : null,
          // over the warmup and timed learner steps
          submits: before && after ? after.submits - before.submits : null,
          command_buffers: before && after ? after.commandBuffers - before.commandBuffers : null,
        };
        console.log(
          `rmt [${v}]: ${name} train ${train.tokens_per_s.toFixed(0)} tok/s, generate ${gen.tokens_per_s.toFixed(0)} tok/s`,
        );
      }
      variants[v] = row;
      await vb.dispose();
    }
  }

  const cases: Case[] = [];
  for (const name of a.models) {
    const t = torch?.results[name];
    const mk = (
      kind: Case['kind'],
      r: TrainResult | GenResult,
      b: TrainResult | GenResult | undefined,
      shape: Record<string, number>,
    ): Case => {
      const secs = (x: TrainResult | GenResult) =>
        'step_seconds' in x ? x.step_seconds : x.generation_seconds;
      const c: Case = {
        name: `${name} ${kind === 'learner_step' ? 'learner step' : 'generation'}`,
        model: name,
        kind,
        unit: 'tokens/s',
        shape,
        rmt: r.tokens_per_s,
        baseline: b ? b.tokens_per_s : null,
        ratio: b ? r.tokens_per_s / b.tokens_per_s : null,
        rmt_seconds: secs(r),
        baseline_seconds: b ? secs(b) : null,
      };
      if ('first_loss' in r) c.rmt_loss = [r.first_loss, r.last_loss];
      if (b && 'first_loss' in b) c.baseline_loss = [b.first_loss, b.last_loss];
      return c;
    };
    cases.push(mk('learner_step', rmt[name].train, t?.train, { batch: SHAPES.batch, seq: SHAPES.seq }));
    cases.push(
      mk('generation', rmt[name].generate, t?.generate, {
        sequences: SHAPES.genBatch,
        prompt: SHAPES.prompt,
        new_tokens: SHAPES.newTokens,
      }),
    );
  }

  const ti = torch?.info ?? {};
  const baseLabel = torch
    ? `${ti.torch}, ${ti.device}${ti.blas ? `, ${ti.blas}, ${ti.threads} threads` : ''}${ti.gpu ? `, TF32 ${ti.tf32 ? 'on' : 'off'}` : ''}`
    : 'not run';
  const rmtLabel = be.name;
  const report = {
    bench: 'model',
    machine,
    created: new Date().toISOString(),
    commit: gitCommit(),
    argv: process.argv.slice(2),
    description: {
      cpu: cpuDescription(),
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      node: process.versions.node,
      rmt_backend: be.name,
      webgpu: gpu?.reason ?? null,
      gpu: (ti.gpu as string | undefined) ?? null,
      baseline: torch
        ? `PyTorch ${ti.torch} float32 eager on ${ti.device}${ti.gpu ? ` (${ti.gpu}, CUDA ${ti.cuda}, TF32 ${ti.tf32 ? 'on' : 'off'})` : ` (BLAS ${ti.blas}: ${ti.blas_detail}; ${ti.threads} threads)`}; 1024^2 sgemm ${ti.sgemm_1024_gflops} GFLOP/s`
        : 'not run (--no-torch)',
      torch: ti,
      // other work on a shared machine shows here: 1-minute load averages at the start and the end
      load_average: { start: round2(loadBefore[0]), end: round2(os.loadavg()[0]), cores: os.cpus().length },
    },
    settings: {
      shapes: SHAPES,
      optimizer: OPTIMIZER,
      warmup: a.warmup,
      repeats: a.repeats,
      gen_warmup: a.genWarmup,
      gen_repeats: a.genRepeats,
      max_seconds: a.maxSeconds,
      threads: a.threads,
    },
    models: Object.fromEntries(
      a.models.map((m) => [
        m,
        {
          config: BENCH_MODELS[m],
          params: paramSpecs(BENCH_MODELS[m]).reduce((s, p) => s + p.shape.reduce((x, y) => x * y, 1), 0),
        },
      ]),
    ),
    cases,
    device_batching: be instanceof GpujsBackend ? (be.deviceBatchingSettings() ?? null) : null,
    wgsl_optimizer: be instanceof GpujsBackend ? be.adamwInPlace !== undefined : null,
    webgpu_variants: variants,
  };
  console.log('');
  console.log(table(cases, rmtLabel, baseLabel));
  mkdirSync(a.out, { recursive: true });
  const jsonPath = join(a.out, `model-${machine}.json`);
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(a.out, `model-${machine}.md`), markdown(report, cases, rmtLabel, baseLabel));
  console.log(`\nwrote ${jsonPath} and .md`);
  await be.dispose();
}

main().then(
  () => process.exit(0), // Dawn keeps the process alive otherwise
  (e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  },
);
