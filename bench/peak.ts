/**
 * The peak probe of the CPU benches: the GFLOP/s of asm/peak.ts's register-only f32x4 loops (fused
 * multiply-add, and multiply-then-add, from the same wasm build) on 1 and on N threads, so a matmul's
 * GFLOP/s can be read as its share of what WebAssembly can physically do on this machine. Each thread
 * is a worker instantiating the module; they start together on an Atomics barrier, and a trial's
 * GFLOP/s is all threads' flops over the slowest thread's time. Best of several trials (a peak is the
 * least disturbed reading, so load lowers it and raises the shares computed from it).
 *
 * The native peak beside it is computed, not measured: cores x clock (the `cpu MHz` of
 * /proc/cpuinfo) x flops per cycle of the widest FMA the CPU flags allow (AVX-512: 2 x 16 lanes x 2;
 * AVX2 + FMA: 2 x 8 x 2; AVX without FMA: 8 x 2), assuming two FMA pipes per core as on every x86
 * with FMA since Haswell and Zen (some AVX-512 parts have one 512-bit pipe: the figure is then an
 * upper bound, and OpenBLAS's share a lower bound).
 *
 *   npx tsx bench/peak.ts [--threads 1,2]     prints one JSON object
 */
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { loadPeakModule } from '../shared/kernels/wasm/loader.js';

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { module, memory, barrier, fma, iters } = workerData;
const ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
const flag = new Int32Array(barrier);
Atomics.add(flag, 1, 1);
Atomics.wait(flag, 0, 0);
const t0 = performance.now();
const r = fma ? ex.peakFma(iters, 1) : ex.peakMulAdd(iters, 1);
parentPort.postMessage({ seconds: (performance.now() - t0) / 1000, finite: Number.isFinite(r) });
`;

export interface PeakResult {
  variant: string;
  /** GFLOP/s per thread count, with and without the fused multiply-add. */
  fma: Record<string, number>;
  mulAdd: Record<string, number>;
}

async function trial(
  module: WebAssembly.Module,
  memory: WebAssembly.Memory,
  threads: number,
  fma: boolean,
  iters: number,
): Promise<number> {
  const barrier = new SharedArrayBuffer(8);
  const flag = new Int32Array(barrier);
  const done: Promise<{ seconds: number; finite: boolean }>[] = [];
  const workers: Worker[] = [];
  for (let t = 0; t < threads; t++) {
    const w = new Worker(WORKER, { eval: true, workerData: { module, memory, barrier, fma, iters } });
    workers.push(w);
    done.push(
      new Promise((res, rej) => {
        w.once('message', res);
        w.once('error', rej);
      }),
    );
  }
  while (Atomics.load(flag, 1) < threads) await new Promise((r) => setTimeout(r, 5));
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
  const out = await Promise.all(done);
  await Promise.all(workers.map((w) => w.terminate()));
  if (out.some((o) => !o.finite)) throw new Error('peak probe: the loop produced a non-finite value');
  const slowest = Math.max(...out.map((o) => o.seconds));
  return (threads * iters * 96) / slowest / 1e9;
}

/** Best GFLOP/s over `trials` of about `seconds` each, per thread count, both loops. */
export async function wasmPeak(threadCounts: number[], seconds = 0.3, trials = 3): Promise<PeakResult> {
  const loaded = loadPeakModule();
  if (typeof loaded === 'string') throw new Error(loaded);
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  // calibrate: iterations for `seconds` on one thread
  const probeIters = 2_000_000;
  const g = await trial(loaded.module, memory, 1, true, probeIters);
  const iters = Math.max(probeIters, Math.round((g * 1e9 * seconds) / 96));
  const result: PeakResult = { variant: loaded.variant, fma: {}, mulAdd: {} };
  for (const threads of threadCounts) {
    for (const fma of [true, false]) {
      let best = 0;
      for (let i = 0; i < trials; i++)
        best = Math.max(best, await trial(loaded.module, memory, threads, fma, iters));
      (fma ? result.fma : result.mulAdd)[String(threads)] = Math.round(best * 10) / 10;
    }
  }
  return result;
}

export interface NativePeak {
  gflopsPerCore: number;
  cores: number;
  gflops: number;
  mhz: number;
  flopsPerCycle: number;
  isa: string;
}

/** Native f32 peak from the CPU's clock and FMA width (see the header for the assumption). */
export function nativePeak(cores: number): NativePeak | null {
  let info: string;
  try {
    info = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return null;
  }
  const mhz = Number(/cpu MHz\s*:\s*([\d.]+)/.exec(info)?.[1]);
  const flags = new Set((/flags\s*:\s*(.*)/.exec(info)?.[1] ?? '').split(/\s+/));
  if (!Number.isFinite(mhz) || mhz <= 0) return null;
  const [flopsPerCycle, isa] = flags.has('avx512f')
    ? [64, 'AVX-512 FMA, 2 pipes']
    : flags.has('avx2') && flags.has('fma')
      ? [32, 'AVX2 FMA, 2 pipes']
      : flags.has('avx')
        ? [16, 'AVX multiply + add']
        : [8, 'SSE multiply + add'];
  const perCore = (mhz / 1000) * flopsPerCycle;
  return {
    gflopsPerCore: Math.round(perCore * 10) / 10,
    cores,
    gflops: Math.round(perCore * cores * 10) / 10,
    mhz,
    flopsPerCycle,
    isa,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--threads');
  const counts = i > 0 ? process.argv[i + 1].split(',').map(Number) : [1, 2];
  wasmPeak(counts).then(
    (r) => console.log(JSON.stringify({ wasm: r, native: nativePeak(Math.max(...counts)) })),
    (e) => {
      console.error(`bench/peak.ts: ${(e as Error).message}`);
      process.exit(1);
    },
  );
}
