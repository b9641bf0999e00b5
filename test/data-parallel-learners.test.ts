import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { Cluster } from '../cli/up.js';
import { loadCheckpoint } from '../shared/model/checkpoint.js';
import { coordinatorClient, learnerClient } from '../shared/rpc/client.js';
import { RunState, type RunStatus } from '../shared/rpc/gen/rmt/v1/coordinator.js';
import { train } from '../shared/train/rmt-train.js';
import { startNatsServer } from './helpers/nats-server.js';
import { metricsRows } from './helpers/run-metrics.js';
import { startTestCluster } from './helpers/test-cluster.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// Two data-parallel learners (separate processes, the gradient exchanged over gRPC) against one
// learner (the embedded run, which the one-learner services match exactly: test/services.test.ts).
const root = mkdtempSync(join(tmpdir(), 'rmt-dp-'));
const base = tinyBaseCheckpoint(root);
const nats = await startNatsServer();
const logs: string[] = [];
let cluster: Cluster;

test.before(async () => {
  cluster = await startTestCluster(logs, { workers: 1, learners: 2, nats: nats.url, dataRoot: root });
});
test.after.always(async () => {
  await cluster?.stop();
  await nats.stop();
  rmSync(root, { recursive: true, force: true });
});

async function runThroughCluster(config: object): Promise<RunStatus> {
  const client = coordinatorClient(cluster.addresses.coordinator, cluster.clientOptions);
  try {
    const start = await client.startRun({ config: JSON.stringify(config) });
    let last = start;
    for await (const s of client.watchRun({ runId: start.runId })) last = s;
    return last;
  } finally {
    client.close();
  }
}

test.serial(`2 data-parallel learners give the losses and weights of 1`, async (t) => {
  const steps = 4;
  // 4 groups of 2 rollouts a step; micro-batches of 3 so the two shards (2 groups each) cut the
  // micro-batches elsewhere than the single learner does: the sums are taken in another order.
  const shape = {
    grpo: { G: 2 },
    train: { steps, positions_per_step: 4, micro_batch: 3, generation_batch: 4 },
  };
  const single = tinyRunConfig(base, join(root, 'single'), 'rmt', steps, shape);
  await train(single, { log: () => {} });
  const dp = { ...single, run: { ...single.run, out_dir: join(root, 'dp') } };
  const last = await runThroughCluster(dp);
  t.is(last.state, RunState.RUN_STATE_DONE, `${last.error}\n${logs.slice(-30).join('\n')}`);
  const a = metricsRows(single.run.out_dir);
  const b = metricsRows(dp.run.out_dir);
  t.is(b.length, steps);
  const wa = loadCheckpoint(join(single.run.out_dir, 'final')).params;
  const wb = loadCheckpoint(join(dp.run.out_dir, 'final')).params;
  const params = [...wa.values()].reduce((n, x) => n + x.length, 0);
  // The two runs differ only in the order float32 partial gradients are added (micro-batches, NTP
  // batches, shards: at most 16 roundings of 2^-24 each), so an element of the step's gradient
  // differs by a relative RHO = 2^-20 at most, and so does the gradient norm. AdamW's update
  // lr * m / (sqrt(v) + eps) is scale-free in the gradient: it moves by at most lr * RHO, and the
  // float32 weight it is added to rounds to at most one ulp apart. So after s steps a weight
  // differs by at most s * (ulp(w) + lr * RHO) (to first order: the next gradient also moves with
  // the weights, by less than float32 resolution here). The losses are float64 sums of the same
  // per-token values at step 1 (1e-12 relative for the summation order), and later move with the
  // weights: |dL| <= ||grad L||_1 * max|dw| <= sqrt(P) * grad_norm * max|dw|.
  const RHO = 2 ** -20;
  const lr = single.train.lr;
  const ulp = (x: number) => 2 ** (Math.floor(Math.log2(Math.max(Math.abs(x), 2 ** -126))) - 23);
  const weightBound = (s: number, w: number) => s * (ulp(w) + lr * RHO);
  for (const [i, row] of a.entries()) {
    t.deepEqual(Object.keys(b[i]).sort(), Object.keys(row).sort(), `step ${i + 1}: the same metrics`);
    const dw = i === 0 ? 0 : weightBound(i, 1);
    for (const k of ['actor/pg_loss', 'actor/ntp_loss', 'actor/pg_clipfrac', 'actor/ppo_kl']) {
      const tol = 1e-12 * Math.max(1, Math.abs(row[k])) + Math.sqrt(params) * row['actor/grad_norm'] * dw;
      t.true(
        Math.abs(b[i][k] - row[k]) <= tol,
        `step ${i + 1} ${k}: ${b[i][k]} vs ${row[k]} (tolerance ${tol})`,
      );
    }
    const gn = row['actor/grad_norm'];
    t.true(
      Math.abs(b[i]['actor/grad_norm'] - gn) <= RHO * gn + 1e-12,
      `step ${i + 1} grad_norm: ${b[i]['actor/grad_norm']} vs ${gn}`,
    );
  }
  let worst = 0;
  for (const [name, x] of wa) {
    const y = wb.get(name)!;
    for (let i = 0; i < x.length; i++) {
      const d = Math.abs(x[i] - y[i]);
      worst = Math.max(worst, d / weightBound(steps, x[i]));
      if (d > weightBound(steps, x[i]))
        return t.fail(`${name}[${i}]: ${y[i]} vs ${x[i]} after ${steps} steps`);
    }
  }
  t.log(`weights: the largest difference is ${worst.toFixed(3)} of its bound`);
  // The follower took the shards: it still holds its gradient of the last step for the leader, and
  // refuses an earlier one.
  const follower = learnerClient(cluster.addresses.learners[1], cluster.clientOptions);
  try {
    const chunks = [];
    for await (const c of follower.getShardGradient({ runId: last.runId, step: steps - 1, rank: 1 }))
      chunks.push(c);
    const header = chunks[0].part?.$case === 'header' ? chunks[0].part.value : undefined;
    t.is(header?.step, steps - 1);
    t.true((header?.tensors ?? 0) > 0 && (header?.metrics.ntp_tokens ?? 0) > 0);
    // The shard's share of the last step's NTP loss: positive, and less than the whole step's.
    const share = header?.metrics['actor/ntp_loss'] ?? 0;
    t.true(
      share > 0 && share < b[steps - 1]['actor/ntp_loss'],
      `${share} of ${b[steps - 1]['actor/ntp_loss']}`,
    );
    const early = await t.throwsAsync(async () => {
      for await (const _ of follower.getShardGradient({ runId: last.runId, step: steps - 2, rank: 1 }));
    });
    t.regex(early?.message ?? '', /FAILED_PRECONDITION.*computed step 3/);
  } finally {
    follower.close();
  }
});
