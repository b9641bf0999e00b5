import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { parquetWriteFile } from 'hyparquet-writer';
import { readSourceStreams } from '../shared/data/source-streams.js';
import { loadTokenizer } from '../shared/data/tokenizer.js';
import { saveCheckpoint } from '../shared/model/checkpoint.js';
import { parseModelConfig } from '../shared/model/config.js';
import { initParams } from '../shared/model/init.js';
import { writeHfTokenizer } from './helpers/hf-tokenizers.js';

/**
 * docs/own-model.md as a user follows it: a Qwen3-architecture checkpoint folder with its tokenizer,
 * a JSONL file and a Parquet file of their own, one run config beside them, `rmt train --method rmt`
 * and `rmt eval` through the command line. The folder is laid out as current transformers saves a
 * Qwen3 checkpoint (RoPE only in `rope_parameters`, `layer_types`, `dtype`) with a Qwen-style
 * tokenizer (byte-level BPE, Qwen2's split regex, ChatML specials, `<think>` / `</think>` added).
 */
const repo = resolve(import.meta.dirname, '..');
const root = mkdtempSync(join(tmpdir(), 'rmt-own-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));
const run = promisify(execFile);
const rmt = (...args: string[]) =>
  run(process.execPath, [join(repo, 'bin', 'rmt.js'), ...args], {
    cwd: root,
    env: { ...process.env, CI: '1' },
    maxBuffer: 64 * 1024 * 1024,
  });

/** The config.json transformers 5 writes for a Qwen3ForCausalLM, at small dimensions. */
function qwen3ConfigJson(vocabSize: number, ids: { eos: number; pad: number }): Record<string, unknown> {
  const layers = 2;
  return {
    architectures: ['Qwen3ForCausalLM'],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: ids.pad,
    dtype: 'float32',
    eos_token_id: ids.eos,
    head_dim: 8,
    hidden_act: 'silu',
    hidden_size: 16,
    initializer_range: 0.02,
    intermediate_size: 32,
    layer_types: Array.from({ length: layers }, () => 'full_attention'),
    max_position_embeddings: 256,
    max_window_layers: layers,
    model_type: 'qwen3',
    num_attention_heads: 2,
    num_hidden_layers: layers,
    num_key_value_heads: 1,
    pad_token_id: null,
    rms_norm_eps: 1e-6,
    rope_parameters: { rope_theta: 1000000, rope_type: 'default' },
    sliding_window: null,
    tie_word_embeddings: true,
    transformers_version: '5.0.0',
    use_cache: true,
    use_sliding_window: false,
    vocab_size: vocabSize + 7, // padded past the tokenizer, as real Qwen3 checkpoints are
  };
}

async function qwen3Folder(dir: string): Promise<Record<string, unknown>> {
  const tokDir = join(root, 'tokenizer-src');
  writeHfTokenizer(tokDir, 'qwen', { merges: 300 });
  const tok = await loadTokenizer(tokDir);
  const raw = qwen3ConfigJson(tok.vocabSize, { eos: tok.eosId, pad: tok.padId as number });
  const config = parseModelConfig(raw);
  saveCheckpoint(dir, { config, params: initParams(config, 5, 0.5), tokenizerDir: tokDir });
  // The folder holds the file as transformers wrote it, not rmt's rewrite of it.
  writeFileSync(join(dir, 'config.json'), JSON.stringify(raw, null, 2));
  return raw;
}

const sentence = (i: number) =>
  `Problem ${i}: a ship sails ${i % 9} miles north and ${(i * 3) % 7} miles east. The total is ${(i % 9) + ((i * 3) % 7)} miles.`;

test('a Qwen3 folder, a JSONL and a Parquet corpus: rmt train --method rmt, then rmt eval on the held-out documents', async (t) => {
  const raw = await qwen3Folder(join(root, 'models', 'my-qwen3'));
  t.false('rope_theta' in raw);
  mkdirSync(join(root, 'corpus'));
  writeFileSync(
    join(root, 'corpus', 'train.jsonl'),
    Array.from({ length: 60 }, (_, i) => JSON.stringify({ id: `j${i}`, text: sentence(i) })).join('\n'),
  );
  parquetWriteFile({
    filename: join(root, 'corpus', 'train-00000-of-00001.parquet'),
    columnData: [
      { name: 'text', data: Array.from({ length: 60 }, (_, i) => sentence(100 + i)), type: 'STRING' },
    ],
    rowGroupSize: 16,
  });
  writeFileSync(
    join(root, 'rmt.yaml'),
    `method: rmt
run: { out_dir: runs/my-rmt, seed: 3, backend: cpu }
model: { init_from: models/my-qwen3 }
data:
  sources:
    - { path: corpus/train.jsonl, format: jsonl, field: text, id_field: id, weight: 1 }
    - { path: corpus/train-00000-of-00001.parquet, format: parquet, field: text, weight: 1 }
  held_out_fraction: 0.2
  max_context: 24
  rl_tokens: 400
  eval_tokens: 300
  continuation_len: 3
  score_window: 32
budget: { B_0: 8, hard_cap: 10 }
curriculum: { min_entropy: 0.1, edges: [2.5, 2.7] }
grpo: { G: 2 }
train: { steps: 2, positions_per_step: 2, micro_batch: 8, generation_batch: 8 }
eval: { positions: 4 }
checkpoint: { every: 2, keep: 1 }
`,
  );
  const trained = await rmt('train', '--config', 'rmt.yaml', '--method', 'rmt');
  t.regex(trained.stdout, /rmt: held-out accuracy/);
  t.regex(trained.stdout, /results in:\n.*metrics\.jsonl/);
  const summary = JSON.parse(readFileSync(join(root, 'runs', 'my-rmt', 'summary.json'), 'utf8'));
  t.is(summary.steps, 2);
  t.regex(
    trained.stderr,
    /data\.sources\[0\] \(jsonl corpus\/train\.jsonl\): \d+ train \/ \d+ held-out documents/,
  );
  t.regex(trained.stderr, /data\.sources\[1\] \(parquet corpus\/train-00000-of-00001\.parquet\)/);
  const final = join(root, 'runs', 'my-rmt', 'final');
  t.true(existsSync(join(final, 'model.safetensors')));
  const saved = parseModelConfig(JSON.parse(readFileSync(join(final, 'config.json'), 'utf8')));
  t.deepEqual([saved.model_type, saved.rope_theta, saved.vocab_size], ['qwen3', 1000000, raw.vocab_size]);
  const finalTok = await loadTokenizer(final);
  t.is(finalTok.tokenOf(finalTok.thinkId), '<think>');
  t.is(finalTok.tokenOf(finalTok.eosId), '<|im_end|>');
  const evaluated = await rmt(
    'eval',
    '--config',
    'rmt.yaml',
    '--checkpoint',
    final,
    '--mode',
    'ntr',
    '--json',
  );
  const result = JSON.parse(evaluated.stdout);
  t.is(result.positions, 4);
  t.true(result.avg >= 0 && result.avg <= 1 && result.no_answer_rate >= 0);
  t.deepEqual(JSON.parse(readFileSync(join(root, 'runs', 'my-rmt', 'eval-ntr-final.json'), 'utf8')), result);
  // Held out by document: no held-out document's tokens are also a train document.
  const data = join(root, 'runs', 'my-rmt', 'data');
  const meta = JSON.parse(readFileSync(join(data, 'meta.json'), 'utf8'));
  const streams = readSourceStreams({ dir: data, train: meta.train, held_out: meta.held_out }, 0, 0);
  const eos = finalTok.eosId;
  const docs = (ids: Int32Array) => Array.from(ids).join(',').split(`,${eos},`).filter(Boolean);
  const train = new Set(docs(streams.train));
  const held = docs(streams.heldOut);
  t.true(train.size >= 10 && held.length >= 3, `${train.size} train, ${held.length} held-out documents`);
  t.false(held.some((d) => train.has(d)));
});
