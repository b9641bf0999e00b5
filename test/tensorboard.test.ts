import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { RunConfigError } from '../shared/config/merge.js';
import { parsePretrainConfig } from '../shared/config/pretrain-config.js';
import { parseTrainConfig } from '../shared/config/train-config.js';
import { crc32c, TensorBoardWriter } from '../shared/obs/tensorboard.js';
import { pretrain } from '../shared/train/pretrain.js';
import { tinyPretrainConfig } from './helpers/tiny-pretrain.js';

const PYTHON = process.env.RMT_PYTHON ?? '/usr/bin/python3';
const FIXTURES = join(import.meta.dirname, 'fixtures', 'tensorboard');

interface PyEvent {
  step: number;
  wall_time: number;
  kind: 'file_version' | 'summary' | 'session_log';
  file_version?: string;
  scalars?: Record<string, number>;
  status?: number;
}

/** Reads event files with Python's protobuf runtime against the message definitions (not our encoder). */
function readWithPython(files: string[]): PyEvent[] {
  const gen = mkdtempSync(join(tmpdir(), 'rmt-tb-gen-'));
  try {
    execFileSync(PYTHON, [
      '-m',
      'grpc_tools.protoc',
      `-I${FIXTURES}`,
      `--python_out=${gen}`,
      join(FIXTURES, 'event.proto'),
    ]);
    const out = execFileSync(PYTHON, [join(FIXTURES, 'read_events.py'), gen, ...files], { encoding: 'utf8' });
    return out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as PyEvent);
  } finally {
    rmSync(gen, { recursive: true, force: true });
  }
}

test('crc32c matches the CRC-32C check value', (t) => {
  t.is(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  t.is(crc32c(new Uint8Array(0)), 0);
});

test('event files read back with the protobuf definitions: version first, then the scalars of each step', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rmt-tb-'));
  try {
    let clock = 1_700_000_000.25;
    const w = new TensorBoardWriter(dir, { now: () => clock++ });
    w.scalars(1, { step: 1, 'actor/pg_loss': 0.125, 'critic/score/mean': 0.3 });
    w.scalars(2, { step: 2, 'actor/pg_loss': -1e-7, 'eval/avg': Number.NaN, 'perf/throughput': 12345.678 });
    w.close();
    const events = readWithPython([w.path]);
    t.is(events.length, 3);
    t.is(events[0].kind, 'file_version');
    t.is(events[0].file_version, 'brain.Event:2');
    t.is(events[0].wall_time, 1_700_000_000.25);
    t.deepEqual(events[1], {
      step: 1,
      wall_time: 1_700_000_001.25,
      kind: 'summary',
      scalars: { 'actor/pg_loss': 0.125, 'critic/score/mean': Math.fround(0.3) },
    });
    // Not-a-number is left out, and TensorBoard stores scalars as float32.
    t.deepEqual(events[2].scalars, {
      'actor/pg_loss': Math.fround(-1e-7),
      'perf/throughput': Math.fround(12345.678),
    });
    t.throws(() => w.scalars(3, { x: 1 }), { message: /closed/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const tinyPretrain = (outDir: string, reportTo: string[]) =>
  tinyPretrainConfig(outDir, [
    'run.seed=3',
    `run.report_to=[${reportTo.join(',')}]`,
    'train.steps=4',
    'train.warmup_steps=1',
    'eval.every=2',
    'checkpoint.every=2',
  ]);

test('pretrain with report_to tensorboard: the event files hold metrics.jsonl, and a resume restarts the curve at its checkpoint', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'rmt-tb-pretrain-'));
  try {
    const stop = new AbortController();
    await pretrain(tinyPretrain(out, ['jsonl', 'tensorboard']), {
      log: () => {},
      signal: stop.signal,
      onStep: (s) => {
        if (s === 3) stop.abort();
      },
    });
    await pretrain(tinyPretrain(out, ['jsonl', 'tensorboard']), { log: () => {} });
    const tbDir = join(out, 'tensorboard');
    const files = readdirSync(tbDir)
      .filter((f) => f.startsWith('events.out.tfevents.'))
      .sort()
      .map((f) => join(tbDir, f));
    t.is(files.length, 2, 'one event file per session');
    const [first, second] = files.map((f) => readWithPython([f]));
    t.deepEqual(
      first.filter((e) => e.kind === 'summary').map((e) => e.step),
      [0, 1, 2, 3],
    );
    // The interrupted session checkpointed at step 3, so the second starts at 4.
    t.deepEqual(
      second.filter((e) => e.kind === 'session_log').map((e) => [e.step, e.status]),
      [[4, 1]],
    );
    t.deepEqual(
      second.filter((e) => e.kind === 'summary').map((e) => e.step),
      [4],
    );
    const rows = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    const byStep = new Map([...first, ...second].filter((e) => e.scalars).map((e) => [e.step, e.scalars]));
    t.deepEqual(
      rows.map((r) => r.step),
      [0, 1, 2, 3, 4],
    );
    for (const row of rows) {
      const expected = Object.fromEntries(
        Object.entries(row)
          .filter(([k, v]) => k !== 'step' && Number.isFinite(v))
          .map(([k, v]) => [k, Math.fround(v)]),
      );
      t.deepEqual(byStep.get(row.step), expected, `step ${row.step}`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('run.report_to is checked at load, naming the field', (t) => {
  const e = t.throws(() => parseTrainConfig({ run: { report_to: ['jsonl', 'wandb'] } }, 'rmt.yaml'), {
    instanceOf: RunConfigError,
  });
  t.is(e?.field, 'run.report_to[1]');
  t.regex(e?.message ?? '', /unknown target "wandb"/);
  t.throws(() => parsePretrainConfig({ run: { report_to: 'tensorboard' } }, 'base.yaml'), {
    message: /run\.report_to/,
  });
  t.deepEqual(parseTrainConfig({}, 'x').run.report_to, ['jsonl']);
});
