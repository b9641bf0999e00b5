// A training job's output folder (RunDir), shared by pre-training, the learner and the coordinator:
// checkpoints saved and pruned, optimizer state back exactly on resume, and a metrics log whose rows
// up to the step a job continues from are never lost.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { createBackend } from '../shared/kernels/index.js';
import { AdamW } from '../shared/model/adamw.js';
import { checkpointDir, listCheckpoints, loadCheckpoint } from '../shared/model/checkpoint.js';
import { parseModelConfig } from '../shared/model/config.js';
import { initParams } from '../shared/model/init.js';
import { paramSpecs } from '../shared/model/params.js';
import { downloadParams, uploadParams } from '../shared/model/weights.js';
import { keepMetricsThrough, readMetrics } from '../shared/obs/metrics-log.js';
import { optimizerState, RunDir, type RunDirConfig, restoreOptimizer } from '../shared/run-dir/run-dir.js';
import { Rng } from '../shared/util/rng.js';

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'rmt-run-dir-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const runCfg = (out: string, keep: number, steps: number): RunDirConfig => ({
  run: { out_dir: out, report_to: ['jsonl'] },
  checkpoint: { keep },
  train: { steps },
});

const config = parseModelConfig({
  model_type: 'qwen3',
  vocab_size: 16,
  hidden_size: 8,
  intermediate_size: 12,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  head_dim: 4,
  max_position_embeddings: 16,
});
const params = initParams(config, 5, 0.1);

test('checkpoints: the newest `keep` stay, the last step always, and the newest is what a job resumes from', (t) => {
  const out = join(tempDir(t), 'run');
  const dir = new RunDir(runCfg(out, 2, 10));
  t.is(dir.latestCheckpoint(), undefined, 'a fresh folder has nothing to resume from');
  t.false(existsSync(out), 'nothing is written before a method says so');
  for (const step of [2, 4, 6, 8, 10]) {
    const at = dir.saveCheckpoint(step, { config, params });
    t.is(at, checkpointDir(out, step));
  }
  t.deepEqual(listCheckpoints(out), [checkpointDir(out, 8), checkpointDir(out, 10)]);
  t.is(dir.latestCheckpoint(), checkpointDir(out, 10));

  // The last step's checkpoint is never pruned, even with newer ones (a run extended past its end).
  const one = new RunDir(runCfg(join(out, 'other'), 1, 4));
  for (const step of [2, 4, 6, 8]) one.saveCheckpoint(step, { config, params });
  t.deepEqual(listCheckpoints(join(out, 'other')), [
    checkpointDir(join(out, 'other'), 4),
    checkpointDir(join(out, 'other'), 8),
  ]);

  const final = dir.saveFinal({ config, params });
  t.is(final, join(out, 'final'));
  t.is(loadCheckpoint(final).training, undefined, 'final/ holds weights only');
});

test('writeConfig creates the folder; write and writeJson put files in it', (t) => {
  const out = join(tempDir(t), 'a', 'b');
  const dir = new RunDir(runCfg(out, 1, 1), () => {});
  dir.writeConfig({ run: { out_dir: out }, x: 1 });
  t.deepEqual(JSON.parse(readFileSync(join(out, 'config.resolved.json'), 'utf8')), {
    run: { out_dir: out },
    x: 1,
  });
  t.is(dir.writeJson('summary.json', { steps: 3 }), join(out, 'summary.json'));
  t.is(readFileSync(join(out, 'summary.json'), 'utf8'), '{\n  "steps": 3\n}\n');
  t.is(dir.write('plot.svg', '<svg/>'), join(out, 'plot.svg'));
});

test('the optimizer resumes exactly: step and both moments as saved, the next update as without a stop', async (t) => {
  const backend = await createBackend('cpu');
  t.teardown(() => backend.dispose());
  const specs = paramSpecs(config);
  const hyper = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1 };
  const rng = new Rng(11);
  const grads = () =>
    uploadParams(
      backend,
      new Map(
        specs.map((s) => [
          s.name,
          Float32Array.from({ length: params.get(s.name)!.length }, () => rng.next() - 0.5),
        ]),
      ),
    );
  const g1 = await downloadParams(backend, grads());
  const g2 = await downloadParams(backend, grads());

  const straightParams = uploadParams(backend, params);
  const straight = new AdamW(backend, specs, hyper);
  await straight.update(straightParams, uploadParams(backend, g1), 1e-2);
  const saved = await optimizerState(straight, { lr: 1e-2 });
  await straight.update(straightParams, uploadParams(backend, g2), 1e-2);

  const out = join(tempDir(t), 'run');
  const dir = new RunDir(runCfg(out, 1, 2));
  const afterOne = new AdamW(backend, specs, hyper);
  const p1 = uploadParams(backend, params);
  await afterOne.update(p1, uploadParams(backend, g1), 1e-2);
  dir.saveCheckpoint(1, {
    config,
    params: await downloadParams(backend, p1),
    training: { step: 1, rng: rng.state(), dataPosition: null, optimizer: saved },
  });

  const ck = loadCheckpoint(dir.latestCheckpoint()!);
  const resumed = new AdamW(backend, specs, hyper);
  restoreOptimizer(resumed, ck.training!);
  t.is(resumed.step, 1);
  t.deepEqual(await downloadParams(backend, resumed.m), saved.m);
  t.deepEqual(await downloadParams(backend, resumed.v), saved.v);
  const resumedParams = uploadParams(backend, ck.params);
  await resumed.update(resumedParams, uploadParams(backend, g2), 1e-2);
  t.deepEqual(
    await downloadParams(backend, resumedParams),
    await downloadParams(backend, straightParams),
    'the update after the resume is bit for bit the uninterrupted one',
  );
});

