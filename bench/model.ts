/**
 * `npm run bench:model`: rmt's learner step and KV-cache generation against PyTorch float32 eager on
 * the same machine, the same model shapes and the same batch, in one invocation.
 *
 * Cases, for each bench model (bench/models.ts; shapes per model from shapesOf):
 * - learner step: forward + weighted next-token loss (read on the host) + backward + global-norm
 *   clipping + AdamW on a fixed random batch of `batch x seq` tokens; tokens/s = batch*seq / step time.
 *   rmt's step ends with a read of the last updated parameter, so queued GPU work counts.
 * - generation: greedy decoding of G sequences with the KV cache (prompt P, N new tokens: a prefill
 *   and N-1 single-token steps, every step's logits read on the host); tokens/s = G*N / time of the
 *   whole generation, prefill included.
 *
 * Method (bench/rounds.ts): the PyTorch side (bench/torch_model.py) is a persistent child; for each
 * case, after the warm-up of both, --rounds rounds alternate the sides (the order flips every round),
 * each side running --repeats steps (--gen-repeats generations) inside the round. A round's ratio is
 * rmt's tokens/s over PyTorch's, each from the median of its repeats in that round; a case reports the
 * median ratio over rounds with min-max and interquartile range, the load of every round (1-minute
 * load average, cores other processes kept busy) and the median over rounds not marked loaded. Peak
 * RSS (process high-water marks of rmt and of the PyTorch child) is recorded after each case.
 * On CPU the baseline runs on its best OpenBLAS core (bench/openblas.ts) with OMP_WAIT_POLICY=PASSIVE
 * (--omp-wait-policy): with the default active policy, PyTorch's OpenMP threads spin-wait for
 * partners, and once another process takes a core its small-op steps slow down by 10-40x (small
 * learner step on a shared 2-core VM: 29-64 tokens/s active, 300-2241 passive, alternated); it
 * refuses the reference BLAS. Writes bench/results/model-<machine>.json and .md (machine `cpu` or `gpu`, from the backend
 * unless --machine is given).
 *
 * Usage: npm run bench:model -- [--backend auto|webgpu|webasm|cpu|reference] [--machine cpu|gpu]
 *   [--torch-device cpu|cuda] [--python EXE] [--threads 2] [--models tiny,small,medium] [--rounds 5]
 *   [--warmup 2] [--repeats 3] [--gen-warmup 1] [--gen-repeats 1] [--max-seconds 60 (per side and round)]
 *   [--omp-wait-policy passive|active|inherit] [--blas-dir DIR] [--coretype NAME]
 *   [--measure-cores] [--out bench/results] [--no-torch] [--quick]
 *   [--webgpu-variants off,off+tiled,pool,pool+batch,pool+batch+staged,wgsl-optimizer,all,all-batch-256,all-batch-16]
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { BACKEND_CHOICES, type BackendChoice, createBackend, setupWebgpu } from '../shared/kernels/index.js';
import { WasmMatmul } from '../shared/kernels/wasm/matmul.js';
import { WebgpuBackend, type WebgpuOptions } from '../shared/kernels/webgpu/backend.js';
import type { ModelConfig } from '../shared/model/config.js';
import { paramSpecs } from '../shared/model/params.js';
import { BENCH_MODELS, generationCase, learnerCase, OPTIMIZER, shapesOf } from './models.js';
import { baseTorchEnv, type CoreChoice, chooseCore, describeCore, withCore } from './openblas.js';
import {
  formatLoads,
  formatSpread,
  LOADED_CORES,
  median,
  processCpuSeconds,
  RoundMeter,
  type RoundRecord,
  type RoundSummary,
  summarize,
} from './rounds.js';

/**
 * The webgpu host-cost settings `--webgpu-variants` compares (shared/kernels/webgpu/device-batching.ts
 * and wgsl-optimizer.ts), each run in the same process against the same PyTorch numbers.
 */
