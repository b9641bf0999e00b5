import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { parquetWriteFile } from 'hyparquet-writer';
import { checkDataSettings, configTextForCoordinator, parseSources } from '../shared/config/data-sources.js';
import { RunConfigError } from '../shared/config/merge.js';
import { loadTrainConfig, parseTrainConfig } from '../shared/config/train-config.js';
import { writeGpt2Tokenizer } from '../shared/data/gpt2-bpe.js';
import { jsonlDocuments } from '../shared/data/jsonl-source.js';
import { parquetDocuments } from '../shared/data/parquet-source.js';
import { resolveInside, type SourceDocument } from '../shared/data/source-documents.js';
import {
  isHeldOut,
  readSourceStreams,
  type SourceStreamOptions,
  sourceStreams,
} from '../shared/data/source-streams.js';
import { textDocuments } from '../shared/data/text-source.js';
import { loadTokenizer, type Tokenizer } from '../shared/data/tokenizer.js';

const limits = { maxDocumentBytes: 1 << 20 };
const tmp = () => mkdtempSync(join(tmpdir(), 'rmt-sources-'));

async function all(it: AsyncIterable<SourceDocument>): Promise<SourceDocument[]> {
  const out: SourceDocument[] = [];
  for await (const d of it) out.push(d);
  return out;
}

let tokP: Promise<Tokenizer> | undefined;
const tokenizer = () => {
  tokP ??= (async () => {
    const dir = join(tmp(), 'tok');
    writeGpt2Tokenizer(dir, { merges: 200 });
    return loadTokenizer(dir);
  })();
  return tokP;
};

const lines = (n: number, from = 0) =>
  Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      text: `Document number ${i + from}: the sum of ${i} and 2 is ${i + 2}.`,
      id: `d${i + from}`,
    }),
  ).join('\n');

test('config: sources are validated, defaults filled, format implied by the extension', (t) => {
  const s = parseSources(
    [
      { path: 'a.jsonl' },
      { path: 'b/', weight: 2 },
      { path: 'c.parquet', field: 'content' },
      { corpus: 'math' },
    ],
    'x.yaml',
    'data.sources',
  );
  t.deepEqual(
    s.map((x) => [x.format, x.field, x.weight, x.corpus]),
    [
      ['jsonl', 'text', 1, null],
      ['text', 'text', 2, null],
      ['parquet', 'content', 1, null],
      [null, 'text', 1, 'math'],
    ],
  );
  const bad = (entry: unknown, msg: RegExp) =>
    t.throws(() => parseSources([entry], 'x.yaml', 'data.sources'), {
      instanceOf: RunConfigError,
      message: msg,
    });
  bad({ path: 'a.csv', format: 'csv' }, /data\.sources\[0\]\.format: unknown format "csv"/);
  bad({ path: 'a.csv' }, /data\.sources\[0\]\.format: not given/);
  bad({ path: 'a.jsonl', corpus: 'math' }, /exactly one of path/);
  bad({ path: 'a.jsonl', weight: 0 }, /weight: must be a positive number/);
  bad({ path: 'a.jsonl', colour: 1 }, /data\.sources\[0\]\.colour: unknown setting/);
  t.throws(() => parseTrainConfig({ data: { max_context: 0 } }, 'x.yaml'), { message: /data\.max_context/ });
  t.throws(() => parseTrainConfig({ data: { eval_sources: [{ path: 'e.jsonl' }] } }, 'x.yaml'), {
    message: /data\.eval_sources: needs data\.sources/,
  });
  // Services receive the resolved config as JSON and parse it again: the same config comes out.
  const withSources = parseTrainConfig(
    { data: { sources: [{ path: 'a.jsonl' }, { corpus: 'math' }] } },
    'x.yaml',
  );
  t.deepEqual(parseTrainConfig(JSON.parse(JSON.stringify(withSources)), 'run r'), withSources);
  const d = parseTrainConfig({}, 'x.yaml').data;
  checkDataSettings(d, 'x.yaml');
  t.deepEqual([d.sources, d.max_context], [[], null]);
});

