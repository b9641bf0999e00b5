/**
 * Worker threads that run the wasm matmul over the caller's shared WebAssembly.Memory.
 *
 * Each worker instantiates the same compiled module over the same memory and then loops: wait on its
 * control slot (spin briefly, then Atomics.wait), run the job written there, publish `done`, notify.
 * The main thread takes a share of every job itself, so P participants need P - 1 workers. Workers
 * are created lazily, reused, and unref'd: they never keep the process alive. The worker source is a
 * plain CommonJS string (eval worker), so it needs no TypeScript loader.
 */
import { Worker } from 'node:worker_threads';

/** Ints per control slot (128 bytes, so slots do not share a cache line). */
const SLOT = 32;
const SEQ = 0;
const DONE = 1;
const STATUS = 2;
const ARGS = 4;
/** Job arguments: kind, transA, transB, m, n, k, a, b, c, i0, i1, j0, j1, work. */
export const JOB_ARGS = 14;
export const JOB_GEMM = 0;
export const JOB_DOT = 1;

const STATUS_OK = 0;
const STATUS_ERROR = 1;
const STATUS_DEAD = 2;

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, ctrl, slot, spin } = workerData;
const base = slot * ${SLOT};
let ex;
try {
  ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
} catch (e) {
  Atomics.store(ctrl, base + ${STATUS}, ${STATUS_DEAD});
  Atomics.store(ctrl, base + ${DONE}, -1);
  Atomics.notify(ctrl, base + ${DONE});
  throw e;
}
let seen = 0;
for (;;) {
  let s = Atomics.load(ctrl, base + ${SEQ});
  for (let i = 0; s === seen && i < spin; i++) s = Atomics.load(ctrl, base + ${SEQ});
  if (s === seen) {
    Atomics.wait(ctrl, base + ${SEQ}, seen);
    continue;
  }
  if (s < 0) break;
  seen = s;
  let status = ${STATUS_OK};
  try {
    const a = ctrl.subarray(base + ${ARGS}, base + ${ARGS + JOB_ARGS});
    if (a[0] === ${JOB_GEMM}) ex.gemm(a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13]);
    else ex.gemmDot(a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12]);
  } catch (e) {
    status = ${STATUS_ERROR};
  }
  Atomics.store(ctrl, base + ${STATUS}, status);
  Atomics.store(ctrl, base + ${DONE}, seen);
  Atomics.notify(ctrl, base + ${DONE});
}
`;

export interface PoolOptions {
  /** Atomics.load polls before a worker sleeps on Atomics.wait after a job (and before the main thread does). */
  spin: number;
  /** A job not finished after this long is reported as an error. */
  timeoutMs: number;
}

export class WorkerPool {
  private readonly ctrl: Int32Array;
  private readonly workers: Worker[] = [];
  private readonly seq: number[] = [];
  private closed = false;

  constructor(
    private readonly module: WebAssembly.Module,
    private readonly memory: WebAssembly.Memory,
    readonly size: number,
    private readonly opts: PoolOptions,
  ) {
    this.ctrl = new Int32Array(new SharedArrayBuffer(Math.max(1, size) * SLOT * 4));
  }

  /** Starts the workers now (otherwise the first job starts them). */
  start(): void {
    if (this.closed) throw new Error('worker pool used after close()');
    while (this.workers.length < this.size) {
      const slot = this.workers.length;
      const w = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { module: this.module, memory: this.memory, ctrl: this.ctrl, slot, spin: this.opts.spin },
        stdout: false,
        stderr: false,
      });
      w.unref();
      // An error here means the worker is gone; the waiting side sees STATUS_DEAD or times out.
      w.on('error', () => {});
      this.workers.push(w);
      this.seq.push(0);
    }
  }

  /** Hands `args` (JOB_ARGS ints) to worker `slot`; returns at once. */
  post(slot: number, args: ArrayLike<number>): void {
    this.start();
    const base = slot * SLOT;
    const c = this.ctrl;
    if (c[base + STATUS] === STATUS_DEAD) throw new Error(`wasm matmul worker ${slot} failed to start`);
    for (let i = 0; i < JOB_ARGS; i++) c[base + ARGS + i] = args[i];
    const s = this.seq[slot] + 1;
    this.seq[slot] = s;
    Atomics.store(c, base + SEQ, s);
    Atomics.notify(c, base + SEQ);
  }

  /** Blocks until worker `slot` has finished the job posted last; throws if it failed. */
  wait(slot: number): void {
    const base = slot * SLOT;
    const c = this.ctrl;
    const want = this.seq[slot];
    let done = Atomics.load(c, base + DONE);
    for (let i = 0; done !== want && i < this.opts.spin; i++) done = Atomics.load(c, base + DONE);
    const deadline = Date.now() + this.opts.timeoutMs;
    while (done !== want) {
      if (Atomics.load(c, base + STATUS) === STATUS_DEAD) throw new Error(`wasm matmul worker ${slot} died`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`wasm matmul worker ${slot} did not finish in ${this.opts.timeoutMs} ms`);
      Atomics.wait(c, base + DONE, done, Math.min(left, 1000));
      done = Atomics.load(c, base + DONE);
    }
    if (Atomics.load(c, base + STATUS) !== STATUS_OK) throw new Error(`wasm matmul worker ${slot} trapped`);
  }

  /** Stops the workers (they would not keep the process alive anyway). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (let slot = 0; slot < this.workers.length; slot++) {
      Atomics.store(this.ctrl, slot * SLOT + SEQ, -1);
      Atomics.notify(this.ctrl, slot * SLOT + SEQ);
    }
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
