import test from 'ava';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { dualLossAndGrad } from '../shared/rl/dual-loss.js';
import type { KeyPosition } from '../shared/rl/key-positions.js';
import type { Rollout } from '../shared/rl/rollouts.js';
import { checkDataParallel } from '../shared/run/data-parallel.js';
import { type GradientPiece, GradientSum, SHARD_METRICS } from '../shared/run/gradient-reduce.js';
import { shardRange, shardStep } from '../shared/run/gradient-shards.js';
import { Rng } from '../shared/util/rng.js';
import { makeDecoder, randomParams, TINY_CONFIGS } from './helpers/tiny-models.js';

const config = TINY_CONFIGS['qwen3-gqa'];

function groupsOf(seq: (n: number) => number[], rng: Rng): Rollout[][] {
  return [0, 1, 2].map((p) => {
    const prompt = seq(4 + p);
    return [0, 1, 2].map((g) => {
      const responseIds = seq(2 + g);
      return {
        positionId: p,
        promptIds: prompt,
        responseIds,
        // The sampler's log-probs (used where a group is stale).
        logprobs: responseIds.map(() => -1 - rng.next()),
        parsed: {
          reasoningIds: [],
          predictionIds: [],
          predictionBytes: new Uint8Array(),
          finishReason: 'stop' as const,
        },
        reward: { reward: rng.next(), rMatch: 0, rLen: 0 },
        budget: 4,
      };
    });
  });
}

test('shards are contiguous, in order, cover the step once, and may be empty', (t) => {
  t.deepEqual(
    [0, 1, 2].map((i) => shardRange(7, i, 3)),
    [
      [0, 2],
      [2, 4],
      [4, 7],
    ],
  );
  t.deepEqual(
    [0, 1, 2].map((i) => shardRange(1, i, 3)),
    [
      [0, 0],
      [0, 0],
      [0, 1],
    ],
  );
  const rng = new Rng(3);
  const groups = groupsOf((n) => Array.from({ length: n }, () => 1 + rng.int(50)), rng);
  const { shards, totals } = shardStep(groups, [5, 4, 5], [], 2);
  t.deepEqual(
    shards.map((s) => s.groups),
    [[groups[0]], [groups[1], groups[2]]],
  );
  t.deepEqual(
    shards.map((s) => s.versions),
    [[5], [4, 5]],
  );
  t.is(totals.rlTokens, 3 * (2 + 3 + 4));
  t.throws(() => shardStep(groups, [5], [], 2), { message: /1 versions for 3 groups/ });
});

