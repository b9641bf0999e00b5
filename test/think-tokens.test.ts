import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { loadTokenizer } from '../shared/data/tokenizer.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { padBatch } from '../shared/model/batch.js';
import { loadCheckpoint, saveCheckpoint } from '../shared/model/checkpoint.js';
import { type ModelConfig, parseModelConfig } from '../shared/model/config.js';
import { Decoder } from '../shared/model/decoder.js';
import { initParams } from '../shared/model/init.js';
import { addThinkTokens } from '../shared/model/think-tokens.js';
import { uploadParams } from '../shared/model/weights.js';
import { type HfFamily, writeHfTokenizer } from './helpers/hf-tokenizers.js';

const PYTHON = '/usr/bin/python3';
const root = mkdtempSync(join(tmpdir(), 'rmt-think-'));

test.after.always(() => {
  rmSync(root, { recursive: true, force: true });
});

function tinyConfig(vocab: number, tied: boolean): ModelConfig {
  return parseModelConfig({
    model_type: 'llama',
    vocab_size: vocab,
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    tie_word_embeddings: tied,
  });
}

/** A checkpoint folder with a `family` tokenizer (with or without think tokens) and `pad` spare rows. */
async function source(name: string, family: HfFamily, think: boolean, pad: number, tied: boolean) {
  const tokDir = join(root, `${name}-tok`);
  writeHfTokenizer(tokDir, family, { think });
  const json = JSON.parse(readFileSync(join(tokDir, 'tokenizer.json'), 'utf8'));
  const ids = [
    ...Object.values(json.model.vocab as Record<string, number>),
    ...json.added_tokens.map((t: { id: number }) => t.id),
  ];
  const n = Math.max(...ids) + 1;
  const config = tinyConfig(n + pad, tied);
  const dir = join(root, name);
  saveCheckpoint(dir, { config, params: initParams(config, 7, 0.3), tokenizerDir: tokDir });
  return { dir, n };
}

async function logits(dir: string, prompt: number[]) {
  const be = new ReferenceBackend();
  const ck = loadCheckpoint(dir);
  const model = new Decoder(ck.config, be, uploadParams(be, ck.params));
  const tape = await model.forward(padBatch([prompt], 0, 'right'));
  const out = Array.from(await be.read(await model.logits(tape)));
  model.releaseTape(tape);
  return { out, vocab: ck.config.vocab_size };
}

