import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { CoordinatorHost, coordinatorService } from '../services/coordinator/service.js';
import { learnerService } from '../services/learner/service.js';
import { rolloutService } from '../services/rollout/service.js';
import { InProcessBus } from '../shared/bus/in-process.js';
import { createBackend } from '../shared/kernels/index.js';
import { PulledPolicy } from '../shared/rpc/adapters/pulled-policy.js';
import { WorkerRegistry } from '../shared/rpc/adapters/worker-registry.js';
import { coordinatorClient, learnerClient, rolloutClient } from '../shared/rpc/client.js';
import { errorField, Status } from '../shared/rpc/errors.js';
import { startServer } from '../shared/rpc/server.js';
import { LearnerHost } from '../shared/run/local.js';
import { RolloutWorker } from '../shared/run/rollout-worker.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// The status codes the services answer with, as a client in any language sees them.
const root = mkdtempSync(join(tmpdir(), 'rmt-service-errors-'));
const base = tinyBaseCheckpoint(root);
const cfg = tinyRunConfig(base, join(root, 'run'), 'rmt', 2);
const backend = await createBackend('cpu');
const bus = new InProcessBus();
const host = new LearnerHost(backend);
const registry = new WorkerRegistry(5000);
const coordinatorHost = new CoordinatorHost({
  bus,
  registry,
  log: () => {},
  services: () => {
    throw new Error('not used: every StartRun here is refused');
  },
});
const server = await startServer({
  host: '127.0.0.1',
  port: 0,
  services: [
    learnerService({ host, bus, advertise: () => 'here' }),
    // A worker whose learner is down.
    rolloutService({
      worker: new RolloutWorker('w', new PulledPolicy(learnerClient('127.0.0.1:1'), backend), bus),
      address: () => 'here',
      backend: 'cpu',
    }),
    coordinatorService(coordinatorHost, registry),
  ],
});
const learner = learnerClient(server.address);
const rollout = rolloutClient(server.address);
const coordinator = coordinatorClient(server.address);
test.after.always(async () => {
  for (const c of [learner, rollout, coordinator]) c.close();
  await server.shutdown(100);
  host.release();
  await bus.close();
  await backend.dispose();
  rmSync(root, { recursive: true, force: true });
});

const code = async (p: Promise<unknown>) => {
  const e = (await p.then(
    () => null,
    (err: unknown) => err,
  )) as { code: number; details: string } | null;
  return e;
};

test.serial(
  'learner: FAILED_PRECONDITION for calls out of order, INVALID_ARGUMENT naming the field',
  async (t) => {
    const early = await code(learner.trainStep({ runId: 'r1', step: 0 }));
    t.is(early?.code, Status.FAILED_PRECONDITION, 'TrainStep before InitRun');
    const bad = await code(
      learner.initRun({
        run: { runId: 'r1', configJson: JSON.stringify({ ...cfg, train: { ...cfg.train, steps: -3 } }) },
      }),
    );
    t.is(bad?.code, Status.INVALID_ARGUMENT);
    t.regex(errorField(bad) ?? '', /train\.steps/);
    const notJson = await code(learner.initRun({ run: { runId: 'r1', configJson: '{' } }));
    t.is(notJson?.code, Status.INVALID_ARGUMENT);
    const ok = await learner.initRun({ run: { runId: 'r1', configJson: JSON.stringify(cfg) } });
    t.is(ok.step, 0);
    const skip = await code(learner.trainStep({ runId: 'r1', step: 5 }));
    t.is(skip?.code, Status.FAILED_PRECONDITION, 'a step that is not the next one');
    t.regex(skip?.details ?? '', /next step is 0/);
    const future = await code(collect(learner.getWeights({ runId: 'r1', minVersion: 3 })));
    t.is(future?.code, Status.FAILED_PRECONDITION, 'weights newer than the learner has');
  },
);

test.serial(
  'rollout worker: UNAVAILABLE when its learner is down, INVALID_ARGUMENT for bad settings',
  async (t) => {
    const run = { runId: 'r1', configJson: JSON.stringify(cfg) };
    const position = { id: 9, context: [1, 2, 3], target: 4, continuation: [4], entropy: 1 };
    const settings = {
      groupSize: 2,
      temperature: 1,
      budget: 4,
      stateBudget: true,
      hardCap: 8,
      rewardKind: 'match',
      maxBatch: 4,
    };
    const down = await code(
      collect(rollout.generateRollouts({ run, positions: [position], settings, seed: 1 })),
    );
    t.is(down?.code, Status.UNAVAILABLE);
    const bad = await code(
      collect(
        rollout.generateRollouts({
          run,
          positions: [position],
          settings: { ...settings, rewardKind: 'vibes' },
          seed: 1,
        }),
      ),
    );
    t.is(bad?.code, Status.INVALID_ARGUMENT);
    t.is(errorField(bad), 'settings.reward_kind');
  },
);

test.serial(
  'coordinator: INVALID_ARGUMENT naming the config field, NOT_FOUND for an unknown run',
  async (t) => {
    const bad = await code(coordinator.startRun({ config: 'train: { steps: 0 }\nmodel: { init_from: x }' }));
    t.is(bad?.code, Status.INVALID_ARGUMENT);
    t.regex(errorField(bad) ?? '', /train\.steps/);
    const empty = await code(coordinator.startRun({ config: '' }));
    t.is(empty?.code, Status.INVALID_ARGUMENT);
    t.is(errorField(empty), 'config');
    const unknown = await code(coordinator.getRunStatus({ runId: 'nope' }));
    t.is(unknown?.code, Status.NOT_FOUND);
  },
);

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
