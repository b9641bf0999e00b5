import test from 'ava';
import type { KeyPosition } from '../shared/rl/key-positions.js';
import type { Rollout } from '../shared/rl/rollouts.js';
import { DataParallelLearners } from '../shared/run/data-parallel-learners.js';
import type { DataParallelStep } from '../shared/run/gradient-shards.js';
import type { LearnerApi } from '../shared/run/interfaces.js';
import type { RunRef } from '../shared/run/run-context.js';

// The coordinator's side of data-parallel learners, with learners that record what they are sent.
interface Call {
  groups: number;
  positions: number;
  dp?: DataParallelStep;
}

function learner(
  calls: Call[],
  behave: (signal?: AbortSignal) => Promise<Record<string, number>>,
): LearnerApi {
  return {
    init: async () => ({ step: 3, extra: null, resumedFrom: null }),
    trainStep: (_run, _step, groups, positions, _versions, dp, signal) => {
      calls.push({ groups: groups.length, positions: positions.length, dp });
      return behave(signal);
    },
    checkpoint: async () => 'ck',
    saveFinal: async () => 'final',
    renew: async () => ({ step: 3, leaseS: 30 }),
  };
}

const run = { runId: 'r', cfg: {} } as unknown as RunRef;
const group = (n: number): Rollout[] =>
  [0, 1].map(() => ({ responseIds: Array(n).fill(1), promptIds: [1], positionId: n }) as unknown as Rollout);
const position = (id: number): KeyPosition => ({
  id,
  context: [1, 2, 3],
  target: 1,
  continuation: [4],
  entropy: 1,
});

test('each learner gets its contiguous shard and the whole step totals; the leader answers', async (t) => {
  const calls: Call[][] = [[], []];
  const dp = new DataParallelLearners(
    [learner(calls[0], async () => ({ 'actor/pg_loss': 1 })), learner(calls[1], async () => ({}))],
    ['a:1', 'b:2'],
  );
  const m = await dp.trainStep(
    run,
    3,
    [group(2), group(3), group(4)],
    [position(5), position(6), position(9)],
    [3, 3, 2],
  );
  t.deepEqual(m, { 'actor/pg_loss': 1 });
  t.deepEqual(
    calls.map((c) => [c[0].groups, c[0].positions, c[0].dp?.rank]),
    [
      [1, 1, 0],
      [2, 2, 1],
    ],
  );
  t.deepEqual(calls[1][0].dp?.peers, ['a:1', 'b:2']);
  t.is(calls[0][0].dp?.totals.rlTokens, 2 * (2 + 3 + 4));
  t.deepEqual([...(calls[0][0].dp?.totals.keyIds ?? [])], [5, 6, 9]);
});

test('one learner is called as before, without data-parallel fields', async (t) => {
  const calls: Call[] = [];
  const dp = new DataParallelLearners([learner(calls, async () => ({ x: 1 }))], ['a:1']);
  await dp.trainStep(run, 3, [group(2)], [position(5)], [3]);
  t.is(calls[0].dp, undefined);
});

test('the first failure is what the run sees; the other calls are cancelled', async (t) => {
  const calls: Call[] = [];
  let cancelled = false;
  const waiting = (signal?: AbortSignal) =>
    new Promise<Record<string, number>>((_, reject) =>
      signal?.addEventListener('abort', () => {
        cancelled = true;
        reject(new Error('CANCELLED'));
      }),
    );
  const dp = new DataParallelLearners(
    [learner(calls, waiting), learner(calls, async () => Promise.reject(new Error('follower away')))],
    ['a:1', 'b:2'],
  );
  await t.throwsAsync(dp.trainStep(run, 3, [group(2), group(2)], [position(1), position(2)], [3, 3]), {
    message: 'follower away',
  });
  t.true(cancelled, "the leader's call was cancelled");
  t.throws(() => new DataParallelLearners([], []), { message: /0 learners/ });
});
