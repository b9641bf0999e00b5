/**
 * `npm run bench:kernels`: rmt's CPU matmul against PyTorch's, on the bench model's shapes (N = 512
 * tokens, hidden 64, intermediate 176, kv 32, vocab 2259; forward x@W^T, backward dy@W and dy^T@x;
 * decoding with 8 sequences) and on 1024^3.
 *
 * Method (bench/rounds.ts): per case, --rounds rounds (at least 5 for a figure to commit); in each
 * round rmt and PyTorch each run one trial (calls repeated until --min-time has passed), in an order
 * that alternates between rounds, and the round's ratio is rmt's GFLOP/s over PyTorch's. A case
 * reports the median ratio over rounds with its min-max and interquartile range, and the median over
 * the rounds not marked loaded (others kept at least half a core busy; the load of every round is in
 * the JSON). GFLOP/s = 2 m n k / seconds per call.
 * - rmt: the gpu.js backend's `webasm` matmul as the model calls it, which runs the WebAssembly SIMD
 *   kernel (shared/kernels/wasm; the relaxed-SIMD fused multiply-add build where available) on all
 *   cores; includes copying operands in and the result out.
 * - baseline: PyTorch torch.mm (bench/torch_kernels.py) on OpenBLAS with the same thread count, on the
 *   best OpenBLAS core for this CPU (bench/openblas.ts: measured when OpenBLAS's own pick is not in
 *   the CPU's best tier); the script refuses the reference BLAS.
 * - peak: the wasm peak (bench/peak.ts: register-only f32x4 loops, fused and not, 1 and N threads)
 *   measured before and after the cases, and the native peak from the clock and FMA width; each case
 *   shows rmt's share of the wasm FMA peak and OpenBLAS's share of the native peak. 1024^3 is also
 *   timed on one thread (thread scaling).
 * Results: bench/results/kernels-cpu.{json,md}.
 *
 * Options: --quick (3 rounds, shorter trials), --rounds N, --min-time SECONDS, --cases REGEX,
 * --python PATH (default /usr/bin/python3), --blas-dir DIR (first on the PyTorch child's
 * LD_LIBRARY_PATH), --coretype NAME (force OPENBLAS_CORETYPE), --measure-cores (time every candidate
 * core even when OpenBLAS's own pick is in the best tier), --out DIR.
 *
 * `--backend webgpu` runs the GPU mode instead (bench/kernels-gpu.ts: gpu.js's webgpu matmul against
 * PyTorch CUDA, into kernels-gpu.{json,md}); `--backend webasm`, the default, is the mode above.
 * The cases live in bench/kernel-cases.ts.
 */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Backend, MatmulShape } from '../shared/kernels/backend.js';
import { WasmBackend } from '../shared/kernels/wasm/backend.js';
import { WasmMatmul } from '../shared/kernels/wasm/matmul.js';
import { Rng } from '../shared/util/rng.js';
import { CASES, flopsOf, layoutOf, shapeOf } from './kernel-cases.js';
import { benchGpuKernels, GPU_USAGE } from './kernels-gpu.js';
import { baseTorchEnv, type CoreChoice, chooseCore, describeCore, withCore } from './openblas.js';
import { type NativePeak, nativePeak, type PeakResult, wasmPeak } from './peak.js';
import {
  formatSpread,
  LOADED_CORES,
  RoundMeter,
  type RoundRecord,
  type RoundSummary,
  summarize,
} from './rounds.js';

const here = dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------------------------------
// PyTorch child

interface TorchHeader {
  torch: string;
  threads: number;
  blas: Record<string, unknown>;
  env: Record<string, string>;
  error?: string;
}

class TorchBench {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: Interface;
  private readonly queue: ((line: string) => void)[] = [];
  private stderr = '';
  private closed = false;

  private constructor(python: string, threads: number, env: NodeJS.ProcessEnv) {
    this.child = spawn(python, [join(here, 'torch_kernels.py'), '--threads', String(threads)], { env });
    this.child.stderr.on('data', (d) => {
      this.stderr += d;
    });
    this.lines = createInterface({ input: this.child.stdout });
    this.lines.on('line', (line) => this.queue.shift()?.(line));
    this.child.on('exit', () => {
      this.closed = true;
      for (const f of this.queue.splice(0)) f('');
    });
  }

