/**
 * Rounds for the CPU benches (bench/kernels.ts, bench/model.ts): rmt and PyTorch alternate, each
 * side's repeats inside a round, and each round records how much of the machine other processes
 * took while it ran. On a small shared machine one invocation's ratio says little; the median over
 * rounds, its spread, and which rounds were disturbed say how far a figure can be trusted.
 *
 * Load per round: the 1-minute load average at the round's start and end (what `uptime` shows,
 * smoothed over a minute, so it lags), and the cores other processes kept busy during the round:
 * (non-idle CPU time of the whole machine from /proc/stat - this process's CPU time - the PyTorch
 * child's) / wall time. A round is marked `loaded` when others took at least `LOADED_CORES` of a
 * core on average; such rounds stay in the report, and the median is also given without them.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** Others' average busy cores at or above which a round counts as loaded (a core taken half the time). */
export const LOADED_CORES = 0.5;

const TICK_S = 0.01; // USER_HZ = 100 on Linux

interface CpuMark {
  wall: number;
  machineBusy: number | null;
  self: number;
  child: number | null;
  load1: number;
}

/** CPU seconds the whole machine has been busy (all but idle and iowait), or null without /proc. */
export function machineBusySeconds(): number | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait
    const total = f.slice(0, 8).reduce((x, y) => x + y, 0);
    return (total - f[3] - (f[4] ?? 0)) * TICK_S;
  } catch {
    return null;
  }
}

/** CPU seconds of process `pid` (user + system, its threads included), or null if unreadable. */
export function processCpuSeconds(pid: number): number | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // fields 14 and 15 (utime, stime) are at 11 and 12 after the command name
    return (Number(rest[11]) + Number(rest[12])) * TICK_S;
  } catch {
    return null;
  }
}

function mark(childPid: number | null): CpuMark {
  const u = process.cpuUsage();
  return {
    wall: performance.now() / 1000,
    machineBusy: machineBusySeconds(),
    self: (u.user + u.system) / 1e6,
    child: childPid === null ? 0 : processCpuSeconds(childPid),
    load1: os.loadavg()[0],
  };
}

export interface RoundLoad {
  /** 1-minute load average at the start and the end of the round. */
  load1: [number, number];
  /** Average cores kept busy by other processes during the round (null where /proc is unreadable). */
  otherCores: number | null;
  loaded: boolean;
}

/** Measures the load of one round: `begin()` at its start, `end()` at its end. */
export class RoundMeter {
  private start: CpuMark | null = null;

  constructor(private readonly childPid: () => number | null) {}

  begin(): void {
    this.start = mark(this.childPid());
  }

  end(): RoundLoad {
    const a = this.start ?? mark(this.childPid());
    const b = mark(this.childPid());
    const wall = Math.max(1e-6, b.wall - a.wall);
    let otherCores: number | null = null;
    if (a.machineBusy !== null && b.machineBusy !== null && a.child !== null && b.child !== null) {
      const others = b.machineBusy - a.machineBusy - (b.self - a.self) - (b.child - a.child);
      otherCores = Math.max(0, others / wall);
    }
    const r2 = (x: number) => Math.round(x * 100) / 100;
    return {
      load1: [r2(a.load1), r2(b.load1)],
      otherCores: otherCores === null ? null : r2(otherCores),
      loaded: otherCores !== null && otherCores >= LOADED_CORES,
    };
  }
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  /** First and third quartiles (linear interpolation between order statistics). */
  q1: number;
  q3: number;
  n: number;
}

function quantile(sorted: number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Median, min-max and interquartile range of `xs`; null when empty. */
export function spread(xs: number[]): Spread | null {
  const s = xs.filter(Number.isFinite).sort((x, y) => x - y);
  if (s.length === 0) return null;
  return {
    median: quantile(s, 0.5),
    min: s[0],
    max: s[s.length - 1],
    q1: quantile(s, 0.25),
    q3: quantile(s, 0.75),
    n: s.length,
  };
}

export const median = (xs: number[]): number => spread(xs)?.median ?? Number.NaN;

export interface RoundRecord {
  round: number;
  rmt: number;
  baseline: number;
  ratio: number;
  load: RoundLoad;
  /**
   * The same work per second of CPU time each side used (all its threads, spin-waits included):
   * how fast each side computes while scheduled, which others' load disturbs far less than the
   * wall-clock figures; where a side spins while waiting, it is charged for it.
   */
  onCpu?: { rmt: number; baseline: number };
}

export interface RoundSummary {
  /** Ratio rmt / baseline over all rounds. */
  ratio: Spread | null;
  /** The same over the rounds not marked loaded (null when every round was loaded). */
  ratioUnloaded: Spread | null;
  rmt: Spread | null;
  baseline: Spread | null;
  loadedRounds: number[];
  /** Spreads of the on-CPU rates and their ratio, where the rounds recorded them. */
  onCpu: { rmt: Spread | null; baseline: Spread | null; ratio: Spread | null } | null;
  rounds: RoundRecord[];
}

export function summarize(rounds: RoundRecord[]): RoundSummary {
  const quiet = rounds.filter((r) => !r.load.loaded);
  return {
    ratio: spread(rounds.map((r) => r.ratio)),
    ratioUnloaded: spread(quiet.map((r) => r.ratio)),
    rmt: spread(rounds.map((r) => r.rmt)),
    baseline: spread(rounds.map((r) => r.baseline)),
    loadedRounds: rounds.filter((r) => r.load.loaded).map((r) => r.round),
    onCpu: rounds.every((r) => r.onCpu)
      ? {
          rmt: spread(rounds.map((r) => r.onCpu?.rmt ?? Number.NaN)),
          baseline: spread(rounds.map((r) => r.onCpu?.baseline ?? Number.NaN)),
          ratio: spread(rounds.map((r) => (r.onCpu ? r.onCpu.rmt / r.onCpu.baseline : Number.NaN))),
        }
      : null,
    rounds,
  };
}

const f = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : '-');

/** "1.23 [0.98-1.50, IQR 1.10-1.31]" */
export function formatSpread(s: Spread | null, d = 2): string {
  if (!s) return '-';
  return `${f(s.median, d)} [${f(s.min, d)}-${f(s.max, d)}, IQR ${f(s.q1, d)}-${f(s.q3, d)}]`;
}

/** Per-round load, as "r1 0.12c (1.9/2.0)*" lines: others' cores, load averages, * = loaded. */
export function formatLoads(rounds: RoundRecord[]): string {
  return rounds
    .map(
      (r) =>
        `${r.round}: ${r.load.otherCores === null ? '?' : f(r.load.otherCores, 2)} (${f(r.load.load1[0], 2)}/${f(r.load.load1[1], 2)})${r.load.loaded ? '*' : ''}`,
    )
    .join(', ');
}
