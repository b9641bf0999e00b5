/**
 * GPU mode of `npm run bench:kernels` (`-- --backend webgpu`): rmt's matmul on the `webgpu` backend
 * against PyTorch torch.mm on CUDA in float32 (TF32 off), on the CPU mode's cases
 * (bench/kernel-cases.ts) plus 2048^3 and 4096^3. Results: kernels-gpu.{json,md} in --out.
 *
 * Columns, all GFLOP/s (2 m n k / seconds per call, fastest of several interleaved trials):
 * - rmt: `WebgpuBackend.matmul` as configured by default (the tiled WGSL kernel,
 *   shared/kernels/webgpu/tiled-matmul.ts) with both operands and the result resident on the
 *   device. Kernel calls return once queued, so a trial is `calls` calls followed by one wait for the
 *   device, `calls` grown until a trial lasts --min-time; the host's cost of queueing each call is part
 *   of the time.
 * - gpujs: the same with `tiledMatmul: false` (gpu.js's one-thread-per-output matmul), timed the same
 *   way in the same rounds; left out with --no-gpujs.
 * - baseline: torch.mm on CUDA (bench/torch_kernels.py --device cuda), timed the same way with
 *   torch.cuda.synchronize() around the launches.
 * ratio = rmt / baseline, gpujs_ratio = gpujs / baseline. Each case is first checked against a
 * float64 product computed here, on both rmt kernels.
 *
 * Options: --quick, --rounds N, --min-time SECONDS, --python PATH (default python3 from PATH),
 * --no-torch (rmt only), --no-gpujs, --cases REGEX (case names to run), --out DIR.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Buf, MatmulShape } from '../shared/kernels/backend.js';
import { setupWebgpu } from '../shared/kernels/index.js';
import { WebgpuBackend } from '../shared/kernels/webgpu/backend.js';
import { Rng } from '../shared/util/rng.js';
import { CASES, type Case, flopsOf, GPU_ONLY_CASES, layoutOf, shapeOf } from './kernel-cases.js';

const here = dirname(fileURLToPath(import.meta.url));

export const GPU_USAGE =
  'usage: bench/kernels.ts --backend webgpu [--quick] [--rounds N] [--min-time SECONDS] [--python PATH] [--no-torch] [--no-gpujs] [--cases REGEX] [--out DIR]';

/** The project's float32 tolerance: max |got - ref| / max(1, max |ref|). */
const TOLERANCE = 1e-4;
/** Multiply-adds of the float64 check per case: larger products are checked on evenly spread rows. */
const CHECK_MACS = 2 ** 30;

export interface GpuRow {
  name: string;
  shape: string;
  m: number;
  k: number;
  n: number;
  layout: string;
  rmt: number;
  /** gpu.js's matmul (tiledMatmul: false); null with --no-gpujs. */
  gpujs: number | null;
  baseline: number | null;
  ratio: number | null;
  gpujs_ratio: number | null;
  rmt_calls: number;
  gpujs_calls: number | null;
  baseline_calls: number | null;
  /** The larger relative error of the two rmt kernels. */
  rel_err: number;
  checked_rows: number;
}

interface TorchCudaHeader {
  torch: string;
  gpu: string;
  cuda: string | null;
  tf32: { matmul: boolean; cudnn: boolean };
  error?: string;
}

