/**
 * Worker threads that run the wasm matmul (or the wasm ops, asm/ops.ts) over the caller's shared WebAssembly.Memory, scheduled by
 * chunks claimed from a shared counter.
 *
 * A job is cut into chunks (row or column blocks of C). The main thread publishes the job in a small
 * shared control block and wakes the workers, then claims chunks itself; each worker, once awake,
 * claims chunks from the same counter until none is left. The main thread waits only for chunks that
 * were claimed, so a worker that wakes late (scheduling latency, a busy machine) costs nothing: it
 * finds the counter exhausted and goes back to sleep. The counter carries the job's tag in its high
 * bits, so a worker still looking at an old job can never claim a chunk of the next one.
 *
 * Each worker instantiates the same compiled module over the same memory and loops: spin briefly on
 * the job word, then sleep in Atomics.wait. Workers are created lazily, reused, and unref'd: they never
 * keep the process alive. The worker source is a plain CommonJS string (eval worker), so it needs no
 * TypeScript loader.
 */
import { Worker } from 'node:worker_threads';

// Control block (Int32Array over a SharedArrayBuffer).
const SEQ = 0; // job sequence number: the word workers sleep on
const COUNTER = 1; // (tag << 16) | next chunk; -1 while a job is being written
const COMPLETED = 2; // chunks finished in the current job
const ERROR = 3; // 1 if a chunk trapped
const DEAD = 4; // workers that failed to start
const PARAMS = 8;
/**
 * Job parameters: kind, transA, transB, m, n, k, a, b, c, byRows, extent, chunk, nChunks, work,
 * workStride, aWhole, bWhole (the operand packed once for every chunk, or 0).
 */
export const JOB_PARAMS = 17;
export const JOB_GEMM = 0;
export const JOB_DOT = 1;
/** An op of asm/ops.ts: `chunk(job[6], lo, hi)` over units [lo, hi) (job[10] units, byRows). */
export const JOB_OP = 2;
/** Chunks per job are capped so the index fits the counter's low 16 bits. */
export const MAX_CHUNKS = 0xffff;
const CTRL_INTS = PARAMS + JOB_PARAMS;

/**
 * Claims and runs chunks of the current job until none is left (shared by the workers, as source
 * text, and the main thread). `p` is the job's parameters, `slot` the participant (its work area).
 */
