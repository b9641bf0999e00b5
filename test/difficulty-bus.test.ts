import test from 'ava';
import { NatsBus } from '../shared/bus/nats.js';
import { RMT_DEFAULTS } from '../shared/config/rmt-defaults.js';
import { DifficultyTable } from '../shared/curriculum/difficulty-table.js';
import { CasSampler } from '../shared/curriculum/sampler.js';
import { ObservationInbox } from '../shared/run/observations.js';
import { Rng } from '../shared/util/rng.js';
import { startNatsServer } from './helpers/nats-server.js';

// Difficulty observations a worker publishes on a real nats-server reach the coordinator's table
// and change which positions the curriculum samples.
const nats = await startNatsServer();
test.after.always(() => nats.stop());

test('observations published by a worker move positions between tiers and change sampling', async (t) => {
  const worker = await NatsBus.connect({ servers: nats.url, name: 'worker' });
  const coordinator = await NatsBus.connect({ servers: nats.url, name: 'coordinator' });
  const curriculum = {
    ...RMT_DEFAULTS.curriculum,
    adaptive: true,
    p1: [1, 0, 0] as [number, number, number],
  };
  const table = new DifficultyTable(curriculum);
  const easy = [1, 2, 3, 4, 5];
  const hard = [11, 12, 13, 14, 15];
  for (const id of easy) table.setEntropy(id, 0.8);
  for (const id of hard) table.setEntropy(id, 1.6);
  const sampleEasyTier = () =>
    new Set(
      new CasSampler(table.tiers(curriculum, curriculum.min_entropy), curriculum).sample(
        50,
        0,
        100,
        new Rng(1),
      ),
    );
  t.deepEqual(
    [...sampleEasyTier()].sort((a, b) => a - b),
    easy,
  );

  const inbox = new ObservationInbox('run-a', table, 0);
  const sub = await coordinator.subscribe('rmt.difficulty.observed', (m) => inbox.receive(m), {
    deliver: 'new',
  });
  // The policy solves the entropic positions every time and fails the low-entropy ones.
  const outcomes = [...hard.map((id) => ({ id, accuracy: 1 })), ...easy.map((id) => ({ id, accuracy: 0 }))];
  for (const o of outcomes) {
    await worker.publish('rmt.difficulty.observed', {
      run_id: 'run-a',
      step: 0,
      position_id: o.id,
      accuracy: o.accuracy,
      group_size: 8,
      weight_version: 0,
      worker_id: 'w1',
    });
  }
  // Another run's observations on the same bus are not this run's business.
  await worker.publish('rmt.difficulty.observed', {
    run_id: 'run-b',
    step: 0,
    position_id: 1,
    accuracy: 1,
    group_size: 8,
    weight_version: 0,
    worker_id: 'w2',
  });
  const filled = await inbox.settle(
    0,
    outcomes.map((o) => ({ positionId: o.id, accuracy: o.accuracy })),
    5000,
  );
  t.is(filled, 0, 'every observation arrived over the bus');
  t.deepEqual(
    [...sampleEasyTier()].sort((a, b) => a - b),
    hard,
    'the solved positions are now the easy tier',
  );
  t.is(table.toJSON().entries.find((e) => e[0] === 1)?.[3], 1, 'run-b did not touch run-a');
  await sub.unsubscribe();
  await worker.close();
  await coordinator.close();
});
