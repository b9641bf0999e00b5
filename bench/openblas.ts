/**
 * The PyTorch baseline at its best on CPU: which OpenBLAS kernel ("core") it runs, and, when that is
 * not the best the CPU supports, which `OPENBLAS_CORETYPE` to force. OpenBLAS 0.3.21 (Debian
 * bookworm) falls back to its generic Prescott kernel on CPUs it does not recognise, such as some
 * virtualised Xeons with AVX-512, and runs 3-4x slower there; comparing against that would flatter
 * rmt.
 *
 * The benches' PyTorch child gets an environment built here: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
 * are both removed (either one alone changes what OpenBLAS picks), then the chosen core is set. When
 * the auto-detected core is not in the CPU's best tier (avx512f: SkylakeX / Cooperlake /
 * SapphireRapids; avx2 + fma: Haswell / Zen / SkylakeX), every candidate the CPU's flags allow is
 * timed on a 1024^3 sgemm and the fastest is used; the timings are recorded. `--blas-dir DIR` (both
 * benches) puts DIR first on the child's LD_LIBRARY_PATH, for machines whose libblas.so.3
 * alternative is the reference BLAS (which the PyTorch scripts refuse) but which have an OpenBLAS
 * build at hand, e.g. Debian's libopenblas0-pthread unpacked with `dpkg -x`.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

export interface CoreChoice {
  /** The core OpenBLAS picks by itself (both overrides unset). */
  detected: string;
  /** OPENBLAS_CORETYPE given to the baseline; null = OpenBLAS's own choice. */
  coretype: string | null;
  /** The core the baseline then runs. */
  corename: string;
  /** Why this choice. */
  reason: string;
  /** 1024^3 sgemm GFLOP/s per candidate, when candidates were measured ("auto" = no override). */
  measured: Record<string, number> | null;
  /** OPENBLAS_* variables of the bench's own environment that the child does not inherit. */
  removed: Record<string, string>;
}

export function cpuFlags(): Set<string> {
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const line = info.split('\n').find((l) => l.startsWith('flags'));
    return new Set((line?.split(':')[1] ?? '').trim().split(/\s+/));
  } catch {
    return new Set();
  }
}

function isAmd(): boolean {
  try {
    return /AuthenticAMD/.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return false;
  }
}

/** OpenBLAS cores this CPU can run, best first, and the names counted as its best tier. */
export function coreCandidates(flags: Set<string>, amd: boolean): { candidates: string[]; best: string[] } {
  const avx512 = flags.has('avx512f') && flags.has('avx512bw') && flags.has('avx512vl');
  const avx2 = flags.has('avx2') && flags.has('fma');
  const candidates: string[] = [];
  if (avx512) candidates.push('SkylakeX');
  if (avx2) candidates.push(...(amd ? ['Zen', 'Haswell'] : ['Haswell']));
  if (flags.has('avx')) candidates.push('Sandybridge');
  const best = avx512
    ? ['skylakex', 'cooperlake', 'sapphirerapids']
    : avx2
      ? ['haswell', 'zen', 'skylakex', 'cooperlake']
      : flags.has('avx')
        ? ['sandybridge', 'haswell', 'zen']
        : [];
  return { candidates, best };
}

/** The bench's environment for the PyTorch child, without any OpenBLAS core override. */
export function baseTorchEnv(threads: number, blasDir: string | null): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  if (blasDir) env.LD_LIBRARY_PATH = [blasDir, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':');
  return env;
}

export function withCore(env: NodeJS.ProcessEnv, coretype: string | null): NodeJS.ProcessEnv {
  return coretype ? { ...env, OPENBLAS_CORETYPE: coretype } : { ...env };
}

interface Probe {
  corename: string;
  gflops: number | null;
  error?: string;
}

