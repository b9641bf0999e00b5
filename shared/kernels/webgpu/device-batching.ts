/**
 * Host-cost reduction around the Dawn device that gpu.js's webgpu kernels run on.
 *
 * At the sizes rmt trains, a learner step on a GPU is bound by per-kernel host work, not by
 * arithmetic (docs/gpu.md). gpu.js 2.24 spends it in two places we can reach without forking it:
 * - every immutable pipeline call creates a fresh output buffer (and Dawn lazily zero-fills each new
 *   buffer on first use with one more GPU command), and destroys the previous one;
 * - every call submits its own command buffer (one `vkQueueSubmit` each on Vulkan).
 *
 * So we wrap the device gpu.js uses (own properties over Dawn's methods; nothing global):
 * - **buffer pool**: a destroyed non-mappable buffer goes back to a free list keyed by (usage, size)
 *   and the next `createBuffer` of that key takes it. Safe because one queue runs everything in
 *   order: a later dispatch writing a recycled buffer runs after every earlier command reading it.
 * - **submit batching**: command buffers are held and submitted together, at most `maxBatch` at a
 *   time, and before anything that must see their effects or would overtake them:
 *   `queue.writeBuffer` to a buffer a held command uses (writeBuffer runs at call time on the queue
 *   timeline, ahead of held work: gpu.js rewrites each kernel's uniform parameters on every call),
 *   `mapAsync`, `onSubmittedWorkDone`, and a real `destroy` of a buffer a held command uses. A macrotask
 *   flush is scheduled whenever work is held, so nothing waits on an idle event loop.
 * - **staged writes** (with batching): a `writeBuffer` that would overtake held work is instead written
 *   into a fresh slice of an upload arena (which nothing held reads) and copied to its target by a
 *   command of its own, held in order behind the work before it, so it needs no submit. The arena's
 *   slices are reused after the next submit, which queue order makes safe.
 *
 * Which buffers a held command uses is tracked through `createBindGroup` (its entries),
 * `setBindGroup` on compute passes and `copyBufferToBuffer`: everything gpu.js and the backend record.
 */

import { COPY_DST, COPY_SRC, MAP_READ, MAP_WRITE } from './constants.js';

export interface DeviceBatchingOptions {
  /** Recycle destroyed storage/uniform buffers instead of creating new ones. */
  bufferPool: boolean;
  /** Hold command buffers and submit them together. */
  batchSubmits: boolean;
  /** Most command buffers held before a submit (keeps the GPU fed while the host records). */
  maxBatch: number;
  /** Bytes the free lists may hold; beyond it destroyed buffers are really destroyed. */
  poolBytes: number;
  /** Turn writes that would overtake held work into held copies (else they submit what is held). */
  stageWrites: boolean;
  /** Bytes of the upload arena staged writes go through; a full arena submits what is held. */
  arenaBytes: number;
}

export const DEFAULT_DEVICE_BATCHING: DeviceBatchingOptions = {
  bufferPool: true,
  batchSubmits: true,
  maxBatch: 64,
  poolBytes: 512 * 1024 * 1024,
  stageWrites: true,
  arenaBytes: 4 * 1024 * 1024,
};

export interface DeviceBatchingStats {
  /** Command buffers given to queue.submit by callers. */
  commandBuffers: number;
  /** queue.submit calls that reached Dawn. */
  submits: number;
  /** Writes turned into held copies. */
  stagedWrites: number;
  buffersCreated: number;
  buffersReused: number;
  /** Bytes in the free lists now. */
  pooledBytes: number;
}

interface Buffer {
  size: number;
  usage: number;
  destroy(): void;
  mapAsync(...args: [mode: number, offset?: number, size?: number]): Promise<void>;
}
interface BufferDescriptor {
  size: number;
  usage: number;
  mappedAtCreation?: boolean;
}
interface BindGroupEntry {
  resource: { buffer?: Buffer } | unknown;
}
interface Pass {
  setBindGroup(index: number, group: object, ...rest: unknown[]): void;
}
interface Encoder {
  beginComputePass(desc?: unknown): Pass;
  copyBufferToBuffer(src: Buffer, srcOffset: number, dst: Buffer, dstOffset: number, size: number): void;
  finish(desc?: unknown): object;
}
interface Queue {
  submit(commands: object[]): void;
  writeBuffer(buffer: Buffer, ...rest: unknown[]): void;
  onSubmittedWorkDone(): Promise<void>;
}
export interface BatchableDevice {
  queue: Queue;
  createBuffer(desc: BufferDescriptor): Buffer;
  createBindGroup(desc: { entries: BindGroupEntry[] }): object;
  createCommandEncoder(desc?: unknown): Encoder;
}

