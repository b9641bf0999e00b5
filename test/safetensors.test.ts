import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import {
  readModelWeights,
  readSafetensors,
  readSafetensorsHeader,
  type TensorData,
  writeSafetensors,
} from '../shared/model/safetensors.js';
import { Rng } from '../shared/util/rng.js';

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'rmt-st-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function randomTensor(rng: Rng, shape: number[]): TensorData {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal() * 10 ** (rng.int(9) - 4);
  return { shape, data };
}

const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

interface RawEntry {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** Builds a safetensors file by hand, as a Python writer would (no padding unless asked). */
function buildFile(
  entries: RawEntry[],
  opts: { metadata?: Record<string, string>; pad?: boolean } = {},
): Buffer {
  const header: Record<string, unknown> = {};
  if (opts.metadata) header.__metadata__ = opts.metadata;
  let offset = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.bytes.length] };
    offset += e.bytes.length;
  }
  let json = JSON.stringify(header);
  if (opts.pad) json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json), ...entries.map((e) => Buffer.from(e.bytes))]);
}

const u16 = (xs: number[]): Uint8Array => new Uint8Array(new Uint16Array(xs).buffer);

test('write/read round trip is bit-identical', (t) => {
  const dir = tempDir(t);
  const rng = new Rng(7);
  const tensors = new Map<string, TensorData>([
    ['model.layers.0.mlp.up_proj.weight', randomTensor(rng, [5, 3])],
    ['a.scalar', randomTensor(rng, [])],
    ['model.embed_tokens.weight', randomTensor(rng, [7, 4])],
    ['empty', { shape: [0, 3], data: new Float32Array(0) }],
  ]);
  const special = tensors.get('model.layers.0.mlp.up_proj.weight')!.data;
  special[0] = -0;
  special[1] = 1e-42; // subnormal
  special[2] = Number.POSITIVE_INFINITY;
  const path = join(dir, 'x.safetensors');
  writeSafetensors(path, tensors);
  const back = readSafetensors(path);
  t.deepEqual([...back.keys()].sort(), [...tensors.keys()].sort());
  for (const [name, src] of tensors) {
    const got = back.get(name)!;
    t.is(got.dtype, 'F32');
    t.deepEqual(got.shape, src.shape);
    t.deepEqual(bits(got.data), bits(src.data), name);
  }
  t.false(existsSync(`${path}.tmp`));
});

test('a plain object of tensors and a subarray view are written correctly', (t) => {
  const dir = tempDir(t);
  const big = Float32Array.from({ length: 10 }, (_, i) => i + 0.5);
  const path = join(dir, 'obj.safetensors');
  writeSafetensors(path, {
    b: { shape: [2, 2], data: big.subarray(3, 7) },
    a: { shape: [1], data: big.subarray(9) },
  });
  const back = readSafetensors(path);
  t.deepEqual([...back.get('b')!.data], [3.5, 4.5, 5.5, 6.5]);
  t.deepEqual([...back.get('a')!.data], [9.5]);
});

test('header is 8-byte aligned, sorted, contiguous, with __metadata__.format = pt', (t) => {
  const dir = tempDir(t);
  const rng = new Rng(1);
  const path = join(dir, 'h.safetensors');
  // Sizes chosen so the unpadded header length is unlikely to be a multiple of 8 for every variant.
  for (const extra of ['', 'x', 'xy', 'xyz']) {
    const tensors = new Map<string, TensorData>([
      [`zeta${extra}`, randomTensor(rng, [3])],
      ['alpha', randomTensor(rng, [2, 1])],
      ['mid', randomTensor(rng, [1])],
    ]);
    writeSafetensors(path, tensors, { note: 'hello' });
    const raw = readFileSync(path);
    const n = Number(raw.readBigUInt64LE(0));
    t.is(n % 8, 0);
    t.is((8 + n) % 8, 0);
    const json = raw.subarray(8, 8 + n).toString('utf8');
    t.regex(json, /^\{.*\} *$/);
    const parsed = JSON.parse(json);
    t.deepEqual(parsed.__metadata__, { note: 'hello', format: 'pt' });
    const header = readSafetensorsHeader(path);
    t.is(header.metadata.format, 'pt');
    t.is(header.dataStart, 8 + n);
    const names = [...header.tensors.keys()];
    t.deepEqual(names, ['alpha', 'mid', `zeta${extra}`]);
    let offset = 0;
    for (const name of names) {
      const e = header.tensors.get(name)!;
      t.is(e.dtype, 'F32');
      t.deepEqual(e.data_offsets, [offset, offset + tensors.get(name)!.data.byteLength]);
      offset = e.data_offsets[1];
    }
    t.is(header.dataLength, offset);
    t.is(raw.length, 8 + n + offset);
  }
});

