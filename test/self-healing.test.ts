import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { TrainConfig } from '../shared/config/train-config.js';
import { RunState, type RunStatus } from '../shared/rpc/gen/rmt/v1/coordinator.js';
import { train } from '../shared/train/rmt-train.js';
import { type NatsServer, startNatsServer } from './helpers/nats-server.js';
import { metricsRows, trajectory } from './helpers/run-metrics.js';
import { isTerminal, startRunOn, waitForRunStatus } from './helpers/run-status.js';
import { type Services, startServices } from './helpers/service-processes.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// Each service SIGKILLed mid-run (the learner, the coordinator, nats-server) while a run goes
// through the four services as real processes: the run finishes by itself, every step is in
// metrics.jsonl exactly once, and every number equals the uninterrupted (embedded) run's.
// (A rollout worker killed mid-run: test/services.test.ts.)
const root = mkdtempSync(join(tmpdir(), 'rmt-heal-'));
const base = tinyBaseCheckpoint(root);
const natsStore = mkdtempSync(join(tmpdir(), 'rmt-heal-nats-'));
let nats: NatsServer;
let services: Services;
const STEPS = 12;

const config = (name: string): TrainConfig =>
  tinyRunConfig(base, join(root, name), 'rmt', STEPS, {
    train: { steps: STEPS, positions_per_step: 4, micro_batch: 8, generation_batch: 4 },
    checkpoint: { every: 3, keep: 2 },
    // A step whose observations the bus lost applies them itself after this long.
    distributed: { observation_timeout_s: 2 },
  });

const rowsOf = (cfg: TrainConfig) => metricsRows(cfg.run.out_dir);

let reference: Record<string, number>[];

test.before(async () => {
  nats = await startNatsServer({ storeDir: natsStore });
  services = await startServices({
    root,
    nats: nats.url,
    workers: 1,
    flags: {
      learner: ['--lease-s', '3'],
      rollout: ['--heartbeat-s', '0.5'],
      coordinator: ['--worker-ttl-s', '5', '--learner-retry-max-s', '1'],
    },
  });
  const embedded = config('embedded');
  await train(embedded, { log: () => {} });
  reference = trajectory(rowsOf(embedded));
});

test.after.always(async () => {
  await services?.stop();
  await nats?.stop();
  rmSync(root, { recursive: true, force: true });
  rmSync(natsStore, { recursive: true, force: true });
});

const terminal = isTerminal;
const until = (runId: string, pred: (s: RunStatus) => boolean, what: string, timeoutMs = 90_000) =>
  waitForRunStatus(services, runId, pred, what, timeoutMs);
const startRun = (cfg: TrainConfig, runId: string) => startRunOn(services, cfg, runId);

function checkFinished(t: import('ava').ExecutionContext, cfg: TrainConfig, last: RunStatus): void {
  t.is(last.state, RunState.RUN_STATE_DONE, last.error);
  t.is(last.step, STEPS);
  const rows = rowsOf(cfg);
  t.deepEqual(
    rows.map((r) => r.step),
    Array.from({ length: STEPS }, (_, i) => i + 1),
    'every step exactly once',
  );
  t.deepEqual(trajectory(rows), reference, 'the same numbers as the uninterrupted run');
}

test.serial(
  'a learner killed mid-run: the run waits for it and, once it is back, finishes by itself',
  async (t) => {
    const cfg = config('learner-killed');
    await startRun(cfg, 'learner-killed');
    const at = await until('learner-killed', (s) => s.step >= 4, 'step 4');
    await services.proc('learner').kill();
    const waiting = await until(
      'learner-killed',
      (s) => s.state === RunState.RUN_STATE_WAITING,
      'waiting for the learner',
      30_000,
    );
    t.regex(waiting.reason, /learner unavailable/);
    t.is(waiting.error, '');
    await services.proc('learner').start();
    const last = await until('learner-killed', (s) => terminal(s.state), 'the end of the run');
    t.log(`killed at step ${at.step}, waiting at step ${waiting.step}`);
    checkFinished(t, cfg, last);
    t.true(services.logs.some((l) => l.includes('the learner came back at step')));
  },
);

test.serial(
  'a coordinator killed mid-run: the restarted one resumes the run from its last checkpoint once the learner lets the old one go',
  async (t) => {
    const cfg = config('coordinator-killed');
    await startRun(cfg, 'coordinator-killed');
    const at = await until('coordinator-killed', (s) => s.step >= 4, 'step 4');
    await services.proc('coordinator').kill();
    await services.proc('coordinator').start();
    const last = await until('coordinator-killed', (s) => terminal(s.state), 'the end of the resumed run');
    t.log(`killed at step ${at.step}`);
    checkFinished(t, cfg, last);
    t.true(
      services.logs.some((l) =>
        l.includes('[coordinator-killed] resuming the run a previous coordinator was driving'),
      ),
    );
    t.true(
      services.logs.some(
        (l) => l.startsWith('[learner]') && l.includes('let run \\"coordinator-killed\\" go'),
      ),
      'the learner let the run of the dead coordinator go after its lease',
    );
  },
);

test.serial(
  'nats-server killed mid-run: the outage shows in the status and on /metrics, and the run finishes',
  async (t) => {
    const cfg = config('bus-killed');
    await startRun(cfg, 'bus-killed');
    await until('bus-killed', (s) => s.step >= 3, 'step 3');
    const port = nats.port;
    await nats.kill();
    const killedAt = Date.now();
    const down = await until(
      'bus-killed',
      (s) => /event bus unreachable/.test(s.reason),
      'the outage in the status',
      15_000,
    );
    const exposition = await (
      await fetch(`http://127.0.0.1:${services.proc('coordinator').metricsPort}/metrics`)
    ).text();
    t.regex(exposition, /rmt_bus_connected\{service="coordinator"\} 0/);
    t.log(`outage visible after ${(Date.now() - killedAt) / 1000} s: ${down.reason}`);
    // An outage of a few seconds: publishes wait for the connection, the run holds its step meanwhile.
    await new Promise((r) => setTimeout(r, Math.max(0, killedAt + 3_000 - Date.now())));
    nats = await startNatsServer({ port, storeDir: natsStore });
    const last = await until('bus-killed', (s) => terminal(s.state), 'the end of the run');
    checkFinished(t, cfg, last);
    t.is(last.reason, '');
  },
);
