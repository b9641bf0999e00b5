import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { createBackend } from '../shared/kernels/index.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { padBatch } from '../shared/model/batch.js';
import { loadCheckpoint, saveCheckpoint } from '../shared/model/checkpoint.js';
import { Decoder } from '../shared/model/decoder.js';
import { initParams } from '../shared/model/init.js';
import { uploadParams } from '../shared/model/weights.js';
import { testBackends } from './helpers/backends.js';
import { TINY_CONFIGS } from './helpers/tiny-models.js';

const PYTHON = '/usr/bin/python3';
const backends = await testBackends();
const prompts = [
  [1, 2, 3, 4, 5, 6],
  [7, 8, 9],
];

async function logitsOf(dir: string, be: Awaited<ReturnType<typeof createBackend>>) {
  const ck = loadCheckpoint(dir);
  const model = new Decoder(ck.config, be, uploadParams(be, ck.params));
  const tape = await model.forward(padBatch(prompts, 0, 'right'));
  const out = await be.read(await model.logits(tape));
  model.releaseTape(tape);
  return out;
}

test('a checkpoint written by rmt loads in PyTorch with the same logits (1e-9, float64 on both sides)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rmt-interop-'));
  try {
    for (const [name, config] of Object.entries(TINY_CONFIGS)) {
      const ck = join(dir, name);
      saveCheckpoint(ck, { config, params: initParams(config, 3, 0.2) });
      const batch = padBatch(prompts, 0, 'right');
      const inputs = join(dir, `${name}-inputs.json`);
      const rows = (a: ArrayLike<number>) =>
        prompts.map((_, b) => Array.from(a).slice(b * batch.seqLen, (b + 1) * batch.seqLen));
      writeFileSync(
        inputs,
        JSON.stringify({
          input_ids: rows(batch.ids),
          attention_mask: rows(batch.mask),
          position_ids: rows(batch.positions),
        }),
      );
      const out = join(dir, `${name}-out.json`);
      try {
        execFileSync(PYTHON, ['scripts/torch_ref/check_checkpoint.py', ck, inputs, out], { stdio: 'pipe' });
      } catch (e) {
        t.fail(
          `PyTorch could not load ${name} (needs Debian python3-torch; bash .ci/run installs it): ${(e as { stderr?: Buffer }).stderr}`,
        );
        return;
      }
      const torchLogits = (JSON.parse(readFileSync(out, 'utf8')) as { logits: number[][][] }).logits.flat(2);
      const ours = await logitsOf(ck, new ReferenceBackend());
      let maxErr = 0;
      for (let b = 0; b < prompts.length; b++) {
        for (let tpos = 0; tpos < prompts[b].length; tpos++) {
          const base = (b * batch.seqLen + tpos) * config.vocab_size;
          for (let v = 0; v < config.vocab_size; v++)
            maxErr = Math.max(maxErr, Math.abs(ours[base + v] - torchLogits[base + v]));
        }
      }
      t.true(maxErr < 1e-9, `${name}: max |rmt - torch| = ${maxErr}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const name of ['reference', ...backends] as const) {
  test(`a checkpoint reloads with bit-identical logits: ${name}`, async (t) => {
    const be = await createBackend(name);
    const dir = mkdtempSync(join(tmpdir(), 'rmt-reload-'));
    try {
      const config = TINY_CONFIGS['qwen3-gqa'];
      const model = new Decoder(config, be, uploadParams(be, initParams(config, 5, 0.2)));
      const tape = await model.forward(padBatch(prompts, 0, 'right'));
      const before = await be.read(await model.logits(tape));
      model.releaseTape(tape);
      const params = new Map<string, Float32Array>();
      for (const [k, v] of model.params) params.set(k, Float32Array.from(await be.read(v)));
      saveCheckpoint(join(dir, 'ck'), { config, params });
      const after = await logitsOf(join(dir, 'ck'), be);
      t.deepEqual(Array.from(after), Array.from(before));
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await be.dispose();
    }
  });
}