const row = (step: number, extra = '') => `{"step":${step},"train/loss":${1 / (step + 1)}${extra}}`;

test('metrics: a job resumed from step k keeps the rows up to k byte for byte and replaces the later ones', (t) => {
  const out = join(tempDir(t), 'run');
  const dir = new RunDir(runCfg(out, 1, 10));
  dir.writeConfig({});
  const path = join(out, 'metrics.jsonl');
  // Spacing no serializer of ours writes: a kept row is the line as it was, not a re-encoding.
  const earlier = ['{ "step": 0, "eval/held_out_nll": 2.5 }', row(1, ',"note":1'), row(2)];
  writeFileSync(path, [...earlier, row(3), row(4)].map((l) => `${l}\n`).join(''));

  const metrics = dir.metrics(2);
  t.is(readFileSync(path, 'utf8').split('\n').length, 6, 'nothing is removed before the first row is logged');
  metrics.append({ step: 3, 'train/loss': 0.5 });
  metrics.append({ step: 4, 'train/loss': 0.25 });
  metrics.close();
  const lines = readFileSync(path, 'utf8').trim().split('\n');
  t.deepEqual(lines.slice(0, 3), earlier);
  t.deepEqual(lines.slice(3), ['{"step":3,"train/loss":0.5}', '{"step":4,"train/loss":0.25}']);
  t.deepEqual(
    readMetrics(path).map((r) => r.step),
    [0, 1, 2, 3, 4],
  );
});

test('metrics: a fresh job (resume step 0 or none) starts the log anew, once it logs', (t) => {
  const out = tempDir(t);
  const path = join(out, 'metrics.jsonl');
  for (const resumeStep of [0, null]) {
    writeFileSync(path, `${row(1)}\n${row(2)}\n`);
    const metrics = new RunDir(runCfg(out, 1, 10)).metrics(resumeStep);
    t.is(readFileSync(path, 'utf8'), `${row(1)}\n${row(2)}\n`);
    metrics.append({ step: 1, x: 1 });
    metrics.close();
    t.is(readFileSync(path, 'utf8'), '{"step":1,"x":1}\n');
  }
});

test('metrics: a last line cut off mid-write is dropped on resume and skipped when read', (t) => {
  const path = join(tempDir(t), 'metrics.jsonl');
  writeFileSync(path, `${row(1)}\n${row(2)}\n{"step":3,"train/lo`);
  t.deepEqual(
    readMetrics(path).map((r) => r.step),
    [1, 2],
  );
  keepMetricsThrough(path, 2);
  t.is(readFileSync(path, 'utf8'), `${row(1)}\n${row(2)}\n`);

  // A complete last row without its newline gets one, so the next row does not run into it.
  writeFileSync(path, `${row(1)}\n${row(2)}`);
  keepMetricsThrough(path, 5);
  t.is(readFileSync(path, 'utf8'), `${row(1)}\n${row(2)}\n`);
});

test('metrics: nothing to drop leaves the file untouched', (t) => {
  const path = join(tempDir(t), 'metrics.jsonl');
  writeFileSync(path, `${row(1)}\n${row(2)}\n`);
  const before = statSync(path);
  keepMetricsThrough(path, 2);
  const after = statSync(path);
  t.is(after.ino, before.ino, 'not replaced');
  t.is(after.mtimeMs, before.mtimeMs, 'not rewritten');
  keepMetricsThrough(join(tempDir(t), 'absent.jsonl'), 3);
  t.pass('a missing log is a fresh one');
});

test('metrics: a line that is not a row is refused with the file and line, never its content, and the log is kept', (t) => {
  const path = join(tempDir(t), 'metrics.jsonl');
  const cases: [string, RegExp][] = [
    ['SECRET-not-json', /^metrics\.jsonl line 2: not valid JSON$/],
    ['["SECRET"]', /^metrics\.jsonl line 2: not a JSON object$/],
    ['{"step":"SECRET"}', /^metrics\.jsonl line 2: field "step" must be an integer >= 0$/],
    ['{"step":-1}', /^metrics\.jsonl line 2: field "step" must be an integer >= 0$/],
    ['{"step":1.5}', /^metrics\.jsonl line 2: field "step" must be an integer >= 0$/],
  ];
  for (const [bad, message] of cases) {
    const text = `${row(1)}\n${bad}\n${row(3)}\n`;
    writeFileSync(path, text);
    const err = t.throws(() => keepMetricsThrough(path, 1), { message });
    t.false(err?.message.includes('SECRET'));
    t.throws(() => readMetrics(path), { message });
    t.is(readFileSync(path, 'utf8'), text, 'the log is left as it was');
  }
});
