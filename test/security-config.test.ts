import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { FLAGS as COORDINATOR_FLAGS } from '../services/coordinator/main.js';
import { coordinatorService } from '../services/coordinator/service.js';
import { FLAGS as SCORER_FLAGS } from '../services/scorer/main.js';
import { RunConfigError } from '../shared/config/merge.js';
import { loadPretrainConfig } from '../shared/config/pretrain-config.js';
import { parseServiceFlags } from '../shared/config/service-flags.js';
import { SERVICE_LIMITS } from '../shared/config/service-limits.js';
import { loadTrainConfig, parseTrainConfig } from '../shared/config/train-config.js';
import { coordinatorClient } from '../shared/rpc/client.js';
import { errorField, Status } from '../shared/rpc/errors.js';
import { startServer } from '../shared/rpc/server.js';
import { startRefusingCoordinator } from './helpers/refusing-coordinator.js';

// Every numeric setting is checked when a config is loaded, by the one parser `rmt train` and
// StartRun share: YAML's .nan and .inf, and values outside the spec's ranges, are refused with the
// field named, before anything runs.
const root = mkdtempSync(join(tmpdir(), 'rmt-sec-config-'));
const { host, registry, client: coordinator, close } = await startRefusingCoordinator();
test.after.always(async () => {
  await close();
  rmSync(root, { recursive: true, force: true });
});

/** YAML overrides (one field each) and the field the error must name. */
const BAD: [string, string][] = [
  ['train: { lr: .nan }', 'train.lr'],
  ['train: { lr: .inf }', 'train.lr'],
  ['train: { lr: -1.0e-4 }', 'train.lr'],
  ['train: { lr_min: -.inf }', 'train.lr_min'],
  ['train: { beta2: 1.5 }', 'train.beta2'],
  ['train: { eps: 0 }', 'train.eps'],
  ['budget: { B_0: .inf }', 'budget.B_0'],
  ['budget: { B_0: -8 }', 'budget.B_0'],
  ['budget: { gamma: 0 }', 'budget.gamma'],
  ['grpo: { temperature: .nan }', 'grpo.temperature'],
  ['grpo: { temperature: -1 }', 'grpo.temperature'],
  ['grpo: { adv_eps: 0 }', 'grpo.adv_eps'],
  ['grpo: { eps_low: 2 }', 'grpo.eps_low'],
  ['reward: { w: 1.5 }', 'reward.w'],
  ['loss: { lambda: .nan }', 'loss.lambda'],
  ['loss: { lambda: -0.1 }', 'loss.lambda'],
  ['curriculum: { p1: [0.5, 0.5, 0.5] }', 'curriculum.p1'],
  ['curriculum: { p2: [.nan, 0.5, 0.5] }', 'curriculum.p2[0]'],
  ['curriculum: { t1_frac: 0.8, t2_frac: 0.5 }', 'curriculum.t2_frac'],
  ['curriculum: { edges: [2, 1] }', 'curriculum.edges'],
  ['data: { held_out_fraction: 1 }', 'data.held_out_fraction'],
  ['data: { corpora: [nope] }', 'data.corpora[0]'],
  ['distributed: { job_timeout_s: .inf }', 'distributed.job_timeout_s'],
  ['eval: { budget: -3 }', 'eval.budget'],
];

test('rmt train: .nan, .inf and out-of-range values are refused at load, naming the field', (t) => {
  for (const [yaml, field] of BAD) {
    const path = join(root, 'bad.yaml');
    writeFileSync(path, `model: { init_from: base }\n${yaml}\n`);
    const err = t.throws(() => loadTrainConfig(path), { instanceOf: RunConfigError }, yaml);
    t.is((err as RunConfigError).field, field, yaml);
  }
  // The repository's own configs and the defaults are all within range.
  t.notThrows(() => parseTrainConfig({ model: { init_from: 'base' } }, 'defaults'));
  for (const f of ['rmt', 'rpt', 'ntp', 'rmt-no-cas', 'rmt-no-dtb', 'rmt-no-ntp']) {
    t.notThrows(() => loadTrainConfig(join('configs', `${f}.yaml`)), f);
  }
});

test('rmt pretrain: the optimizer ranges hold there too', (t) => {
  for (const [yaml, field] of [
    ['train: { lr: -3.0e-3 }', 'train.lr'],
    ['train: { lr: .nan }', 'train.lr'],
    ['train: { weight_decay: .inf }', 'train.weight_decay'],
  ]) {
    const path = join(root, 'pre.yaml');
    writeFileSync(path, `${yaml}\n`);
    const err = t.throws(() => loadPretrainConfig(path), { instanceOf: RunConfigError }, yaml);
    t.is((err as RunConfigError).field, field, yaml);
  }
  t.notThrows(() => loadPretrainConfig('configs/base.yaml'));
});

test('StartRun: the same refusals as INVALID_ARGUMENT naming the field, before any run starts', async (t) => {
  for (const [yaml, field] of BAD) {
    const err = (await coordinator.startRun({ config: `model: { init_from: base }\n${yaml}\n` }).then(
      () => null,
      (e: unknown) => e,
    )) as { code: number } | null;
    t.is(err?.code, Status.INVALID_ARGUMENT, yaml);
    t.is(errorField(err), field, yaml);
  }
  t.is(host.runs.size, 0);
});

test('service flags: the limits and the data root are flags with their defaults and RMT_* variables', (t) => {
  const f = parseServiceFlags(COORDINATOR_FLAGS, [], { RMT_DATA_ROOT: '/var/lib/rmt' });
  t.is(f.dataRoot, '/var/lib/rmt');
  t.is(f.maxReceiveMib, SERVICE_LIMITS.max_receive_mib.coordinator);
  t.is(f.maxConfigBytes, SERVICE_LIMITS.max_config_bytes);
  t.is(f.finishedRunsKept, SERVICE_LIMITS.finished_runs_kept);
  t.is(parseServiceFlags(COORDINATOR_FLAGS, ['--data-root', 'runs'], {}).dataRoot, 'runs');
  const s = parseServiceFlags(SCORER_FLAGS, [], {});
  t.is(s.maxTokenizeChars, SERVICE_LIMITS.max_tokenize_chars);
  t.is(s.maxReceiveMib, SERVICE_LIMITS.max_receive_mib.scorer);
  t.is(s.dataRoot, undefined, 'the working folder, resolved when the service starts');
});

test('a message over the receive limit is RESOURCE_EXHAUSTED at once, without reaching the handler', async (t) => {
  const small = await startServer({
    host: '127.0.0.1',
    port: 0,
    services: [coordinatorService(host, registry)],
    options: { 'grpc.max_receive_message_length': 1 << 20 },
  });
  const c = coordinatorClient(small.address);
  t.teardown(async () => {
    c.close();
    await small.shutdown(100);
  });
  const t0 = performance.now();
  const err = (await c.startRun({ config: 'x'.repeat(3 << 20) }).then(
    () => null,
    (e: unknown) => e,
  )) as { code: number; details: string } | null;
  t.is(err?.code, Status.RESOURCE_EXHAUSTED);
  t.true(performance.now() - t0 < 3000);
  t.true((err?.details.length ?? 0) < 300);
});
