import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { RMT_DEFAULTS } from '../shared/config/rmt-defaults.js';
import { writeGpt2Tokenizer } from '../shared/data/gpt2-bpe.js';
import { loadTokenizer, type Tokenizer } from '../shared/data/tokenizer.js';
import { BareFormat, lastBoxedBytes, makePromptFormat, RptTemplateV0 } from '../shared/rl/prompt-format.js';

const dir = mkdtempSync(join(tmpdir(), 'rmt-prompt-format-'));
let tok: Tokenizer;
let bare: BareFormat;
let rpt: RptTemplateV0;

test.before(async () => {
  writeGpt2Tokenizer(dir, { merges: 2000 });
  tok = await loadTokenizer(dir);
  bare = new BareFormat(tok, RMT_DEFAULTS.prompt);
  rpt = new RptTemplateV0(tok, RMT_DEFAULTS.prompt);
});

test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const enc = new TextEncoder();
const text = (b: Uint8Array) => new TextDecoder().decode(b);

test('bare prompt: context, <think>, then the budget marker', (t) => {
  const ctx = tok.encode('The cat sat on the');
  const ids = bare.buildPrompt(ctx, 32);
  t.deepEqual(ids, [...ctx, tok.thinkId, ...tok.encode(' budget 32:')]);
  t.is(tok.decode(ids), 'The cat sat on the<think> budget 32:');
  t.deepEqual(bare.buildPrompt(ctx, null), [...ctx, tok.thinkId]);
  t.deepEqual(bare.stopIds, [tok.eosId]);
  t.throws(() => bare.buildPrompt(ctx, 0));
  t.throws(() => bare.buildPrompt(ctx, 2.5));
});

test('bare budget marker spells the number one digit per token', (t) => {
  const ids = bare.budgetMarkerIds(128);
  t.deepEqual(
    ids.slice(-4).map((id) => tok.decode([id])),
    ['1', '2', '8', ':'],
  );
});

test('bare parse: reasoning, </think>, prediction, <eos> -> stop', (t) => {
  const reasoning = tok.encode(' a noun follows');
  const p = bare.parseResponse([...reasoning, tok.endThinkId, ...tok.encode(' mat'), tok.eosId]);
  t.is(p.finishReason, 'stop');
  t.deepEqual(p.reasoningIds, reasoning);
  t.deepEqual(p.predictionIds, tok.encode(' mat'));
  t.is(text(p.predictionBytes), ' mat');
  const zero = bare.parseResponse([tok.endThinkId, 262, tok.eosId]);
  t.is(zero.finishReason, 'stop');
  t.deepEqual(zero.reasoningIds, []);
});

test('bare parse never repairs: missing </think> or empty prediction -> no_answer', (t) => {
  const r = tok.encode(' hmm');
  const noClose = bare.parseResponse([...r, 262, tok.eosId]);
  t.is(noClose.finishReason, 'no_answer');
  t.deepEqual(noClose.reasoningIds, [...r, 262]);
  t.deepEqual(noClose.predictionIds, []);
  t.is(noClose.predictionBytes.length, 0);
  const empty = bare.parseResponse([...r, tok.endThinkId, tok.eosId]);
  t.is(empty.finishReason, 'no_answer');
  t.deepEqual(empty.reasoningIds, r);
});

test('bare parse: no <eos> means the hard cap cut it -> length, whatever it holds', (t) => {
  const r = tok.encode(' thinking hard');
  const cut = bare.parseResponse(r);
  t.is(cut.finishReason, 'length');
  t.deepEqual(cut.reasoningIds, r);
  const cutInPrediction = bare.parseResponse([...r, tok.endThinkId, 262]);
  t.is(cutInPrediction.finishReason, 'length');
  t.deepEqual(cutInPrediction.reasoningIds, r);
  t.deepEqual(cutInPrediction.predictionIds, []);
});

