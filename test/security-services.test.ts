import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { CoordinatorHost, coordinatorService } from '../services/coordinator/service.js';
import { learnerService } from '../services/learner/service.js';
import { rolloutService } from '../services/rollout/service.js';
import { scorerService } from '../services/scorer/service.js';
import { InProcessBus } from '../shared/bus/in-process.js';
import type { TrainConfig } from '../shared/config/train-config.js';
import { createBackend } from '../shared/kernels/index.js';
import { runRefToPb } from '../shared/rpc/adapters/convert.js';
import { PulledPolicy } from '../shared/rpc/adapters/pulled-policy.js';
import { WorkerRegistry } from '../shared/rpc/adapters/worker-registry.js';
import { coordinatorClient, learnerClient, rolloutClient, scorerClient } from '../shared/rpc/client.js';
import { errorField, MAX_DETAILS_CHARS, Status } from '../shared/rpc/errors.js';
import { startServer } from '../shared/rpc/server.js';
import { DataRoot } from '../shared/run/data-root.js';
import { LearnerHost } from '../shared/run/local.js';
import { RolloutWorker } from '../shared/run/rollout-worker.js';
import { Scorer } from '../shared/run/scorer.js';
import { WorkerPool } from '../shared/run/worker-pool.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// The services as a client that reaches their ports sees them: every bad request answered with a
// status it can act on (never INTERNAL), no path outside the data root, no file contents in an
// error, no request big enough to hold a service.
const tmp = mkdtempSync(join(tmpdir(), 'rmt-sec-services-'));
const rootDir = join(tmp, 'data');
const outside = join(tmp, 'outside');
mkdirSync(rootDir, { recursive: true });
mkdirSync(outside, { recursive: true });
writeFileSync(join(outside, 'secret.txt'), 'the secret');
symlinkSync(outside, join(rootDir, 'link'));
const base = tinyBaseCheckpoint(rootDir);
const root = new DataRoot(rootDir);
const cfgAt = (out: string, extra: Record<string, unknown> = {}) =>
  tinyRunConfig('base', out, 'rmt', 2, extra) as TrainConfig;