test('a tokenizer without <think> gains both as special tokens, rows grown and saved (untied lm_head)', async (t) => {
  const { dir, n } = await source('llama2', 'llama2', false, 0, false);
  await t.throwsAsync(loadTokenizer(dir), { message: /missing reasoning token "<think>".*add-think-tokens/ });
  const out = join(root, 'llama2-think');
  const r = addThinkTokens(dir, out);
  t.deepEqual(r.added, [
    { content: '<think>', id: n },
    { content: '</think>', id: n + 1 },
  ]);
  t.deepEqual([r.vocabSizeBefore, r.vocabSizeAfter], [n, n + 2]);

  const tok = await loadTokenizer(out);
  t.deepEqual([tok.thinkId, tok.endThinkId, tok.vocabSize], [n, n + 1, n + 2]);
  t.true(tok.isSpecial(tok.thinkId) && tok.isSpecial(tok.endThinkId));
  t.deepEqual(tok.encode('<think>'), [n]);
  const ids = tok.encode('a<think>b</think>c');
  t.true(ids.includes(n) && ids.includes(n + 1));
  const cfg = JSON.parse(readFileSync(join(out, 'tokenizer_config.json'), 'utf8'));
  t.deepEqual(cfg.added_tokens_decoder[String(n)].content, '<think>');
  t.deepEqual(cfg.additional_special_tokens, ['<think>', '</think>']);
  t.is(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).vocab_size, n + 2);
  // the source's generation config (bos 1, eos 2) is carried over
  const gen = JSON.parse(readFileSync(join(out, 'generation_config.json'), 'utf8'));
  t.deepEqual([gen.bos_token_id, gen.eos_token_id], [1, 2]);

  const before = loadCheckpoint(dir);
  const after = loadCheckpoint(out);
  const D = before.config.hidden_size;
  for (const name of ['model.embed_tokens.weight', 'lm_head.weight']) {
    const a = before.params.get(name)!;
    const b = after.params.get(name)!;
    t.is(b.length, (n + 2) * D, name);
    t.deepEqual(Array.from(b.subarray(0, n * D)), Array.from(a), `${name}: existing rows unchanged`);
    for (let c = 0; c < D; c++) {
      let mean = 0;
      for (let r = 0; r < n; r++) mean += a[r * D + c];
      mean /= n;
      t.true(
        Math.abs(b[n * D + c] - mean) < 1e-6 && Math.abs(b[(n + 1) * D + c] - mean) < 1e-6,
        `${name} col ${c}`,
      );
    }
  }
  for (const [name, p] of before.params) {
    if (name !== 'model.embed_tokens.weight' && name !== 'lm_head.weight')
      t.deepEqual(after.params.get(name), p, name);
  }

  // the old tokens' logits are unchanged; the grown model loads in the PyTorch reference with the same logits
  const prompt = tok.encode('the fox');
  const l0 = await logits(dir, prompt);
  const l1 = await logits(out, prompt);
  for (let p = 0; p < prompt.length; p++) {
    t.deepEqual(l1.out.slice(p * (n + 2), p * (n + 2) + n), l0.out.slice(p * n, (p + 1) * n));
  }
  const inputs = join(root, 'inputs.json');
  writeFileSync(inputs, JSON.stringify({ input_ids: [[...prompt, n, n + 1]] }));
  const res = join(root, 'torch.json');
  execFileSync(PYTHON, ['scripts/torch_ref/check_checkpoint.py', out, inputs, res], { stdio: 'pipe' });
  const torch = (JSON.parse(readFileSync(res, 'utf8')) as { logits: number[][][] }).logits.flat(2);
  const ours = await logits(out, [...prompt, n, n + 1]);
  // float32 weights, float64 arithmetic on both sides
  t.true(ours.out.every((v, i) => Math.abs(v - torch[i]) < 1e-9));
});

test('rows the model already has past the tokenizer (Qwen-style padding) take the new ids; vocab_size stays', async (t) => {
  const { dir, n } = await source('padded', 'qwen', false, 6, true);
  const out = join(root, 'padded-think');
  const r = addThinkTokens(dir, out);
  t.deepEqual(
    r.added.map((a) => a.id),
    [n, n + 1],
  );
  t.deepEqual([r.vocabSizeBefore, r.vocabSizeAfter], [n + 6, n + 6]);
  const before = loadCheckpoint(dir).params.get('model.embed_tokens.weight')!;
  const after = loadCheckpoint(out);
  t.false(after.params.has('lm_head.weight'));
  const emb = after.params.get('model.embed_tokens.weight')!;
  const D = after.config.hidden_size;
  t.is(emb.length, before.length);
  t.deepEqual(Array.from(emb.subarray(0, n * D)), Array.from(before.subarray(0, n * D)));
  t.deepEqual(Array.from(emb.subarray((n + 2) * D)), Array.from(before.subarray((n + 2) * D)));
  const tok = await loadTokenizer(out);
  t.deepEqual([tok.thinkId, tok.endThinkId], [n, n + 1]);
  // the Qwen source's end-of-turn stop ids survive
  const gen = JSON.parse(readFileSync(join(out, 'generation_config.json'), 'utf8'));
  t.deepEqual(gen.eos_token_id, [n - 1, n - 3]);
});

test('a tokenizer that has them (Qwen3) is used as it is', async (t) => {
  const { dir, n } = await source('qwen3', 'qwen', true, 0, true);
  const out = join(root, 'qwen3-same');
  const r = addThinkTokens(dir, out);
  t.deepEqual(r.added, []);
  t.deepEqual([r.vocabSizeBefore, r.vocabSizeAfter], [n, n]);
  t.deepEqual(
    readFileSync(join(out, 'tokenizer.json'), 'utf8').trim(),
    readFileSync(join(dir, 'tokenizer.json'), 'utf8').trim(),
  );
  const tok = await loadTokenizer(out);
  t.false(tok.isSpecial(tok.thinkId));
  t.deepEqual(loadCheckpoint(out).params, loadCheckpoint(dir).params);
});
