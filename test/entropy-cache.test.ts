import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { writeGpt2Tokenizer } from '../shared/data/gpt2-bpe.js';
import { createBackend } from '../shared/kernels/index.js';
import { saveCheckpoint } from '../shared/model/checkpoint.js';
import { parseModelConfig } from '../shared/model/config.js';
import { initParams } from '../shared/model/init.js';
import { keyPositions } from '../shared/rl/key-positions.js';
import { loadRunContext } from '../shared/run/run-context.js';
import { Scorer } from '../shared/run/scorer.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

const root = mkdtempSync(join(tmpdir(), 'rmt-entropy-'));
const base = tinyBaseCheckpoint(root);

/** The tiny model's architecture with other random weights, and `tokDir`'s tokenizer. */
function otherCheckpoint(name: string, tokDir: string, seed: number): string {
  const vocab = JSON.parse(readFileSync(join(tokDir, 'tokenizer.json'), 'utf8'));
  const config = parseModelConfig({
    model_type: 'qwen3',
    vocab_size: Object.keys(vocab.model.vocab).length + vocab.added_tokens.length,
    hidden_size: 16,
    intermediate_size: 32,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 8,
    max_position_embeddings: 128,
  });
  const dir = join(root, name);
  saveCheckpoint(dir, { config, params: initParams(config, seed, 0.5), tokenizerDir: tokDir });
  return dir;
}

const corpus = (n: number, word: string) =>
  Array.from({ length: n }, (_, i) =>
    JSON.stringify({ text: `${word} ${i}: the whale swam ${i % 7} miles and then ${i % 5} more.` }),
  ).join('\n');

function config(out: string, extra: Record<string, unknown> = {}) {
  const cfg = tinyRunConfig(base, join(root, out), 'rmt', 1, {
    data: {
      sources: [{ path: 'corpus.jsonl' }],
      root,
      held_out_fraction: 0.3,
      rl_tokens: 300,
      eval_tokens: 200,
      context_len: 8,
      continuation_len: 3,
      score_window: 32,
      ...extra,
    },
  });
  return cfg;
}

