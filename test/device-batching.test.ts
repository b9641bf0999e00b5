/**
 * The webgpu buffer pool and submit batching (shared/kernels/webgpu/device-batching.ts) on the Dawn
 * device this machine has (Mesa llvmpipe through OpenGL ES on CPU-only machines): held work is never
 * overtaken by a write, read-backs see it, pooled buffers are handed out once, and the model's
 * learner step gives the same numbers with and without it. Skipped where no WebGPU adapter answers.
 */
import test from 'ava';
import gpujs from 'gpu.js';
import { BENCH_MODELS, learnerCase } from '../bench/models.js';
import { setupWebgpu } from '../shared/kernels/index.js';
import { WebgpuBackend } from '../shared/kernels/webgpu/backend.js';
import { COPY_DST, COPY_SRC, MAP_READ, STORAGE } from '../shared/kernels/webgpu/constants.js';
import { type BatchableDevice, DeviceBatching } from '../shared/kernels/webgpu/device-batching.js';

const setup = await setupWebgpu();
const gpuTest = setup.ok ? test.serial : test.serial.skip;
if (!setup.ok) console.log(`device-batching.test: skipped: ${setup.reason}`);

interface RawBuffer {
  size: number;
  destroy(): void;
  mapAsync(mode: number): Promise<void>;
  getMappedRange(): ArrayBuffer;
  unmap(): void;
}
interface RawDevice {
  queue: { writeBuffer(b: RawBuffer, offset: number, data: Float32Array): void; submit(c: object[]): void };
  createBuffer(d: { size: number; usage: number }): RawBuffer;
  createCommandEncoder(): {
    copyBufferToBuffer(s: RawBuffer, so: number, d: RawBuffer, dO: number, n: number): void;
    finish(): object;
  };
}

async function device(): Promise<RawDevice & BatchableDevice> {
  const ctx = (
    gpujs as unknown as { WebGPUContext: { acquire(): Promise<{ device: RawDevice & BatchableDevice }> } }
  ).WebGPUContext;
  return (await ctx.acquire()).device;
}

async function readBack(dev: RawDevice, src: RawBuffer, n: number): Promise<Float32Array> {
  const staging = dev.createBuffer({ size: n * 4, usage: MAP_READ | COPY_DST });
  const enc = dev.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, staging, 0, n * 4);
  dev.queue.submit([enc.finish()]);
  await staging.mapAsync(MAP_READ);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return out;
}

gpuTest('a write to a buffer that held work reads is not overtaken, staged or flushed', async (t) => {
  // the backend installs the batching on gpu.js's device
  const be = await WebgpuBackend.create();
  t.teardown(() => be.dispose());
  const dev = await device();
  const batching = DeviceBatching.install(dev);
  for (const stageWrites of [true, false]) {
    batching.configure({ ...batching.settings, stageWrites, batchSubmits: true });
    const a = dev.createBuffer({ size: 16, usage: STORAGE | COPY_SRC | COPY_DST });
    const b = dev.createBuffer({ size: 16, usage: STORAGE | COPY_SRC | COPY_DST });
    dev.queue.writeBuffer(a, 0, Float32Array.of(1, 2, 3, 4));
    const before = batching.stats();
    const enc = dev.createCommandEncoder();
    enc.copyBufferToBuffer(a, 0, b, 0, 16);
    dev.queue.submit([enc.finish()]); // held
    dev.queue.writeBuffer(a, 0, Float32Array.of(5, 6, 7, 8)); // must land after the copy
    const after = batching.stats();
    t.is(after.submits, before.submits + (stageWrites ? 0 : 1), `stageWrites ${stageWrites}`);
    t.is(after.stagedWrites, before.stagedWrites + (stageWrites ? 1 : 0));
    t.deepEqual([...(await readBack(dev, b, 4))], [1, 2, 3, 4]);
    t.deepEqual([...(await readBack(dev, a, 4))], [5, 6, 7, 8]);
    a.destroy();
    b.destroy();
  }
  batching.configure({ ...batching.settings, stageWrites: true });
});

gpuTest('pooled buffers are reused by size and usage, and never handed out twice', async (t) => {
  const be = await WebgpuBackend.create();
  t.teardown(() => be.dispose());
  const dev = await device();
  const batching = DeviceBatching.install(dev);
  const x = dev.createBuffer({ size: 64, usage: STORAGE | COPY_SRC });
  x.destroy();
  x.destroy(); // legal in WebGPU; must not pool it twice
  const y = dev.createBuffer({ size: 64, usage: STORAGE | COPY_SRC });
  const z = dev.createBuffer({ size: 64, usage: STORAGE | COPY_SRC });
  t.is(y, x);
  t.not(z, x);
  const other = dev.createBuffer({ size: 128, usage: STORAGE | COPY_SRC });
  t.not(other, x);
  // mappable buffers are never pooled
  const m = dev.createBuffer({ size: 64, usage: MAP_READ | COPY_DST });
  m.destroy();
  t.not(dev.createBuffer({ size: 64, usage: MAP_READ | COPY_DST }), m);
  t.true(batching.stats().buffersReused >= 1);
  for (const b of [y, z, other]) b.destroy();
});

gpuTest('the learner step gives the same loss and parameters with batching on and off', async (t) => {
  const run = async (on: boolean) => {
    const be = await WebgpuBackend.create({
      deviceBatching: { bufferPool: on, batchSubmits: on, stageWrites: on },
    });
    const c = learnerCase(be, BENCH_MODELS.tiny);
    const losses: number[] = [];
    for (let i = 0; i < 3; i++) losses.push(await c.run());
    const stats = be.deviceBatchingStats();
    c.free();
    await be.dispose();
    return { losses, stats };
  };
  const off = await run(false);
  const on = await run(true);
  t.deepEqual(on.losses, off.losses);
  t.truthy(on.stats && off.stats);
  // off: one submit per command buffer; on: far fewer
  t.is(off.stats?.submits, off.stats?.commandBuffers);
  t.true((on.stats?.submits ?? 0) * 4 < (on.stats?.commandBuffers ?? 0), JSON.stringify(on.stats));
  t.true((on.stats?.buffersReused ?? 0) > 0);
});