const installed = new WeakMap<object, DeviceBatching>();

export class DeviceBatching {
  private options: DeviceBatchingOptions;
  private readonly held: object[] = [];
  /** Buffers that held command buffers use. */
  private readonly heldBuffers = new Set<Buffer>();
  private readonly groupBuffers = new WeakMap<object, Buffer[]>();
  private readonly commandBuffers = new WeakMap<object, Set<Buffer>>();
  private readonly free = new Map<string, Buffer[]>();
  private readonly isFree = new WeakSet<Buffer>();
  /** Dawn's own destroy of every buffer made through the wrapper (the buffer's `destroy` is ours). */
  private readonly destroyers = new WeakMap<Buffer, () => void>();
  private flushScheduled = false;
  private readonly counts = {
    commandBuffers: 0,
    submits: 0,
    stagedWrites: 0,
    buffersCreated: 0,
    buffersReused: 0,
    pooledBytes: 0,
  };
  private arena: Buffer | null = null;
  private arenaOffset = 0;
  private readonly realCreateBuffer: (desc: BufferDescriptor) => Buffer;
  private readonly realCreateEncoder: (desc?: unknown) => Encoder;
  private readonly realSubmit: (commands: object[]) => void;
  private readonly realWriteBuffer: (buffer: Buffer, ...rest: unknown[]) => void;

  private constructor(device: BatchableDevice, options: DeviceBatchingOptions) {
    this.options = { ...options };
    const queue = device.queue;
    this.realSubmit = queue.submit.bind(queue);
    this.realWriteBuffer = queue.writeBuffer.bind(queue);
    const realDone = queue.onSubmittedWorkDone.bind(queue);
    const realCreateBuffer = device.createBuffer.bind(device);
    const realCreateBindGroup = device.createBindGroup.bind(device);
    const realCreateEncoder = device.createCommandEncoder.bind(device);
    this.realCreateBuffer = realCreateBuffer;
    this.realCreateEncoder = realCreateEncoder;

    queue.submit = (commands) => this.submit(commands);
    queue.writeBuffer = (buffer, ...rest) => {
      if (this.heldBuffers.has(buffer)) {
        if (this.options.stageWrites && rest.length === 2 && this.stageWrite(buffer, rest[0], rest[1]))
          return;
        this.flush();
      }
      this.realWriteBuffer(buffer, ...rest);
    };
    queue.onSubmittedWorkDone = () => {
      this.flush();
      return realDone();
    };
    device.createBuffer = (desc) => this.createBuffer(desc, realCreateBuffer);
    device.createBindGroup = (desc) => {
      const group = realCreateBindGroup(desc);
      const buffers: Buffer[] = [];
      for (const e of desc.entries) {
        const b = (e.resource as { buffer?: Buffer }).buffer;
        if (b) buffers.push(b);
      }
      this.groupBuffers.set(group, buffers);
      return group;
    };
    device.createCommandEncoder = (desc) => this.trackEncoder(realCreateEncoder(desc));
  }

  /** `writeBuffer(target, offset, data)` as a held copy through the arena; false where it cannot. */
  private stageWrite(target: Buffer, offset: unknown, data: unknown): boolean {
    if (typeof offset !== 'number' || offset % 4 !== 0) return false;
    const bytes =
      data instanceof ArrayBuffer ? data.byteLength : ArrayBuffer.isView(data) ? data.byteLength : -1;
    if (bytes <= 0 || bytes % 4 !== 0 || bytes > this.options.arenaBytes) return false;
    if (!this.arena || this.arena.size !== this.options.arenaBytes) {
      if (this.arena) this.realDestroy(this.arena); // flushes: held copies read it
      this.arenaOffset = 0;
      this.arena = this.realCreateBuffer({ size: this.options.arenaBytes, usage: COPY_SRC | COPY_DST });
      this.wrapBuffer(this.arena, false);
    }
    if (this.arenaOffset + bytes > this.arena.size) this.flush();
    // the slice is read only by the copy below, held behind everything before it
    this.realWriteBuffer(this.arena, this.arenaOffset, data);
    const encoder = this.realCreateEncoder();
    encoder.copyBufferToBuffer(this.arena, this.arenaOffset, target, offset, bytes);
    this.arenaOffset += bytes;
    this.counts.stagedWrites++;
    this.hold(encoder.finish(), [this.arena, target]);
    return true;
  }