test('config: the data root is the config file folder; paths may not leave it', (t) => {
  const dir = tmp();
  mkdirSync(join(dir, 'cfg'));
  writeFileSync(join(dir, 'cfg', 'run.yaml'), 'data:\n  sources:\n    - { path: corpus/train.jsonl }\n');
  const cfg = loadTrainConfig(join(dir, 'cfg', 'run.yaml'));
  t.is(cfg.data.root, join(dir, 'cfg'));
  mkdirSync(join(dir, 'cfg', 'corpus'));
  writeFileSync(join(dir, 'cfg', 'corpus', 'train.jsonl'), lines(2));
  t.is(
    resolveInside(cfg.data.root as string, 'corpus/train.jsonl', 'f'),
    join(dir, 'cfg', 'corpus', 'train.jsonl'),
  );
  writeFileSync(join(dir, 'secret.jsonl'), lines(1));
  t.throws(() => resolveInside(join(dir, 'cfg'), '../secret.jsonl', 'data.sources[0].path'), {
    message: /data\.sources\[0\]\.path: path "\.\.\/secret\.jsonl" leaves the data root/,
  });
  symlinkSync(join(dir, 'secret.jsonl'), join(dir, 'cfg', 'link.jsonl'));
  t.throws(() => resolveInside(join(dir, 'cfg'), 'link.jsonl', 'data.sources[0].path'), {
    message: /through a link/,
  });
  // rmt up hands the coordinator the config with its data root made absolute.
  const sent = JSON.parse(configTextForCoordinator(join(dir, 'cfg', 'run.yaml')));
  t.is(sent.data.root, join(dir, 'cfg'));
  t.throws(() => resolveInside(join(dir, 'cfg'), 'nope.jsonl', 'data.sources[0].path'), {
    message: /nope\.jsonl: file not found/,
  });
});

test('jsonl: one document per non-blank line, with the id field as identity', async (t) => {
  const f = join(tmp(), 'a.jsonl');
  writeFileSync(f, `${lines(3)}\n\n\r\n`);
  const docs = await all(jsonlDocuments(f, 'text', 'id', limits));
  t.deepEqual(
    docs.map((d) => d.identity),
    ['d0', 'd1', 'd2'],
  );
  t.true(docs[2].text.startsWith('Document number 2'));
  t.deepEqual(
    (await all(jsonlDocuments(f, 'text', null, limits))).map((d) => d.identity),
    docs.map((d) => d.text),
  );
});

test('jsonl: bad input names the file, line and field and never echoes the text', async (t) => {
  const dir = tmp();
  const cases: [string, string | Uint8Array, RegExp][] = [
    [
      'missing-field.jsonl',
      `${lines(1)}\n{"body": "x"}\n`,
      /missing-field\.jsonl:2: field "text" is missing/,
    ],
    [
      'number.jsonl',
      `${lines(2)}\n{"text": 42}\n`,
      /number\.jsonl:3: field "text" is a number, expected a string/,
    ],
    ['null.jsonl', '{"text": null}\n', /null\.jsonl:1: field "text" is missing/],
    ['array.jsonl', '["secret words"]\n', /array\.jsonl:1: expected a JSON object/],
    ['json.jsonl', `${lines(1)}\n{"text": "secret words"\n`, /json\.jsonl:2: invalid JSON/],
    [
      'utf8.jsonl',
      Buffer.concat([
        Buffer.from(`${lines(1)}\n{"text": "ab`),
        Buffer.from([0xc3, 0x28]),
        Buffer.from('"}\n'),
      ]),
      /utf8\.jsonl:2: invalid UTF-8/,
    ],
    [
      'long.jsonl',
      `{"text": "${'x'.repeat(2000)}"}\n`,
      /long\.jsonl:1: line longer than data\.max_document_bytes/,
    ],
  ];
  for (const [name, body, msg] of cases) {
    writeFileSync(join(dir, name), body);
    const err = await t.throwsAsync(
      all(jsonlDocuments(join(dir, name), 'text', null, { maxDocumentBytes: 1000 })),
      {
        message: msg,
      },
    );
    t.false(err?.message.includes('secret'), name);
  }
  await t.throwsAsync(all(jsonlDocuments(join(dir, 'absent.jsonl'), 'text', null, limits)), {
    message: /absent\.jsonl: file not found/,
  });
});

