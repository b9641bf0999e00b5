/**
 * Services benchmark (the four gRPC services on a NATS bus, `docs/services.md`): rollout throughput of the small
 * bench model with 1 and 2 rollout workers of a local cluster (separate processes, gRPC, a real
 * nats-server), the same jobs generated in this process as the baseline, and the weight-sync time
 * (the learner's GetWeights stream into a worker's copy). Ratios are within one invocation. With
 * `--part learners` (or `all`), learner step time and tokens/s with 1 and 2 data-parallel learners
 * (bench/learner-steps.ts).
 *
 * Usage: npm run bench:services -- [--backend auto|webasm|cpu|webgpu] [--jobs 8] [--repeats 3]
 *   [--part rollouts|learners|all] [--rounds 5] [--machine <name>] [--out bench/results]
 * Writes bench/results/services.{json,md} (rollouts) and services-learners.{json,md} (learners).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startCluster } from '../cli/up.js';
import { parseTrainConfig } from '../shared/config/train-config.js';
import { writeGpt2Tokenizer } from '../shared/data/gpt2-bpe.js';
import { createBackend } from '../shared/kernels/index.js';
import { saveCheckpoint } from '../shared/model/checkpoint.js';
import { Decoder } from '../shared/model/decoder.js';
import { initParams } from '../shared/model/init.js';
import { uploadParams } from '../shared/model/weights.js';
import type { KeyPosition } from '../shared/rl/key-positions.js';
import { planJobs, type RolloutJob, type RolloutSettings } from '../shared/rl/rollout-job.js';
import { runRefToPb } from '../shared/rpc/adapters/convert.js';
import { PulledPolicy } from '../shared/rpc/adapters/pulled-policy.js';
import { RemoteEndpoint } from '../shared/rpc/adapters/remote.js';
import { learnerClient, rolloutClient } from '../shared/rpc/client.js';
import { RolloutWorker } from '../shared/run/rollout-worker.js';
import { loadRunContext, type RunRef } from '../shared/run/run-context.js';
import { WorkerPool } from '../shared/run/worker-pool.js';
import { Rng } from '../shared/util/rng.js';
import { benchLearnerSteps, type LearnerStepShape } from './learner-steps.js';
import { BENCH_MODELS } from './models.js';
import { LOADED_CORES } from './rounds.js';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'webasm' },
    jobs: { type: 'string', default: '8' },
    repeats: { type: 'string', default: '3' },
    out: { type: 'string', default: 'bench/results' },
    part: { type: 'string', default: 'rollouts' },
    rounds: { type: 'string', default: '5' },
    machine: { type: 'string', default: '' },
  },
});
const part = values.part!;
if (!['rollouts', 'learners', 'all'].includes(part))
  throw new Error(`--part ${part}: rollouts, learners or all`);
const backendName = values.backend!;
const nJobs = Number(values.jobs);
const repeats = Number(values.repeats);
const SEED = 7;

// Rollout shape: G = 8 per position, 4 positions per job (one batch of 32), 32-token contexts, 32
// new tokens (a random model never closes </think>: every rollout runs to the cap, so the token
// count is fixed).
const G = 8;
const HARD_CAP = 32;
const CONTEXT = 32;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const root = mkdtempSync(join(os.tmpdir(), 'rmt-bench-services-'));
  try {
    const model = BENCH_MODELS.small;
    writeGpt2Tokenizer(join(root, 'tok'), { merges: 2000 });
    const ckDir = join(root, 'small');
    saveCheckpoint(ckDir, {
      config: model,
      params: initParams(model, SEED, 0.02),
      tokenizerDir: join(root, 'tok'),
    });
    const cfg = parseTrainConfig(
      {
        run: { out_dir: join(root, 'run'), seed: SEED, backend: backendName },
        model: { init_from: ckDir },
        budget: { B_0: 16, hard_cap: HARD_CAP },
        grpo: { G },
        train: { generation_batch: 4 * G },
      },
      'bench',
    );
    const run: RunRef = { runId: 'bench', cfg };
    if (part !== 'rollouts') await learners(root, ckDir, model.vocab_size);
    if (part === 'learners') return;
    const rng = new Rng(SEED);
    const positions: KeyPosition[] = Array.from({ length: nJobs * 4 }, (_, i) => ({
      id: i,
      context: Array.from({ length: CONTEXT }, () => 100 + Math.floor(rng.next() * 2000)),
      target: 5,
      continuation: [5],
      entropy: 1,
    }));
    const settings: RolloutSettings = {
      G,
      temperature: 1,
      budget: 16,
      stateBudget: true,
      hardCap: HARD_CAP,
      rewardKind: 'match+length',
      maxBatch: 4 * G,
    };
    const jobs = (step: number): RolloutJob[] =>
      planJobs({ runId: 'bench', seed: SEED }, step, positions, settings, 0);
    const tokensOf = (groups: { responseIds: number[] }[][][]) =>
      groups.flat(2).reduce((n, r) => n + r.responseIds.length, 0);

    // Baseline: the same jobs generated in this process by the library's worker (no gRPC, no copy).
    const be = await createBackend(backendName as Parameters<typeof createBackend>[0]);
    const ctx = await loadRunContext('bench', cfg);
    const local = new Decoder(model, be, uploadParams(be, initParams(model, SEED, 0.02)));
    const inproc = new RolloutWorker('inproc', { acquire: async () => ({ model: local, version: 0 }) });
    await inproc.generate(ctx, jobs(0)[0]);
    const embedded: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      let tokens = 0;
      for (const job of jobs(r + 1)) tokens += tokensOf([(await inproc.generate(ctx, job)).groups]);
      embedded.push(tokens / ((performance.now() - t0) / 1000));
    }
    console.log(`in-process: ${median(embedded).toFixed(0)} tokens/s`);

    const cluster = await startCluster({ workers: 2, backend: backendName, logs: () => {}, dataRoot: root });
    try {
      const learner = learnerClient(cluster.addresses.learner, cluster.clientOptions);
      await learner.initRun({ run: runRefToPb(run) });
      // Weight sync: the learner's GetWeights stream into a worker-side copy on this backend.
      const puller = new PulledPolicy(learner, be);
      const sync: number[] = [];
      let bytes = 0;
      for (let r = 0; r <= repeats; r++) {
        const fresh = new PulledPolicy(learner, be);
        const t0 = performance.now();
        await fresh.acquire('bench', 0);
        if (r > 0) sync.push((performance.now() - t0) / 1000);
        bytes = fresh.lastSync.bytes;
      }
      void puller;
      console.log(
        `weight sync: ${(bytes / 2 ** 20).toFixed(1)} MiB in ${(median(sync) * 1000).toFixed(0)} ms`,
      );

      const endpoints = cluster.addresses.rollout.map(
        (a, i) => new RemoteEndpoint(`rollout-${i}`, rolloutClient(a, cluster.clientOptions)),
      );
      // Warm-up: every worker pulls weights and compiles its kernels for the job shape.
      await Promise.all(endpoints.map((e) => e.generate(run, jobs(100)[0])));
      const through = async (eps: RemoteEndpoint[]) => {
        const pool = new WorkerPool(() => eps, {
          jobTimeoutMs: 600_000,
          workerWaitMs: 10_000,
          maxAttempts: 1,
        });
        const out: number[] = [];
        for (let r = 0; r < repeats; r++) {
          const t0 = performance.now();
          const results = await pool.run(run, jobs(200 + r));
          out.push(tokensOf(results.map((x) => x.groups)) / ((performance.now() - t0) / 1000));
        }
        return out;
      };
      const one = await through(endpoints.slice(0, 1));
      console.log(`1 worker: ${median(one).toFixed(0)} tokens/s`);
      const two = await through(endpoints);
      console.log(`2 workers: ${median(two).toFixed(0)} tokens/s`);
      for (const e of endpoints) e.client.close();
      learner.close();

      const params = [...initParams(model, SEED, 0.02).values()].reduce((n, p) => n + p.length, 0);
      const report = {
        benchmark: 'services',
        command: `npm run bench:services -- --backend ${backendName} --jobs ${nJobs} --repeats ${repeats}`,
        date: new Date().toISOString(),
        machine: {
          cpu: os.cpus()[0]?.model ?? 'unknown',
          cores: os.cpus().length,
          memoryGiB: Math.round(os.totalmem() / 2 ** 30),
          node: process.version,
          loadavg: os.loadavg(),
        },
        backend: be.name,
        model: { name: 'small', params, config: model },
        shape: { jobs: nJobs, positions_per_job: 4, G, context: CONTEXT, new_tokens: HARD_CAP, seed: SEED },
        rollout_tokens_per_s: {
          in_process: median(embedded),
          workers_1: median(one),
          workers_2: median(two),
          samples: { in_process: embedded, workers_1: one, workers_2: two },
        },
        ratios: {
          workers_2_over_1: median(two) / median(one),
          workers_1_over_in_process: median(one) / median(embedded),
        },
        weight_sync: {
          bytes,
          seconds: median(sync),
          samples: sync,
          mib_per_s: bytes / 2 ** 20 / median(sync),
        },
      };
      const out = resolve(values.out!);
      mkdirSync(out, { recursive: true });
      writeFileSync(join(out, 'services.json'), `${JSON.stringify(report, null, 2)}\n`);
      const f = (x: number) => x.toFixed(0);
      writeFileSync(
        join(out, 'services.md'),
        [
          `# Services benchmark (${report.date.slice(0, 10)}, ${report.machine.cpu}, ${report.machine.cores} cores, backend ${be.name})`,
          '',
          `Command: \`${report.command}\`. Small bench model (${(params / 1e6).toFixed(2)} M parameters), ${nJobs} jobs of 4 positions x G = ${G}, ${CONTEXT}-token contexts, ${HARD_CAP} new tokens each; median of ${repeats}. Workers are separate processes on this machine talking gRPC, events on a local nats-server. Load average at the end: ${report.machine.loadavg.map((x) => x.toFixed(1)).join(', ')}.`,
          '',
          '| rollout generation | tokens/s | ratio |',
          '|---|---|---|',
          `| in-process worker (baseline) | ${f(median(embedded))} | 1.00 |`,
          `| 1 rollout worker service | ${f(median(one))} | ${(median(one) / median(embedded)).toFixed(2)} |`,
          `| 2 rollout worker services | ${f(median(two))} | ${(median(two) / median(embedded)).toFixed(2)} |`,
          '',
          `Weight sync (learner GetWeights stream, ${(bytes / 2 ** 20).toFixed(1)} MiB, into a worker-side copy): ${(median(sync) * 1000).toFixed(0)} ms median (${report.weight_sync.mib_per_s.toFixed(0)} MiB/s).`,
          '',
        ].join('\n'),
      );
      console.log(`wrote ${join(out, 'services.json')} and .md`);
    } finally {
      await cluster.stop();
      await be.dispose();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** Learner step time and tokens/s with 1 and 2 data-parallel learners; services-learners.{json,md}. */
