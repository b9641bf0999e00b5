import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { learnerService } from '../services/learner/service.js';
import { InProcessBus } from '../shared/bus/in-process.js';
import { createBackend } from '../shared/kernels/index.js';
import type { KeyPosition } from '../shared/rl/key-positions.js';
import type { Rollout } from '../shared/rl/rollouts.js';
import { groupToPb, keyPositionToPb, runRefToPb } from '../shared/rpc/adapters/convert.js';
import { learnerClient } from '../shared/rpc/client.js';
import { errorField, Status } from '../shared/rpc/errors.js';
import { startServer } from '../shared/rpc/server.js';
import { Learner } from '../shared/run/learner.js';
import { LearnerHost } from '../shared/run/local.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// A TrainStep is checked number by number before it touches the learner: a client that can reach
// the learner must not be able to poison the weights, answer another caller's step, or lock it.
const root = mkdtempSync(join(tmpdir(), 'rmt-sec-integrity-'));
const base = tinyBaseCheckpoint(root);
const cfg = tinyRunConfig(base, join(root, 'run'), 'rmt', 4);
const backend = await createBackend('cpu');
const bus = new InProcessBus();
const host = new LearnerHost(backend);
const server = await startServer({
  host: '127.0.0.1',
  port: 0,
  services: [learnerService({ host, bus, advertise: () => 'here' })],
});
const learner = learnerClient(server.address);
test.after.always(async () => {
  learner.close();
  await server.shutdown(100);
  host.release();
  await bus.close();
  await backend.dispose();
  rmSync(root, { recursive: true, force: true });
});

const fail = async (p: Promise<unknown>) =>
  (await p.then(
    () => null,
    (err: unknown) => err,
  )) as { code: number; details: string } | null;

function position(id: number): KeyPosition {
  return {
    id,
    context: [10, 11, 12, 13, 14, 15, 16, 17].map((x) => x + id),
    target: 20,
    continuation: [20, 21, 22],
    entropy: 2,
  };
}

function rollout(p: KeyPosition, reward: number): Rollout {
  return {
    positionId: p.id,
    promptIds: [...p.context, 30, 31],
    responseIds: [40, 41, 42, 43],
    logprobs: [-1.5, -2, -0.5, -3],
    parsed: {
      reasoningIds: [40, 41],
      predictionIds: [43],
      predictionBytes: new Uint8Array([65]),
      finishReason: 'stop',
    },
    reward: { reward, rMatch: reward, rLen: 0 },
    budget: 8,
  };
}

/** A well-formed step: two positions, G = 2 rollouts each with different rewards. */
function goodStep(): { groups: Rollout[][]; positions: KeyPosition[] } {
  const positions = [position(100), position(200)];
  return { positions, groups: positions.map((p) => [rollout(p, 1), rollout(p, 0)]) };
}

const request = (runId: string, step: number, s: { groups: Rollout[][]; positions: KeyPosition[] }) => ({
  runId,
  step,
  // Sampled at the learner's current weights (on-policy).
  groups: s.groups.map((g) => groupToPb(g, step, '')),
  positions: s.positions.map(keyPositionToPb),
});

async function weights(runId: string): Promise<Map<string, Float32Array>> {
  return (await host.learner(runId).snapshot()).weights;
}

function sameWeights(a: Map<string, Float32Array>, b: Map<string, Float32Array>): boolean {
  for (const [k, v] of a) {
    const w = b.get(k)!;
    for (let i = 0; i < v.length; i++) if (!Object.is(v[i], w[i])) return false;
  }
  return true;
}

