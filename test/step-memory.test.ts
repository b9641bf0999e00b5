/**
 * A learner step's memory does not grow with the number of steps: 200 steps of the tiny bench model
 * (bench/models.ts: forward, loss, backward, clipping, AdamW; batch 2 x 32) on the webasm backend. After a warm-up,
 * the WebAssembly kernels' shared memories keep their size, and the JavaScript heap plus array
 * buffers (after a forced collection) grow by less than GROWTH_BYTES over the last 100 steps: a
 * leaked gradient or activation of this model (tens of KiB to MiBs a step) would exceed it many
 * times over.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import test from 'ava';
import { BENCH_MODELS, learnerCase, SHAPES } from '../bench/models.js';
import { WasmBackend } from '../shared/kernels/wasm/backend.js';
import { WasmMatmul } from '../shared/kernels/wasm/matmul.js';
import { WasmOps } from '../shared/kernels/wasm/ops.js';

const WARMUP = 20;
const STEPS = 200;
/** 4 MiB over 100 steps: 40 KiB a step. */
const GROWTH_BYTES = 4 * 2 ** 20;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

function retained(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

test(`${STEPS} learner steps of the tiny model: wasm memories constant, heap growth < 4 MiB per 100 steps`, async (t) => {
  const be = await WasmBackend.create();
  try {
    // a smaller batch than the bench's keeps the test fast; the step runs the same ops
    const step = learnerCase(be, BENCH_MODELS.tiny, { ...SHAPES, batch: 2, seq: 32 });
    for (let i = 0; i < WARMUP; i++) await step.run();
    const wasm = () => [WasmMatmul.get()?.memoryBytes ?? 0, WasmOps.get()?.memoryBytes ?? 0];
    const wasmAfterWarmup = wasm();
    for (let i = WARMUP; i < STEPS / 2; i++) await step.run();
    const mid = retained();
    let loss = 0;
    for (let i = STEPS / 2; i < STEPS; i++) loss = await step.run();
    const end = retained();
    t.true(Number.isFinite(loss), 'the loss stays finite');
    t.deepEqual(wasm(), wasmAfterWarmup, 'wasm memories (matmul, ops) did not grow');
    t.log(`heap + array buffers over the last ${STEPS / 2} steps: ${((end - mid) / 1024).toFixed(0)} KiB`);
    t.true(end - mid < GROWTH_BYTES, `grew ${((end - mid) / 2 ** 20).toFixed(1)} MiB`);
    step.free();
  } finally {
    await be.dispose();
  }
});
