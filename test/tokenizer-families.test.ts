import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { tokenBytesFor } from '../shared/data/token-bytes.js';
import { loadTokenizer, type Tokenizer } from '../shared/data/tokenizer.js';
import { buildHfTokenizer, type HfFamily, writeHfTokenizer } from './helpers/hf-tokenizers.js';

const root = mkdtempSync(join(tmpdir(), 'rmt-tok-families-'));
const FAMILIES: HfFamily[] = ['qwen', 'llama3', 'llama2', 'mistral'];
const tok = {} as Record<HfFamily, Tokenizer>;

test.before(async () => {
  for (const f of FAMILIES) {
    writeHfTokenizer(join(root, f), f);
    tok[f] = await loadTokenizer(join(root, f));
  }
});

test.after.always(() => {
  rmSync(root, { recursive: true, force: true });
});

const ROUND_TRIP = [
  'Hello world, the fox jumps over the lazy dog.',
  'naïve café résumé — déjà vu',
  '東京は日本の首都です。我们在东京。',
  'Ελληνικά κείμενα και Привет, мир!',
  'emoji 🙂🚀 and 👩‍👩‍👧 family, flags 🇯🇵',
  'a  b   c    d\t\te\n\n\nf \n g',
  'Numbers 12345, 3.14159, 2024-01-02, x=42; 1e10',
  "It's I'm we'll they've DON'T",
  'trailing spaces   ',
  '\u00a0no-break\u2009thin space',
];

test('every family round-trips multilingual text, whitespace runs, digits and emoji', (t) => {
  for (const f of FAMILIES) {
    for (const s of ROUND_TRIP) t.is(tok[f].decode(tok[f].encode(s)), s, `${f} ${JSON.stringify(s)}`);
  }
});

test('byte-level families round-trip leading spaces and added tokens inside text', (t) => {
  for (const f of ['qwen', 'llama3'] as const) {
    for (const s of ['  leading', 'x<think>y</think> z', ' <think>\n</think>\n\n']) {
      t.is(tok[f].decode(tok[f].encode(s)), s, `${f} ${JSON.stringify(s)}`);
    }
  }
});

test('token bytes concatenate to the UTF-8 of the text (SentencePiece: with the prepended space)', (t) => {
  const enc = new TextEncoder();
  for (const f of FAMILIES) {
    for (const s of ROUND_TRIP) {
      const bytes = Buffer.concat(tok[f].encode(s).map((id) => Buffer.from(tok[f].tokenBytes(id))));
      // SentencePiece models mark the start of the text as a word start (the decoder's Strip removes it).
      const expected = f === 'llama2' || f === 'mistral' ? ` ${s}` : s;
      t.deepEqual(new Uint8Array(bytes), enc.encode(expected), `${f} ${JSON.stringify(s)}`);
    }
  }
});

test('byte fallback: characters outside the vocabulary become <0xNN> tokens of one byte each', (t) => {
  for (const f of ['llama2', 'mistral'] as const) {
    const ids = tok[f].encode('🙂');
    const pieces = ids.map((id) => tok[f].tokenOf(id));
    t.deepEqual(pieces, ['▁', '<0xF0>', '<0x9F>', '<0x99>', '<0x82>'], f);
    t.deepEqual(
      ids.slice(1).map((id) => [...tok[f].tokenBytes(id)]),
      [[0xf0], [0x9f], [0x99], [0x82]],
    );
    // a piece the vocabulary has is not spelled in bytes
    t.true(tok[f].encode('the the').every((id) => !tok[f].tokenOf(id).startsWith('<0x')));
  }
});

test('SentencePiece layouts: legacy (normalizer) and current (Metaspace pre-tokenizer) agree on plain text', (t) => {
  for (const s of ROUND_TRIP) t.deepEqual(tok.mistral.encode(s), tok.llama2.encode(s), JSON.stringify(s));
  // where they differ, as in transformers: the legacy layout prepends ▁ after every added token,
  // the current one only at the start of the text, and keeps a leading space as the word mark.
  const s = 'x<think>y';
  t.is(tok.llama2.decode(tok.llama2.encode(s)), 'x<think> y');
  t.is(tok.mistral.decode(tok.mistral.encode(s)), s);
  t.is(tok.mistral.decode(tok.mistral.encode(' lead')), 'lead');
});

test('pre-tokenizer regexes: Qwen splits every digit, Llama 3 groups up to three', (t) => {
  const pieces = (f: HfFamily, s: string) => tok[f].encode(s).map((id) => tok[f].tokenOf(id));
  t.deepEqual(pieces('qwen', '123'), ['1', '2', '3']);
  t.deepEqual(pieces('llama3', '123'), ['123']);
  t.deepEqual(pieces('llama3', '1234'), ['123', '4']);
  // Qwen normalises to NFC first: a decomposed é comes back composed
  t.is(tok.qwen.decode(tok.qwen.encode('cafe\u0301')), 'café');
});

