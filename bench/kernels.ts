/**
 * `npm run bench:kernels`: rmt's CPU matmul against PyTorch's in one invocation, on the bench model's
 * shapes (N = 512 tokens, hidden 64, intermediate 176, kv 32, vocab 2259; forward x@W^T, backward
 * dy@W and dy^T@x; decoding with 8 sequences) and on 1024^3.
 *
 * Columns, all GFLOP/s (2 m n k / seconds per call, fastest of several interleaved trials):
 * - rmt: the gpu.js backend's `webasm` matmul as the model calls it, which runs the WebAssembly
 *   SIMD kernel (shared/kernels/wasm) on all cores; includes copying operands in and the result out.
 * - gpujs: the same backend with that kernel switched off (gpu.js's own webasm matmul), for reference.
 * - baseline: PyTorch torch.mm (bench/torch_kernels.py, Debian python3-torch) on OpenBLAS with the
 *   same thread count, OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset so OpenBLAS picks its own kernel;
 *   the script refuses the reference BLAS.
 * - tuned: the same with OPENBLAS_CORETYPE forced to the best kernel the CPU flags allow (SkylakeX
 *   with AVX-512, Haswell with AVX2), because OpenBLAS 0.3.21 falls back to a generic kernel on CPUs
 *   it does not know. Informational; ratio_tuned = rmt / tuned.
 * ratio = rmt / baseline (higher is better). Results: bench/results/kernels-cpu.{json,md}.
 *
 * Before each case the script waits (up to a minute, --no-wait to skip) until other processes leave the
 * CPU idle, and records the busy fraction it saw per case (cpuBusyBefore).
 *
 * Options: --quick (fewer, shorter trials), --no-gpujs, --no-tuned, --no-wait, --rounds N, --min-time SECONDS,
 * --python PATH (default /usr/bin/python3), --out DIR.
 *
 * `--backend webgpu` runs the GPU mode instead (bench/kernels-gpu.ts: gpu.js's webgpu matmul against
 * PyTorch CUDA, into kernels-gpu.{json,md}); `--backend webasm`, the default, is the mode above.
 * The cases live in bench/kernel-cases.ts.
 */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Backend, MatmulShape } from '../shared/kernels/backend.js';
import { GpujsBackend } from '../shared/kernels/gpujs/backend.js';
import { WasmMatmul } from '../shared/kernels/wasm/matmul.js';
import { Rng } from '../shared/util/rng.js';
import { CASES, flopsOf, layoutOf, shapeOf } from './kernel-cases.js';
import { benchGpuKernels, GPU_USAGE } from './kernels-gpu.js';

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

  async time(s: MatmulShape, minTime: number): Promise<number> {
    const reply = this.next();
    this.child.stdin.write(`${JSON.stringify({ ...s, minTime, trials: 1 })}\n`);
    const line = await reply;
    if (!line) throw new Error(`torch_kernels.py exited: ${this.stderr.trim()}`);
    return (JSON.parse(line) as { seconds: number }).seconds;
  }

  close(): void {
    this.child.stdin.end();
  }
}

// ---------------------------------------------------------------------------------------------------
// rmt timing