test.serial(
  'TrainStep: every non-finite, inconsistent or out-of-vocabulary number is refused before it touches the weights',
  async (t) => {
    await learner.initRun({ run: runRefToPb({ runId: 'int', cfg }) });
    const before = await weights('int');
    const vocab = host.learner('int').config.vocab_size;
    const cases: [string, (s: { groups: Rollout[][]; positions: KeyPosition[] }) => void, RegExp][] = [
      [
        'NaN log-probs',
        (s) => (s.groups[0][0].logprobs[1] = Number.NaN),
        /groups\[0\]\.rollouts\[0\]\.logprobs\[1\]/,
      ],
      [
        'positive log-prob',
        (s) => (s.groups[1][1].logprobs[0] = 0.5),
        /groups\[1\]\.rollouts\[1\]\.logprobs\[0\]/,
      ],
      [
        'NaN rewards',
        (s) => {
          for (const g of s.groups)
            for (const r of g) r.reward = { reward: Number.NaN, rMatch: Number.NaN, rLen: 0 };
        },
        /reward/,
      ],
      [
        'infinite reward',
        (s) => (s.groups[0][1].reward.reward = Number.POSITIVE_INFINITY),
        /groups\[0\]\.rollouts\[1\]\.reward\.reward/,
      ],
      [
        'fewer log-probs than response tokens',
        (s) => s.groups[0][0].logprobs.pop(),
        /groups\[0\]\.rollouts\[0\]\.logprobs/,
      ],
      [
        'a response id past the vocabulary',
        (s) => (s.groups[1][0].responseIds[2] = vocab),
        /response_ids\[2\]/,
      ],
      ['a negative prompt id', (s) => (s.groups[0][0].promptIds[0] = -1), /prompt_ids\[0\]/],
      [
        'a context id past the vocabulary',
        (s) => (s.positions[1].context[3] = vocab + 7),
        /positions\[1\]\.context\[3\]/,
      ],
      ['a NaN entropy', (s) => (s.positions[0].entropy = Number.NaN), /positions\[0\]\.entropy/],
      ['a group smaller than grpo.G', (s) => s.groups[0].pop(), /groups\[0\]\.rollouts/],
      ['more groups than positions_per_step', (s) => s.groups.push(s.groups[0], s.groups[1]), /^groups$/],
      [
        'a response longer than the hard cap',
        (s) => {
          const r = s.groups[0][0];
          r.responseIds = Array(cfg.budget.hard_cap + 1).fill(40);
          r.logprobs = Array(cfg.budget.hard_cap + 1).fill(-1);
        },
        /response_ids/,
      ],
    ];
    for (const [what, spoil, field] of cases) {
      const s = goodStep();
      spoil(s);
      const err = await fail(learner.trainStep(request('int', 0, s)));
      t.is(err?.code, Status.INVALID_ARGUMENT, what);
      t.regex(errorField(err) ?? '', field, what);
    }
    t.is(host.learner('int').step, 0, 'no refused request took a step');
    t.true(sameWeights(before, await weights('int')), 'the weights are bit for bit those before');
    // The same step, well-formed, is then taken normally.
    const ok = await learner.trainStep(request('int', 0, goodStep()));
    t.is(ok.step, 1);
    for (const v of Object.values(ok.metrics)) t.true(Number.isFinite(v));
    for (const w of (await weights('int')).values()) t.true(w.every(Number.isFinite));
  },
);

test.serial('TrainStep: the retry cache answers only the identical request', async (t) => {
  // Continues the run above, at step 1.
  const s = goodStep();
  const first = await learner.trainStep(request('int', 1, s));
  t.is(first.step, 2);
  const retry = await learner.trainStep(request('int', 1, goodStep()));
  t.deepEqual(retry.metrics, first.metrics, 'an identical retry gets the same answer');
  t.is(retry.step, 2, 'and no second step');
  const other = goodStep();
  other.groups[0][0].reward = { reward: 0, rMatch: 0, rLen: 0 };
  other.groups[0][1].reward = { reward: 1, rMatch: 1, rLen: 0 };
  const err = await fail(learner.trainStep(request('int', 1, other)));
  t.is(err?.code, Status.ALREADY_EXISTS, 'a different request for the step just taken');
  t.regex(err?.details ?? '', /already taken with a different request/);
  t.is(host.learner('int').step, 2);
});

test.serial(
  'TrainStep: a weight version newer than the learner or past the staleness bound is refused by field',
  async (t) => {
    // Continues the run above, at step 2, with distributed.max_staleness = 0.
    for (const v of [3, 1]) {
      const r = request('int', 2, goodStep());
      r.groups[1].weightVersion = v;
      const err = await fail(learner.trainStep(r));
      t.is(err?.code, Status.INVALID_ARGUMENT, `version ${v}`);
      t.is(errorField(err), 'groups[1].weight_version', `version ${v}`);
    }
    t.is(host.learner('int').step, 2, 'no refused request took a step');
  },
);

test.serial('a refused TrainStep leaves the learner free for another run', async (t) => {
  host.release();
  await learner.initRun({ run: runRefToPb({ runId: 'first', cfg }) });
  const s = goodStep();
  s.groups[0][0].logprobs[0] = Number.NaN;
  t.is((await fail(learner.trainStep(request('first', 0, s))))?.code, Status.INVALID_ARGUMENT);
  const bad = goodStep();
  t.is((await fail(learner.trainStep(request('first', 3, bad))))?.code, Status.FAILED_PRECONDITION);
  // Neither call started a step: the learner is not training "first", so another run may take it.
  const other = await learner.initRun({
    run: runRefToPb({ runId: 'second', cfg: tinyRunConfig(base, join(root, 'run2'), 'rmt', 2) }),
  });
  t.is(other.step, 0);
});

test.serial(
  'a non-finite loss or gradient is refused before AdamW, naming the step and the cause',
  async (t) => {
    host.release();
    const l = new Learner(tinyRunConfig(base, join(root, 'run3'), 'rmt', 4), backend, 0);
    t.teardown(() => l.dispose());
    await l.trainStep(0, goodStep().groups, goodStep().positions);
    // Finite weights whose activations overflow float32: the loss is no longer a number.
    const name = 'model.norm.weight';
    const n = l.model.params.get(name)!;
    const len = backend.length(n);
    backend.free(n);
    l.model.params.set(name, backend.upload(new Float32Array(len).fill(3e38)));
    const before = (await l.snapshot()).weights;
    const err = await t.throwsAsync(l.trainStep(1, goodStep().groups, goodStep().positions));
    t.regex(err?.message ?? '', /train step 1 refused: .*(not finite|NaN|Infinity)/);
    t.is(l.step, 1, 'the step was not taken');
    t.true(sameWeights(before, (await l.snapshot()).weights), 'AdamW never ran: the weights are unchanged');
  },
);
