import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { BinaryWriter } from '@bufbuild/protobuf/wire';

/**
 * A TensorBoard event file written as training goes: the TFRecord framing around `tensorflow.Event`
 * protos holding scalar summaries. TensorBoard reads it live, and `wandb sync --sync-tensorboard`
 * uploads it. No maintained npm writer of the format exists without TensorFlow itself, so the few
 * fields needed are encoded here; test/tensorboard.test.ts reads them back with the protobuf
 * runtime of Python against the message definitions.
 */

// Field numbers of tensorflow/core/util/event.proto and summary.proto.
const EVENT_WALL_TIME = 1;
const EVENT_STEP = 2;
const EVENT_FILE_VERSION = 3;
const EVENT_SUMMARY = 5;
const EVENT_SESSION_LOG = 6;
const SUMMARY_VALUE = 1;
const VALUE_TAG = 1;
const VALUE_SIMPLE_VALUE = 2;
const SESSION_LOG_STATUS = 1;
const SESSION_LOG_START = 1;

/** CRC-32C (Castagnoli), the checksum of TFRecord framing. */
const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC32C_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord stores checksums masked so that a CRC of data holding CRCs stays well distributed. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord: length, masked CRC of the length, data, masked CRC of the data. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

function eventHeader(w: BinaryWriter, wallTime: number, step: number): BinaryWriter {
  w.tag(EVENT_WALL_TIME, 1).double(wallTime);
  w.tag(EVENT_STEP, 0).int64(step);
  return w;
}

export function fileVersionEvent(wallTime: number): Uint8Array {
  const w = eventHeader(new BinaryWriter(), wallTime, 0);
  return w.tag(EVENT_FILE_VERSION, 2).string('brain.Event:2').finish();
}

/** Scalars of one step; non-finite values are left out (TensorBoard would plot them as gaps anyway). */
export function scalarsEvent(wallTime: number, step: number, scalars: Record<string, number>): Uint8Array {
  const w = eventHeader(new BinaryWriter(), wallTime, step);
  w.tag(EVENT_SUMMARY, 2).fork();
  for (const [tag, value] of Object.entries(scalars)) {
    if (tag === 'step' || !Number.isFinite(value)) continue;
    w.tag(SUMMARY_VALUE, 2).fork();
    w.tag(VALUE_TAG, 2).string(tag);
    w.tag(VALUE_SIMPLE_VALUE, 5).float(value);
    w.join();
  }
  w.join();
  return w.finish();
}

/**
 * A session start at `step`: TensorBoard drops the events of this run's earlier files at `step` and
 * after, so a resumed run shows one curve, as metrics.jsonl keeps only the rows up to the checkpoint.
 */
export function sessionStartEvent(wallTime: number, step: number): Uint8Array {
  const w = eventHeader(new BinaryWriter(), wallTime, step);
  w.tag(EVENT_SESSION_LOG, 2).fork();
  w.tag(SESSION_LOG_STATUS, 0).int32(SESSION_LOG_START);
  w.join();
  return w.finish();
}

/** Appends to a new `events.out.tfevents.*` file in `dir`; each record is written through at once. */
export class TensorBoardWriter {
  readonly path!: string;
  private fd: number | null = null;

  constructor(dir: string, opts: { resumeStep?: number; now?: () => number } = {}) {
    this.now = opts.now ?? (() => Date.now() / 1000);
    mkdirSync(dir, { recursive: true });
    const t = this.now();
    // A new file per session, even for two started in the same second by one process (a resume).
    const base = `events.out.tfevents.${Math.floor(t)}.${hostname()}.${process.pid}`;
    let n = 0;
    for (;;) {
      const path = join(dir, `${base}.${n}`);
      try {
        this.fd = openSync(path, 'wx');
        this.path = path;
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || n > 1000) throw e;
        n++;
      }
    }
    this.record(fileVersionEvent(t));
    // Steps up to the checkpoint's were logged before and stay; later ones are logged again.
    if (opts.resumeStep !== undefined) this.record(sessionStartEvent(t, opts.resumeStep + 1));
  }

  private readonly now: () => number;

  private record(event: Uint8Array): void {
    if (this.fd === null) throw new Error(`TensorBoard writer for ${this.path} is closed`);
    writeSync(this.fd, tfRecord(event));
  }

  scalars(step: number, values: Record<string, number>): void {
    this.record(scalarsEvent(this.now(), step, values));
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