test('jsonl: lines that straddle read chunks are reassembled', async (t) => {
  const f = join(tmp(), 'big.jsonl');
  const rows = Array.from({ length: 300 }, (_, i) =>
    JSON.stringify({ text: `${i} ${'é'.repeat(3000 + i)}` }),
  );
  writeFileSync(f, rows.join('\n'));
  const docs = await all(jsonlDocuments(f, 'text', null, limits));
  t.is(docs.length, 300);
  t.true(docs.every((d, i) => d.text === JSON.parse(rows[i]).text));
});

test('text: every .txt/.md under a folder, sorted by path; invalid UTF-8 names the line', async (t) => {
  const root = tmp();
  const dir = join(root, 'corpus');
  mkdirSync(join(dir, 'b'), { recursive: true });
  writeFileSync(join(dir, 'z.txt'), 'zed');
  writeFileSync(join(dir, 'b', 'a.md'), '# a');
  writeFileSync(join(dir, 'a.txt'), 'first');
  writeFileSync(join(dir, 'notes.json'), '{}');
  writeFileSync(join(dir, '.hidden.txt'), 'hidden');
  t.deepEqual(
    (await all(textDocuments(dir, root, limits))).map((d) => d.text),
    ['first', '# a', 'zed'],
  );
  writeFileSync(join(dir, 'bad.txt'), Buffer.concat([Buffer.from('ok\nok\n'), Buffer.from([0xff, 0x41])]));
  await t.throwsAsync(all(textDocuments(dir, root, limits)), { message: /bad\.txt:3: invalid UTF-8/ });
  const empty = join(root, 'empty');
  mkdirSync(empty);
  await t.throwsAsync(all(textDocuments(empty, root, limits)), {
    message: /empty: no \*\.txt or \*\.md files/,
  });
});

test('parquet: rows read by row group; a missing column, a null and a non-string are named', async (t) => {
  const dir = tmp();
  const f = join(dir, 'train-00000-of-00001.parquet');
  const texts = Array.from({ length: 25 }, (_, i) => `row ${i} text`);
  parquetWriteFile({
    filename: f,
    columnData: [
      { name: 'text', data: texts, type: 'STRING' },
      { name: 'n', data: texts.map((_, i) => i), type: 'INT32' },
    ],
    rowGroupSize: 10,
  });
  const docs = await all(parquetDocuments(f, 'text', 'n', limits));
  t.deepEqual(
    docs.map((d) => d.text),
    texts,
  );
  t.deepEqual(
    docs.map((d) => d.identity),
    texts.map((_, i) => String(i)),
  );
  await t.throwsAsync(all(parquetDocuments(f, 'content', null, limits)), {
    message: /no column "content" \(columns: text, n\)/,
  });
  await t.throwsAsync(all(parquetDocuments(f, 'n', null, limits)), {
    message: /row 0: field "n" is a number, expected a string/,
  });
  const g = join(dir, 'nulls.parquet');
  parquetWriteFile({
    filename: g,
    columnData: [{ name: 'text', data: ['a', 'b', null, 'd'], type: 'STRING' }],
    rowGroupSize: 2,
  });
  await t.throwsAsync(all(parquetDocuments(g, 'text', null, limits)), {
    message: /nulls\.parquet: row 2: field "text" is missing/,
  });
  const h = join(dir, 'utf8.parquet');
  parquetWriteFile({
    filename: h,
    columnData: [
      { name: 'text', data: [new Uint8Array([0x61]), new Uint8Array([0xc3, 0x28])], type: 'BYTE_ARRAY' },
    ],
  });
  await t.throwsAsync(all(parquetDocuments(h, 'text', null, limits)), {
    message: /utf8\.parquet: row 1: field "text" is not valid UTF-8/,
  });
  writeFileSync(join(dir, 'fake.parquet'), 'not parquet at all');
  await t.throwsAsync(all(parquetDocuments(join(dir, 'fake.parquet'), 'text', null, limits)), {
    message: /fake\.parquet: not a readable Parquet file/,
  });
  await t.throwsAsync(all(parquetDocuments(join(dir, 'absent.parquet'), 'text', null, limits)), {
    message: /absent\.parquet: file not found/,
  });
});