const WEBGPU_VARIANTS: Record<string, WebgpuOptions> = {
  // Everything off, the tiled matmul too, so `off` stays comparable with results from before it.
  off: {
    deviceBatching: { bufferPool: false, batchSubmits: false },
    wgslOptimizer: false,
    tiledMatmul: false,
  },
  'off+tiled': { deviceBatching: { bufferPool: false, batchSubmits: false }, wgslOptimizer: false },
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
  rounds: number;
  warmup: number;
  repeats: number;
  genWarmup: number;
  genRepeats: number;
  /** Per side and round: stop the repeats once this many seconds are spent (at least one runs). */
  maxSeconds: number;
  out: string;
  torch: boolean;
  blasDir: string | null;
  /** OMP_WAIT_POLICY for the PyTorch child: 'inherit' leaves the environment's. */
  ompWaitPolicy: 'passive' | 'active' | 'inherit';
  coretype: string | null;
  measureCores: boolean;
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
    rounds: 5,
    warmup: 2,
    repeats: 3,
    genWarmup: 1,
    genRepeats: 1,
    maxSeconds: 60,
    out: join(ROOT, 'bench', 'results'),
    torch: true,
    blasDir: null,
    ompWaitPolicy: 'passive',
    coretype: null,
    measureCores: false,
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
      case '--rounds':
        a.rounds = Math.max(1, int());
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
        a.maxSeconds = Math.max(1, int());
        break;
      case '--out':
        a.out = resolve(value());
        break;
      case '--no-torch':
        a.torch = false;
        break;
      case '--blas-dir':
        a.blasDir = resolve(value());
        break;
      case '--omp-wait-policy': {
        const v = value();
        if (v !== 'passive' && v !== 'active' && v !== 'inherit')
          throw new Error('--omp-wait-policy: passive, active or inherit');
        a.ompWaitPolicy = v;
        break;
      }
      case '--coretype':
        a.coretype = value();
        if (!/^[A-Za-z0-9]+$/.test(a.coretype)) throw new Error('--coretype: an OpenBLAS core name');
        break;
      case '--measure-cores':
        a.measureCores = true;
        break;
      case '--webgpu-variants':
        a.variants = value().split(',');
        for (const v of a.variants) {
          if (!WEBGPU_VARIANTS[v])
            throw new Error(`--webgpu-variants: one of ${Object.keys(WEBGPU_VARIANTS).join(', ')}`);
        }
        break;
      case '--quick':
        a.rounds = 2;
        a.warmup = 1;
        a.repeats = 1;
        a.genWarmup = 0;
        a.genRepeats = 1;
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
  return 'usage: bench/model.ts [--backend auto|webgpu|webasm|cpu|reference] [--machine cpu|gpu] [--torch-device cpu|cuda] [--python EXE] [--threads N] [--models tiny,small,medium] [--rounds N] [--warmup N] [--repeats N] [--gen-warmup N] [--gen-repeats N] [--max-seconds S] [--omp-wait-policy passive|active|inherit] [--blas-dir DIR] [--coretype NAME] [--measure-cores] [--out DIR] [--no-torch] [--quick]';
}

/** Warm-up calls, then timed calls until `repeats`, or at least one and `maxSeconds` spent. */
async function timed(
  fn: () => Promise<unknown>,
  warmup: number,
  repeats: number,
  maxSeconds = Number.POSITIVE_INFINITY,
): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < repeats) {
    const t0 = performance.now();
    await fn();
    times.push((performance.now() - t0) / 1000);
    if ((performance.now() - start) / 1000 > maxSeconds) break;
  }
  return times;
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

interface TorchReply {
  seconds: number[];
  params: number;
  max_rss_mib: number | null;
  loss?: [number, number];
}