  private next(): Promise<string> {
    return new Promise((resolve) => {
      if (this.closed) resolve('');
      else this.queue.push(resolve);
    });
  }

  static async start(
    python: string,
    threads: number,
    env: NodeJS.ProcessEnv,
  ): Promise<{ bench: TorchBench; header: TorchHeader }> {
    const bench = new TorchBench(python, threads, env);
    const line = await bench.next();
    if (!line) throw new Error(`${python} bench/torch_kernels.py failed: ${bench.stderr.trim()}`);
    const header = JSON.parse(line) as TorchHeader;
    if (header.error) throw new Error(header.error);
    return { bench, header };
  }

  /** Seconds per call, and the child's CPU seconds per call (all its threads). */
  async time(s: MatmulShape, minTime: number): Promise<{ seconds: number; cpuSeconds: number }> {
    const reply = this.next();
    this.child.stdin.write(`${JSON.stringify({ ...s, minTime, trials: 1 })}\n`);
    const line = await reply;
    if (!line) throw new Error(`torch_kernels.py exited: ${this.stderr.trim()}`);
    const r = JSON.parse(line) as { seconds: number; cpu_seconds: number };
    return { seconds: r.seconds, cpuSeconds: r.cpu_seconds };
  }

  get pid(): number | null {
    return this.child.pid ?? null;
  }

  close(): void {
    this.child.stdin.end();
  }
}

// ---------------------------------------------------------------------------------------------------
// rmt timing

const processCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/**
 * Seconds per call of one trial (calls until at least `minTime` has passed, at least one), and this
 * process's CPU seconds per call (all its threads: the pool's workers, spinning included).
 */
async function trial(
  fn: () => Promise<unknown>,
  minTime: number,
): Promise<{ seconds: number; cpuSeconds: number }> {
  let calls = 0;
  const c0 = processCpu();
  const t0 = performance.now();
  let dt = 0;
  do {
    await fn();
    calls++;
    dt = (performance.now() - t0) / 1000;
  } while (dt < minTime);
  return { seconds: dt / calls, cpuSeconds: (processCpu() - c0) / calls };
}

function matmulFn(be: Backend, s: MatmulShape, rng: Rng): () => Promise<unknown> {
  const a = be.upload(Float32Array.from({ length: s.m * s.k }, () => rng.normal()));
  const b = be.upload(Float32Array.from({ length: s.k * s.n }, () => rng.normal()));
  return () => be.matmul(a, b, s);
}

// ---------------------------------------------------------------------------------------------------
// machine

