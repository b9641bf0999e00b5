import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { TrainConfig } from '../shared/config/train-config.js';
import { type CoordinatorClient, coordinatorClient } from '../shared/rpc/client.js';
import { RunState, type RunStatus } from '../shared/rpc/gen/rmt/v1/coordinator.js';
import { type NatsServer, startNatsServer } from './helpers/nats-server.js';
import { type Services, startServices } from './helpers/service-processes.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// Two data-parallel learners as real processes; the follower, then the leader, SIGKILLed mid-run
// and started again: the run waits for it, finishes by itself with every step exactly once, and
// every number equals the uninterrupted two-learner run's (a resumed run replays the same steps).
const root = mkdtempSync(join(tmpdir(), 'rmt-dp-heal-'));
const base = tinyBaseCheckpoint(root);
const natsStore = mkdtempSync(join(tmpdir(), 'rmt-dp-heal-nats-'));
let nats: NatsServer;
let services: Services;
const STEPS = 9;

const config = (name: string): TrainConfig =>
  tinyRunConfig(base, join(root, name), 'rmt', STEPS, {
    grpo: { G: 2 },
    train: { steps: STEPS, positions_per_step: 4, micro_batch: 3, generation_batch: 4 },
    checkpoint: { every: 3, keep: 2 },
    distributed: { observation_timeout_s: 2 },
  });

const rowsOf = (cfg: TrainConfig) =>
  readFileSync(join(cfg.run.out_dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>);

/** Everything a run computes, without the wall-clock timings. */
const trajectory = (rows: Record<string, number>[]) =>
  rows.map((r) =>
    Object.fromEntries(
      Object.entries(r).filter(([k]) => !k.startsWith('timing_s/') && k !== 'perf/throughput'),
    ),
  );

const terminal = (s: RunState) =>
  s === RunState.RUN_STATE_DONE || s === RunState.RUN_STATE_STOPPED || s === RunState.RUN_STATE_FAILED;

async function until(runId: string, pred: (s: RunStatus) => boolean, what: string, timeoutMs = 120_000) {
  const end = Date.now() + timeoutMs;
  let last: RunStatus | null = null;
  let client: CoordinatorClient | null = null;
  try {
    for (;;) {
      client ??= coordinatorClient(services.coordinator);
      try {
        last = await client.getRunStatus({ runId }, { deadlineMs: 5_000 });
        if (pred(last)) return last;
        if (terminal(last.state)) break;
      } catch {
        client.close();
        client = null;
      }
      if (Date.now() > end) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    client?.close();
  }
  throw new Error(
    `${what}: not reached; last status ${JSON.stringify(last)}\n${services.logs.slice(-25).join('\n')}`,
  );
}

async function startRun(cfg: TrainConfig, runId: string): Promise<void> {
  const c = coordinatorClient(services.coordinator);
  try {
    await c.startRun({ config: JSON.stringify(cfg), runId });
  } finally {
    c.close();
  }
}

let reference: Record<string, number>[];

test.before(async () => {
  nats = await startNatsServer({ storeDir: natsStore });
  services = await startServices({
    root,
    nats: nats.url,
    workers: 1,
    learners: 2,
    flags: {
      learner: ['--lease-s', '3'],
      rollout: ['--heartbeat-s', '0.5'],
      coordinator: ['--worker-ttl-s', '5', '--learner-retry-max-s', '1'],
    },
  });
  const cfg = config('uninterrupted');
  await startRun(cfg, 'uninterrupted');
  const last = await until('uninterrupted', (s) => terminal(s.state), 'the end of the uninterrupted run');
  if (last.state !== RunState.RUN_STATE_DONE) throw new Error(`uninterrupted run: ${last.error}`);
  reference = trajectory(rowsOf(cfg));
});

test.after.always(async () => {
  await services?.stop();
  await nats?.stop();
  rmSync(root, { recursive: true, force: true });
  rmSync(natsStore, { recursive: true, force: true });
});

for (const killed of ['learner-1', 'learner'] as const) {
  const role = killed === 'learner' ? 'the leader' : 'a follower';
  test.serial(`${role} killed mid-run: the run waits for it and finishes with every step once`, async (t) => {
    const runId = `${killed}-killed`;
    const cfg = config(runId);
    await startRun(cfg, runId);
    const at = await until(runId, (s) => s.step >= 4, 'step 4');
    await services.proc(killed).kill();
    const waiting = await until(runId, (s) => s.state === RunState.RUN_STATE_WAITING, 'waiting', 30_000);
    t.regex(waiting.reason, /learner unavailable/);
    await services.proc(killed).start();
    const last = await until(runId, (s) => terminal(s.state), 'the end of the run');
    t.log(`${killed} killed at step ${at.step}, waiting at step ${waiting.step}`);
    t.is(last.state, RunState.RUN_STATE_DONE, last.error);
    const rows = rowsOf(cfg);
    t.deepEqual(
      rows.map((r) => r.step),
      Array.from({ length: STEPS }, (_, i) => i + 1),
      'every step exactly once',
    );
    t.deepEqual(trajectory(rows), reference, 'the same numbers as the uninterrupted run');
  });
}
