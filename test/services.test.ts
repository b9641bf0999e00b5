import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import type { Cluster } from '../cli/up.js';
import { latestCheckpoint, loadCheckpoint } from '../shared/model/checkpoint.js';
import { coordinatorClient, healthCheck, rolloutClient } from '../shared/rpc/client.js';
import { RunState, type RunStatus } from '../shared/rpc/gen/rmt/v1/coordinator.js';
import { train } from '../shared/train/rmt-train.js';
import { startNatsServer } from './helpers/nats-server.js';
import { metricsRows, trajectory } from './helpers/run-metrics.js';
import { startTestCluster } from './helpers/test-cluster.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// The services as separate processes on a real nats-server: the same run as the embedded one.
const root = mkdtempSync(join(tmpdir(), 'rmt-services-'));
const base = tinyBaseCheckpoint(root);
const nats = await startNatsServer();
const logs: string[] = [];
const run = promisify(execFile);
let cluster: Cluster;

test.before(async () => {
  cluster = await startTestCluster(logs, {
    workers: 2,
    nats: nats.url,
    dataRoot: root,
  });
});
test.after.always(async () => {
  await cluster?.stop();
  await nats.stop();
  rmSync(root, { recursive: true, force: true });
});

async function runThroughCluster(
  config: object,
  onStatus: (s: RunStatus) => void | Promise<void> = () => {},
): Promise<RunStatus> {
  const client = coordinatorClient(cluster.addresses.coordinator, cluster.clientOptions);
  try {
    const start = await client.startRun({ config: JSON.stringify(config) });
    let last = start;
    for await (const s of client.watchRun({ runId: start.runId })) {
      last = s;
      await onStatus(s);
    }
    return last;
  } finally {
    client.close();
  }
}

test.serial(
  'a run through the local cluster with 2 workers matches the embedded run (staleness 0)',
  async (t) => {
    const steps = 4;
    const embedded = tinyRunConfig(base, join(root, 'embedded'), 'rmt', steps, {
      grpo: { G: 2 },
      train: { steps, positions_per_step: 4, micro_batch: 8, generation_batch: 4 },
    });
    await train(embedded, { log: () => {} });
    const distributed = { ...embedded, run: { ...embedded.run, out_dir: join(root, 'distributed') } };
    const last = await runThroughCluster(distributed);
    t.is(last.state, RunState.RUN_STATE_DONE, `${last.error}\n${logs.slice(-30).join('\n')}`);
    t.is(last.step, steps);
    t.deepEqual(
      trajectory(metricsRows(distributed.run.out_dir)),
      trajectory(metricsRows(embedded.run.out_dir)),
    );
    // Both workers took jobs (2 positions per job, 2 jobs per step).
    for (const address of cluster.addresses.rollout) {
      const c = rolloutClient(address, cluster.clientOptions);
      const s = await c.status({});
      c.close();
      t.true(s.tokensGenerated > 0, `${s.workerId} generated nothing`);
      t.is(s.weightVersion, steps - 1, `${s.workerId} holds the weights of the last step`);
    }
    // The CLI view of the same run.
    const { stdout } = await run(process.execPath, [
      'bin/rmt.js',
      'status',
      '--coordinator',
      cluster.addresses.coordinator,
      ...cluster.clientFlags,
    ]);
    t.regex(stdout, new RegExp(`done step ${steps}/${steps} B=\\d+`));
    t.regex(stdout, /worker rollout-0 127\.0\.0\.1:\d+ v\d+/);
    // Prometheus metrics of the learner process (its port is in its 'serving' log line).
    const serving = logs.find((l) => l.startsWith('[learner]') && l.includes('"metrics_port"'));
    const metricsPort = JSON.parse(serving!.slice('[learner] '.length)).metrics_port as number;
    const exposition = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    t.regex(exposition, new RegExp(`rmt_learner_steps_total\\{service="learner"\\} ${steps}`));
    // The difficulty table was built from the workers' observations on the bus, none filled in.
    t.false(
      logs.some((l) => l.includes('missing on the bus')),
      'observations came over the bus',
    );
    const ck = loadCheckpoint(latestCheckpoint(distributed.run.out_dir)!);
    const entries = (ck.training!.extra!.difficulty as { entries: [number, number, number | null, number][] })
      .entries;
    t.is(
      entries.reduce((n, e) => n + e[3], 0),
      steps * 4,
      'one observation per group',
    );
  },
);