function streamOptions(root: string, extra: Partial<SourceStreamOptions> = {}): SourceStreamOptions {
  return {
    sources: parseSources([{ path: 'a.jsonl', id_field: 'id' }], 'test', 'data.sources'),
    eval_sources: [],
    root,
    held_out_fraction: 0.2,
    seed: 7,
    stop_after: null,
    max_document_bytes: 1 << 20,
    max_chars_per_corpus: 0,
    math: {},
    ...extra,
  };
}

test('streams: the held-out split follows each document, not its position', async (t) => {
  const tok = await tokenizer();
  const root = tmp();
  const rows = lines(60).split('\n');
  writeFileSync(join(root, 'a.jsonl'), rows.join('\n'));
  const s1 = readSourceStreams(await sourceStreams(streamOptions(root), tok, join(root, 'c1')), 0, 0);
  writeFileSync(join(root, 'a.jsonl'), rows.slice().reverse().join('\n'));
  const s2 = readSourceStreams(await sourceStreams(streamOptions(root), tok, join(root, 'c2')), 0, 0);
  const docsOf = (ids: Int32Array) =>
    tok.decode(Array.from(ids)).split('<|endoftext|>').filter(Boolean).sort();
  t.deepEqual(docsOf(s1.heldOut), docsOf(s2.heldOut));
  t.deepEqual(docsOf(s1.train), docsOf(s2.train));
  const expected = rows.filter((r) => isHeldOut(JSON.parse(r).id, 7, 0.2)).map((r) => JSON.parse(r).text);
  t.deepEqual(docsOf(s1.heldOut), expected.sort());
  t.true(expected.length > 3 && expected.length < 25, `${expected.length} held out`);
});

test('streams: sources mix by weight, stop once both streams hold enough, and are cached by content', async (t) => {
  const tok = await tokenizer();
  const root = tmp();
  writeFileSync(join(root, 'a.jsonl'), lines(200));
  mkdirSync(join(root, 'b'));
  for (let i = 0; i < 200; i++)
    writeFileSync(join(root, 'b', `${String(i).padStart(3, '0')}.txt`), `Plain file ${i} about whales.`);
  const o = streamOptions(root, {
    sources: parseSources(
      [
        { path: 'a.jsonl', weight: 1 },
        { path: 'b/', weight: 3 },
      ],
      'test',
      'data.sources',
    ),
    stop_after: { train: 1500, held_out: 200 },
  });
  const logs: string[] = [];
  const files = await sourceStreams(o, tok, join(root, 'cache'), (l) => logs.push(l));
  t.true(files.train.tokens >= 1500 && files.train.tokens < 1600, `${files.train.tokens}`);
  t.true(files.held_out.tokens >= 200 && files.held_out.tokens < 600, `${files.held_out.tokens}`);
  const s = readSourceStreams(files, 0, 0);
  // Tokens per source over both sides (the mix counts every document it reads) come in about 1:3.
  const share = { a: 0, b: 0 };
  for (const stream of [s.train, s.heldOut]) {
    let doc: number[] = [];
    for (const id of stream) {
      doc.push(id);
      if (id !== tok.eosId) continue;
      share[tok.decode(doc).startsWith('Document number') ? 'a' : 'b'] += doc.length;
      doc = [];
    }
  }
  t.true(share.b / share.a > 2.6 && share.b / share.a < 3.4, JSON.stringify(share));
  // Cached: same files, no log; a changed source is read again.
  const again: string[] = [];
  t.deepEqual(await sourceStreams(o, tok, join(root, 'cache'), (l) => again.push(l)), files);
  t.is(again.length, 0);
  writeFileSync(join(root, 'b', '000.txt'), 'Changed file.');
  const changed = await sourceStreams(o, tok, join(root, 'cache'));
  t.not(changed.train.sha256, files.train.sha256);
  t.is(readSourceStreams(changed, 10, 0).train.length, 10);
  t.true(readFileSync(join(root, 'cache', 'meta.json'), 'utf8').includes(changed.train.sha256));
});

