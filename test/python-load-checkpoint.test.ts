import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { parsePretrainConfig } from '../shared/config/pretrain-config.js';
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

const PYTHON = process.env.RMT_PYTHON ?? '/usr/bin/python3';
const run = promisify(execFile);

test('examples/python/load_checkpoint.py: same prompt ids and the same greedy reasoning as rmt on the float64 backend', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'rmt-pyload-'));
  try {
    await pretrain(
      parsePretrainConfig(
        {
          run: { out_dir: out, seed: 11, backend: 'cpu' },
          tokenizer: { gpt2_merges: 300 },
          model: {
            config: {
              model_type: 'qwen3',
              hidden_size: 16,
              intermediate_size: 32,
              num_hidden_layers: 2,
              num_attention_heads: 2,
              num_key_value_heads: 1,
              head_dim: 8,
              max_position_embeddings: 128,
            },
          },
          data: { corpora: ['moby-dick', 'math'], max_chars_per_corpus: 20000, seq_len: 16 },
          train: { steps: 2, batch_size: 2, warmup_steps: 1 },
          eval: { every: 2, batches: 1 },
          checkpoint: { every: 2, keep: 1 },
        },
        'test',
      ),
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