test('reads F16, BF16 and F64 from hand-built files', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'mixed.safetensors');
  // F16: 1, -2, 65504 (max), 2^-24 (smallest subnormal), +inf, 0x3555 ≈ 1/3, -0, 2^-14 (smallest normal)
  const f16 = u16([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x3555, 0x8000, 0x0400]);
  // BF16: 1, -3, 3.140625, -inf, 1e-40-ish subnormal (0x0001 → 2^-133)
  const bf16 = u16([0x3f80, 0xc040, 0x4049, 0xff80, 0x0001]);
  const f64 = new Uint8Array(new Float64Array([Math.PI, -1e-3, 1e300, 0.1]).buffer);
  writeFileSync(
    path,
    buildFile(
      [
        { name: 'h', dtype: 'F16', shape: [2, 4], bytes: f16 },
        { name: 'b', dtype: 'BF16', shape: [5], bytes: bf16 },
        { name: 'd', dtype: 'F64', shape: [2, 2], bytes: f64 },
      ],
      { metadata: { format: 'pt' } },
    ),
  );
  const got = readSafetensors(path);
  const h = got.get('h')!;
  t.is(h.dtype, 'F16');
  t.deepEqual(h.shape, [2, 4]);
  t.deepEqual([...h.data], [1, -2, 65504, 2 ** -24, Number.POSITIVE_INFINITY, 0.333251953125, -0, 2 ** -14]);
  t.true(Object.is(h.data[6], -0));
  const b = got.get('b')!;
  t.is(b.dtype, 'BF16');
  t.deepEqual([...b.data], [1, -3, 3.140625, Number.NEGATIVE_INFINITY, 2 ** -133]);
  const d = got.get('d')!;
  t.is(d.dtype, 'F64');
  t.deepEqual(
    [...d.data],
    [Math.fround(Math.PI), Math.fround(-1e-3), Number.POSITIVE_INFINITY, Math.fround(0.1)],
  );
});

test('F16 NaN reads as NaN; F64 data at an odd offset reads correctly', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'odd.safetensors');
  writeFileSync(
    path,
    buildFile([
      { name: 'a', dtype: 'F16', shape: [1], bytes: u16([0x7e00]) },
      { name: 'b', dtype: 'F64', shape: [1], bytes: new Uint8Array(new Float64Array([2.5]).buffer) },
    ]),
  );
  const got = readSafetensors(path);
  t.true(Number.isNaN(got.get('a')!.data[0]));
  t.deepEqual([...got.get('b')!.data], [2.5]);
});

test('malformed and truncated files give errors naming the file', (t) => {
  const dir = tempDir(t);
  const good = buildFile([{ name: 'w', dtype: 'F32', shape: [4], bytes: new Uint8Array(16) }]);
  const cases: [string, Buffer, RegExp][] = [
    ['short.safetensors', Buffer.from([1, 2, 3]), /too short/],
    ['trunc-data.safetensors', good.subarray(0, good.length - 4), /beyond the 12-byte data section/],
    ['trunc-header.safetensors', good.subarray(0, 20), /truncated file: header length/],
    [
      'bad-json.safetensors',
      (() => {
        const b = Buffer.from(good);
        b[8] = 0x5b; // '[' where '{' was
        return b;
      })(),
      /malformed header/,
    ],
    [
      'not-object.safetensors',
      (() => {
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(2n);
        return Buffer.concat([len, Buffer.from('[]')]);
      })(),
      /malformed header: expected a JSON object/,
    ],
    [
      'huge-header.safetensors',
      (() => {
        const b = Buffer.from(good);
        b.writeBigUInt64LE(1n << 40n, 0);
        return b;
      })(),
      /implausibly large/,
    ],
    [
      'wrong-size.safetensors',
      buildFile([{ name: 'w', dtype: 'F32', shape: [3], bytes: new Uint8Array(16) }]),
      /tensor w: F32 shape \[3\] needs 12 bytes but data_offsets \[0,16\] span 16/,
    ],
    [
      'bad-shape.safetensors',
      buildFile([{ name: 'w', dtype: 'F32', shape: [-1], bytes: new Uint8Array(0) }]),
      /tensor w has shape \[-1\]/,
    ],
    [
      'dtype.safetensors',
      buildFile([{ name: 'ids', dtype: 'I64', shape: [2], bytes: new Uint8Array(16) }]),
      /tensor ids has dtype I64; rmt reads only F32, F16, BF16 and F64/,
    ],
  ];
  for (const [name, bytes, re] of cases) {
    const path = join(dir, name);
    writeFileSync(path, bytes);
    const err = t.throws(() => readSafetensors(path), undefined, name);
    t.true(err!.message.startsWith(`${path}: `), err!.message);
    t.regex(err!.message, re, name);
  }
  // Offsets out of range and overlapping spans, written directly into the header.
  const hdr = (h: object): Buffer => {
    const json = JSON.stringify(h);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([len, Buffer.from(json), Buffer.alloc(16)]);
  };
  const oob = join(dir, 'oob.safetensors');
  writeFileSync(oob, hdr({ w: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }));
  t.throws(() => readSafetensors(oob), {
    message: new RegExp(`^${oob}: tensor w has data_offsets \\[8,24\\] beyond`),
  });
  const overlap = join(dir, 'overlap.safetensors');
  writeFileSync(
    overlap,
    hdr({
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    }),
  );
  t.throws(() => readSafetensors(overlap), { message: /overlap/ });
  const reversed = join(dir, 'reversed.safetensors');
  writeFileSync(reversed, hdr({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }));
  t.throws(() => readSafetensors(reversed), { message: /data_offsets \[8,4\]/ });
});