test('added tokens: special ids from tokenizer_config.json, <think> as Qwen3 ships it (added, not special)', (t) => {
  const q = tok.qwen;
  t.is(q.tokenOf(q.eosId), '<|im_end|>');
  t.is(q.bosId, null);
  t.is(q.tokenOf(q.padId as number), '<|endoftext|>');
  t.deepEqual(q.encode('<|im_start|>user\nhi<|im_end|>').slice(0, 1), [q.idOf('<|im_start|>')]);
  t.deepEqual(q.encode('<think>'), [q.thinkId]);
  t.false(q.isSpecial(q.thinkId));
  t.true(q.isSpecial(q.eosId));
  t.deepEqual([...q.tokenBytes(q.thinkId)], [...new TextEncoder().encode('<think>')]);

  const l3 = tok.llama3;
  t.is(l3.tokenOf(l3.eosId), '<|eot_id|>');
  t.is(l3.tokenOf(l3.bosId as number), '<|begin_of_text|>');
  t.is(l3.padId, null);
  // no begin-of-text is added: the post-processor only runs for add_special_tokens
  t.false(l3.encode('hello').includes(l3.bosId as number));

  const l2 = tok.llama2;
  t.deepEqual([l2.tokenOf(l2.eosId), l2.tokenOf(l2.bosId as number)], ['</s>', '<s>']);
  t.false(l2.encode('hello').includes(l2.bosId as number));
});

test('merges as "a b" strings (llama2 file) and as pairs (mistral file) load alike', (t) => {
  const a = buildHfTokenizer('llama2').tokenizerJson.model as { merges: unknown[] };
  const b = buildHfTokenizer('mistral').tokenizerJson.model as { merges: unknown[] };
  t.is(typeof a.merges[0], 'string');
  t.true(Array.isArray(b.merges[0]));
  t.is(a.merges.length, b.merges.length);
});

test('tokenizers this module cannot invert token by token are refused by field', async (t) => {
  const dir = join(root, 'bad');
  mkdirSync(dir, { recursive: true });
  const write = (json: Record<string, unknown>) =>
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  const built = buildHfTokenizer('llama2');
  const base = built.tokenizerJson;
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(built.tokenizerConfigJson));

  write({ ...base, decoder: { type: 'WordPiece', prefix: '##' } });
  await t.throwsAsync(loadTokenizer(dir), {
    message: /tokenizer\.json: decoder\.type: unsupported decoder "WordPiece"/,
  });

  write({ ...base, decoder: null });
  await t.throwsAsync(loadTokenizer(dir), { message: /tokenizer\.json: missing field "decoder"/ });

  write({ ...base, model: { ...(base.model as object), type: 'Unigram' } });
  await t.throwsAsync(loadTokenizer(dir), { message: /unsupported model\.type "Unigram"/ });

  write({ ...base, model: { ...(base.model as object), merges: [['a']] } });
  await t.throwsAsync(loadTokenizer(dir), { message: /model\.merges\[0\] must be/ });

  write({ ...base, added_tokens: [{ id: -1, content: '<x>' }] });
  await t.throwsAsync(loadTokenizer(dir), {
    message: /added_tokens\[0\] must have a non-negative integer "id"/,
  });

  write(base);
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|nope|>' }));
  await t.throwsAsync(loadTokenizer(dir), { message: /missing end-of-text token "<\|nope\|>"/ });
});

test('tokenBytesFor: Metaspace and Replace decoders give the space, ByteFallback the byte', (t) => {
  const meta = tokenBytesFor(
    { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    'd',
  );
  t.deepEqual([...meta('▁hi')], [0x20, 0x68, 0x69]);
  // without a ByteFallback step a <0xNN> token is literal text, as the decoder would print it
  t.deepEqual(Buffer.from(meta('<0x41>')).toString(), '<0x41>');
  const seq = tokenBytesFor(
    {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
      ],
    },
    'd',
  );
  t.deepEqual([...seq('<0x41>')], [0x41]);
  t.deepEqual([...seq('▁a▁b')], [0x20, 0x61, 0x20, 0x62]);
  t.throws(() => tokenBytesFor({ type: 'Replace', pattern: { Regex: '\\s' }, content: ' ' }, 'd'), {
    message: /d: only Replace with a \{"String": \.\.\.\} pattern/,
  });
  t.throws(
    () =>
      tokenBytesFor(
        {
          type: 'Sequence',
          decoders: [{ type: 'ByteLevel' }, { type: 'Replace', pattern: { String: 'a' }, content: 'b' }],
        },
        'd',
      ),
    {
      message: /ByteLevel decoder cannot be combined with Replace/,
    },
  );
});
