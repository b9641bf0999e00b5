import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { TrainConfig } from '../shared/config/train-config.js';
import { RunState, type RunStatus } from '../shared/rpc/gen/rmt/v1/coordinator.js';
import { type NatsServer, startNatsServer } from './helpers/nats-server.js';
import { metricsRows, trajectory } from './helpers/run-metrics.js';
import { isTerminal, startRunOn, waitForRunStatus } from './helpers/run-status.js';
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

const rowsOf = (cfg: TrainConfig) => metricsRows(cfg.run.out_dir);
const terminal = isTerminal;
const until = (runId: string, pred: (s: RunStatus) => boolean, what: string, timeoutMs = 120_000) =>
  waitForRunStatus(services, runId, pred, what, timeoutMs);
const startRun = (cfg: TrainConfig, runId: string) => startRunOn(services, cfg, runId);

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