test('streams: an empty corpus, an empty held-out side and eval_sources', async (t) => {
  const tok = await tokenizer();
  const root = tmp();
  writeFileSync(join(root, 'empty.jsonl'), '\n\n');
  await t.throwsAsync(
    sourceStreams(
      streamOptions(root, { sources: parseSources([{ path: 'empty.jsonl' }], 't', 'data.sources') }),
      tok,
      join(root, 'c0'),
    ),
    { message: /data\.sources\[0\] \(jsonl empty\.jsonl\): no documents/ },
  );
  writeFileSync(join(root, 'a.jsonl'), lines(2));
  await t.throwsAsync(sourceStreams(streamOptions(root, { held_out_fraction: 0 }), tok, join(root, 'c1')), {
    message: /no document fell in the held-out split/,
  });
  writeFileSync(join(root, 'test.jsonl'), lines(3, 100));
  const files = await sourceStreams(
    streamOptions(root, { eval_sources: parseSources([{ path: 'test.jsonl' }], 't', 'data.eval_sources') }),
    tok,
    join(root, 'c2'),
  );
  const s = readSourceStreams(files, 0, 0);
  t.is(tok.decode(Array.from(s.train)).split('<|endoftext|>').filter(Boolean).length, 2);
  t.regex(tok.decode(Array.from(s.heldOut)), /^Document number 100/);
});

test('streams: built-in corpora are named sources beside files', async (t) => {
  const tok = await tokenizer();
  const root = tmp();
  writeFileSync(join(root, 'a.jsonl'), lines(20));
  const o = streamOptions(root, {
    sources: parseSources([{ path: 'a.jsonl' }, { corpus: 'math' }], 't', 'data.sources'),
    math: { documents: 10 },
  });
  const s = readSourceStreams(await sourceStreams(o, tok, join(root, 'c')), 0, 0);
  t.true(
    s.trainAnswers.some((x) => x === 1),
    'math answer digits are marked',
  );
  t.true(s.heldOutAnswers.some((x) => x === 1));
  t.regex(tok.decode(Array.from(s.train)), /Document number/);
});

test('streams: a folder of Parquet shards or JSONL files is read file by file in path order', async (t) => {
  const tok = await tokenizer();
  const root = tmp();
  mkdirSync(join(root, 'data'));
  for (const shard of [1, 0]) {
    parquetWriteFile({
      filename: join(root, 'data', `train-0000${shard}-of-00002.parquet`),
      columnData: [
        { name: 'text', data: [`Shard ${shard} first.`, `Shard ${shard} second.`], type: 'STRING' },
      ],
    });
  }
  writeFileSync(join(root, 'data', 'README.md'), 'not a shard');
  const o = streamOptions(root, {
    sources: parseSources([{ path: 'data/', format: 'parquet' }], 't', 'data.sources'),
    held_out_fraction: 0.5,
  });
  const s = readSourceStreams(await sourceStreams(o, tok, join(root, 'c')), 0, 0);
  const order = (ids: Int32Array) => tok.decode(Array.from(ids)).split('<|endoftext|>').filter(Boolean);
  const all4 = [...order(s.train), ...order(s.heldOut)];
  t.is(all4.length, 4);
  const trainOrder = order(s.train);
  t.deepEqual(
    trainOrder,
    ['Shard 0 first.', 'Shard 0 second.', 'Shard 1 first.', 'Shard 1 second.'].filter((x) =>
      trainOrder.includes(x),
    ),
  );
  mkdirSync(join(root, 'lines'));
  writeFileSync(join(root, 'lines', 'b.jsonl'), lines(3, 10));
  writeFileSync(join(root, 'lines', 'a.jsonl'), lines(3));
  const j = await sourceStreams(
    streamOptions(root, {
      sources: parseSources([{ path: 'lines/', format: 'jsonl' }], 't', 'data.sources'),
      held_out_fraction: 0.5,
    }),
    tok,
    join(root, 'c2'),
  );
  const js = readSourceStreams(j, 0, 0);
  t.is([...order(js.train), ...order(js.heldOut)].length, 6);
});