function runChunks(ctrl: Int32Array, tag: number, p: ArrayLike<number>, slot: number, ex: PoolExports): void {
  const nChunks = p[12];
  for (;;) {
    const c = Atomics.load(ctrl, 1);
    if (c < 0 || c >>> 16 !== tag) return;
    const idx = c & 0xffff;
    if (idx >= nChunks) return;
    if (Atomics.compareExchange(ctrl, 1, c, c + 1) !== c) continue;
    const lo = idx * p[11];
    const hi = Math.min(p[10], lo + p[11]);
    const i0 = p[9] ? lo : 0;
    const i1 = p[9] ? hi : p[3];
    const j0 = p[9] ? 0 : lo;
    const j1 = p[9] ? p[4] : hi;
    try {
      if (p[0] === 2) (ex.chunk as (...a: number[]) => void)(p[6], lo, hi);
      else if (p[0] === 1)
        (ex.gemmDot as (...a: number[]) => void)(p[3], p[4], p[5], p[6], p[7], p[8], i0, i1, j0, j1);
      else
        (ex.gemm as (...a: number[]) => void)(
          p[1],
          p[2],
          p[3],
          p[4],
          p[5],
          p[6],
          p[7],
          p[8],
          i0,
          i1,
          j0,
          j1,
          p[13] + slot * p[14],
          p[15],
          p[16],
        );
    } catch {
      Atomics.store(ctrl, 3, 1);
    }
    if (Atomics.add(ctrl, 2, 1) + 1 === nChunks) Atomics.notify(ctrl, 2);
  }
}

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, ctrl, slot, spin } = workerData;
var __name = (f) => f; // a bundler's keepNames helper, should one appear in runChunks' source
const runChunks = ${runChunks.toString()};
let ex;
try {
  ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
} catch (e) {
  Atomics.add(ctrl, ${DEAD}, 1);
  throw e;
}
const p = new Array(${JOB_PARAMS}).fill(0);
let seen = Atomics.load(ctrl, ${SEQ});
for (;;) {
  let s = Atomics.load(ctrl, ${SEQ});
  for (let i = 0; s === seen && i < spin; i++) s = Atomics.load(ctrl, ${SEQ});
  if (s === seen) {
    Atomics.wait(ctrl, ${SEQ}, seen);
    continue;
  }
  if (s < 0) break;
  seen = s;
  for (let i = 0; i < ${JOB_PARAMS}; i++) p[i] = Atomics.load(ctrl, ${PARAMS} + i);
  runChunks(ctrl, s & 0x7fff, p, slot, ex);
}
`;

/** The entries a job may call: the matmul module's (gemm, gemmDot) or the ops module's (chunk). */
export interface PoolExports {
  gemm?: (...a: number[]) => void;
  gemmDot?: (...a: number[]) => void;
  chunk?: (...a: number[]) => void;
}

/**
 * Atomics.load polls a worker makes before it sleeps (about 10 µs). The matmul's and the ops' pools
 * each keep a worker per spare core; a worker still polling for its next job holds a core the other
 * pool's worker needs the moment the model moves from a matmul to an op. With 20,000 polls, small
 * decoding steps of the bench's `small` model took about 13% longer on 2 cores (medians 500-608 ms
 * against 445-527 ms a generation, in each of 4 alternating rounds); learner steps were no slower.
 */
export const POOL_SPIN = 2000;

export interface PoolOptions {
  /** Atomics.load polls before a worker sleeps on Atomics.wait after a job (and before the main thread does). */
  spin: number;
  /** A job not finished after this long is reported as an error. */
  timeoutMs: number;
}

export class WorkerPool {
  private readonly ctrl = new Int32Array(new SharedArrayBuffer(CTRL_INTS * 4));
  private readonly workers: Worker[] = [];
  private readonly params = new Array<number>(JOB_PARAMS).fill(0);
  private seq = 0;
  private closed = false;

  /** `size` workers; the main thread is participant 0, worker w participant w + 1. */
  constructor(
    private readonly module: WebAssembly.Module,
    private readonly memory: WebAssembly.Memory,
    readonly size: number,
    private readonly opts: PoolOptions,
  ) {}

  /** Starts the workers now (otherwise the first job starts them). */
  start(): void {
    if (this.closed) throw new Error('worker pool used after close()');
    while (this.workers.length < this.size) {
      const w = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: {
          module: this.module,
          memory: this.memory,
          ctrl: this.ctrl,
          slot: this.workers.length + 1,
          spin: this.opts.spin,
        },
        stdout: false,
        stderr: false,
      });
      w.unref();
      // A worker that fails to start counts itself in DEAD; the main thread then runs its share.
      w.on('error', () => {});
      this.workers.push(w);
    }
  }

  /**
   * Runs one job (JOB_PARAMS values) on the main thread and the workers; returns when every chunk is
   * done. `ex` is the main thread's instance of the module.
   */
  run(job: ArrayLike<number>, ex: PoolExports): void {
    this.start();
    const c = this.ctrl;
    const p = this.params;
    const nChunks = job[12];
    if (!(nChunks >= 1 && nChunks <= MAX_CHUNKS)) throw new RangeError(`bad chunk count ${nChunks}`);
    this.seq = (this.seq + 1) & 0x3fffffff;
    if (this.seq === 0) this.seq = 1;
    const tag = this.seq & 0x7fff;
    // Close the counter, publish the job, open the counter, wake the workers.
    Atomics.store(c, COUNTER, -1);
    for (let i = 0; i < JOB_PARAMS; i++) {
      p[i] = job[i];
      Atomics.store(c, PARAMS + i, job[i]);
    }
    Atomics.store(c, COMPLETED, 0);
    Atomics.store(c, ERROR, 0);
    Atomics.store(c, COUNTER, tag << 16);
    Atomics.store(c, SEQ, this.seq);
    Atomics.notify(c, SEQ);
    runChunks(c, tag, p, 0, ex);
    // Wait for chunks other participants claimed.
    let done = Atomics.load(c, COMPLETED);
    for (let i = 0; done !== nChunks && i < this.opts.spin; i++) done = Atomics.load(c, COMPLETED);
    const deadline = Date.now() + this.opts.timeoutMs;
    while (done !== nChunks) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`wasm matmul: workers did not finish in ${this.opts.timeoutMs} ms`);
      Atomics.wait(c, COMPLETED, done, Math.min(left, 1000));
      done = Atomics.load(c, COMPLETED);
    }
    if (Atomics.load(c, ERROR) !== 0) throw new Error('wasm matmul: a chunk trapped');
  }

  /** Workers that failed to start (their share is done by the others). */
  get dead(): number {
    return Atomics.load(this.ctrl, DEAD);
  }

  /** Stops the workers (they would not keep the process alive anyway). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctrl, SEQ, -1);
    Atomics.notify(this.ctrl, SEQ);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
