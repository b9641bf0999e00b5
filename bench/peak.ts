/**
 * The peak probe of the CPU benches: the GFLOP/s of asm/peak.ts's register-only f32x4 loops (fused
 * multiply-add, and multiply-then-add, from the same wasm build; the best of 6, 8 and 10
 * accumulators) on 1 and on N threads, so a matmul's
 * GFLOP/s can be read as its share of what WebAssembly can physically do on this machine. Each thread
 * is a worker instantiating the module; they start together on an Atomics barrier, and a trial's
 * GFLOP/s is all threads' flops over the slowest thread's time. Best of several trials (a peak is the
 * least disturbed reading, so load lowers it and raises the shares computed from it). Each trial also
 * reads every thread's own CPU time (/proc/thread-self/stat): GFLOP/s per CPU-second, the loop's
 * speed while it is scheduled, is the figure to compare when other processes share the cores.
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
const { module, memory, barrier, loop, iters } = workerData;
const ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
// warm-up calls: V8 runs a function's first calls in its baseline compiler (Liftoff)
for (let i = 0; i < 40; i++) ex[loop](20000, 1);
const flag = new Int32Array(barrier);
const { readFileSync } = require('node:fs');
// this thread's CPU seconds (utime + stime, 10 ms ticks), or NaN where /proc is unreadable
const cpu = () => {
  try {
    const s = readFileSync('/proc/thread-self/stat', 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return Number.NaN;
  }
};
Atomics.add(flag, 1, 1);
Atomics.wait(flag, 0, 0);
const c0 = cpu();
const t0 = performance.now();
const r = ex[loop](iters, 1);
const seconds = (performance.now() - t0) / 1000;
parentPort.postMessage({ seconds, cpuSeconds: cpu() - c0, finite: Number.isFinite(r) });
`;

export interface PeakResult {
  variant: string;
  /** GFLOP/s per thread count, with and without the fused multiply-add (best accumulator count). */
  fma: Record<string, number>;
  mulAdd: Record<string, number>;
  /**
   * The same per second of CPU time the threads got (summed over threads): what the loop does while
   * scheduled, which other processes' load changes far less than the wall-clock figure (10 ms ticks).
   */
  fmaOnCpu: Record<string, number>;
  mulAddOnCpu: Record<string, number>;
  /** The loop (asm/peak.ts export) that gave each wall-clock figure. */
  loops: Record<string, string>;
}

/** asm/peak.ts's loops: fused and not, by accumulator count. */
const LOOPS = { fma: ['fma6', 'fma8', 'fma10'], mulAdd: ['mulAdd6', 'mulAdd8', 'mulAdd10'] };
const accumulators = (loop: string) => Number(/\d+$/.exec(loop)?.[0]);

async function trial(
  module: WebAssembly.Module,
  memory: WebAssembly.Memory,
  threads: number,
  loop: string,
  iters: number,
): Promise<{ wall: number; onCpu: number }> {
  const barrier = new SharedArrayBuffer(8);
  const flag = new Int32Array(barrier);
  const done: Promise<{ seconds: number; cpuSeconds: number; finite: boolean }>[] = [];
  const workers: Worker[] = [];
  for (let t = 0; t < threads; t++) {
    const w = new Worker(WORKER, { eval: true, workerData: { module, memory, barrier, loop, iters } });
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
  const flops = iters * accumulators(loop) * 8;
  const slowest = Math.max(...out.map((o) => o.seconds));
  const onCpu = out.reduce((acc, o) => acc + flops / Math.max(o.cpuSeconds, 0.01) / 1e9, 0);
  return { wall: (threads * flops) / slowest / 1e9, onCpu };
}

/** Best GFLOP/s over `trials` of about `seconds` each, per thread count, both loops. */
export async function wasmPeak(threadCounts: number[], seconds = 0.2, trials = 2): Promise<PeakResult> {
  const loaded = loadPeakModule();
  if (typeof loaded === 'string') throw new Error(loaded);
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  // calibrate: iterations for `seconds` on one thread (the 8-accumulator loop)
  const probeIters = 1_000_000;
  const g = (await trial(loaded.module, memory, 1, 'fma8', probeIters)).wall;
  const flopsTarget = g * 1e9 * seconds;
  const result: PeakResult = {
    variant: loaded.variant,
    fma: {},
    mulAdd: {},
    fmaOnCpu: {},
    mulAddOnCpu: {},
    loops: {},
  };
  for (const threads of threadCounts) {
    for (const kind of ['fma', 'mulAdd'] as const) {
      let best = 0;
      let bestOnCpu = 0;
      let bestLoop = '';
      for (const loop of LOOPS[kind]) {
        const iters = Math.max(probeIters, Math.round(flopsTarget / (accumulators(loop) * 8)));
        for (let i = 0; i < trials; i++) {
          const x = await trial(loaded.module, memory, threads, loop, iters);
          bestOnCpu = Math.max(bestOnCpu, x.onCpu);
          if (x.wall > best) {
            best = x.wall;
            bestLoop = loop;
          }
        }
      }
      result[kind][String(threads)] = Math.round(best * 10) / 10;
      result[kind === 'fma' ? 'fmaOnCpu' : 'mulAddOnCpu'][String(threads)] = Math.round(bestOnCpu * 10) / 10;
      result.loops[`${kind} ${threads}`] = bestLoop;
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
