/**
 * Learner step time with 1 and 2 data-parallel learners (bench:services, `--part learners`): one
 * local cluster with two learner processes; the same synthetic steps (random rollouts with random
 * rewards, NTP windows) go to the leader alone (N = 1) or split over both (N = 2), through the
 * coordinator's own DataParallelLearners over gRPC. Rounds alternate which N goes first; each round
 * records the load average and the cores other processes took (the machine's busy time minus this
 * process's and the cluster's). Medians over rounds.
 */
import os from 'node:os';
import { startCluster } from '../cli/up.js';
import type { TrainConfig } from '../shared/config/train-config.js';
import type { KeyPosition } from '../shared/rl/key-positions.js';
import type { Rollout } from '../shared/rl/rollouts.js';
import { RemoteLearner } from '../shared/rpc/adapters/remote.js';
import { learnerClient } from '../shared/rpc/client.js';
import { isServiceError, Status } from '../shared/rpc/errors.js';
import { DataParallelLearners } from '../shared/run/data-parallel-learners.js';
import type { RunRef } from '../shared/run/run-context.js';
import { Rng } from '../shared/util/rng.js';
import { LOADED_CORES, machineBusySeconds, processCpuSeconds, type Spread, spread } from './rounds.js';

export interface LearnerStepShape {
  positions: number;
  G: number;
  prompt: number;
  response: number;
  context: number;
  continuation: number;
}

export interface LearnerRound {
  round: number;
  order: number[];
  /** Seconds per step and tokens (RL + NTP) per second, by N. */
  stepS: Record<string, number>;
  tokensPerS: Record<string, number>;
  load1: [number, number];
  otherCores: number | null;
  loaded: boolean;
}

export interface LearnerStepReport {
  shape: LearnerStepShape;
  stepsPerSide: number;
  /** Steps whose call was dropped and made again (the retried attempt is timed). */
  retriedSteps: number;
  tokensPerStep: number;
  rounds: LearnerRound[];
  stepS: Record<string, Spread | null>;
  tokensPerS: Record<string, Spread | null>;
}

function syntheticStep(cfg: TrainConfig, shape: LearnerStepShape, vocab: number, rng: Rng) {
  const ids = (n: number) => Array.from({ length: n }, () => 100 + rng.int(vocab - 100));
  const groups: Rollout[][] = Array.from({ length: shape.positions }, (_, p) =>
    Array.from({ length: shape.G }, () => {
      const responseIds = ids(shape.response);
      return {
        positionId: p,
        promptIds: ids(shape.prompt),
        responseIds,
        logprobs: responseIds.map(() => -1 - rng.next()),
        parsed: {
          reasoningIds: [],
          predictionIds: [],
          predictionBytes: new Uint8Array(),
          finishReason: 'length' as const,
        },
        reward: { reward: rng.next(), rMatch: rng.next(), rLen: 0 },
        budget: cfg.budget.B_0,
      };
    }),
  );
  const positions: KeyPosition[] = Array.from({ length: shape.positions }, (_, p) => ({
    id: 1000 * (p + 1),
    context: ids(shape.context),
    target: 5,
    continuation: ids(shape.continuation),
    entropy: 1,
  }));
  return { groups, positions };
}