/** bench/torch_kernels.py --device cuda: one JSON line per request, strictly in turn. */
async function startTorch(python: string) {
  const child = spawn(python, [join(here, 'torch_kernels.py'), '--device', 'cuda'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const failed = new Promise<never>((_, rej) => child.on('error', rej));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => {
    const r = await Promise.race([lines.next(), failed]);
    if (r.done)
      throw new Error(`${python} bench/torch_kernels.py --device cuda exited (see its stderr above)`);
    return JSON.parse(r.value) as Record<string, unknown>;
  };
  const header = (await next()) as unknown as TorchCudaHeader;
  if (header.error) throw new Error(header.error);
  return {
    header,
    async time(s: MatmulShape, minTime: number, calls: number): Promise<{ seconds: number; calls: number }> {
      child.stdin.write(`${JSON.stringify({ ...s, minTime, trials: 1, calls })}\n`);
      return (await next()) as { seconds: number; calls: number };
    },
    close: () => child.stdin.end(),
  };
}

/** One trial: `calls` matmuls queued back to back, then a wait for the device. Seconds in all. */
async function trial(be: WebgpuBackend, a: Buf, b: Buf, s: MatmulShape, calls: number): Promise<number> {
  await be.sync();
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) be.free(await be.matmul(a, b, s));
  await be.sync();
  return (performance.now() - t0) / 1000;
}

/** Calls per trial that make a trial last `minTime`, starting from `calls`, and that trial's time. */
async function calibrate(
  run: (calls: number) => Promise<number>,
  minTime: number,
  calls: number,
): Promise<{ calls: number; seconds: number }> {
  let dt = await run(calls);
  while (dt < minTime) {
    calls = Math.min(
      calls * 100,
      Math.max(calls + 1, Math.ceil((calls * 1.2 * minTime) / Math.max(dt, 1e-7))),
    );
    dt = await run(calls);
  }
  return { calls, seconds: dt / calls };
}

/** float64 A@B of rmt's stored operands on the given rows of the result. */
function reference(A: Float32Array, B: Float32Array, s: MatmulShape, rows: number[]): Float64Array {
  const { m, k, n } = s;
  const out = new Float64Array(rows.length * n);
  const acc = new Float64Array(n);
  rows.forEach((i, r) => {
    acc.fill(0);
    for (let p = 0; p < k; p++) {
      const x = s.transA ? A[p * m + i] : A[i * k + p];
      if (s.transB) for (let j = 0; j < n; j++) acc[j] += x * B[j * k + p];
      else for (let j = 0; j < n; j++) acc[j] += x * B[p * n + j];
    }
    out.set(acc, r * n);
  });
  return out;
}

function relErr(got: Float32Array, ref: Float64Array, rows: number[], n: number): number {
  let err = 0;
  let scale = 1;
  rows.forEach((i, r) => {
    for (let j = 0; j < n; j++) {
      const want = ref[r * n + j];
      err = Math.max(err, Math.abs(got[i * n + j] - want));
      scale = Math.max(scale, Math.abs(want));
    }
  });
  return err / scale;
}

function checkedRows(s: MatmulShape): number[] {
  const count = Math.min(s.m, Math.max(8, Math.floor(CHECK_MACS / (s.k * s.n))));
  return Array.from({ length: count }, (_, r) => Math.floor((r * s.m) / count));
}

function gitCommit(): string {
  if (process.env.RMT_COMMIT) return process.env.RMT_COMMIT;
  try {
    return execFileSync('git', ['describe', '--always', '--dirty'], { cwd: here, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

const fmt = (x: number | null, d = 1) => (x === null || !Number.isFinite(x) ? '-' : x.toFixed(d));
const geo = (xs: number[]) => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);

export async function benchGpuKernels(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      backend: { type: 'string' },
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      'min-time': { type: 'string' },
      python: { type: 'string', default: 'python3' },
      'no-torch': { type: 'boolean', default: false },
      'no-gpujs': { type: 'boolean', default: false },
      cases: { type: 'string' },
      out: { type: 'string', default: join(here, 'results') },
    },
  });
  const rounds = Number(values.rounds ?? (values.quick ? 2 : 5));
  const minTime = Number(values['min-time'] ?? (values.quick ? 0.05 : 0.15));

  const setup = await setupWebgpu();
  if (!setup.ok) throw new Error(`webgpu unavailable: ${setup.reason}`);
  const filter = values.cases ? new RegExp(values.cases) : null;
  let cases = [...CASES, ...GPU_ONLY_CASES].filter((c) => !filter || filter.test(c.name));
  const skipped: string[] = [];
  if (setup.software && !filter) {
    // at the software rasteriser's < 1 GFLOP/s one 4096^3 call takes minutes
    skipped.push(...GPU_ONLY_CASES.map((c) => c.name));
    cases = cases.filter((c) => !skipped.includes(c.name));
  }
  if (!cases.length) throw new Error(`no case matches --cases ${values.cases}`);

  // PyTorch first: a host without CUDA torch fails before the long part
  const torch = values['no-torch'] ? null : await startTorch(values.python);
  const be = await WebgpuBackend.create();
  const tiled = be.tiledMatmulDispatches() !== null;
  const gpujs = values['no-gpujs'] || !tiled ? null : await WebgpuBackend.create({ tiledMatmul: false });
  const cpu = `${os.cpus()[0]?.model ?? 'unknown CPU'} x ${os.cpus().length}`;
  console.log(`bench:kernels --backend webgpu: ${setup.reason}${setup.software ? ' (software)' : ''}`);
  console.log(
    `baseline: ${torch ? `torch ${torch.header.torch} on ${torch.header.gpu}, CUDA ${torch.header.cuda}, TF32 off` : 'not run (--no-torch)'}; ${cpu}, node ${process.version}`,
  );
  if (skipped.length) console.log(`software adapter: left out ${skipped.join(', ')} (--cases to force)`);

  const rng = new Rng(20240503);
  const rows: GpuRow[] = [];
  const header = `${'case'.padEnd(24)} ${'shape'.padEnd(20)} ${'rmt'.padStart(8)} ${'gpujs'.padStart(8)} ${'torch'.padStart(8)} ${'ratio'.padStart(6)} ${'relErr'.padStart(8)}`;
  console.log(`\nGFLOP/s (ratio = rmt / torch)\n${header}\n${'-'.repeat(header.length)}`);
  for (const c of cases) {
    const r = await benchCase(be, gpujs, torch, c, rng, rounds, minTime);
    rows.push(r);
    console.log(
      `${c.name.padEnd(24)} ${r.shape.padEnd(20)} ${fmt(r.rmt).padStart(8)} ${fmt(r.gpujs).padStart(8)} ${fmt(r.baseline).padStart(8)} ${fmt(r.ratio, 3).padStart(6)} ${r.rel_err.toExponential(1).padStart(8)}`,
    );
  }
  torch?.close();
  const deviceBatching = be.deviceBatchingSettings();
  await gpujs?.dispose();
  await be.dispose();

  const ratios = rows.flatMap((r) => (r.ratio === null ? [] : [r.ratio]));
  const gpujsRatios = rows.flatMap((r) => (r.gpujs_ratio === null ? [] : [r.gpujs_ratio]));
  const gpujsGflops = rows.flatMap((r) => (r.gpujs === null ? [] : [r.gpujs]));
  const summary = {
    cases: rows.length,
    geomeanRatio: ratios.length ? geo(ratios) : null,
    minRatio: ratios.length ? Math.min(...ratios) : null,
    maxRatio: ratios.length ? Math.max(...ratios) : null,
    geomeanGpujsRatio: gpujsRatios.length ? geo(gpujsRatios) : null,
    geomeanRmtGflops: geo(rows.map((r) => r.rmt)),
    maxRmtGflops: Math.max(...rows.map((r) => r.rmt)),
    geomeanGpujsGflops: gpujsGflops.length ? geo(gpujsGflops) : null,
    maxRelErr: Math.max(...rows.map((r) => r.rel_err)),
  };
  if (ratios.length) {
    console.log(
      `\nratio rmt/torch: geomean ${fmt(summary.geomeanRatio, 3)}, min ${fmt(summary.minRatio, 3)}, max ${fmt(summary.maxRatio, 3)}`,
    );
  }
  const result = {
    bench: 'kernels-gpu',
    date: new Date().toISOString(),
    commit: gitCommit(),
    command: ['bench/kernels.ts', ...argv].map((x) => (/^[\w./=:-]+$/.test(x) ? x : `'${x}'`)).join(' '),
    machine: {
      gpu: torch?.header.gpu ?? null,
      webgpu: setup.reason,
      webgpuSoftware: setup.software,
      cpu,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      os: `${os.type()} ${os.release()}`,
      node: process.version,
    },
    rmt: {
      backend: 'webgpu',
      kernel: tiled ? TILED_KERNEL : GPUJS_KERNEL,
      gpujsKernel: gpujs ? GPUJS_KERNEL : null,
      includes: 'queueing each call on the host and the device work; operands and result stay on the device',
      deviceBatching,
    },
    baseline: torch ? { ...torch.header, op: 'torch.mm float32, operands on the device' } : null,
    method: {
      unit: 'GFLOP/s = 2 m k n / seconds per call',
      rounds,
      minTimeSeconds: minTime,
      trial:
        'calls queued back to back between two waits for the device, calls grown until a trial lasts minTime',
      best: 'fastest trial',
      check: `float64 host product, max|got-ref| / max(1, max|ref|) <= ${TOLERANCE}, on at most ${CHECK_MACS} multiply-adds of rows per case`,
    },
    skipped,
    summary,
    cases: rows,
  };
  mkdirSync(values.out, { recursive: true });
  writeFileSync(join(values.out, 'kernels-gpu.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(values.out, 'kernels-gpu.md'), markdown(result, rows));
  console.log(`wrote ${join(values.out, 'kernels-gpu.json')} and kernels-gpu.md`);
}

async function benchCase(
  be: WebgpuBackend,
  gpujs: WebgpuBackend | null,
  torch: Awaited<ReturnType<typeof startTorch>> | null,
  c: Case,
  rng: Rng,
  rounds: number,
  minTime: number,
): Promise<GpuRow> {
  const s = c.shape;
  const A = Float32Array.from({ length: s.m * s.k }, () => rng.normal());
  const B = Float32Array.from({ length: s.k * s.n }, () => rng.normal());
  const a = be.upload(A);
  const b = be.upload(B);
  const rowsChecked = checkedRows(s);
  const ref = reference(A, B, s, rowsChecked);
  let err = await checkFirst(be, a, b, ref, rowsChecked, c);
  const ga = gpujs?.upload(A);
  const gb = gpujs?.upload(B);
  if (gpujs && ga && gb) err = Math.max(err, await checkFirst(gpujs, ga, gb, ref, rowsChecked, c));

  let rmtCalls = 1;
  let gpujsCalls = 1;
  let torchCalls = 1;
  let bestRmt = Number.POSITIVE_INFINITY;
  let bestGpujs = Number.POSITIVE_INFINITY;
  let bestTorch = Number.POSITIVE_INFINITY;
  for (let r = 0; r < rounds; r++) {
    const t = await calibrate((n) => trial(be, a, b, s, n), minTime, rmtCalls);
    rmtCalls = t.calls;
    bestRmt = Math.min(bestRmt, t.seconds);
    if (gpujs && ga && gb) {
      const tg = await calibrate((n) => trial(gpujs, ga, gb, s, n), minTime, gpujsCalls);
      gpujsCalls = tg.calls;
      bestGpujs = Math.min(bestGpujs, tg.seconds);
    }
    if (torch) {
      const tt = await torch.time(s, minTime, torchCalls);
      torchCalls = tt.calls;
      bestTorch = Math.min(bestTorch, tt.seconds);
    }
  }
  be.free(a);
  be.free(b);
  if (ga) gpujs?.free(ga);
  if (gb) gpujs?.free(gb);
  const flops = flopsOf(s);
  const rmt = flops / bestRmt / 1e9;
  const gpujsRate = gpujs ? flops / bestGpujs / 1e9 : null;
  const baseline = torch ? flops / bestTorch / 1e9 : null;
  return {
    name: c.name,
    shape: shapeOf(s),
    m: s.m,
    k: s.k,
    n: s.n,
    layout: layoutOf(s),
    rmt,
    gpujs: gpujsRate,
    baseline,
    ratio: baseline ? rmt / baseline : null,
    gpujs_ratio: baseline && gpujsRate ? gpujsRate / baseline : null,
    rmt_calls: rmtCalls,
    gpujs_calls: gpujs ? gpujsCalls : null,
    baseline_calls: torch ? torchCalls : null,
    rel_err: err,
    checked_rows: rowsChecked.length,
  };
}

const TILED_KERNEL =
  'the tiled WGSL matmul (shared/kernels/webgpu/tiled-matmul.ts): 64x64 tiles of C per workgroup in workgroup memory, 8x4 outputs per thread, vec4 loads where the contiguous axis is a multiple of 4, every layout read in place (no transpose kernel)';
const GPUJS_KERNEL =
  "gpu.js's matmul (shared/kernels/webgpu, matmulAB): naive, one thread per output; B stored [n, k] is first transposed by a separate kernel, included in the time";

/** The first call compiles; its result is checked against the float64 product on `rowsChecked`. */
async function checkFirst(
  be: WebgpuBackend,
  a: Buf,
  b: Buf,
  ref: Float64Array,
  rowsChecked: number[],
  c: Case,
): Promise<number> {
  const s = c.shape;
  const first = await be.matmul(a, b, s);
  const got = await be.read(first);
  be.free(first);
  be.free(await be.matmul(a, b, s));
  const err = relErr(got, ref, rowsChecked, s.n);
  if (!(err <= TOLERANCE)) {
    throw new Error(`${c.name} (${shapeOf(s)}): relative error ${err} over the tolerance ${TOLERANCE}`);
  }
  return err;
}

function markdown(
  result: {
    date: string;
    commit: string;
    command: string;
    machine: { gpu: string | null; webgpu: string; cpu: string; memoryGiB: number; os: string; node: string };
    rmt: { kernel: string; gpujsKernel: string | null };
    baseline: TorchCudaHeader | null;
    method: { rounds: number; minTimeSeconds: number };
    skipped: string[];
    summary: {
      geomeanRatio: number | null;
      minRatio: number | null;
      maxRatio: number | null;
      geomeanGpujsRatio: number | null;
      maxRelErr: number;
    };
  },
  rows: GpuRow[],
): string {
  const m = result.machine;
  const t = result.baseline;
  const s = result.summary;
  const sampled = rows
    .filter((r) => r.checked_rows < r.m)
    .map((r) => `${r.name} on ${r.checked_rows} of ${r.m} rows`);
  const lines = [
    '# GPU matmul: rmt (webgpu) vs PyTorch CUDA',
    '',
    `Generated on ${result.date} at commit \`${result.commit}\` by \`${result.command}\`.`,
    '',
    `- Machine: GPU ${m.gpu ?? 'not named (PyTorch not run)'}; WebGPU adapter ${m.webgpu}; CPU ${m.cpu}, ${m.memoryGiB} GiB, ${m.os}; Node ${m.node}.`,
    `- rmt: \`WebgpuBackend.matmul\` on the \`webgpu\` backend as configured by default, which is ${result.rmt.kernel}. Operands and result stay on the device; the time includes queueing each call on the host.`,
    result.rmt.gpujsKernel
      ? `- gpujs: the same backend with \`tiledMatmul: false\`, which is ${result.rmt.gpujsKernel}; timed the same way, in the same rounds.`
      : '- gpujs: not run.',
    t
      ? `- baseline: PyTorch ${t.torch} \`torch.mm\` float32 on ${t.gpu}, CUDA ${t.cuda}, TF32 off (matmul ${t.tf32.matmul}, cudnn ${t.tf32.cudnn}), operands on the device.`
      : '- baseline: not run (--no-torch).',
    `- GFLOP/s = 2 m k n / time per call; a trial queues calls back to back and waits for the device once (torch: \`torch.cuda.synchronize()\` before and after), with the calls grown until a trial lasts ${result.method.minTimeSeconds} s; fastest of ${result.method.rounds} interleaved trials. ratio = rmt / torch. Shapes are m x k x n with the layout (T = operand stored transposed, as the model stores it).`,
    `- Every case was checked first against a float64 product on the host (largest relative error ${s.maxRelErr.toExponential(1)}, tolerance ${TOLERANCE}${sampled.length ? `; ${sampled.join(', ')}, evenly spread` : ''}).`,
    '',
    '| case | shape | rmt | gpujs | torch | ratio | gpujs ratio | rel. error |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.shape} | ${fmt(r.rmt)} | ${fmt(r.gpujs)} | ${fmt(r.baseline)} | ${fmt(r.ratio, 3)} | ${fmt(r.gpujs_ratio, 3)} | ${r.rel_err.toExponential(1)} |`,
    ),
    '',
    s.geomeanRatio !== null
      ? `Ratio rmt / torch: geomean ${fmt(s.geomeanRatio, 3)}, min ${fmt(s.minRatio, 3)}, max ${fmt(s.maxRatio, 3)} over ${rows.length} cases${s.geomeanGpujsRatio !== null ? `; gpujs / torch geomean ${fmt(s.geomeanGpujsRatio, 3)}` : ''}.`
      : `rmt only (${rows.length} cases).`,
    ...(result.skipped.length
      ? ['', `Left out on this software adapter (minutes per call): ${result.skipped.join(', ')}.`]
      : []),
    '',
  ];
  return lines.join('\n');
}