async function learners(root: string, ckDir: string, vocab: number): Promise<void> {
  const shape: LearnerStepShape = {
    positions: 8,
    G: 4,
    prompt: 40,
    response: 32,
    context: 32,
    continuation: 16,
  };
  const cfg = parseTrainConfig(
    {
      method: 'rmt',
      run: { out_dir: join(root, 'learners-run'), seed: SEED, backend: backendName },
      model: { init_from: ckDir },
      budget: { B_0: 16, hard_cap: shape.response },
      data: { context_len: shape.context, continuation_len: shape.continuation },
      grpo: { G: shape.G },
      train: { positions_per_step: shape.positions, micro_batch: 8 },
    },
    'bench',
  );
  const rounds = Number(values.rounds);
  const stepsPerSide = 2;
  const r = await benchLearnerSteps({
    root,
    cfg,
    backend: backendName,
    vocab,
    shape,
    rounds,
    stepsPerSide,
    log: (line) => console.log(line),
  });
  const machine = {
    name: values.machine || os.hostname(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
  };
  const loaded = r.rounds.filter((x) => x.loaded).map((x) => x.round);
  const report = {
    benchmark: 'services-learners',
    command: `npm run bench:services -- --part learners --backend ${backendName} --rounds ${rounds}${values.machine ? ` --machine ${values.machine}` : ''}`,
    date: new Date().toISOString(),
    machine,
    model: 'small',
    ...r,
    ratio_2_over_1: {
      step_s: (r.stepS['2']?.median ?? Number.NaN) / (r.stepS['1']?.median ?? Number.NaN),
      tokens_per_s: (r.tokensPerS['2']?.median ?? Number.NaN) / (r.tokensPerS['1']?.median ?? Number.NaN),
    },
    loaded_rounds: loaded,
  };
  const out = resolve(values.out!);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'services-learners.json'), `${JSON.stringify(report, null, 2)}\n`);
  const f = (x: number | undefined, d = 2) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));
  writeFileSync(
    join(out, 'services-learners.md'),
    [
      `# Data-parallel learners (${report.date.slice(0, 10)}, ${machine.name}: ${machine.cpu}, ${machine.cores} cores)`,
      '',
      `Command: \`${report.command}\`. Small bench model; each step ${shape.positions} groups of G = ${shape.G} rollouts (${shape.prompt}-token prompts, ${shape.response}-token responses) and ${shape.positions} NTP windows (${shape.context} + ${shape.continuation} tokens): ${r.tokensPerStep} tokens (RL + NTP) per step. N = 1 is the leader alone, N = 2 the same step split over two learner processes (gradient pulled over gRPC, added in rank order). ${rounds} rounds alternating which N goes first, ${stepsPerSide} steps per N per round (median within a round), medians over rounds [min-max].`,
      '',
      '| learners | s/step | tokens/s |',
      '|---|---|---|',
      ...['1', '2'].map(
        (n) =>
          `| ${n} | ${f(r.stepS[n]?.median)} [${f(r.stepS[n]?.min)}-${f(r.stepS[n]?.max)}] | ${f(r.tokensPerS[n]?.median, 0)} [${f(r.tokensPerS[n]?.min, 0)}-${f(r.tokensPerS[n]?.max, 0)}] |`,
      ),
      '',
      `N = 2 over N = 1: ${f(report.ratio_2_over_1.tokens_per_s)}x tokens/s. Steps whose connection dropped and were made again: ${r.retriedSteps}.`,
      '',
      `Load per round (1-minute load average start/end; cores other processes took; * = loaded, >= ${LOADED_CORES} core): ${r.rounds.map((x) => `${x.round}: ${f(x.otherCores ?? Number.NaN)} (${f(x.load1[0])}/${f(x.load1[1])})${x.loaded ? '*' : ''}`).join(', ')}.`,
      '',
    ].join('\n'),
  );
  console.log(`wrote ${join(out, 'services-learners.json')} and .md`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e instanceof Error ? e.stack : e);
    process.exit(1);
  },
);