test.serial('the entropy cache follows the corpus and the proxy, not the run folder', async (t) => {
  const backend = await createBackend('cpu');
  const scorer = () => new Scorer(backend);
  writeFileSync(join(root, 'corpus.jsonl'), corpus(40, 'Story'));
  const cfg = config('run');
  const run = await loadRunContext('r', cfg);
  const keyFile = join(cfg.run.out_dir, 'data', 'entropy-train.bin.key');
  const first = await scorer().keyPositions(run, 'train');
  const key1 = readFileSync(keyFile, 'utf8');
  t.true(first.length > 50);
  // Same inputs, a new scorer: the cached entropies are reused as they are.
  t.deepEqual(await scorer().keyPositions(run, 'train'), first);
  t.is(readFileSync(keyFile, 'utf8'), key1);
  // A new corpus in the same run folder: new tokens, so new entropies.
  writeFileSync(join(root, 'corpus.jsonl'), corpus(40, 'Chapter'));
  const second = await scorer().keyPositions(run, 'train');
  t.not(readFileSync(keyFile, 'utf8'), key1);
  t.notDeepEqual(
    second.map((p) => p.target),
    first.map((p) => p.target),
  );
  // Another proxy with the same tokenizer: scored afresh, other entropies on the same positions.
  const proxy = otherCheckpoint('proxy', join(root, 'tok'), 9);
  const withProxy = { ...cfg, model: { ...cfg.model, proxy } };
  const third = await scorer().keyPositions({ ...run, cfg: withProxy }, 'train');
  t.deepEqual(
    third.map((p) => p.id),
    second.map((p) => p.id),
  );
  t.notDeepEqual(
    third.map((p) => p.entropy),
    second.map((p) => p.entropy),
  );
  // A proxy with another tokenizer is refused by name before it scores anything.
  const otherTok = join(root, 'tok-other');
  writeGpt2Tokenizer(otherTok, { merges: 301 });
  const stranger = otherCheckpoint('stranger', otherTok, 9);
  await t.throwsAsync(
    scorer().keyPositions({ ...run, cfg: { ...cfg, model: { ...cfg.model, proxy: stranger } } }, 'train'),
    { message: /model\.proxy: the tokenizer of .*stranger.* differs from the policy's/ },
  );
  await backend.dispose();
});

test.serial(
  'max_context: the document prefix as context, positions near a document start eligible',
  async (t) => {
    const backend = await createBackend('cpu');
    writeFileSync(join(root, 'corpus.jsonl'), corpus(40, 'Story'));
    const cfg = config('prefix', { max_context: 12 });
    const positions = await new Scorer(backend).keyPositions(await loadRunContext('r', cfg), 'train');
    const lens = positions.map((p) => p.context.length);
    t.true(
      lens.some((n) => n < 8),
      'positions with less than a window before them in their document',
    );
    t.is(Math.max(...lens), 12);
    t.true(lens.every((n) => n >= 1));
    await backend.dispose();
  },
);

test.serial(
  'a context that cannot fit the position range with the reasoning cap is refused by field',
  async (t) => {
    const backend = await createBackend('cpu');
    writeFileSync(
      join(root, 'corpus.jsonl'),
      Array.from({ length: 12 }, (_, i) =>
        JSON.stringify({ text: `Long story ${i}. ${'The whale swam far. '.repeat(30)}` }),
      ).join('\n'),
    );
    const cfg = config('too-long', { max_context: 120 });
    await t.throwsAsync(new Scorer(backend).keyPositions(await loadRunContext('r', cfg), 'train'), {
      message:
        /data\.max_context: a prompt of \d+ tokens \(context 120\) plus budget\.hard_cap 10 exceeds max_position_embeddings 128/,
    });
    await backend.dispose();
  },
);

test.serial('data.eval_sources: held-out positions come from the evaluation file only', async (t) => {
  const backend = await createBackend('cpu');
  writeFileSync(join(root, 'corpus.jsonl'), corpus(30, 'Story'));
  writeFileSync(join(root, 'test.jsonl'), corpus(10, 'Exam'));
  const cfg = config('eval-sources', { eval_sources: [{ path: 'test.jsonl' }], max_context: 16 });
  const run = await loadRunContext('r', cfg);
  const held = await new Scorer(backend).keyPositions(run, 'held_out');
  const train = await new Scorer(backend).keyPositions(run, 'train');
  const text = (ps: typeof held) => run.tokenizer.decode(ps.flatMap((p) => p.context));
  t.true(held.length > 20 && train.length > 20);
  t.regex(text(held), /Exam/);
  t.notRegex(text(held), /Story/);
  t.notRegex(text(train), /Exam/);
  await backend.dispose();
});

test('keyPositions: the prefix mode cuts at the document start and at max_context', (t) => {
  const eos = 0;
  const tokens = Int32Array.from([5, 6, 7, eos, 8, 9, 10, 11, 12, eos, 13]);
  const entropy = new Float32Array(tokens.length).fill(1);
  const opts = { context_len: 3, continuation_len: 2, excluded: [eos] };
  const window = keyPositions(tokens, entropy, opts, eos);
  t.deepEqual(
    window.map((p) => [p.id, p.context]),
    [
      [7, [8, 9, 10]],
      [8, [9, 10, 11]],
    ],
  );
  const prefix = keyPositions(tokens, entropy, { ...opts, max_context: 2 }, eos);
  t.deepEqual(
    prefix.map((p) => [p.id, p.context]),
    [
      [1, [5]],
      [2, [5, 6]],
      [5, [8]],
      [6, [8, 9]],
      [7, [9, 10]],
      [8, [10, 11]],
    ],
  );
});