/** Seconds per call of one trial: calls until at least `minTime` has passed (at least one). */
async function trial(fn: () => Promise<unknown>, minTime: number): Promise<number> {
  let calls = 0;
  const t0 = performance.now();
  let dt = 0;
  do {
    await fn();
    calls++;
    dt = (performance.now() - t0) / 1000;
  } while (dt < minTime);
  return dt / calls;
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

/** Fraction of CPU time not idle over `ms` (other work on the machine skews every number). */
async function cpuBusy(ms: number): Promise<number | null> {
  const read = () => {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] ?? 0);
    return { idle, total: f.reduce((x, y) => x + y, 0) };
  };
  try {
    const a = read();
    await new Promise((r) => setTimeout(r, ms));
    const b = read();
    return 1 - (b.idle - a.idle) / Math.max(1, b.total - a.total);
  } catch {
    return null;
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

// ---------------------------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SETTLE_MS = 250;
/** Other work above this share of the CPU counts as a busy machine. */
const BUSY = 0.15;

/**
 * Waits (at most `maxMs`) until the machine is idle while this process idles too: other processes'
 * load is the main source of noise on a small shared machine. Returns the last busy fraction seen.
 */
async function waitQuiet(maxMs: number): Promise<{ busy: number | null; waitedMs: number }> {
  const t0 = Date.now();
  let busy = await cpuBusy(400);
  while (busy !== null && busy > BUSY && Date.now() - t0 < maxMs) busy = await cpuBusy(1000);
  if (busy !== null && busy > BUSY) {
    console.log(`  (machine ${(busy * 100).toFixed(0)}% busy with other work: this case is skewed)`);
  }
  return { busy, waitedMs: Date.now() - t0 };
}

const fmt = (x: number | null, d = 1) => (x === null || !Number.isFinite(x) ? '-' : x.toFixed(d));

const CPU_USAGE =
  'usage: bench/kernels.ts [--backend webasm] [--quick] [--no-gpujs] [--no-tuned] [--no-wait] [--rounds N] [--min-time SECONDS] [--python PATH] [--out DIR]';

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      backend: { type: 'string', default: 'webasm' },
      quick: { type: 'boolean', default: false },
      'no-gpujs': { type: 'boolean', default: false },
      'no-tuned': { type: 'boolean', default: false },
      'no-wait': { type: 'boolean', default: false },
      rounds: { type: 'string' },
      'min-time': { type: 'string' },
      python: { type: 'string', default: '/usr/bin/python3' },
      out: { type: 'string', default: join(here, 'results') },
    },
  });
  const rounds = Number(values.rounds ?? (values.quick ? 2 : 5));
  const minTime = Number(values['min-time'] ?? (values.quick ? 0.05 : 0.15));

  const wasm = WasmMatmul.get();
  if (!wasm) throw new Error(`the wasm matmul is unavailable: ${WasmMatmul.unavailableReason()}`);
  const threads = wasm.threads;
  const lc = lscpu();
  const mach = machine(lc);
  const busyBefore = await cpuBusy(1000);

  // Baseline: OpenBLAS as it configures itself (both overrides unset, in this child only).
  const baseEnv: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
  delete baseEnv.OPENBLAS_CORETYPE;
  delete baseEnv.OPENBLAS_L2_SIZE;
  const base = await TorchBench.start(values.python, threads, baseEnv);
  let tuned: { bench: TorchBench; header: TorchHeader } | null = null;
  const tunedCore = mach.simd.includes('avx512f')
    ? 'SkylakeX'
    : mach.simd.includes('avx2')
      ? 'Haswell'
      : null;
  if (!values['no-tuned'] && tunedCore) {
    tuned = await TorchBench.start(values.python, threads, { ...baseEnv, OPENBLAS_CORETYPE: tunedCore });
  }

  const rmtBe = await GpujsBackend.create('webasm');
  const gpujsBe = values['no-gpujs'] ? null : await GpujsBackend.create('webasm', { wasmMatmul: false });

  console.log(
    `bench:kernels on ${mach.cpu}, ${mach.cores} cores (${mach.simd.join(' ')}), node ${mach.node}`,
  );
  console.log(
    `rmt: wasm ${wasm.variant} matmul, ${threads} threads; baseline: torch ${base.header.torch}, ` +
      `${String(base.header.blas.config ?? base.header.blas.name)}, ${base.header.threads} threads`,
  );
  if (tuned) console.log(`tuned: ${String(tuned.header.blas.config)}`);
  if (busyBefore !== null && busyBefore > 0.15) {
    console.log(
      `WARNING: the CPU was ${(busyBefore * 100).toFixed(0)}% busy before the run: timings are skewed`,
    );
  }

  const rng = new Rng(20240503);
  const rows: {
    name: string;
    shape: string;
    m: number;
    k: number;
    n: number;
    layout: string;
    rmt: number;
    gpujs: number | null;
    baseline: number;
    ratio: number;
    tuned: number | null;
    ratio_tuned: number | null;
    cpuBusyBefore: number | null;
  }[] = [];
  const header = `${'case'.padEnd(24)} ${'shape'.padEnd(18)} ${'rmt'.padStart(6)} ${'gpujs'.padStart(6)} ${'torch'.padStart(6)} ${'ratio'.padStart(6)}${tuned ? ` ${'tuned'.padStart(6)} ${'r_tun'.padStart(6)}` : ''}`;
  console.log(`\nGFLOP/s (ratio = rmt / torch, higher is better)\n${header}\n${'-'.repeat(header.length)}`);
  for (const c of CASES) {
    const s = c.shape;
    const flops = flopsOf(s);
    const rmtRun = matmulFn(rmtBe, s, rng);
    await rmtRun();
    await rmtRun();
    let bestRmt = Number.POSITIVE_INFINITY;
    let bestBase = Number.POSITIVE_INFINITY;
    let bestTuned = Number.POSITIVE_INFINITY;
    const quiet = await waitQuiet(values['no-wait'] ? 0 : 60_000);
    for (let r = 0; r < rounds; r++) {
      bestRmt = Math.min(bestRmt, await trial(rmtRun, minTime));
      bestBase = Math.min(bestBase, await base.bench.time(s, minTime));
      if (tuned) bestTuned = Math.min(bestTuned, await tuned.bench.time(s, minTime));
      // OpenBLAS's idle threads spin for a while after a call: let them settle before rmt's next trial.
      await sleep(SETTLE_MS);
    }
    let gpujs: number | null = null;
    if (gpujsBe) {
      const run = matmulFn(gpujsBe, s, rng);
      await run(); // compiles the kernel
      gpujs = flops / (await trial(run, values.quick ? 0 : minTime)) / 1e9;
    }
    const rmt = flops / bestRmt / 1e9;
    const baseline = flops / bestBase / 1e9;
    const tunedG = tuned ? flops / bestTuned / 1e9 : null;
    const row = {
      name: c.name,
      shape: shapeOf(s),
      m: s.m,
      k: s.k,
      n: s.n,
      layout: layoutOf(s),
      rmt,
      gpujs,
      baseline,
      ratio: rmt / baseline,
      tuned: tunedG,
      ratio_tuned: tunedG ? rmt / tunedG : null,
      cpuBusyBefore: quiet.busy,
    };
    rows.push(row);
    console.log(
      `${c.name.padEnd(24)} ${row.shape.padEnd(18)} ${fmt(rmt).padStart(6)} ${fmt(gpujs, 2).padStart(6)} ${fmt(baseline).padStart(6)} ${fmt(row.ratio, 2).padStart(6)}${tuned ? ` ${fmt(tunedG).padStart(6)} ${fmt(row.ratio_tuned, 2).padStart(6)}` : ''}`,
    );
  }
  const busyAfter = await cpuBusy(1000);
  base.bench.close();
  tuned?.bench.close();
  await rmtBe.dispose();
  await gpujsBe?.dispose();

  const geo = (xs: number[]) => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);
  const ratios = rows.map((r) => r.ratio);
  const tunedRatios = rows.flatMap((r) => (r.ratio_tuned === null ? [] : [r.ratio_tuned]));
  const summary = {
    target: 0.25,
    geomeanRatio: geo(ratios),
    minRatio: Math.min(...ratios),
    casesAtTarget: ratios.filter((r) => r >= 0.25).length,
    geomeanRatioTuned: tunedRatios.length ? geo(tunedRatios) : null,
    minRatioTuned: tunedRatios.length ? Math.min(...tunedRatios) : null,
    casesAtTargetTuned: tunedRatios.filter((r) => r >= 0.25).length,
    cases: rows.length,
  };
  console.log(
    `\nratio rmt/torch: geomean ${fmt(summary.geomeanRatio, 2)}, min ${fmt(summary.minRatio, 2)}, ` +
      `${summary.casesAtTarget}/${rows.length} cases >= 0.25` +
      (tuned
        ? `; vs tuned OpenBLAS: geomean ${fmt(summary.geomeanRatioTuned, 2)}, min ${fmt(summary.minRatioTuned, 2)}, ${summary.casesAtTargetTuned}/${rows.length} >= 0.25`
        : ''),
  );

  const result = {
    date: new Date().toISOString(),
    machine: { ...mach, cpuBusyBefore: busyBefore, cpuBusyAfter: busyAfter, loadavg: os.loadavg() },
    rmt: {
      kernel: `wasm-${wasm.variant}`,
      threads,
      includes: 'copy in, compute, copy out to a fresh Float32Array',
    },
    baseline: { ...base.header, note: 'OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset' },
    tuned: tuned ? { ...tuned.header, note: `OPENBLAS_CORETYPE=${tunedCore} (informational)` } : null,
    method: {
      unit: 'GFLOP/s = 2 m k n / seconds per call',
      rounds,
      minTimeSeconds: minTime,
      best: 'fastest trial',
    },
    summary,
    cases: rows,
  };
  mkdirSync(values.out, { recursive: true });
  writeFileSync(join(values.out, 'kernels-cpu.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(values.out, 'kernels-cpu.md'), markdown(result, rows, summary, tunedCore));
  console.log(`wrote ${join(values.out, 'kernels-cpu.json')} and kernels-cpu.md`);
}

function markdown(
  result: {
    date: string;
    machine: ReturnType<typeof machine> & { cpuBusyBefore: number | null; cpuBusyAfter: number | null };
    rmt: { kernel: string; threads: number };
    baseline: TorchHeader;
    tuned: TorchHeader | null;
  },
  rows: {
    name: string;
    shape: string;
    rmt: number;
    gpujs: number | null;
    baseline: number;
    ratio: number;
    tuned: number | null;
    ratio_tuned: number | null;
    cpuBusyBefore: number | null;
  }[],
  summary: {
    geomeanRatio: number;
    minRatio: number;
    casesAtTarget: number;
    geomeanRatioTuned: number | null;
    minRatioTuned: number | null;
    casesAtTargetTuned: number;
    cases: number;
  },
  tunedCore: string | null,
): string {
  const m = result.machine;
  const busy = (x: number | null) => (x === null ? '?' : `${(x * 100).toFixed(0)}%`);
  const t = result.tuned !== null;
  const skewed = rows.filter((r) => r.cpuBusyBefore !== null && r.cpuBusyBefore > BUSY).map((r) => r.name);
  const lines = [
    '# CPU matmul: rmt vs PyTorch (OpenBLAS)',
    '',
    `Generated by \`npm run bench:kernels\` on ${result.date}.`,
    '',
    `- Machine: ${m.cpu}, ${m.cores} cores (${m.simd.join(' ')}), L2 ${m.caches.l2 ?? '?'}, ${m.hypervisor ? `${m.hypervisor} VM, ` : ''}${m.os}; CPU busy before/after the run: ${busy(m.cpuBusyBefore)} / ${busy(m.cpuBusyAfter)}.`,
    `- rmt: \`${result.rmt.kernel}\` (shared/kernels/wasm, asm/matmul.ts) on ${result.rmt.threads} threads, Node ${m.node} (V8 ${m.v8}), timed through the gpu.js backend's \`webasm\` matmul including the copies in and out. gpujs: gpu.js's own webasm matmul (the kernel switched off).`,
    `- baseline: PyTorch ${result.baseline.torch} \`torch.mm\`, ${String(result.baseline.blas.config ?? result.baseline.blas.name)}, ${result.baseline.threads} threads, OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset.`,
    ...(t
      ? [
          `- tuned (informational): the same with OPENBLAS_CORETYPE=${tunedCore}, since OpenBLAS 0.3.21 does not recognise every CPU and falls back to a generic kernel (core here: ${String(result.baseline.blas.corename ?? '?')}).`,
        ]
      : []),
    '- GFLOP/s = 2 m k n / time per call, fastest of several interleaved trials; ratio = rmt / baseline (higher is better). Shapes are m x k x n with the layout (T = operand transposed, as stored by the model).',
    '',
    `| case | shape | rmt | gpujs | torch | ratio |${t ? ' torch tuned | ratio tuned |' : ''}`,
    `|---|---|---:|---:|---:|---:|${t ? '---:|---:|' : ''}`,
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.shape} | ${fmt(r.rmt)} | ${fmt(r.gpujs, 2)} | ${fmt(r.baseline)} | ${fmt(r.ratio, 2)} |${t ? ` ${fmt(r.tuned)} | ${fmt(r.ratio_tuned, 2)} |` : ''}`,
    ),
    '',
    `Ratio rmt / torch: geomean ${fmt(summary.geomeanRatio, 2)}, min ${fmt(summary.minRatio, 2)}; ${summary.casesAtTarget} of ${summary.cases} cases at the 0.25 target.` +
      (t
        ? ` Against the tuned OpenBLAS: geomean ${fmt(summary.geomeanRatioTuned, 2)}, min ${fmt(summary.minRatioTuned, 2)}; ${summary.casesAtTargetTuned} of ${summary.cases} at 0.25.`
        : ''),
    '',
    skewed.length
      ? `Measured while other processes kept the CPU more than ${BUSY * 100}% busy (skewed): ${skewed.join(', ')}.`
      : 'Every case started on an otherwise idle machine.',
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