/** bench/torch_model.py as a persistent child: one JSON command a line, one JSON reply a line. */
class TorchModel {
  private readonly lines: Interface;
  private readonly queue: ((line: string) => void)[] = [];
  private closed = false;
  info: Record<string, unknown> = {};

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    this.lines = createInterface({ input: child.stdout });
    this.lines.on('line', (line) => this.queue.shift()?.(line));
    child.on('exit', () => {
      this.closed = true;
      for (const f of this.queue.splice(0)) f('');
    });
  }

  get pid(): number | null {
    return this.child.pid ?? null;
  }

  private next(): Promise<string> {
    return new Promise((res) => {
      if (this.closed) res('');
      else this.queue.push(res);
    });
  }

  static async start(python: string, spec: object, env: NodeJS.ProcessEnv): Promise<TorchModel> {
    const child = spawn(python, [join(ROOT, 'bench', 'torch_model.py')], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...env, PYTHONUNBUFFERED: '1' },
    }) as unknown as ChildProcessWithoutNullStreams;
    const t = new TorchModel(child);
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    const first = t.next();
    child.stdin.write(`${JSON.stringify(spec)}\n`);
    const line = await first;
    if (!line) {
      const code = await exited;
      if (code === 3)
        throw new Error('PyTorch uses the reference BLAS: refusing to compare (see message above)');
      throw new Error(`bench/torch_model.py exited with status ${code}`);
    }
    t.info = (JSON.parse(line) as { info: Record<string, unknown> }).info;
    return t;
  }

  async run(cmd: object): Promise<TorchReply> {
    const reply = this.next();
    this.child.stdin.write(`${JSON.stringify(cmd)}\n`);
    const line = await reply;
    if (!line) throw new Error('bench/torch_model.py exited during the run');
    return JSON.parse(line) as TorchReply;
  }

  close(): void {
    this.child.stdin.end();
  }
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
  /** Medians over rounds (tokens/s). */
  rmt: number;
  baseline: number | null;
  /** Median ratio over rounds. */
  ratio: number | null;
  summary: RoundSummary | null;
  rmt_seconds: number[][];
  baseline_seconds: number[][] | null;
  /** Process high-water marks after the case, MiB. */
  rmt_max_rss_mib: number;
  baseline_max_rss_mib: number | null;
  rmt_loss?: [number, number];
  baseline_loss?: [number, number];
}

const round2 = (x: number) => Math.round(x * 100) / 100;
const fmt = (x: number | null | undefined, d = 0) =>
  x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d);