// In float64 (the reference backend) the shards' losses and gradients under the step's totals add
// up to the whole step's to rounding (1e-12 relative): stale and on-policy groups, the k3 KL
// against a reference, and NTP windows that hold another shard's key position (the key set C is the
// step's, not the shard's).
test('the shards of a step add up to the whole step: losses, metrics and gradient', async (t) => {
  const rng = new Rng(11);
  const seq = (n: number) => Array.from({ length: n }, () => 1 + rng.int(config.vocab_size - 1));
  const be = new ReferenceBackend();
  const model = makeDecoder(be, config, randomParams(config, 3));
  const reference = makeDecoder(be, config, randomParams(config, 4));
  const groups = groupsOf(seq, rng);
  const stream = seq(40);
  // Windows of one stream: position 12's window holds position 14 (in the other shard), and back.
  const positions: KeyPosition[] = [8, 12, 14].map((id) => ({
    id,
    context: stream.slice(id - 6, id),
    target: stream[id],
    continuation: stream.slice(id + 1, id + 5),
    entropy: 1,
  }));
  const stale = [false, true, false];
  const opts = {
    clip: { eps_low: 0.2, eps_high: 0.28, beta: 0.05 },
    adv_eps: 1e-6,
    G: 3,
    lambda: 0.3,
    useNtp: true,
    temperature: 0.8,
    microBatch: 2,
    padId: 0,
  };
  const whole = await dualLossAndGrad(model, groups, positions, opts, reference, stale);
  const { shards, totals } = shardStep(groups, [1, 0, 1], positions, 2);
  const sumMetrics: Record<string, number> = {};
  const sumGrads = new Map<string, Float64Array>();
  for (const s of shards) {
    const r = await dualLossAndGrad(
      model,
      s.groups,
      s.positions,
      { ...opts, totals },
      reference,
      s.versions.map((v) => v < 1),
    );
    for (const k of SHARD_METRICS) sumMetrics[k] = (sumMetrics[k] ?? 0) + r.metrics[k];
    for (const [name, g] of r.grads) {
      const x = await be.read(g);
      const acc = sumGrads.get(name) ?? new Float64Array(x.length);
      for (let i = 0; i < x.length; i++) acc[i] += x[i];
      sumGrads.set(name, acc);
    }
  }
  t.true(whole.metrics['actor/kl_loss'] > 0 && whole.metrics['actor/ntp_loss'] > 0);
  t.true(Math.abs(whole.metrics['actor/pg_loss']) > 0);
  for (const k of SHARD_METRICS) {
    const w = whole.metrics[k];
    t.true(Math.abs(sumMetrics[k] - w) <= 1e-12 * Math.max(1, Math.abs(w)), `${k}: ${sumMetrics[k]} vs ${w}`);
  }
  for (const [name, g] of whole.grads) {
    const x = await be.read(g);
    const y = sumGrads.get(name)!;
    const scale = Math.max(...Array.from(x, Math.abs));
    for (let i = 0; i < x.length; i++) {
      if (Math.abs(x[i] - y[i]) > 1e-12 * scale) return t.fail(`${name}[${i}]: ${y[i]} vs ${x[i]}`);
    }
  }
});

async function* piecesOf(list: GradientPiece[]): AsyncGenerator<GradientPiece> {
  yield* list;
}
const bytes = (xs: number[]) => new Uint8Array(Float32Array.from(xs).buffer);
const header = (o: Partial<Extract<GradientPiece, { kind: 'header' }>> = {}): GradientPiece => ({
  kind: 'header',
  step: 3,
  rank: 1,
  version: 3,
  tensors: 1,
  metrics: { rl_tokens: 4, 'actor/pg_loss': 0.5 },
  ...o,
});
const shapes = new Map([
  ['a', [2, 2]],
  ['b', [3]],
]);

test('the leader adds the ranks in order, in float64, and zero where no rank had a gradient', async (t) => {
  const sum = new GradientSum(shapes, 3);
  sum.addLocal(0, new Map([['a', Float32Array.from([1, 2, 3, 4])]]), { rl_tokens: 2, 'actor/pg_loss': 0.25 });
  await sum.addStream(
    1,
    piecesOf([
      header(),
      { kind: 'tensor', name: 'a', shape: [2, 2], offset: 0, data: bytes([1e-8, 1]) },
      { kind: 'tensor', name: 'a', shape: [2, 2], offset: 2, data: bytes([1, 1]) },
    ]),
  );
  const r = sum.result();
  t.deepEqual([...r.grads.get('a')!], [Math.fround(1 + Math.fround(1e-8)), 3, 4, 5]);
  t.deepEqual([...r.grads.get('b')!], [0, 0, 0]);
  t.is(r.metrics.rl_tokens, 6);
  t.is(r.metrics['actor/pg_loss'], 0.75);
  t.throws(() => new GradientSum(shapes, 3).addLocal(1, new Map(), {}), { message: /out of order/ });
});