function lscpu(): Record<string, string> {
  try {
    const out = execFileSync('lscpu', { encoding: 'utf8' });
    const fields: Record<string, string> = {};
    for (const line of out.split('\n')) {
      const i = line.indexOf(':');
      if (i > 0) fields[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    return fields;
  } catch {
    return {};
  }
}

function machine(lc: Record<string, string>) {
  const cpus = os.cpus();
  const flags = (lc.Flags ?? '').split(/\s+/);
  return {
    cpu: lc['Model name'] ?? cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    mhz: cpus[0]?.speed ?? null,
    threadsPerCore: lc['Thread(s) per core'] ?? null,
    caches: { l1d: lc['L1d cache'] ?? null, l2: lc['L2 cache'] ?? null, l3: lc['L3 cache'] ?? null },
    simd: ['sse4_2', 'avx', 'avx2', 'fma', 'avx512f'].filter((f) => flags.includes(f)),
    hypervisor: lc['Hypervisor vendor'] ?? null,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    v8: process.versions.v8,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** OpenBLAS's idle threads spin for a while after a call: let them settle before rmt's trial. */
const SETTLE_MS = 200;

const fmt = (x: number | null | undefined, d = 1) =>
  x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d);

const CPU_USAGE =
  'usage: bench/kernels.ts [--backend webasm] [--quick] [--rounds N] [--min-time SECONDS] [--cases REGEX] [--python PATH] [--blas-dir DIR] [--coretype NAME] [--measure-cores] [--out DIR]';

function gitCommit(): string {
  if (process.env.RMT_COMMIT) return process.env.RMT_COMMIT;
  try {
    return execFileSync('git', ['describe', '--always', '--dirty', '--abbrev=12'], {
      cwd: here,
      encoding: 'utf8',
    }).trim();
  } catch {
    return 'unknown';
  }
}

interface Row {
  name: string;
  shape: string;
  m: number;
  k: number;
  n: number;
  layout: string;
  /** Medians over rounds, GFLOP/s. */
  rmt: number;
  baseline: number;
  summary: RoundSummary;
  /** rmt's median over the wasm FMA peak on all threads; OpenBLAS's over the native peak. */
  rmtShareOfWasmPeak: number | null;
  baselineShareOfNativePeak: number | null;
  /** rmt's on-CPU GFLOP/s (flops per CPU-second, all threads) over the one-thread on-CPU FMA peak. */
  rmtOnCpuShareOfWasmPeak: number | null;
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      backend: { type: 'string', default: 'webasm' },
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      'min-time': { type: 'string' },
      cases: { type: 'string' },
      python: { type: 'string', default: '/usr/bin/python3' },
      'blas-dir': { type: 'string' },
      coretype: { type: 'string' },
      'measure-cores': { type: 'boolean', default: false },
      out: { type: 'string', default: join(here, 'results') },
    },
  });
  const rounds = Number(values.rounds ?? (values.quick ? 3 : 5));
  const minTime = Number(values['min-time'] ?? (values.quick ? 0.05 : 0.15));
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds: a positive integer');
  if (!(minTime > 0 && minTime <= 10)) throw new Error('--min-time: seconds in (0, 10]');
  const caseFilter = values.cases ? new RegExp(values.cases) : null;
  const cases = CASES.filter((c) => !caseFilter || caseFilter.test(c.name));

  const wasm = WasmMatmul.get();
  if (!wasm) throw new Error(`the wasm matmul is unavailable: ${WasmMatmul.unavailableReason()}`);
  const threads = wasm.threads;
  const lc = lscpu();
  const mach = machine(lc);
  const loadStart = os.loadavg();

  const baseEnv = baseTorchEnv(threads, values['blas-dir'] ?? null);
  const core = chooseCore(values.python, threads, baseEnv, values.coretype ?? null, values['measure-cores']);
  console.log(describeCore(core));
  const base = await TorchBench.start(values.python, threads, withCore(baseEnv, core.coretype));

  console.log(
    `bench:kernels on ${mach.cpu}, ${mach.cores} cores (${mach.simd.join(' ')}), node ${mach.node}`,
  );
  console.log(
    `rmt: wasm ${wasm.variant} matmul, ${threads} threads; baseline: torch ${base.header.torch}, ` +
      `${String(base.header.blas.config ?? base.header.blas.name)}, ${base.header.threads} threads`,
  );

  const threadCounts = threads > 1 ? [1, threads] : [1];
  const peakBefore = await wasmPeak(threadCounts);
  const native = nativePeak(threads);
  console.log(
    `wasm peak (GFLOP/s): fma ${JSON.stringify(peakBefore.fma)}, mul+add ${JSON.stringify(peakBefore.mulAdd)}`,
  );

  const rmtBe = await WasmBackend.create('webasm');
  const meter = new RoundMeter(() => base.bench.pid);
  const rng = new Rng(20240503);
  const rows: Row[] = [];
  console.log(
    `\nGFLOP/s, medians over ${rounds} rounds; ratio = rmt / torch (higher is better); * = loaded rounds`,
  );
  for (const c of cases) {
    const s = c.shape;
    const flops = flopsOf(s);
    const rmtRun = matmulFn(rmtBe, s, rng);
    await rmtRun();
    await rmtRun();
    const records: RoundRecord[] = [];
    for (let r = 0; r < rounds; r++) {
      meter.begin();
      let tRmt: { seconds: number; cpuSeconds: number };
      let tBase: { seconds: number; cpuSeconds: number };
      if (r % 2 === 0) {
        tRmt = await trial(rmtRun, minTime);
        tBase = await base.bench.time(s, minTime);
        await sleep(SETTLE_MS);
      } else {
        tBase = await base.bench.time(s, minTime);
        await sleep(SETTLE_MS);
        tRmt = await trial(rmtRun, minTime);
      }
      const load = meter.end();
      const rmt = flops / tRmt.seconds / 1e9;
      const baseline = flops / tBase.seconds / 1e9;
      const onCpu = { rmt: flops / tRmt.cpuSeconds / 1e9, baseline: flops / tBase.cpuSeconds / 1e9 };
      records.push({ round: r + 1, rmt, baseline, ratio: rmt / baseline, load, onCpu });
    }
    const summary = summarize(records);
    const rmt = summary.rmt?.median ?? Number.NaN;
    const baseline = summary.baseline?.median ?? Number.NaN;
    const row: Row = {
      name: c.name,
      shape: shapeOf(s),
      m: s.m,
      k: s.k,
      n: s.n,
      layout: layoutOf(s),
      rmt,
      baseline,
      summary,
      rmtShareOfWasmPeak: null,
      rmtOnCpuShareOfWasmPeak: null,
      baselineShareOfNativePeak: native ? baseline / native.gflops : null,
    };
    rows.push(row);
    console.log(
      `${c.name.padEnd(24)} ${row.shape.padEnd(18)} rmt ${fmt(rmt).padStart(6)} torch ${fmt(baseline).padStart(6)} ratio ${formatSpread(summary.ratio)}${summary.loadedRounds.length ? ` loaded rounds ${summary.loadedRounds.join(',')}` : ''}`,
    );
  }

  // thread scaling on 1024^3, the kernel called directly (no backend wrapper)
  const sq = { m: 1024, k: 1024, n: 1024 };
  const a = Float32Array.from({ length: sq.m * sq.k }, () => rng.normal());
  const b = Float32Array.from({ length: sq.k * sq.n }, () => rng.normal());
  const scaling: Record<string, number> = {};
  const scalingOnCpu: Record<string, number> = {};
  const r1 = (x: number) => Math.round(x * 10) / 10;
  for (const t of threadCounts) {
    const run = async () => wasm.matmul(a, b, sq, { threads: t });
    await run();
    let best = Number.POSITIVE_INFINITY;
    let bestCpu = Number.POSITIVE_INFINITY;
    for (let r = 0; r < 3; r++) {
      const x = await trial(run, minTime);
      best = Math.min(best, x.seconds);
      bestCpu = Math.min(bestCpu, x.cpuSeconds);
    }
    scaling[String(t)] = r1(flopsOf(sq) / best / 1e9);
    // per CPU-second of the whole process, so on N threads: N times the per-thread rate
    scalingOnCpu[String(t)] = r1(flopsOf(sq) / bestCpu / 1e9);
  }
  const peakAfter = await wasmPeak(threadCounts);
  // a peak is the least disturbed reading: the higher of the two probes
  const wasmPeakAll = Math.max(peakBefore.fma[String(threads)] ?? 0, peakAfter.fma[String(threads)] ?? 0);
  const onCpuPeak1 = Math.max(peakBefore.fmaOnCpu['1'] ?? 0, peakAfter.fmaOnCpu['1'] ?? 0);
  for (const r of rows) {
    r.rmtShareOfWasmPeak = wasmPeakAll > 0 ? r.rmt / wasmPeakAll : null;
    // on-CPU GFLOP/s count all threads' CPU time, so they compare with the one-thread on-CPU peak
    const oc = r.summary.onCpu?.rmt?.median;
    r.rmtOnCpuShareOfWasmPeak = oc && onCpuPeak1 > 0 ? oc / onCpuPeak1 : null;
  }
  const loadEnd = os.loadavg();
  base.bench.close();
  await rmtBe.dispose();

  const geo = (xs: number[]) => Math.exp(xs.reduce((acc, x) => acc + Math.log(x), 0) / xs.length);
  const ratios = rows.map((r) => r.summary.ratio?.median ?? Number.NaN);
  const result = {
    bench: 'kernels-cpu',
    date: new Date().toISOString(),
    commit: gitCommit(),
    argv,
    machine: {
      ...mach,
      loadavg: {
        start: loadStart.map((x) => Math.round(x * 100) / 100),
        end: loadEnd.map((x) => Math.round(x * 100) / 100),
      },
    },
    rmt: {
      kernel: `wasm-${wasm.variant}`,
      threads,
      includes: 'copy in, compute, copy out to a fresh Float32Array',
    },
    baseline: { ...base.header, openblasCore: core },
    peak: {
      wasmBefore: peakBefore,
      wasmAfter: peakAfter,
      native,
      note: 'wasm: best of 2 trials of each register-only f32x4 loop of asm/peak.ts (6, 8, 10 accumulators); native: cores x clock x flops per cycle of the widest FMA, 2 pipes assumed',
    },
    threadScaling1024: {
      gflops: scaling,
      gflopsPerCpuSecond: scalingOnCpu,
      note: 'the wasm kernel called directly, best of 3 trials per thread count; per CPU-second: flops over the process CPU time (all threads)',
    },
    method: {
      unit: 'GFLOP/s = 2 m k n / seconds per call',
      rounds,
      minTimeSeconds: minTime,
      perCase:
        'median over rounds; spread: min-max and interquartile range; rounds alternate which side runs first',
      loaded: `a round is loaded when other processes kept at least ${LOADED_CORES} of a core busy on average during it`,
    },
    summary: {
      geomeanMedianRatio: geo(ratios),
      minMedianRatio: Math.min(...ratios),
      cases: rows.length,
      casesWithLoadedRounds: rows.filter((r) => r.summary.loadedRounds.length > 0).length,
    },
    cases: rows,
  };
  mkdirSync(values.out, { recursive: true });
  writeFileSync(join(values.out, 'kernels-cpu.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(values.out, 'kernels-cpu.md'), markdown(result, rows));
  console.log(`wrote ${join(values.out, 'kernels-cpu.json')} and kernels-cpu.md`);
}

function markdown(
  result: {
    date: string;
    commit: string;
    argv: string[];
    machine: ReturnType<typeof machine> & { loadavg: { start: number[]; end: number[] } };
    rmt: { kernel: string; threads: number };
    baseline: TorchHeader & { openblasCore: CoreChoice };
    peak: { wasmBefore: PeakResult; wasmAfter: PeakResult; native: NativePeak | null };
    threadScaling1024: { gflops: Record<string, number>; gflopsPerCpuSecond: Record<string, number> };
    method: { rounds: number; minTimeSeconds: number };
    summary: {
      geomeanMedianRatio: number;
      minMedianRatio: number;
      cases: number;
      casesWithLoadedRounds: number;
    };
  },
  rows: Row[],
): string {
  const m = result.machine;
  const p = result.peak;
  const t = String(result.rmt.threads);
  const pct = (x: number | null) => (x === null || !Number.isFinite(x) ? '-' : `${(x * 100).toFixed(0)}%`);
  const lines = [
    '# CPU matmul: rmt vs PyTorch (OpenBLAS)',
    '',
    `Generated by \`npm run bench:kernels -- ${result.argv.join(' ')}\` on ${result.date}, commit ${result.commit}.`,
    '',
    `- Machine: ${m.cpu}, ${m.cores} cores (${m.simd.join(' ')}), L2 ${m.caches.l2 ?? '?'}, ${m.hypervisor ? `${m.hypervisor} VM, ` : ''}${m.os}; load average (1/5/15 min) ${m.loadavg.start.join(' / ')} at the start, ${m.loadavg.end.join(' / ')} at the end.`,
    `- rmt: \`${result.rmt.kernel}\` (shared/kernels/wasm, asm/matmul.ts) on ${result.rmt.threads} threads, Node ${m.node} (V8 ${m.v8}), timed through the \`webasm\` backend's matmul including the copies in and out.`,
    `- baseline: PyTorch ${result.baseline.torch} \`torch.mm\`, ${String(result.baseline.blas.config ?? result.baseline.blas.name)}, ${result.baseline.threads} threads; ${describeCore(result.baseline.openblasCore)}.`,
    `- peaks (GFLOP/s): wasm f32x4 fused multiply-add ${JSON.stringify(p.wasmBefore.fma)} before the cases and ${JSON.stringify(p.wasmAfter.fma)} after, multiply-then-add ${JSON.stringify(p.wasmBefore.mulAdd)} / ${JSON.stringify(p.wasmAfter.mulAdd)} (per thread count; bench/peak.ts); native ${p.native ? `${p.native.gflops} on ${p.native.cores} cores (${p.native.mhz} MHz x ${p.native.flopsPerCycle} flops/cycle, ${p.native.isa})` : 'unknown'}. Shares below use the higher of the two wasm FMA peaks on ${t} threads and the native peak. Per CPU-second of each thread (what the loop does while scheduled): fused ${JSON.stringify(p.wasmBefore.fmaOnCpu)} / ${JSON.stringify(p.wasmAfter.fmaOnCpu)}, multiply-then-add ${JSON.stringify(p.wasmBefore.mulAddOnCpu)} / ${JSON.stringify(p.wasmAfter.mulAddOnCpu)}.`,
    `- 1024^3 on 1 / ${t} threads (the kernel called directly): ${Object.entries(
      result.threadScaling1024.gflops,
    )
      .map(([k, v]) => `${k}: ${v}`)
      .join(
        ', ',
      )} GFLOP/s; per CPU-second of the process ${JSON.stringify(result.threadScaling1024.gflopsPerCpuSecond)}.`,
    `- ${result.method.rounds} rounds per case, each with one trial (calls repeated for ${result.method.minTimeSeconds} s) of each side, alternating which goes first; GFLOP/s are medians over rounds; ratio = rmt / torch per round (higher is better), median [min-max, IQR]. A round is *loaded* when other processes kept at least ${LOADED_CORES} of a core busy during it; "unloaded" is the median over the other rounds. Per-round loads (others' cores, 1-minute load average at start/end) are in kernels-cpu.json.`,
    '',
    '| case | shape | rmt | torch | ratio median [min-max, IQR] | unloaded ratio | loaded rounds | rmt / wasm peak | torch / native peak | on-CPU rmt / torch | on-CPU ratio | rmt on-CPU / wasm on-CPU peak |',
    '|---|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.shape} | ${fmt(r.rmt)} | ${fmt(r.baseline)} | ${formatSpread(r.summary.ratio)} | ${r.summary.ratioUnloaded ? `${fmt(r.summary.ratioUnloaded.median, 2)} (${r.summary.ratioUnloaded.n})` : '-'} | ${r.summary.loadedRounds.join(', ') || 'none'} | ${pct(r.rmtShareOfWasmPeak)} | ${pct(r.baselineShareOfNativePeak)} | ${fmt(r.summary.onCpu?.rmt?.median)} / ${fmt(r.summary.onCpu?.baseline?.median)} | ${fmt(r.summary.onCpu?.ratio?.median, 2)} | ${pct(r.rmtOnCpuShareOfWasmPeak)} |`,
    ),
    '',
    'On-CPU columns: GFLOP/s per CPU-second each side used in the round, all its threads (the wasm pool and OpenBLAS both spin while waiting and are charged for it); medians over rounds. Against the one-thread on-CPU FMA peak they show how close the kernel runs to the peak while it has the cores, which other processes disturb far less than the wall-clock columns.',
    '',
    `Median ratio rmt / torch: geomean over cases ${fmt(result.summary.geomeanMedianRatio, 2)}, lowest ${fmt(result.summary.minMedianRatio, 2)}; ${result.summary.casesWithLoadedRounds} of ${result.summary.cases} cases had loaded rounds.`,
    '',
  ];
  return lines.join('\n');
}

/** Which mode: only --backend (and --help) is read here; each mode parses the rest strictly. */
async function dispatch(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { backend: { type: 'string', default: 'webasm' }, help: { type: 'boolean', default: false } },
    strict: false,
    allowPositionals: true,
  });
  if (values.help) {
    console.log(`${CPU_USAGE}\n${GPU_USAGE}`);
    return;
  }
  if (values.backend === 'webgpu') return benchGpuKernels(argv);
  if (values.backend === 'webasm') return main(argv);
  throw new Error(`unknown --backend ${String(values.backend)}; expected webasm or webgpu`);
}

dispatch(process.argv.slice(2)).then(
  () => process.exit(0), // Dawn keeps the process alive otherwise
  (e) => {
    console.error(`bench:kernels: ${(e as Error).message}`);
    process.exit(1);
  },
);
