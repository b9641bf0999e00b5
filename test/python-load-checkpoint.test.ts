import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { RMT_DEFAULTS } from '../shared/config/rmt-defaults.js';
import { loadTokenizer } from '../shared/data/tokenizer.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { loadCheckpoint } from '../shared/model/checkpoint.js';
import { Decoder } from '../shared/model/decoder.js';
import { generate } from '../shared/model/generate.js';
import { uploadParams } from '../shared/model/weights.js';
import { BareFormat } from '../shared/rl/prompt-format.js';
import { pretrain } from '../shared/train/pretrain.js';
import { Rng } from '../shared/util/rng.js';
import { tinyPretrainConfig } from './helpers/tiny-pretrain.js';

const PYTHON = process.env.RMT_PYTHON ?? '/usr/bin/python3';
const run = promisify(execFile);

test('examples/python/load_checkpoint.py: same prompt ids and the same greedy reasoning as rmt on the float64 backend', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'rmt-pyload-'));
  try {
    await pretrain(
      tinyPretrainConfig(out, [
        'run.seed=11',
        'model.config.num_hidden_layers=2',
        'model.config.max_position_embeddings=128',
        'data.corpora=[moby-dick, math]',
        'train.steps=2',
        'train.warmup_steps=1',
        'eval.every=2',
        'checkpoint.every=2',
        'checkpoint.keep=1',
      ]),
      { log: () => {} },
    );
    const ckpt = join(out, 'final');
    const text = 'Call me Ishmael. 12+35=';
    const budget = 7;
    const { stdout } = await run(PYTHON, [
      'examples/python/load_checkpoint.py',
      ckpt,
      '--text',
      text,
      '--budget',
      String(budget),
      '--max-new-tokens',
      '12',
      '--json',
    ]);
    const py = JSON.parse(stdout) as { prompt_ids: number[]; generated_ids: number[] };

    const tokenizer = await loadTokenizer(ckpt);
    const format = new BareFormat(tokenizer, RMT_DEFAULTS.prompt);
    const prompt = format.buildPrompt(tokenizer.encode(text), budget);
    t.deepEqual(py.prompt_ids, prompt, 'tokenizer and prompt layout agree');

    const be = new ReferenceBackend();
    const ck = loadCheckpoint(ckpt);
    const model = new Decoder(ck.config, be, uploadParams(be, ck.params));
    const [g] = await generate(model, [prompt], {
      maxNewTokens: 12,
      stopTokens: format.stopIds.slice(),
      temperature: 0,
      topK: 0,
      topP: 1,
      rng: new Rng(1),
    });
    const ours = g.finishReason === 'stop' ? g.tokens.slice(0, -1) : g.tokens;
    t.true(ours.length > 0, 'the model wrote something to compare');
    t.deepEqual(py.generated_ids, ours, 'greedy continuations agree');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
