// One file out of a zip archive, in memory: enough of the format (stored or deflated entries, no
// zip64, no encryption) for the archives that npm packages ship, so the tests need no `unzip`.
import { crc32, inflateRawSync } from 'node:zlib';

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
// The end-of-central-directory record is 22 bytes plus a comment of at most 65535.
const EOCD_SEARCH = 22 + 0xffff;

export class ZipError extends Error {}

/** The bytes of `name` in the archive `zip` (its path `where` is only for the messages). */
export function readZipEntry(zip: Buffer, name: string, where: string, maxBytes: number): Buffer {
  const fail = (what: string): never => {
    throw new ZipError(`${where}: ${what}`);
  };
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - EOCD_SEARCH); i--) {
    if (zip.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail('no end of central directory (not a zip archive)');
  const count = zip.readUInt16LE(eocd + 10);
  const dirSize = zip.readUInt32LE(eocd + 12);
  const dirStart = zip.readUInt32LE(eocd + 16);
  if (dirStart + dirSize > eocd) fail('central directory out of range');
  let p = dirStart;
  for (let n = 0; n < count; n++) {
    if (p + 46 > eocd || zip.readUInt32LE(p) !== CENTRAL) fail(`central directory entry ${n} is damaged`);
    const flags = zip.readUInt16LE(p + 8);
    const method = zip.readUInt16LE(p + 10);
    const crc = zip.readUInt32LE(p + 16);
    const packed = zip.readUInt32LE(p + 20);
    const size = zip.readUInt32LE(p + 24);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const local = zip.readUInt32LE(p + 42);
    const entry = zip.toString('utf8', p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;
    if (entry !== name) continue;
    if (flags & 1) fail(`${name}: encrypted`);
    if (packed === 0xffffffff || size === 0xffffffff || local === 0xffffffff) fail(`${name}: zip64`);
    if (size > maxBytes) fail(`${name}: ${size} bytes, more than the ${maxBytes} expected`);
    if (local + 30 > dirStart || zip.readUInt32LE(local) !== LOCAL) fail(`${name}: local header damaged`);
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    if (start + packed > dirStart) fail(`${name}: data out of range`);
    const raw = zip.subarray(start, start + packed);
    let data: Buffer;
    if (method === 0) data = Buffer.from(raw);
    else if (method === 8) data = inflateRawSync(raw, { maxOutputLength: Math.max(1, size) });
    else return fail(`${name}: compression method ${method}`);
    if (data.length !== size) fail(`${name}: ${data.length} bytes inflated, ${size} recorded`);
    if (crc32(data) >>> 0 !== crc) fail(`${name}: CRC mismatch`);
    return data;
  }
  return fail(`no entry ${name}`);
}