test('missing file error names the path; header-only read does not need the data', (t) => {
  const dir = tempDir(t);
  const missing = join(dir, 'nope.safetensors');
  t.throws(() => readSafetensors(missing), { message: `${missing}: file not found` });
  t.throws(() => readSafetensorsHeader(missing), { message: `${missing}: file not found` });
});

test('writeSafetensors rejects wrong lengths and leaves no temp file', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'bad.safetensors');
  t.throws(() => writeSafetensors(path, new Map([['w', { shape: [2, 3], data: new Float32Array(5) }]])), {
    message: `${path}: tensor w has 5 values but shape [2,3] needs 6`,
  });
  t.deepEqual(readdirSync(dir), []);
});

test('writeSafetensors replaces an existing file', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'w.safetensors');
  writeSafetensors(path, new Map([['a', { shape: [1], data: new Float32Array([1]) }]]));
  writeSafetensors(path, new Map([['b', { shape: [1], data: new Float32Array([2]) }]]));
  t.deepEqual([...readSafetensors(path).keys()], ['b']);
  t.deepEqual(readdirSync(dir), ['w.safetensors']);
});

test('readModelWeights reads a single file or an index with shards', (t) => {
  const dir = tempDir(t);
  const rng = new Rng(3);
  const a = randomTensor(rng, [2, 3]);
  const b = randomTensor(rng, [4]);
  const c = randomTensor(rng, [1, 2]);

  const single = join(dir, 'single');
  mkdirSync(single);
  writeSafetensors(join(single, 'model.safetensors'), new Map([['a', a]]));
  const one = readModelWeights(single);
  t.deepEqual(bits(one.get('a')!.data), bits(a.data));
  t.is(one.get('a')!.file, join(single, 'model.safetensors'));

  const sharded = join(dir, 'sharded');
  mkdirSync(sharded);
  const s1 = 'model-00001-of-00002.safetensors';
  const s2 = 'model-00002-of-00002.safetensors';
  writeSafetensors(
    join(sharded, s1),
    new Map([
      ['a', a],
      ['b', b],
    ]),
  );
  writeSafetensors(join(sharded, s2), new Map([['c', c]]));
  const index = { metadata: { total_size: 48 }, weight_map: { a: s1, b: s1, c: s2 } };
  writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify(index));
  const all = readModelWeights(sharded);
  t.deepEqual([...all.keys()].sort(), ['a', 'b', 'c']);
  t.deepEqual(bits(all.get('b')!.data), bits(b.data));
  t.is(all.get('c')!.file, join(sharded, s2));

  // The index names a tensor that its shard lacks.
  writeFileSync(
    join(sharded, 'model.safetensors.index.json'),
    JSON.stringify({ weight_map: { a: s1, b: s1, c: s2, d: s2 } }),
  );
  t.throws(() => readModelWeights(sharded), {
    message: `${join(sharded, s2)}: tensor d is listed in model.safetensors.index.json but not in this shard`,
  });
  // The index names a missing shard.
  writeFileSync(
    join(sharded, 'model.safetensors.index.json'),
    JSON.stringify({ weight_map: { a: 'gone.safetensors' } }),
  );
  t.throws(() => readModelWeights(sharded), {
    message: `${join(sharded, 'gone.safetensors')}: file not found`,
  });
  // A shard path that escapes the folder.
  writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: '../x' } }));
  t.throws(() => readModelWeights(sharded), { message: /invalid shard file/ });
  // Malformed index.
  writeFileSync(join(sharded, 'model.safetensors.index.json'), '{');
  t.throws(() => readModelWeights(sharded), {
    message: new RegExp(`^${join(sharded, 'model.safetensors.index.json')}: invalid JSON`),
  });

  const empty = join(dir, 'empty');
  mkdirSync(empty);
  t.throws(() => readModelWeights(empty), {
    message: `${join(empty, 'model.safetensors')}: file not found, and no model.safetensors.index.json either`,
  });
  t.throws(() => readModelWeights(join(dir, 'absent')), {
    message: `${join(dir, 'absent')}: model folder not found`,
  });
});