/** Runs bench/torch_kernels.py once: the core it reports and (when `time`) a 1024^3 sgemm's GFLOP/s. */
function probe(python: string, threads: number, env: NodeJS.ProcessEnv, time: boolean): Probe {
  const input = time ? `${JSON.stringify({ m: 1024, k: 1024, n: 1024, minTime: 0.3, trials: 3 })}\n` : '';
  const r = spawnSync(
    python,
    [join(here, 'torch_kernels.py'), '--threads', String(threads), ...(time ? [] : ['--info'])],
    { env, input, encoding: 'utf8', timeout: 120_000 },
  );
  const lines = (r.stdout ?? '').trim().split('\n').filter(Boolean);
  if (lines.length === 0) return { corename: '?', gflops: null, error: (r.stderr ?? '').trim().slice(-500) };
  const header = JSON.parse(lines[0]) as { error?: string; blas?: { corename?: string } };
  if (header.error) return { corename: '?', gflops: null, error: header.error };
  const corename = header.blas?.corename ?? '?';
  if (!time) return { corename, gflops: null };
  const out = lines[1] ? (JSON.parse(lines[1]) as { seconds: number }) : null;
  return { corename, gflops: out ? (2 * 1024 ** 3) / out.seconds / 1e9 : null };
}

/**
 * Picks the baseline's OpenBLAS core: OpenBLAS's own when it is in the CPU's best tier (or `force`
 * names one), else the fastest candidate on a 1024^3 sgemm. Throws with the child's reason when
 * PyTorch cannot run (the reference BLAS is refused there).
 */
export function chooseCore(
  python: string,
  threads: number,
  env: NodeJS.ProcessEnv,
  force: string | null,
  measureAlways: boolean,
): CoreChoice {
  const removed: Record<string, string> = {};
  for (const k of ['OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE']) {
    const v = process.env[k];
    if (v !== undefined) removed[k] = v;
  }
  const auto = probe(python, threads, env, false);
  if (auto.error) throw new Error(auto.error);
  if (force) {
    const p = probe(python, threads, withCore(env, force), false);
    return {
      detected: auto.corename,
      coretype: force,
      corename: p.corename,
      reason: `forced with --coretype ${force}`,
      measured: null,
      removed,
    };
  }
  const { candidates, best } = coreCandidates(cpuFlags(), isAmd());
  const inBest = best.includes(auto.corename.toLowerCase());
  if (inBest && !measureAlways) {
    return {
      detected: auto.corename,
      coretype: null,
      corename: auto.corename,
      reason: `OpenBLAS picked ${auto.corename}, in the best tier this CPU supports (${best.join(', ')})`,
      measured: null,
      removed,
    };
  }
  const measured: Record<string, number> = {};
  let bestName: string | null = null;
  let bestG = -1;
  for (const c of [null, ...candidates]) {
    const p = probe(python, threads, withCore(env, c), true);
    if (p.gflops === null) continue;
    measured[c ?? 'auto'] = Math.round(p.gflops * 10) / 10;
    if (p.gflops > bestG) {
      bestG = p.gflops;
      bestName = c;
    }
  }
  const chosen = bestName ? probe(python, threads, withCore(env, bestName), false).corename : auto.corename;
  return {
    detected: auto.corename,
    coretype: bestName,
    corename: chosen,
    reason: inBest
      ? `measured on request; fastest: ${bestName ?? 'auto'}`
      : `OpenBLAS picked ${auto.corename}, not in this CPU's best tier (${best.join(', ')}): fastest candidate on 1024^3 sgemm was ${bestName ?? 'auto'}`,
    measured,
    removed,
  };
}

export function describeCore(c: CoreChoice): string {
  const m = c.measured
    ? `; 1024^3 sgemm GFLOP/s per OPENBLAS_CORETYPE: ${Object.entries(c.measured)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`
    : '';
  return `OpenBLAS core ${c.corename}${c.coretype ? ` (OPENBLAS_CORETYPE=${c.coretype})` : ' (its own choice)'}: ${c.reason}${m}`;
}