test('every received gradient is checked, and the status names the field', async (t) => {
  const refused = async (pieces: GradientPiece[], field: string, message: RegExp) => {
    const sum = new GradientSum(shapes, 3);
    sum.addLocal(0, new Map(), {});
    const e = await t.throwsAsync(sum.addStream(1, piecesOf(pieces)), { message });
    t.is((e as { field?: string }).field, `gradient.${field}`);
  };
  const a = (offset: number, xs: number[], shape = [2, 2]): GradientPiece => ({
    kind: 'tensor',
    name: 'a',
    shape,
    offset,
    data: bytes(xs),
  });
  await refused([header({ step: 2 })], 'header.step', /2, the leader takes step 3/);
  await refused([header({ rank: 2 })], 'header.rank', /expected 1/);
  await refused([header({ version: 4 })], 'header.weight_version', /4/);
  await refused(
    [header({ metrics: { 'actor/pg_loss': Number.NaN } })],
    'header.metrics[actor/pg_loss]',
    /finite/,
  );
  await refused([a(0, [1, 2, 3, 4])], 'header', /before the header/);
  await refused([header(), { ...a(0, [1]), name: 'zz' } as GradientPiece], 'tensor.name', /no parameter/);
  await refused([header(), a(0, [1, 2, 3, 4], [4])], 'tensor.shape', /whose shape is \[2,2\]/);
  await refused([header(), a(0, [1, 2]), a(3, [1])], 'tensor.offset', /3 for "a", expected 2/);
  await refused([header(), a(0, [1, 2]), a(2, [1, 2, 3])], 'tensor.data', /do not fit/);
  await refused(
    [header(), a(0, [1, Number.POSITIVE_INFINITY, 1, 1])],
    'tensor.data',
    /element 1 of "a" is not finite/,
  );
  await refused([header(), a(0, [1, 2])], 'tensor.offset', /ended after 2 of 4/);
  await refused([header({ tensors: 2 }), a(0, [1, 2, 3, 4])], 'header.tensors', /2 announced, 1 came/);
  await refused(
    [
      header(),
      a(0, [1, 2, 3, 4]),
      { kind: 'tensor', name: 'b', shape: [3], offset: 0, data: bytes([1, 2, 3]) },
      a(0, [1, 2, 3, 4]),
    ],
    'tensor.name',
    /sent twice/,
  );
  await refused([], 'header', /without one/);
});

test("a shard's data-parallel fields are checked against the shard and the run, naming the field", (t) => {
  const rng = new Rng(5);
  const groups = groupsOf((n) => Array.from({ length: n }, () => 1 + rng.int(50)), rng);
  const positions: KeyPosition[] = [{ id: 7, context: [1, 2], target: 3, continuation: [4], entropy: 1 }];
  const max = { rlTokens: 100, ntpTokens: 50, keyIds: 4 };
  const ok = {
    rank: 1,
    peers: ['learner-0:50053', '10.0.0.2:50053'],
    totals: { rlTokens: 27, ntpTokens: 2, keyIds: new Set([7, 9]) },
  };
  t.notThrows(() => checkDataParallel(ok, groups, positions, max));
  const refused = (dp: typeof ok, field: string) => {
    const e = t.throws(() => checkDataParallel(dp, groups, positions, max));
    t.is((e as { field?: string }).field, `data_parallel.${field}`, e?.message);
  };
  refused({ ...ok, rank: 2 }, 'rank');
  refused({ ...ok, rank: -1 }, 'rank');
  refused({ ...ok, peers: [] }, 'peers');
  refused({ ...ok, peers: ['learner-0:50053', 'http://x/'] }, 'peers[1]');
  refused({ ...ok, totals: { ...ok.totals, rlTokens: 26 } }, 'rl_tokens');
  refused({ ...ok, totals: { ...ok.totals, rlTokens: 101 } }, 'rl_tokens');
  refused({ ...ok, totals: { ...ok.totals, ntpTokens: Number.NaN } }, 'ntp_tokens');
  refused({ ...ok, totals: { ...ok.totals, keyIds: new Set([9]) } }, 'key_ids');
  refused({ ...ok, totals: { ...ok.totals, keyIds: new Set([1, 2, 3, 4, 7]) } }, 'key_ids');
});