test.serial(
  'a worker killed mid-run loses no step, and a worker joining mid-run gets the weights and takes work',
  async (t) => {
    const steps = 60;
    const shape = { train: { steps, positions_per_step: 4, micro_batch: 8, generation_batch: 4 } };
    const embedded = tinyRunConfig(base, join(root, 'embedded-long'), 'rmt', steps, shape);
    const distributed = tinyRunConfig(base, join(root, 'distributed-long'), 'rmt', steps, shape);
    let killedAt = -1;
    let joinedAt = -1;
    let joining: Promise<unknown> | null = null;
    const last = await runThroughCluster(distributed, (s) => {
      if (killedAt < 0 && s.step >= 2) {
        killedAt = s.step;
        cluster.children.get('rollout-0')?.kill('SIGKILL');
        joining = cluster.addWorker('rollout-2').then(() => {
          joinedAt = -2;
        });
      }
    });
    await joining;
    t.is(last.state, RunState.RUN_STATE_DONE, `${last.error}\n${logs.slice(-30).join('\n')}`);
    t.true(killedAt >= 2);
    const rows = metricsRows(distributed.run.out_dir);
    t.deepEqual(
      rows.map((r) => r.step),
      Array.from({ length: steps }, (_, i) => i + 1),
      'every step once',
    );
    const c = rolloutClient(cluster.addresses.rollout[2], cluster.clientOptions);
    const joined = await c.status({});
    c.close();
    t.true(joined.tokensGenerated > 0, 'the new worker took jobs');
    t.true(joined.weightVersion > 0, 'the new worker pulled current weights');
    void joinedAt;
    t.log(`killed at step ${killedAt}; jobs redone: ${logs.filter((l) => l.includes('redoing it')).length}`);
    await train(embedded, { log: () => {} });
    t.deepEqual(
      trajectory(rows),
      trajectory(metricsRows(embedded.run.out_dir)),
      'the same run as without the failure',
    );
  },
);

test.serial(
  'with a staleness bound of 1 generation overlaps the update and never uses older weights',
  async (t) => {
    const steps = 12;
    const cfg = tinyRunConfig(base, join(root, 'stale'), 'rmt', steps, {
      train: { steps, positions_per_step: 4, micro_batch: 8, generation_batch: 4 },
      distributed: { max_staleness: 1 },
    });
    const last = await runThroughCluster(cfg);
    t.is(last.state, RunState.RUN_STATE_DONE, `${last.error}\n${logs.slice(-30).join('\n')}`);
    const rows = metricsRows(cfg.run.out_dir);
    t.deepEqual(
      rows.map((r) => r.step),
      Array.from({ length: steps }, (_, i) => i + 1),
    );
    t.true(rows.every((r) => r['perf/weight_staleness'] >= 0 && r['perf/weight_staleness'] <= 1));
    // An on-policy step recomputes pi_old (ratio 1, nothing clipped); a stale one takes the
    // sampler's log-probs, so the policy's move since sampling shows in actor/ppo_kl.
    const onPolicy = rows.filter((r) => r['perf/weight_staleness'] === 0);
    t.true(onPolicy.every((r) => r['actor/ppo_kl'] === 0 && r['actor/pg_clipfrac'] === 0));
    const stale = rows.filter((r) => r['perf/weight_staleness'] === 1);
    t.true(stale.every((r) => Number.isFinite(r['actor/ppo_kl']) && Number.isFinite(r['actor/pg_clipfrac'])));
    if (stale.length > 0)
      t.true(
        stale.some((r) => r['actor/ppo_kl'] !== 0),
        'stale steps are visible',
      );
    t.log(
      `steps sampled one version behind: ${rows.filter((r) => r['perf/weight_staleness'] === 1).length}/${steps}`,
    );
  },
);

test.serial(
  "every process of the local cluster speaks mutual TLS only: clients without the cluster's certificate are refused",
  async (t) => {
    t.is(cluster.auth, 'mtls');
    const { tls } = cluster.clientOptions;
    const { scorer, learner, coordinator, rollout } = cluster.addresses;
    // The workers still running (an earlier test kills rollout-0).
    const alive = rollout.filter((_, i) => {
      const c = cluster.children.get(`rollout-${i}`);
      return c !== undefined && c.exitCode === null && c.signalCode === null;
    });
    t.true(alive.length > 0);
    for (const address of [scorer, learner, coordinator, ...alive]) {
      t.is(await healthCheck(address, '', cluster.clientOptions), 'SERVING', address);
      for (const [what, opts] of [
        ['plaintext', {}],
        ['TLS without a client certificate', { tls: { ca: tls!.ca } }],
      ] as const) {
        await t.throwsAsync(
          healthCheck(address, '', { ...opts, deadlineMs: 3_000 }),
          undefined,
          `${address}: ${what}`,
        );
      }
    }
  },
);
