/**
 * The safetensors file format (as written by transformers / PyTorch): an 8-byte little-endian header
 * length N, N bytes of JSON describing each tensor (`dtype`, `shape`, `data_offsets` relative to the
 * end of the header), then the raw little-endian tensor bytes. rmt keeps every tensor as a Float32Array
 * in memory: reading converts F16 / BF16 / F64 to float32, and writing always stores F32.
 */
import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { endianness } from 'node:os';
import { join, resolve, sep } from 'node:path';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64';

/** A tensor as read from a file: its dtype on disk, its shape, and its values converted to float32. */
export interface SafeTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: Float32Array;
}

/** What `writeSafetensors` needs of a tensor. */
export interface TensorData {
  shape: readonly number[];
  data: Float32Array;
}

/** One header entry. `data_offsets` are byte offsets into the data section (after the header). */
export interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export interface SafetensorsHeader {
  /** Tensor entries in header order. */
  tensors: Map<string, SafetensorsEntry>;
  /** The `__metadata__` string map, or `{}` when the file has none. */
  metadata: Record<string, string>;
  /** Absolute file offset of the data section (8 + header length). */
  dataStart: number;
  /** Bytes in the data section (file size minus `dataStart`). */
  dataLength: number;
}

export class SafetensorsError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = 'SafetensorsError';
  }
}

const BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };
/** The Rust reference implementation refuses headers above 100 MB; so do we. */
const MAX_HEADER = 100_000_000;

if (endianness() !== 'LE') {
  // Tensor bytes are copied straight into typed arrays, which use the host byte order.
  throw new Error('shared/model/safetensors.ts assumes a little-endian host');
}

const isDtype = (d: string): d is SafetensorsDtype => Object.hasOwn(BYTES, d);
const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

function readExactly(fd: number, path: string, target: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < target.length) {
    const n = readSync(fd, target, done, target.length - done, position + done);
    if (n === 0) {
      throw new SafetensorsError(
        path,
        `truncated file: ${what} needs ${target.length} bytes at offset ${position}`,
      );
    }
    done += n;
  }
}