const backend = await createBackend('cpu');
const bus = new InProcessBus();
const host = new LearnerHost(backend, root);
const registry = new WorkerRegistry(5000);
const coordinatorHost = new CoordinatorHost({
  bus,
  registry,
  root,
  log: () => {},
  // The run's own services are never reached here: each run either is refused or fails at scoring.
  services: () => ({
    scorer: {
      keyPositions: async () => {
        throw new Error('no scorer in this test');
      },
    },
    learner: host,
    pool: new WorkerPool(() => [], { jobTimeoutMs: 1000, workerWaitMs: 10, maxAttempts: 1 }),
  }),
});
let learnerAddress = '';
const server = await startServer({
  host: '127.0.0.1',
  port: 0,
  services: [
    learnerService({ host, root, bus, advertise: () => 'here' }),
    scorerService({ scorer: new Scorer(backend), bus, root, maxTokenizeChars: 1000, maxDetokenizeIds: 1000 }),
    rolloutService({
      worker: new RolloutWorker('w', new PulledPolicy(learnerClient(`lazy`), backend), bus),
      root,
      address: () => 'here',
      backend: 'cpu',
    }),
    coordinatorService(coordinatorHost, registry),
  ],
});
learnerAddress = server.address;
const learner = learnerClient(server.address);
const scorer = scorerClient(server.address);
const coordinator = coordinatorClient(server.address);
// A worker that pulls its weights from the learner above (the one in the server has no learner).
const pulling = await startServer({
  host: '127.0.0.1',
  port: 0,
  services: [
    rolloutService({
      worker: new RolloutWorker('p', new PulledPolicy(learnerClient(learnerAddress), backend), bus),
      root,
      address: () => 'here',
      backend: 'cpu',
    }),
  ],
});
const rollout = rolloutClient(pulling.address);
test.after.always(async () => {
  for (const c of [learner, scorer, coordinator, rollout]) c.close();
  await server.shutdown(100);
  await pulling.shutdown(100);
  host.release();
  await bus.close();
  await backend.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

type Failure = { code: number; details: string } | null;
const fail = async (p: Promise<unknown>): Promise<Failure> =>
  (await p.then(
    () => null,
    (err: unknown) => err,
  )) as Failure;
async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
const yamlOf = (cfg: TrainConfig) => JSON.stringify(cfg);

test.serial(
  "status codes: out-of-vocabulary ids, missing tokenizers and unknown corpora are the caller's, not INTERNAL",
  async (t) => {
    const vocab = (await scorer.tokenize({ tokenizer: 'base', text: 'hello' })).ids.length > 0;
    t.true(vocab);
    for (const ids of [[5, 1 << 20], [-1], [3, -7]]) {
      const err = await fail(scorer.detokenize({ tokenizer: 'base', ids }));
      t.is(err?.code, Status.INVALID_ARGUMENT, `Detokenize ${ids}`);
      t.regex(errorField(err) ?? '', /^ids\[\d\]$/);
    }
    const missing = await fail(scorer.detokenize({ tokenizer: 'no-such-folder', ids: [1] }));
    t.is(missing?.code, Status.FAILED_PRECONDITION, 'a tokenizer folder that is not there');
    const cfg1 = cfgAt('runs/c1');
    const corpus = await fail(
      learner.initRun({
        run: {
          runId: 'c1',
          configJson: JSON.stringify({ ...cfg1, data: { ...cfg1.data, corpora: ['nope'] } }),
        },
      }),
    );
    t.is(corpus?.code, Status.INVALID_ARGUMENT, 'an unknown corpus');
    t.regex(corpus?.details ?? '', /data\.corpora\[0\]: unknown corpus/);
    const noCheckpoint = await fail(
      learner.initRun({
        run: {
          runId: 'c2',
          configJson: yamlOf({ ...cfgAt('runs/c2'), model: { init_from: 'empty', proxy: null } }),
        },
      }),
    );
    t.is(noCheckpoint?.code, Status.FAILED_PRECONDITION, 'init_from inside the root but not there');
  },
);

test.serial(
  'status codes: rollout contexts out of the vocabulary, min_weight_version ahead of the learner',
  async (t) => {
    const cfg = cfgAt('runs/r1');
    await learner.initRun({ run: runRefToPb({ runId: 'r1', cfg }) });
    const run = runRefToPb({ runId: 'r1', cfg });
    const good = { id: 9, context: [1, 2, 3, 4, 5, 6, 7, 8], target: 4, continuation: [4, 5, 6], entropy: 1 };
    const settings = {
      groupSize: 2,
      temperature: 1,
      budget: 4,
      stateBudget: true,
      hardCap: 8,
      rewardKind: 'match',
      maxBatch: 4,
    };
    const cases: [string, typeof good][] = [
      ['a context id past the vocabulary', { ...good, context: [1, 2, 3, 1 << 20, 5, 6, 7, 8] }],
      ['a negative context id', { ...good, context: [1, 2, 3, -4, 5, 6, 7, 8] }],
      ['a negative target', { ...good, target: -1 }],
    ];
    for (const [what, position] of cases) {
      const err = await fail(
        collect(rollout.generateRollouts({ run, positions: [position], settings, seed: 1 })),
      );
      t.is(err?.code, Status.INVALID_ARGUMENT, what);
      t.regex(errorField(err) ?? '', /^positions\[0\]\.(context\[3\]|target)/, what);
    }
    const ahead = await fail(
      collect(rollout.generateRollouts({ run, positions: [good], settings, seed: 1, minWeightVersion: 5 })),
    );
    t.is(ahead?.code, Status.FAILED_PRECONDITION, 'weights the learner does not have yet');
    const hot = await fail(
      collect(
        rollout.generateRollouts({
          run,
          positions: [good],
          settings: { ...settings, temperature: Number.POSITIVE_INFINITY },
          seed: 1,
        }),
      ),
    );
    t.is(hot?.code, Status.INVALID_ARGUMENT, 'an infinite temperature');
    t.is(errorField(hot), 'settings.temperature');
    const chunk = await fail(collect(learner.getWeights({ runId: 'r1', chunkBytes: 1 })));
    t.is(chunk?.code, Status.INVALID_ARGUMENT, 'a chunk size that would send millions of messages');
    t.is(errorField(chunk), 'chunk_bytes');
    const ok = await collect(rollout.generateRollouts({ run, positions: [good], settings, seed: 1 }));
    t.is(ok.length, 1, 'and a good request is still served');
    host.release();
  },
);

test.serial(
  'paths: out_dir and init_from outside the data root are INVALID_ARGUMENT before the run starts, whether or not they exist',
  async (t) => {
    const refused = async (patch: (c: TrainConfig) => void, field: string) => {
      const c = cfgAt('runs/p');
      patch(c);
      const err = await fail(coordinator.startRun({ config: yamlOf(c) }));
      t.is(err?.code, Status.INVALID_ARGUMENT, `${field}`);
      t.is(errorField(err), field);
      return err?.details.replace(/"[^"]*"/g, '"…"') ?? '';
    };
    await refused((c) => (c.run.out_dir = outside), 'run.out_dir');
    await refused((c) => (c.run.out_dir = '../outside/run'), 'run.out_dir');
    const viaLinkThere = await refused((c) => (c.run.out_dir = 'link/secret.txt'), 'run.out_dir');
    const viaLinkNot = await refused((c) => (c.run.out_dir = 'link/not-there'), 'run.out_dir');
    t.is(viaLinkThere, viaLinkNot, 'the answer does not tell whether the path outside exists');
    const passwd = await refused((c) => (c.model.init_from = '/etc/passwd'), 'model.init_from');
    const nothing = await refused((c) => (c.model.init_from = '/no/such/folder'), 'model.init_from');
    t.is(passwd, nothing, 'the same answer for a path that exists and one that does not');
    await refused((c) => (c.model.init_from = '/root'), 'model.init_from');
    await refused((c) => (c.model.proxy = '../outside'), 'model.proxy');
    t.is(coordinatorHost.runs.size, 0, 'no run was started');
    // The other services hold the same line for the RunRefs they receive.
    const c = cfgAt('runs/q');
    c.run.out_dir = outside;
    const learnerErr = await fail(learner.initRun({ run: runRefToPb({ runId: 'q', cfg: c }) }));
    t.is(learnerErr?.code, Status.INVALID_ARGUMENT);
    const tok = await fail(scorer.tokenize({ tokenizer: '/etc', text: 'x' }));
    t.is(tok?.code, Status.INVALID_ARGUMENT);
    t.is(errorField(tok), 'tokenizer');
  },
);

test.serial(
  'paths: an out_dir holding another run (or anything else) is refused, never overwritten; the same run resumes',
  async (t) => {
    const other = join(rootDir, 'runs', 'other');
    mkdirSync(other, { recursive: true });
    const otherCfg = cfgAt('runs/other', {
      train: { steps: 7, positions_per_step: 2, micro_batch: 8, generation_batch: 8 },
    });
    // As the coordinator writes it: the paths resolved under the data root.
    writeFileSync(join(other, 'config.resolved.json'), JSON.stringify(root.config(otherCfg)));
    writeFileSync(join(other, 'metrics.jsonl'), '{"step":1}\n');
    const err = await fail(coordinator.startRun({ config: yamlOf(cfgAt('runs/other')) }));
    t.is(err?.code, Status.ALREADY_EXISTS);
    t.regex(err?.details ?? '', /holds another run/);
    t.is(readFileSync(join(other, 'metrics.jsonl'), 'utf8'), '{"step":1}\n', 'metrics.jsonl untouched');
    t.is(JSON.parse(readFileSync(join(other, 'config.resolved.json'), 'utf8')).train.steps, 7);
    const notRun = join(rootDir, 'not-a-run');
    mkdirSync(notRun);
    writeFileSync(join(notRun, 'notes.txt'), 'mine');
    const err2 = await fail(coordinator.startRun({ config: yamlOf(cfgAt('not-a-run')) }));
    t.is(err2?.code, Status.ALREADY_EXISTS, 'a folder with files but no run config');
    // The run of that folder (same fingerprint) is accepted: that is a resume.
    const resumed = await coordinator.startRun({ config: yamlOf(otherCfg), runId: 'resume' });
    t.is(resumed.runId, 'resume');
    await coordinatorHost.runs.get('resume')?.done;
  },
);

test.serial('errors never quote file contents', async (t) => {
  const bad = join(rootDir, 'bad');
  mkdirSync(bad);
  writeFileSync(join(bad, 'tokenizer.json'), 'SECRET-TOKENIZER-CONTENT: not json');
  writeFileSync(join(bad, 'config.json'), 'SECRET-CONFIG-CONTENT: not json');
  const tok = await fail(scorer.tokenize({ tokenizer: 'bad', text: 'x' }));
  t.is(tok?.code, Status.FAILED_PRECONDITION);
  t.notRegex(tok?.details ?? '', /SECRET/);
  const c = cfgAt('runs/b');
  c.model.init_from = 'bad';
  const init = await fail(learner.initRun({ run: runRefToPb({ runId: 'b', cfg: c }) }));
  t.is(init?.code, Status.FAILED_PRECONDITION);
  t.notRegex(init?.details ?? '', /SECRET/);
  const onlyTokenizer = join(rootDir, 'half');
  mkdirSync(onlyTokenizer);
  writeFileSync(join(onlyTokenizer, 'tokenizer.json'), readFileSync(join(base, 'tokenizer.json')));
  writeFileSync(join(onlyTokenizer, 'config.json'), 'SECRET-CONFIG-CONTENT');
  c.model.init_from = 'half';
  const half = await fail(learner.initRun({ run: runRefToPb({ runId: 'b2', cfg: c }) }));
  t.is(half?.code, Status.FAILED_PRECONDITION);
  t.notRegex(half?.details ?? '', /SECRET/);
  t.false(existsSync(join(rootDir, 'runs', 'b', 'config.resolved.json')));
});

test.serial(
  'limits: big configs, run ids and tokenizer inputs are refused at once, with short messages',
  async (t) => {
    const big = `train: { lr: 1 }\n# ${'x'.repeat(2 << 20)}`;
    let t0 = performance.now();
    const cfgErr = await fail(coordinator.startRun({ config: big }));
    t.is(cfgErr?.code, Status.INVALID_ARGUMENT);
    t.is(errorField(cfgErr), 'config');
    t.true(performance.now() - t0 < 2000, 'refused before parsing');
    const hugeValue = `method: "${'m'.repeat(500_000)}"\nmodel: { init_from: base }`;
    const echoed = await fail(coordinator.startRun({ config: hugeValue }));
    t.is(echoed?.code, Status.INVALID_ARGUMENT);
    t.true((echoed?.details.length ?? 0) <= MAX_DETAILS_CHARS + 40, 'the value is not echoed whole');
    const id = 'r'.repeat(1 << 20);
    t0 = performance.now();
    const idErr = await fail(coordinator.getRunStatus({ runId: id }));
    t.is(idErr?.code, Status.INVALID_ARGUMENT);
    t.true((idErr?.details.length ?? 0) < 200);
    const runRef = await fail(
      learner.initRun({ run: { runId: 'x'.repeat(1000), configJson: yamlOf(cfgAt('runs/x')) } }),
    );
    t.is(runRef?.code, Status.INVALID_ARGUMENT);
    const tokErr = await fail(scorer.tokenize({ tokenizer: 'base', text: 'a'.repeat(1001) }));
    t.is(tokErr?.code, Status.INVALID_ARGUMENT);
    t.is(errorField(tokErr), 'text');
    const detokErr = await fail(scorer.detokenize({ tokenizer: 'base', ids: new Array(1001).fill(1) }));
    t.is(detokErr?.code, Status.INVALID_ARGUMENT);
    t.is(errorField(detokErr), 'ids');
    t.true(performance.now() - t0 < 5000);
  },
);