test('rpt-v0 prompt: RPT template v0 text with the budget sentence and the context, then <think>', (t) => {
  const ctx = tok.encode('Costs $& rose by');
  const s = rpt.promptText(ctx, 32);
  t.true(s.startsWith("Complete the given text under '### Context' by predicting the next token"));
  t.true(s.includes('do not use \\text{}). Please use exactly 32 tokens within <think></think>.\n\n'));
  t.true(s.endsWith('### Context Costs $& rose by'));
  const ids = rpt.buildPrompt(ctx, 32);
  t.deepEqual(ids, [...tok.encode(s), tok.thinkId]);
  t.false(rpt.promptText(ctx, null).includes('Please use exactly'));
  t.false(rpt.promptText(ctx, null).includes('{budget_sentence}'));
});

test('rpt-v0 parse: the prediction is the last \\boxed{...} after </think>', (t) => {
  const reasoning = tok.encode('It is about a price, so a number or " the" fits.');
  const answer = tok.encode(' First \\boxed{ a}, no: \\boxed{ the}.');
  const p = rpt.parseResponse([...reasoning, tok.endThinkId, ...answer, tok.eosId]);
  t.is(p.finishReason, 'stop');
  t.deepEqual(p.reasoningIds, reasoning);
  t.is(text(p.predictionBytes), ' the');
  t.deepEqual(p.predictionIds, tok.encode(' the'));
  // A response that opens <think> itself: the tag is not reasoning.
  const opened = rpt.parseResponse([tok.thinkId, ...reasoning, tok.endThinkId, ...answer, tok.eosId]);
  t.deepEqual(opened.reasoningIds, reasoning);
});

test('rpt-v0 parse: no box, an empty box, an unclosed box or no </think> -> no_answer; no stop -> length', (t) => {
  const r = tok.encode('hmm');
  const parse = (answer: string, end = true) =>
    rpt.parseResponse([...r, tok.endThinkId, ...tok.encode(answer), ...(end ? [tok.eosId] : [])]);
  t.is(parse('the answer is the').finishReason, 'no_answer');
  t.is(parse('\\boxed{}').finishReason, 'no_answer');
  t.is(parse('\\boxed{ the}, then \\boxed{ a').finishReason, 'no_answer');
  t.is(rpt.parseResponse([...r, ...tok.encode('\\boxed{ the}'), tok.eosId]).finishReason, 'no_answer');
  t.is(parse('\\boxed{ the}', false).finishReason, 'length');
});

test('rpt-v0 honours the stop ids it is given', (t) => {
  const endOfTurn = tok.encode('K')[0]; // stands in for an instruction model's end-of-turn token
  const f = new RptTemplateV0(tok, { ...RMT_DEFAULTS.prompt, stopIds: [endOfTurn] });
  const p = f.parseResponse([...tok.encode('x'), tok.endThinkId, ...tok.encode('\\boxed{y}'), endOfTurn]);
  t.is(p.finishReason, 'stop');
  t.is(text(p.predictionBytes), 'y');
  t.is(f.parseResponse([tok.endThinkId, ...tok.encode('\\boxed{y}'), tok.eosId]).finishReason, 'length');
});

test('lastBoxedBytes balances braces and works on bytes', (t) => {
  const box = (s: string) => {
    const b = lastBoxedBytes(enc.encode(s));
    return b === null ? null : text(b);
  };
  t.is(box('\\boxed{a{b}c} tail'), 'a{b}c');
  t.is(box('\\boxed{x} and \\boxed{café}'), 'café');
  t.is(box('no box'), null);
  t.is(box('\\boxed{open'), null);
  t.is(box('\\boxed{}'), '');
});

test('makePromptFormat picks the layout the config names', (t) => {
  t.is(makePromptFormat(tok, RMT_DEFAULTS.prompt).name, 'bare');
  t.is(makePromptFormat(tok, { ...RMT_DEFAULTS.prompt, template: 'rpt-v0' }).name, 'rpt-v0');
});