export async function benchLearnerSteps(o: {
  root: string;
  cfg: TrainConfig;
  backend: string;
  vocab: number;
  shape: LearnerStepShape;
  rounds: number;
  stepsPerSide: number;
  log: (line: string) => void;
}): Promise<LearnerStepReport> {
  const cluster = await startCluster({
    workers: 1,
    learners: 2,
    backend: o.backend,
    logs: (name, line) => {
      if (/"level":"(warn|error)"/.test(line)) o.log(`[${name}] ${line.slice(0, 300)}`);
    },
    dataRoot: o.root,
  });
  const clients = cluster.addresses.learners.map((a) => learnerClient(a, cluster.clientOptions));
  try {
    const remote = clients.map((c) => new RemoteLearner(c));
    const sides: Record<string, DataParallelLearners> = {
      '1': new DataParallelLearners(remote.slice(0, 1), cluster.addresses.learners.slice(0, 1)),
      '2': new DataParallelLearners(remote, cluster.addresses.learners),
    };
    const run: RunRef = { runId: 'bench-learners', cfg: o.cfg };
    const rng = new Rng(11);
    let step = (await sides['2'].init(run)).step;
    const data = syntheticStep(o.cfg, o.shape, o.vocab, rng);
    const versions = data.groups.map(() => 0);
    let retried = 0;
    const take = async (n: string) => {
      // A connection dropped mid-step (a learner's event loop busy past the keepalive timeout on a
      // loaded machine) is retried as the coordinator does; the retried attempt is what is timed.
      for (let attempt = 1; ; attempt++) {
        const t0 = performance.now();
        try {
          const vs = versions.map(() => step);
          const m = await sides[n].trainStep(run, step, data.groups, data.positions, vs);
          step++;
          return { s: (performance.now() - t0) / 1000, tokens: m.rl_tokens + m.ntp_tokens };
        } catch (e) {
          if (!isServiceError(e) || e.code !== Status.UNAVAILABLE || attempt >= 3) throw e;
          o.log(`N=${n} step ${step}: ${e.details}; retrying`);
          retried++;
          step = (await sides['2'].init(run)).step;
        }
      }
    };
    // Warm-up: both sides compile their kernels for the shapes (and the follower pulls weights).
    await take('1');
    const warm = await take('2');
    const pids = [...cluster.children.values()].map((c) => c.pid ?? -1);
    const rounds: LearnerRound[] = [];
    for (let r = 0; r < o.rounds; r++) {
      const order = r % 2 === 0 ? ['1', '2'] : ['2', '1'];
      const load0 = os.loadavg()[0];
      const busy0 = machineBusySeconds();
      const ours0 = ownCpu(pids);
      const w0 = performance.now() / 1000;
      const stepS: Record<string, number> = {};
      const tokensPerS: Record<string, number> = {};
      for (const n of order) {
        const times: number[] = [];
        let tokens = 0;
        for (let k = 0; k < o.stepsPerSide; k++) {
          const x = await take(n);
          times.push(x.s);
          tokens = x.tokens;
        }
        stepS[n] = spread(times)!.median;
        tokensPerS[n] = tokens / stepS[n];
      }
      const wall = performance.now() / 1000 - w0;
      const busy1 = machineBusySeconds();
      const ours1 = ownCpu(pids);
      const otherCores =
        busy0 === null || busy1 === null || ours0 === null || ours1 === null
          ? null
          : Math.max(0, (busy1 - busy0 - (ours1 - ours0)) / wall);
      const round: LearnerRound = {
        round: r + 1,
        order: order.map(Number),
        stepS,
        tokensPerS,
        load1: [load0, os.loadavg()[0]],
        otherCores,
        loaded: otherCores !== null && otherCores >= LOADED_CORES,
      };
      rounds.push(round);
      o.log(
        `round ${r + 1}: N=1 ${stepS['1'].toFixed(2)} s/step, N=2 ${stepS['2'].toFixed(2)} s/step, others ${otherCores?.toFixed(2) ?? '?'} cores`,
      );
    }
    return {
      shape: o.shape,
      stepsPerSide: o.stepsPerSide,
      retriedSteps: retried,
      tokensPerStep: warm.tokens,
      rounds,
      stepS: Object.fromEntries(['1', '2'].map((n) => [n, spread(rounds.map((r) => r.stepS[n]))])),
      tokensPerS: Object.fromEntries(['1', '2'].map((n) => [n, spread(rounds.map((r) => r.tokensPerS[n]))])),
    };
  } finally {
    for (const c of clients) c.close();
    await cluster.stop();
  }
}

/** CPU seconds of this process and the cluster's processes (null where one is unreadable). */
function ownCpu(pids: number[]): number | null {
  const u = process.cpuUsage();
  let s = (u.user + u.system) / 1e6;
  for (const pid of pids) {
    const c = processCpuSeconds(pid);
    if (c === null) return null;
    s += c;
  }
  return s;
}
