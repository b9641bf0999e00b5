/**
 * gpu.js on Dawn's device, as the webgpu backend uses it: the typed view of gpu.js's module and its
 * pipeline handles, the cache of compiled kernels, the backend's tensor (`DeviceBuf`) and the
 * read-back. gpu.js 2.24 internals are touched in two places only, both named below: the handle's
 * `buffer` field and the kernel's output reference (`detachOutput`).
 */
import gpujs from 'gpu.js';
import { COPY_DST, MAP_READ } from './constants.js';
import type { BatchableDevice } from './device-batching.js';
import * as K from './kernels.js';

/** gpu.js's pipeline handle on webgpu (`WebGPUBufferResult`). */
export interface Handle {
  output: number[];
  /** The GPUBuffer (public field of gpu.js's WebGPUBufferResult). */
  buffer?: GpuBuffer;
  toArray(): Promise<Float32Array>;
  delete(): void;
}
interface GpuBuffer {
  mapAsync(mode: number): Promise<void>;
  getMappedRange(): ArrayBuffer;
  unmap(): void;
  destroy(): void;
}
/** A kernel argument or result: a device handle for tensors, a Float32Array for host data. */
export type Dev = Float32Array | Handle;

interface InnerKernel {
  outputBuffer?: { _refs: number } | null;
  immutable?: boolean;
  pipeline?: boolean;
  bindGroupDirty?: boolean;
}
export interface KernelRun {
  (...args: Dev[]): Promise<Dev>;
  destroy(removeCanvasReferences?: boolean): void;
  kernel?: InnerKernel;
}
export interface GpuInstance {
  createKernel(fn: unknown, settings: Record<string, unknown>): KernelRun;
  destroy(): Promise<void>;
}
export interface GpuDevice {
  queue: { onSubmittedWorkDone(): Promise<void>; submit(commands: unknown[]): void };
  createBuffer(desc: { size: number; usage: number }): GpuBuffer;
  createCommandEncoder(): {
    copyBufferToBuffer(
      src: GpuBuffer,
      srcOffset: number,
      dst: GpuBuffer,
      dstOffset: number,
      size: number,
    ): void;
    finish(): unknown;
  };
}
/** What `WebGPUContext.acquire()` resolves to: kernels accept only handles carrying this object. */
export interface GpuContext {
  device: GpuDevice & BatchableDevice;
}
interface GpujsModule {
  GPU: new (settings: { mode: string }) => GpuInstance;
  WebGPUContext: { acquire(): Promise<GpuContext>; destroy(): Promise<void> };
  WebGPUBufferResult: new (settings: {
    buffer: object;
    output: number[];
    context: GpuContext;
    kernel: null;
  }) => Handle;
}
export const { GPU, WebGPUContext } = gpujs as unknown as GpujsModule;

/**
 * A buffer written by our own WGSL as a gpu.js pipeline handle of `n` floats, so gpu.js kernels take it
 * as an argument and `delete` releases it like theirs (gpu.js's public WebGPUBufferResult). It has no
 * producing kernel: read it with `readHandle`, not `toArray`.
 */
export function handleOf(buffer: object, n: number, context: GpuContext): Handle {
  const { WebGPUBufferResult } = gpujs as unknown as GpujsModule;
  return new WebGPUBufferResult({ buffer, output: [n], context, kernel: null });
}

export type KernelFn = (this: K.KernelThis, ...args: Float32Array[]) => number;
interface CachedKernel {
  run: KernelRun;
  /** Calls in progress. */
  busy: number;
}

/** A webgpu tensor: the gpu.js handle, possibly still being produced. */
export class DeviceBuf {
  handle: Handle | null = null;
  pending: Promise<Handle> | null = null;
  freed = false;
  constructor(readonly n: number) {}
}

const EMPTY = new Float32Array(0);

/**
 * Compiled kernels, one per (kernel, constants, output size, argument sizes): gpu.js fixes sizes once
 * a kernel is built. All run with `pipeline: true` and `immutable: true`, so a call yields a
 * device-resident handle that feeds the next kernel without readback. Beyond `limit` kernels the
 * least recently used is destroyed.
 */
export class KernelCache {
  private readonly kernels = new Map<string, CachedKernel>();

  constructor(
    private readonly gpu: GpuInstance,
    private readonly limit: number,
  ) {}

  private get(key: string, fn: KernelFn, size: number, constants: Record<string, number>): CachedKernel {
    let entry = this.kernels.get(key);
    if (entry) {
      // most recently used last: the Map's order is the eviction order
      this.kernels.delete(key);
      this.kernels.set(key, entry);
      return entry;
    }
    if (this.kernels.size >= this.limit) {
      for (const [oldKey, old] of this.kernels) {
        if (old.busy > 0) continue; // never destroy a kernel under a call (it may still be compiling)
        this.kernels.delete(oldKey);
        old.run.destroy(true);
        break;
      }
    }
    const run = this.gpu.createKernel(fn, {
      output: [size],
      constants,
      asyncMode: true,
      pipeline: true,
      immutable: true,
      strictIntegers: true,
      functions: K.HELPERS,
      loopMaxIterations: 2 ** 30,
      precision: 'single',
      tactic: 'precision',
    });
    entry = { run, busy: 0 };
    this.kernels.set(key, entry);
    return entry;
  }

  /** Runs `fn` over a 1-D output of `size` cells. Arguments are device tensors or host Float32Arrays. */
  async run(
    op: string,
    fn: KernelFn,
    size: number,
    constants: Record<string, number>,
    args: Dev[],
  ): Promise<Dev> {
    if (size === 0) return EMPTY;
    const key = `${op}|${size}|${args.map(devLength).join(',')}|${JSON.stringify(constants)}`;
    const entry = this.get(key, fn, size, constants);
    entry.busy++;
    try {
      const out = await entry.run(...args);
      detachOutput(entry.run);
      return out;
    } finally {
      entry.busy--;
    }
  }

  destroy(): void {
    for (const { run } of this.kernels.values()) run.destroy(true);
    this.kernels.clear();
  }
}

/**
 * Reads a webgpu tensor back through a staging buffer of its own. `handle.toArray()` would go through
 * the producing kernel, which the cache may have destroyed (or destroy mid-read).
 */
export async function readHandle(h: Handle): Promise<Float32Array> {
  const n = h.output[0];
  if (!h.buffer) {
    const a = await h.toArray();
    return a.length === n ? a : a.slice(0, n);
  }
  const { device } = await WebGPUContext.acquire();
  const staging = device.createBuffer({ size: n * 4, usage: MAP_READ | COPY_DST });
  try {
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(h.buffer, 0, staging, 0, n * 4);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(MAP_READ);
    const out = new Float32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    return out;
  } finally {
    staging.destroy();
  }
}

export function devLength(d: Dev): number {
  return d instanceof Float32Array ? d.length : d.output[0];
}

/**
 * An immutable pipeline kernel on webgpu keeps a reference to its latest output buffer until its next
 * call, which would keep a freed tensor alive. Drop that reference now; the handle we return owns the
 * buffer alone and `free` releases it. (gpu.js 2.24 internals: refcount `_refs` on the GPUBuffer.)
 */
export function detachOutput(k: KernelRun): void {
  const inner = k.kernel;
  const buf = inner?.outputBuffer;
  if (!inner || !buf || !inner.immutable || !inner.pipeline || buf._refs < 2) return;
  buf._refs--;
  inner.outputBuffer = null;
  inner.bindGroupDirty = true;
}
