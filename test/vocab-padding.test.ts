import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { writeGpt2Tokenizer } from '../shared/data/gpt2-bpe.js';
import { loadTokenizer } from '../shared/data/tokenizer.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { parseModelConfig } from '../shared/model/config.js';
import { generate } from '../shared/model/generate.js';
import { logSoftmax, sampleToken } from '../shared/model/sampling.js';
import { BareFormat } from '../shared/rl/prompt-format.js';
import { evaluatePositions } from '../shared/run/evaluate.js';
import { Rng } from '../shared/util/rng.js';
import { makeDecoder, randomParams } from './helpers/tiny-models.js';

/**
 * A model may have more embedding rows than its tokenizer has ids (Qwen3: 151936 rows, 151669
 * tokens). The padding rows here are built to win every argmax (real rows zero, padding rows w and
 * -w, so one padding logit is positive): sampling, greedy decoding and ntp evaluation must still
 * only ever choose a tokenizer id.
 */
const PAD = 3;

function paddedModel(vocab: number) {
  const c = parseModelConfig({
    model_type: 'qwen3',
    vocab_size: vocab + PAD,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 8,
    max_position_embeddings: 256,
  });
  const host = randomParams(c, 7);
  const head = host.get('lm_head.weight')!;
  head.fill(0);
  const rng = new Rng(3);
  for (let d = 0; d < 16; d++) {
    const w = rng.normal();
    head[vocab * 16 + d] = w;
    head[(vocab + 1) * 16 + d] = -w;
    head[(vocab + 2) * 16 + d] = 2 * w;
  }
  return makeDecoder(new ReferenceBackend(), c, host);
}

test('sampleToken draws only ids below `usable` and reports the full-distribution log-probability', (t) => {
  const logits = Float64Array.of(0.1, 0.5, -0.2, 9, 8);
  const rng = new Rng(1);
  const full = logSoftmax(logits);
  t.is(sampleToken(logits, { temperature: 0, topK: 0, topP: 1 }, rng, 3).token, 1);
  for (let i = 0; i < 200; i++) {
    const { token, logprob } = sampleToken(logits, { temperature: 1, topK: 0, topP: 1 }, rng, 3);
    t.true(token < 3);
    t.is(logprob, full[token]);
  }
  t.throws(() => sampleToken(logits, { temperature: 1, topK: 0, topP: 1 }, rng, 6), {
    instanceOf: RangeError,
  });
});

test('generate never emits a padding id, greedy or sampled', async (t) => {
  const V = 20;
  const model = paddedModel(V);
  const o = { topK: 0, topP: 1, maxNewTokens: 6, stopTokens: [] };
  const unguarded = await generate(model, [[1, 2, 3]], { ...o, temperature: 0, rng: new Rng(1) });
  t.true(
    unguarded[0].tokens.every((id) => id >= V),
    'the padding rows win without the guard',
  );
  for (const temperature of [0, 1]) {
    const gens = await generate(model, [[1, 2, 3], [4]], {
      ...o,
      temperature,
      rng: new Rng(2),
      usableVocab: V,
    });
    for (const g of gens)
      t.true(
        g.tokens.every((id) => id < V),
        `${temperature}: ${g.tokens}`,
      );
  }
  await t.throwsAsync(
    generate(model, [[1]], { ...o, temperature: 0, rng: new Rng(1), usableVocab: V + PAD + 1 }),
    {
      instanceOf: RangeError,
    },
  );
});

test('ntp evaluation predicts only tokenizer ids (and decodes them) when the model has padding rows', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rmt-vocab-pad-'));
  try {
    writeGpt2Tokenizer(join(dir, 'tok'), { merges: 20 });
    const tokenizer = await loadTokenizer(join(dir, 'tok'));
    const model = paddedModel(tokenizer.vocabSize);
    const positions = [5, 9, 13].map((id) => ({
      id,
      context: [1, 2, id],
      target: id,
      continuation: [id],
      entropy: 1,
    }));
    const r = await evaluatePositions(
      model,
      tokenizer,
      new BareFormat(tokenizer, { budget_marker: '' }),
      positions,
      {
        mode: 'ntp',
        eval_splits: [0, 1, 2],
        budget: null,
        hardCap: 4,
        batch: 2,
      },
    );
    t.is(r.positions, 3);
    t.true((r.top_predictions ?? []).length > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