const maxRssMiB = () => Math.round(process.resourceUsage().maxRSS / 102.4) / 10;

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
    'Host-cost settings (`--webgpu-variants`: shared/kernels/webgpu/device-batching.ts and wgsl-optimizer.ts), same process, tokens/s (ratio to PyTorch):',
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
  const st = report.settings as { rounds: number; repeats: number; gen_repeats: number };
  const la = d.load_average as { start: number[]; end: number[] };
  const lines = [
    `# bench:model on \`${report.machine}\``,
    '',
    `Commit ${report.commit}, ${report.created}. Written by \`npm run bench:model -- ${(report.argv as string[]).join(' ')}\`.`,
    '',
    `- machine: ${d.cpu}; ${d.os}; Node ${d.node}; load average (1/5/15 min) ${la.start.join(' / ')} at the start, ${la.end.join(' / ')} at the end`,
    `- rmt backend: ${d.rmt_backend}${d.wasm_variant ? ` (WebAssembly kernels: ${d.wasm_variant} build)` : ''}${d.webgpu ? ` (WebGPU: ${d.webgpu})` : ''}`,
    `- baseline: ${d.baseline}`,
    `- learner step: forward + loss + backward + clip + AdamW on batch x seq tokens; generation: G sequences, prompt P, N new tokens, greedy, KV cache, prefill included (shapes per case below)`,
    `- ${st.rounds} rounds per case; in each, rmt and PyTorch (order alternating) run ${st.repeats} learner steps or ${st.gen_repeats} generation(s) each after a shared warm-up; tokens/s are medians over rounds of each round's median; ratio = rmt / PyTorch per round (higher is better), median [min-max, IQR]. A round is *loaded* when other processes kept at least ${LOADED_CORES} of a core busy during it (per-round loads: cores taken by others, and the 1-minute load average at its start/end, are listed below and in the JSON); "unloaded" is the median ratio over the other rounds (their count in parentheses). On-CPU ratio: tokens per CPU-second each side used over its repeats (all its threads; the wasm pool and OpenBLAS/OpenMP both spin while waiting and are charged for it), less disturbed by other processes than the wall-clock ratio. RSS: process high-water marks after the case.`,
    '',
    `| case | shape | rmt (${rmtLabel}) | PyTorch (${baseLabel}) | ratio median [min-max, IQR] | unloaded ratio | loaded rounds | on-CPU ratio [min-max] | rmt / torch peak RSS MiB |`,
    '|---|---|---:|---:|---|---:|---|---|---|',
    ...cases.map(
      (c) =>
        `| ${c.name} | ${Object.entries(c.shape)
          .map(([k, v]) => `${k} ${v}`)
          .join(
            ', ',
          )} | ${fmt(c.rmt)} | ${fmt(c.baseline)} | ${formatSpread(c.summary?.ratio ?? null)} | ${c.summary?.ratioUnloaded ? `${fmt(c.summary.ratioUnloaded.median, 2)} (${c.summary.ratioUnloaded.n})` : '-'} | ${c.summary ? c.summary.loadedRounds.join(', ') || 'none' : '-'} | ${c.summary?.onCpu?.ratio ? `${fmt(c.summary.onCpu.ratio.median, 2)} [${fmt(c.summary.onCpu.ratio.min, 2)}-${fmt(c.summary.onCpu.ratio.max, 2)}]` : '-'} | ${fmt(c.rmt_max_rss_mib)} / ${fmt(c.baseline_max_rss_mib)} |`,
    ),
    '',
    'Per-round load (round: cores others kept busy (1-minute load average at start/end), * = loaded):',
    '',
    ...cases.map((c) => `- ${c.name}: ${c.summary ? formatLoads(c.summary.rounds) : '-'}`),
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

const medianOf = (xs: number[]) => median(xs);
const processCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** One case in rounds: rmt's `run` and PyTorch's command alternate; returns the case record. */
async function roundsOf(
  a: Args,
  label: string,
  tokens: number,
  rmtRun: () => Promise<unknown>,
  warmup: number,
  repeats: number,
  torch: TorchModel | null,
  torchCmd: Record<string, unknown>,
  meter: RoundMeter,
): Promise<{
  summary: RoundSummary | null;
  rmtSeconds: number[][];
  baseSeconds: number[][] | null;
  rmt: number;
  baseline: number | null;
  torchRss: number | null;
  torchLoss?: [number, number];
}> {
  await timed(rmtRun, warmup, 0);
  let torchRss: number | null = null;
  let torchLoss: [number, number] | undefined;
  if (torch) {
    const r = await torch.run({ ...torchCmd, warmup, repeats: 0 });
    torchRss = r.max_rss_mib;
  }
  const records: RoundRecord[] = [];
  const rmtSeconds: number[][] = [];
  const baseSeconds: number[][] = [];
  for (let r = 0; r < a.rounds; r++) {
    meter.begin();
    let mine: number[] = [];
    let theirs: TorchReply | null = null;
    const runTorch = async () => {
      if (torch) theirs = await torch.run({ ...torchCmd, warmup: 0, repeats, max_seconds: a.maxSeconds });
    };
    let mineCpu = 0;
    const runMine = async () => {
      const c0 = processCpu();
      mine = await timed(rmtRun, 0, repeats, a.maxSeconds);
      mineCpu = processCpu() - c0;
    };
    let theirsCpu = Number.NaN;
    const runTheirs = async () => {
      const pid = torch?.pid ?? null;
      const c0 = pid === null ? null : processCpuSeconds(pid);
      await runTorch();
      const c1 = pid === null ? null : processCpuSeconds(pid);
      if (c0 !== null && c1 !== null) theirsCpu = c1 - c0;
    };
    if (r % 2 === 0) {
      await runMine();
      await runTheirs();
    } else {
      await runTheirs();
      await runMine();
    }
    const load = meter.end();
    rmtSeconds.push(mine);
    const rmt = tokens / medianOf(mine);
    const t = theirs as TorchReply | null;
    if (t) {
      baseSeconds.push(t.seconds);
      torchRss = t.max_rss_mib;
      if (t.loss) torchLoss = torchLoss ? [torchLoss[0], t.loss[1]] : t.loss;
      const baseline = tokens / medianOf(t.seconds);
      // tokens per CPU-second over the round's repeats (10 ms ticks for the child)
      const onCpu =
        mineCpu > 0 && theirsCpu > 0
          ? { rmt: (tokens * mine.length) / mineCpu, baseline: (tokens * t.seconds.length) / theirsCpu }
          : undefined;
      records.push({ round: r + 1, rmt, baseline, ratio: rmt / baseline, load, onCpu });
    } else {
      records.push({ round: r + 1, rmt, baseline: Number.NaN, ratio: Number.NaN, load });
    }
  }
  const summary = torch ? summarize(records) : null;
  const rmt = torch ? (summary?.rmt?.median ?? Number.NaN) : tokens / medianOf(rmtSeconds.flat());
  const baseline = summary?.baseline?.median ?? null;
  console.log(
    `${label}: rmt ${fmt(rmt)} tok/s${baseline !== null ? `, PyTorch ${fmt(baseline)} tok/s, ratio ${formatSpread(summary?.ratio ?? null)}${summary?.loadedRounds.length ? ` (loaded rounds ${summary.loadedRounds.join(',')})` : ''}` : ''}`,
  );
  return {
    summary,
    rmtSeconds,
    baseSeconds: torch ? baseSeconds : null,
    rmt,
    baseline,
    torchRss,
    torchLoss,
  };
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
  let torch: TorchModel | null = null;
  let core: CoreChoice | null = null;
  if (a.torch) {
    const python = findPython(a);
    let env: NodeJS.ProcessEnv = { ...process.env };
    if (torchDevice === 'cpu') {
      const base = baseTorchEnv(a.threads, a.blasDir);
      core = chooseCore(python, a.threads, base, a.coretype, a.measureCores);
      console.log(describeCore(core));
      env = withCore(base, core.coretype);
      if (a.ompWaitPolicy !== 'inherit') env.OMP_WAIT_POLICY = a.ompWaitPolicy.toUpperCase();
    }
    console.log(`PyTorch: ${python} bench/torch_model.py (device ${torchDevice})`);
    torch = await TorchModel.start(
      python,
      { device: torchDevice, threads: a.threads, optimizer: OPTIMIZER },
      env,
    );
  }
  const meter = new RoundMeter(() => torch?.pid ?? null);

  const cases: Case[] = [];
  for (const name of a.models) {
    const c = BENCH_MODELS[name];
    const sh = shapesOf(name);
    const torchBase = {
      model: name,
      config: c,
      batch: sh.batch,
      seq: sh.seq,
      gen_batch: sh.genBatch,
      prompt: sh.prompt,
      new_tokens: sh.newTokens,
    };
    const learner = learnerCase(be, c, sh);
    const losses: number[] = [];
    const train = await roundsOf(
      a,
      `${name} learner step`,
      sh.batch * sh.seq,
      async () => void losses.push(await learner.run()),
      a.warmup,
      a.repeats,
      torch,
      { ...torchBase, kind: 'train' },
      meter,
    );
    learner.free();
    const trainCase: Case = {
      name: `${name} learner step`,
      model: name,
      kind: 'learner_step',
      unit: 'tokens/s',
      shape: { batch: sh.batch, seq: sh.seq },
      rmt: train.rmt,
      baseline: train.baseline,
      ratio: train.summary?.ratio?.median ?? null,
      summary: train.summary,
      rmt_seconds: train.rmtSeconds,
      baseline_seconds: train.baseSeconds,
      rmt_max_rss_mib: maxRssMiB(),
      baseline_max_rss_mib: train.torchRss,
      rmt_loss: [losses[0], losses[losses.length - 1]],
    };
    if (train.torchLoss) trainCase.baseline_loss = train.torchLoss;
    cases.push(trainCase);

    const gen = generationCase(be, c, sh);
    const g = await roundsOf(
      a,
      `${name} generation`,
      sh.genBatch * sh.newTokens,
      gen.run,
      a.genWarmup,
      a.genRepeats,
      torch,
      { ...torchBase, kind: 'generate' },
      meter,
    );
    gen.free();
    cases.push({
      name: `${name} generation`,
      model: name,
      kind: 'generation',
      unit: 'tokens/s',
      shape: { sequences: sh.genBatch, prompt: sh.prompt, new_tokens: sh.newTokens },
      rmt: g.rmt,
      baseline: g.baseline,
      ratio: g.summary?.ratio?.median ?? null,
      summary: g.summary,
      rmt_seconds: g.rmtSeconds,
      baseline_seconds: g.baseSeconds,
      rmt_max_rss_mib: maxRssMiB(),
      baseline_max_rss_mib: g.torchRss,
    });
  }
  torch?.close();

  // the same cases under other device-batching settings, on the same device, after the main run
  const variants: Record<string, Record<string, unknown>> = {};
  if (be.name === 'webgpu') {
    for (const v of a.variants) {
      const vb = await WebgpuBackend.create(WEBGPU_VARIANTS[v]);
      const row: Record<string, unknown> = { settings: WEBGPU_VARIANTS[v] };
      for (const name of a.models) {
        const c = BENCH_MODELS[name];
        const sh = shapesOf(name);
        const before = vb.deviceBatchingStats();
        const learner = learnerCase(vb, c, sh);
        const trainT = await timed(learner.run, a.warmup, a.repeats * a.rounds);
        learner.free();
        const after = vb.deviceBatchingStats();
        const gen = generationCase(vb, c, sh);
        const genT = await timed(gen.run, a.genWarmup, a.genRepeats * a.rounds);
        gen.free();
        const trainTps = (sh.batch * sh.seq) / median(trainT);
        const genTps = (sh.genBatch * sh.newTokens) / median(genT);
        const base = (kind: Case['kind']) =>
          cases.find((x) => x.model === name && x.kind === kind)?.baseline ?? null;
        const bt = base('learner_step');
        const bg = base('generation');
        row[name] = {
          learner_step: trainTps,
          learner_step_ratio: bt ? trainTps / bt : null,
          generation: genTps,
          generation_ratio: bg ? genTps / bg : null,
          // over the warmup and timed learner steps
          submits: before && after ? after.submits - before.submits : null,
          command_buffers: before && after ? after.commandBuffers - before.commandBuffers : null,
        };
        console.log(
          `rmt [${v}]: ${name} train ${trainTps.toFixed(0)} tok/s, generate ${genTps.toFixed(0)} tok/s`,
        );
      }
      variants[v] = row;
      await vb.dispose();
    }
  }

  const ti = torch?.info ?? {};
  const baseLabel = torch
    ? `${ti.torch}, ${ti.device}${ti.blas ? `, ${ti.blas}, ${ti.threads} threads` : ''}${ti.gpu ? `, TF32 ${ti.tf32 ? 'on' : 'off'}` : ''}`
    : 'not run';
  const wasm = be.name === 'webasm' ? WasmMatmul.get() : null;
  const loadEnd = os.loadavg();
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
      wasm_variant: wasm?.variant ?? null,
      webgpu: gpu?.reason ?? null,
      gpu: (ti.gpu as string | undefined) ?? null,
      baseline: torch
        ? `PyTorch ${ti.torch} float32 eager on ${ti.device}${ti.gpu ? ` (${ti.gpu}, CUDA ${ti.cuda}, TF32 ${ti.tf32 ? 'on' : 'off'})` : ` (BLAS ${ti.blas}: ${ti.blas_detail}; ${ti.threads} threads)`}; 1024^2 sgemm ${ti.sgemm_1024_gflops} GFLOP/s${core ? `; ${describeCore(core)}; OMP_WAIT_POLICY ${a.ompWaitPolicy}` : ''}`
        : 'not run (--no-torch)',
      torch: ti,
      openblas_core: core,
      // other work on a shared machine shows here; per round in each case's summary
      load_average: {
        start: loadBefore.map(round2),
        end: loadEnd.map(round2),
        cores: os.cpus().length,
      },
    },
    settings: {
      shapes: Object.fromEntries(a.models.map((m) => [m, shapesOf(m)])),
      optimizer: OPTIMIZER,
      rounds: a.rounds,
      warmup: a.warmup,
      repeats: a.repeats,
      gen_warmup: a.genWarmup,
      gen_repeats: a.genRepeats,
      max_seconds: a.maxSeconds,
      threads: a.threads,
      omp_wait_policy: a.ompWaitPolicy,
      loaded_cores: LOADED_CORES,
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
    device_batching: be instanceof WebgpuBackend ? (be.deviceBatchingSettings() ?? null) : null,
    wgsl_optimizer: be instanceof WebgpuBackend ? be.adamwInPlace !== undefined : null,
    webgpu_variants: variants,
  };
  mkdirSync(a.out, { recursive: true });
  const jsonPath = join(a.out, `model-${machine}.json`);
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(a.out, `model-${machine}.md`), markdown(report, cases, be.name, baseLabel));
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
