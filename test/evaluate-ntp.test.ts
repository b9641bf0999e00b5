import test from 'ava';
import type { Tokenizer } from '../shared/data/tokenizer.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { padBatch } from '../shared/model/batch.js';
import type { KeyPosition } from '../shared/rl/key-positions.js';
import type { PromptFormat } from '../shared/rl/prompt-format.js';
import { predictionCorrect } from '../shared/rl/rewards.js';
import { evaluatePositions, ntpExcluded } from '../shared/run/evaluate.js';
import { Rng } from '../shared/util/rng.js';
import { makeDecoder, randomParams, TINY_CONFIGS } from './helpers/tiny-models.js';

/**
 * `ntp` evaluation's argmax with layout tokens left out (`eval.ntp_over: text`): each prediction is
 * the most likely token that is not excluded, found independently here from the model's logits.
 */
const config = TINY_CONFIGS['qwen3-gqa'];
const be = new ReferenceBackend();
const model = makeDecoder(be, config, randomParams(config, 3));
const rng = new Rng(5);
// Five positions: top_predictions lists at most five distinct tokens.
const positions: KeyPosition[] = Array.from({ length: 5 }, (_, id) => ({
  id,
  context: Array.from({ length: 5 }, () => 1 + rng.int(config.vocab_size - 1)),
  target: 1 + rng.int(config.vocab_size - 1),
  continuation: [],
  entropy: 2,
}));
// Token v spells the bytes of its number, "12" for 12: a one-token prediction of 12 is a byte
// prefix of the continuation [1, 2] without being its first token.
const tokenBytes = (v: number) => new TextEncoder().encode(String(v));
const tokenizer = {
  vocabSize: config.vocab_size,
  decode: (ids: readonly number[]) => ids.join(' '),
  tokenBytes,
} as unknown as Tokenizer;

async function lastRows(): Promise<number[][]> {
  const V = config.vocab_size;
  const out: number[][] = [];
  for (const p of positions) {
    const tape = await model.forward(padBatch([p.context], 0));
    const logits = await be.read(await model.logits(tape));
    model.releaseTape(tape);
    out.push(Array.from(logits.slice((p.context.length - 1) * V, p.context.length * V)));
  }
  return out;
}

const argmax = (row: number[], skip: number[]) =>
  row.reduce((best, x, v) => (skip.includes(v) || (best >= 0 && row[best] >= x) ? best : v), -1);

test('ntp evaluation leaves the excluded tokens out of its argmax', async (t) => {
  const rows = await lastRows();
  // Exclude each position's unrestricted argmax, so every prediction has to move.
  const exclude = [...new Set(rows.map((r) => argmax(r, [])))];
  const run = async (ntpExclude: number[]) =>
    evaluatePositions(model, tokenizer, {} as PromptFormat, positions, {
      mode: 'ntp',
      eval_splits: [0.5, 1.0, 1.5],
      budget: null,
      hardCap: 4,
      batch: 4,
      ntpExclude,
    });
  const all = await run([]);
  const text = await run(exclude);
  const predicted = (r: typeof all) =>
    r.top_predictions!.flatMap(([tok, n]) => Array.from({ length: n }, () => Number(tok))).sort();
  t.deepEqual(predicted(all), rows.map((r) => argmax(r, [])).sort());
  t.deepEqual(predicted(text), rows.map((r) => argmax(r, exclude)).sort());
  t.true(predicted(text).every((tok) => !exclude.includes(tok)));
});

test('ntp_over text leaves out <think> and </think>, vocab nothing', (t) => {
  const tok = { thinkId: 7, endThinkId: 8 };
  t.deepEqual(ntpExcluded('text', tok), [7, 8]);
  t.deepEqual(ntpExcluded('vocab', tok), []);
});

test('evaluations score each prediction by both rules: the exact token, and the byte prefix as RPT', async (t) => {
  const rows = await lastRows();
  const predictions = rows.map((r) => argmax(r, []));
  // Position i's continuation spells its prediction's digits one token each (a byte prefix, not the
  // same first token), except where the prediction is one digit (then the two rules agree).
  const spelled: KeyPosition[] = positions.map((p, i) => {
    const digits = [...String(predictions[i])].map(Number);
    return { ...p, target: digits[0], continuation: [...digits, 3] };
  });
  const r = await evaluatePositions(model, tokenizer, {} as PromptFormat, spelled, {
    mode: 'ntp',
    eval_splits: [0.5, 1.0, 1.5],
    budget: null,
    hardCap: 4,
    batch: 4,
    match: 'byte-prefix',
  });
  const token = predictions.filter((v) => v < 10).length / predictions.length;
  t.is(r.match, 'byte-prefix');
  t.is(r.by_match!['byte-prefix'].avg, 1);
  t.is(r.easy.mean, 1, 'the splits follow eval.match');
  t.true(Math.abs(r.by_match!.token.avg - token) < 1e-12, `${r.by_match!.token.avg} vs ${token}`);
  t.true(
    predictions.some((v) => v >= 10),
    'at least one two-digit prediction (else the rules agree)',
  );

  const target = { targetId: 1, continuationIds: [1, 2, 3] };
  t.true(predictionCorrect('token', { ids: [1], bytes: tokenBytes(1) }, target, tokenizer));
  t.false(predictionCorrect('token', { ids: [12], bytes: tokenBytes(12) }, target, tokenizer));
  t.true(predictionCorrect('byte-prefix', { ids: [12], bytes: tokenBytes(12) }, target, tokenizer));
  t.false(predictionCorrect('byte-prefix', { ids: [13], bytes: tokenBytes(13) }, target, tokenizer));
});