  /** The batching of `device`, installed on first use; later calls update its options. */
  static install(device: BatchableDevice, options: Partial<DeviceBatchingOptions> = {}): DeviceBatching {
    const full = { ...DEFAULT_DEVICE_BATCHING, ...options };
    let b = installed.get(device);
    if (!b) {
      b = new DeviceBatching(device, full);
      installed.set(device, b);
    } else {
      b.configure(full);
    }
    return b;
  }

  /** Changes the options; held work is submitted and, with the pool off, the free lists emptied. */
  configure(options: DeviceBatchingOptions): void {
    this.flush();
    this.options = { ...options };
    if (!options.bufferPool) this.trim();
  }

  get settings(): Readonly<DeviceBatchingOptions> {
    return this.options;
  }

  stats(): DeviceBatchingStats {
    return { ...this.counts };
  }

  /** Submits every held command buffer. */
  flush(): void {
    if (this.held.length === 0) return;
    const commands = this.held.splice(0);
    this.heldBuffers.clear();
    this.arenaOffset = 0;
    this.counts.submits++;
    this.realSubmit(commands);
  }

  /** Really destroys the pooled buffers. */
  trim(): void {
    for (const list of this.free.values()) {
      for (const b of list) {
        this.isFree.delete(b);
        this.realDestroy(b);
      }
    }
    this.free.clear();
    this.counts.pooledBytes = 0;
  }

  private submit(commands: object[]): void {
    this.counts.commandBuffers += commands.length;
    if (!this.options.batchSubmits) {
      this.flush();
      this.counts.submits++;
      this.realSubmit(commands);
      return;
    }
    for (const c of commands) this.hold(c, this.commandBuffers.get(c));
  }

  private hold(commands: object, used: Iterable<Buffer> | undefined): void {
    this.held.push(commands);
    if (used) for (const b of used) this.heldBuffers.add(b);
    if (this.held.length >= this.options.maxBatch) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  private trackEncoder(encoder: Encoder): Encoder {
    const used = new Set<Buffer>();
    const realPass = encoder.beginComputePass.bind(encoder);
    const realCopy = encoder.copyBufferToBuffer.bind(encoder);
    const realFinish = encoder.finish.bind(encoder);
    encoder.beginComputePass = (desc) => {
      const pass = realPass(desc);
      const realSet = pass.setBindGroup.bind(pass);
      pass.setBindGroup = (index, group, ...rest) => {
        const buffers = this.groupBuffers.get(group);
        if (buffers) for (const b of buffers) used.add(b);
        realSet(index, group, ...rest);
      };
      return pass;
    };
    encoder.copyBufferToBuffer = (src, srcOffset, dst, dstOffset, size) => {
      used.add(src);
      used.add(dst);
      realCopy(src, srcOffset, dst, dstOffset, size);
    };
    encoder.finish = (desc) => {
      const commands = realFinish(desc);
      this.commandBuffers.set(commands, used);
      return commands;
    };
    return encoder;
  }

  private createBuffer(desc: BufferDescriptor, real: (desc: BufferDescriptor) => Buffer): Buffer {
    const poolable = !desc.mappedAtCreation && (desc.usage & (MAP_READ | MAP_WRITE)) === 0;
    if (poolable && this.options.bufferPool) {
      const list = this.free.get(key(desc.usage, desc.size));
      const b = list?.pop();
      if (b) {
        this.isFree.delete(b);
        this.counts.pooledBytes -= b.size;
        this.counts.buffersReused++;
        return b;
      }
    }
    const b = real(desc);
    this.counts.buffersCreated++;
    this.wrapBuffer(b, poolable);
    return b;
  }

  private wrapBuffer(b: Buffer, poolable: boolean): void {
    if (this.destroyers.has(b)) return;
    this.destroyers.set(b, b.destroy.bind(b));
    const realMap = b.mapAsync.bind(b);
    b.destroy = () => {
      if (this.isFree.has(b)) return; // destroying twice is legal and must not pool it twice
      const cap = this.options.poolBytes;
      if (poolable && this.options.bufferPool && this.counts.pooledBytes + b.size <= cap) {
        const k = key(b.usage, b.size);
        let list = this.free.get(k);
        if (!list) {
          list = [];
          this.free.set(k, list);
        }
        list.push(b);
        this.isFree.add(b);
        this.counts.pooledBytes += b.size;
        return;
      }
      this.realDestroy(b);
    };
    b.mapAsync = (...args) => {
      this.flush();
      return realMap(...args);
    };
  }

  private realDestroy(b: Buffer): void {
    if (this.heldBuffers.has(b)) this.flush();
    this.destroyers.get(b)?.();
  }
}

function key(usage: number, size: number): string {
  return `${usage}:${size}`;
}