function parseHeader(path: string, fd: number): SafetensorsHeader {
  const fileSize = fstatSync(fd).size;
  if (fileSize < 8) {
    throw new SafetensorsError(
      path,
      `truncated file: ${fileSize} bytes, too short for the 8-byte header length`,
    );
  }
  const lenBytes = new Uint8Array(8);
  readExactly(fd, path, lenBytes, 0, 'header length');
  const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER)) {
    throw new SafetensorsError(
      path,
      `header length ${headerLen} is implausibly large (not a safetensors file?)`,
    );
  }
  const n = Number(headerLen);
  if (8 + n > fileSize) {
    throw new SafetensorsError(
      path,
      `truncated file: header length ${n} exceeds the ${fileSize - 8} bytes after it`,
    );
  }
  const headerBytes = new Uint8Array(n);
  readExactly(fd, path, headerBytes, 8, 'header');
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new SafetensorsError(path, `malformed header: ${(e as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new SafetensorsError(path, 'malformed header: expected a JSON object');
  }
  const dataStart = 8 + n;
  const dataLength = fileSize - dataStart;
  const tensors = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw new SafetensorsError(path, 'malformed header: __metadata__ must be an object of strings');
      }
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') {
          throw new SafetensorsError(path, `malformed header: __metadata__.${k} must be a string`);
        }
      }
      metadata = value as Record<string, string>;
      continue;
    }
    const e = value as Partial<SafetensorsEntry> | null;
    if (e === null || typeof e !== 'object' || typeof e.dtype !== 'string') {
      throw new SafetensorsError(path, `malformed header: tensor ${name} has no dtype`);
    }
    if (!Array.isArray(e.shape) || !e.shape.every(isCount)) {
      throw new SafetensorsError(
        path,
        `malformed header: tensor ${name} has shape ${JSON.stringify(e.shape)}`,
      );
    }
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !isCount(off[0]) || !isCount(off[1]) || off[0] > off[1]) {
      throw new SafetensorsError(
        path,
        `malformed header: tensor ${name} has data_offsets ${JSON.stringify(off)}`,
      );
    }
    if (off[1] > dataLength) {
      throw new SafetensorsError(
        path,
        `tensor ${name} has data_offsets [${off[0]},${off[1]}] beyond the ${dataLength}-byte data section (truncated file?)`,
      );
    }
    if (isDtype(e.dtype) && off[1] - off[0] !== numel(e.shape) * BYTES[e.dtype]) {
      throw new SafetensorsError(
        path,
        `tensor ${name}: ${e.dtype} shape [${e.shape.join(',')}] needs ${numel(e.shape) * BYTES[e.dtype]} bytes but data_offsets [${off[0]},${off[1]}] span ${off[1] - off[0]}`,
      );
    }
    tensors.set(name, { dtype: e.dtype, shape: [...e.shape], data_offsets: [off[0], off[1]] });
  }
  // No two tensors may share bytes.
  const spans = [...tensors].filter(([, e]) => e.data_offsets[1] > e.data_offsets[0]);
  spans.sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][1].data_offsets[0] < spans[i - 1][1].data_offsets[1]) {
      throw new SafetensorsError(
        path,
        `malformed header: tensors ${spans[i - 1][0]} and ${spans[i][0]} overlap`,
      );
    }
  }
  return { tensors, metadata, dataStart, dataLength };
}

function withFile<T>(path: string, f: (fd: number) => T): T {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SafetensorsError(
      path,
      code === 'ENOENT' ? 'file not found' : `cannot open: ${(e as Error).message}`,
    );
  }
  try {
    return f(fd);
  } finally {
    closeSync(fd);
  }
}

/** Reads and validates only the header of a safetensors file (no tensor data). */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  return withFile(path, (fd) => parseHeader(path, fd));
}

let halfTable: Float32Array | undefined;

/** float16 bit pattern → float32 value, for all 65536 patterns (built once, 256 KiB). */
function halfToFloat(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) t[h] = sign * mant * 2 ** -24;
    else if (exp === 31) t[h] = mant === 0 ? sign * Infinity : Number.NaN;
    else t[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  halfTable = t;
  return t;
}

function convert(dtype: SafetensorsDtype, bytes: Uint8Array, n: number): Float32Array {
  // `bytes` always owns a fresh, offset-0 ArrayBuffer, so any typed view of it is aligned.
  switch (dtype) {
    case 'F32':
      return new Float32Array(bytes.buffer, 0, n);
    case 'F64':
      return Float32Array.from(new Float64Array(bytes.buffer, 0, n));
    case 'BF16': {
      const src = new Uint16Array(bytes.buffer, 0, n);
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
      return out;
    }
    case 'F16': {
      const src = new Uint16Array(bytes.buffer, 0, n);
      const table = halfToFloat();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[src[i]];
      return out;
    }
  }
}

/**
 * Reads every tensor of a safetensors file, converting F16, BF16 and F64 to float32. Errors name the
 * file: missing, truncated, malformed header, offsets outside the data, or an unsupported dtype.
 */
export function readSafetensors(path: string): Map<string, SafeTensor> {
  return readWith(path, (dtype, bytes, n) => convert(dtype, bytes, n));
}

/**
 * The same at full precision: F64 tensors stay float64 (reference outputs compared against a
 * float64 backend must not pass through float32), the narrower types are widened exactly.
 */
export function readSafetensorsFloat64(path: string): Map<string, { shape: number[]; data: Float64Array }> {
  return readWith(path, (dtype, bytes, n) =>
    dtype === 'F64' ? new Float64Array(bytes.buffer, 0, n) : Float64Array.from(convert(dtype, bytes, n)),
  );
}

function readWith<A>(
  path: string,
  decode: (dtype: SafetensorsDtype, bytes: Uint8Array, n: number) => A,
): Map<string, { dtype: SafetensorsDtype; shape: number[]; data: A }> {
  return withFile(path, (fd) => {
    const header = parseHeader(path, fd);
    const out = new Map<string, { dtype: SafetensorsDtype; shape: number[]; data: A }>();
    for (const [name, e] of header.tensors) {
      if (!isDtype(e.dtype)) {
        throw new SafetensorsError(
          path,
          `tensor ${name} has dtype ${e.dtype}; rmt reads only F32, F16, BF16 and F64`,
        );
      }
      const n = numel(e.shape);
      const bytes = new Uint8Array(n * BYTES[e.dtype]);
      readExactly(fd, path, bytes, header.dataStart + e.data_offsets[0], `tensor ${name}`);
      out.set(name, { dtype: e.dtype, shape: e.shape, data: decode(e.dtype, bytes, n) });
    }
    return out;
  });
}

function entries(tensors: Map<string, TensorData> | Record<string, TensorData>): [string, TensorData][] {
  return tensors instanceof Map ? [...tensors] : Object.entries(tensors);
}

/**
 * Writes float32 tensors as a safetensors file transformers can load: `__metadata__` carries
 * `format: "pt"` (plus any `metadata` given), tensors are laid out sorted by name, and the header is
 * padded with spaces so the data starts on an 8-byte boundary. The file is written to `<path>.tmp`,
 * flushed, then renamed over `path`, so readers never see a partial file.
 */
export function writeSafetensors(
  path: string,
  tensors: Map<string, TensorData> | Record<string, TensorData>,
  metadata: Record<string, string> = {},
): void {
  const list = entries(tensors).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new SafetensorsError(path, `metadata ${k} must be a string`);
  }
  const header: Record<string, unknown> = { __metadata__: { ...metadata, format: 'pt' } };
  let offset = 0;
  for (const [name, t] of list) {
    if (name === '' || name === '__metadata__')
      throw new SafetensorsError(path, `invalid tensor name "${name}"`);
    if (!t.shape.every(isCount)) {
      throw new SafetensorsError(path, `tensor ${name} has invalid shape ${JSON.stringify(t.shape)}`);
    }
    if (!(t.data instanceof Float32Array))
      throw new SafetensorsError(path, `tensor ${name}: data must be a Float32Array`);
    if (t.data.length !== numel(t.shape)) {
      throw new SafetensorsError(
        path,
        `tensor ${name} has ${t.data.length} values but shape [${t.shape.join(',')}] needs ${numel(t.shape)}`,
      );
    }
    header[name] = { dtype: 'F32', shape: [...t.shape], data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  const jsonBytes = () => Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (jsonBytes() % 8)) % 8);
  const headerBuf = Buffer.from(json, 'utf8');
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(headerBuf.length));

  const tmp = `${path}.tmp`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'w');
    writeAll(fd, lenBuf);
    writeAll(fd, headerBuf);
    for (const [, t] of list)
      writeAll(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // nothing to clean up
    }
    if (e instanceof SafetensorsError) throw e;
    throw new SafetensorsError(path, `cannot write: ${(e as Error).message}`);
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}

/** A tensor from `readModelWeights`, with the file it came from (for error messages). */
export interface WeightTensor extends SafeTensor {
  file: string;
}

export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';

/**
 * Reads the weights of a Hugging Face model folder: `model.safetensors`, or the shards listed in
 * `model.safetensors.index.json` (`weight_map`: tensor name → shard file). Every tensor the index
 * names must be in its shard, and no tensor may appear in two shards.
 */
export function readModelWeights(dir: string): Map<string, WeightTensor> {
  if (!existsSync(dir)) throw new SafetensorsError(dir, 'model folder not found');
  if (!statSync(dir).isDirectory()) throw new SafetensorsError(dir, 'not a folder');
  const single = join(dir, WEIGHTS_FILE);
  const index = join(dir, WEIGHTS_INDEX_FILE);
  const out = new Map<string, WeightTensor>();
  if (existsSync(single)) {
    for (const [name, t] of readSafetensors(single)) out.set(name, { ...t, file: single });
    return out;
  }
  if (!existsSync(index)) {
    const hint = existsSync(join(dir, 'pytorch_model.bin'))
      ? ' (pytorch_model.bin is not supported; re-save with safe_serialization=True)'
      : '';
    throw new SafetensorsError(single, `file not found, and no ${WEIGHTS_INDEX_FILE} either${hint}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(index, 'utf8'));
  } catch (e) {
    throw new SafetensorsError(index, `invalid JSON: ${(e as Error).message}`);
  }
  const map = (raw as { weight_map?: unknown } | null)?.weight_map;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) {
    throw new SafetensorsError(index, 'expected a "weight_map" object of tensor name → shard file');
  }
  const byShard = new Map<string, string[]>();
  const root = resolve(dir);
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== 'string' || file === '' || !resolve(root, file).startsWith(root + sep)) {
      throw new SafetensorsError(index, `weight_map.${name}: invalid shard file ${JSON.stringify(file)}`);
    }
    const names = byShard.get(file) ?? [];
    names.push(name);
    byShard.set(file, names);
  }
  for (const [file, names] of byShard) {
    const shardPath = join(dir, file);
    const shard = readSafetensors(shardPath);
    for (const [name, t] of shard) {
      const prev = out.get(name);
      if (prev) throw new SafetensorsError(shardPath, `tensor ${name} is also in ${prev.file}`);
      out.set(name, { ...t, file: shardPath });
    }
    for (const name of names) {
      if (!shard.has(name)) {
        throw new SafetensorsError(
          shardPath,
          `tensor ${name} is listed in ${WEIGHTS_INDEX_FILE} but not in this shard`,
        );
      }
    }
  }
  return out;
}
