/**
 * Per-op profile of one learner step and one KV-cache generation of the bench models (bench/models.ts,
 * the shapes of bench/model.ts), on a chosen backend. Every method of the kernel interface
 * (shared/kernels/backend.ts) is wrapped: the time from the call to its settled promise is charged to
 * the op; calls made while another timed call is in progress are not counted twice. `(host)` is the
 * rest of the wall time: the model's own JavaScript, the loss bookkeeping, AdamW's loop, sampling.
 *
 * Usage: npx tsx bench/profile-step.ts [--backend webasm] [--models tiny,small] [--steps 3]
 *   [--gens 1] [--sync] [--json FILE]
 *
 * On webgpu a kernel call returns once it is queued, so an op's time is its host cost, and the GPU's
 * time shows up in the next read. `--sync` waits for the device after every op instead (and charges
 * the wait to the op), which shows where device time goes but serialises host and device. The
 * profile also times the primitives: a read-back of one float, and one queued elementwise kernel.
 *
 * Each case runs one untimed warm-up first (kernel compilation, memory growth); the tables show
 * milliseconds per step (per generation), the share of the wall time, and calls per step. Ops are
 * awaited one after another by the model, so their times add up. Matmuls are also split by shape.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { BACKENDS } from '../shared/config/schema/common-fields.js';
import { defineFlags, parseServiceFlagsOrExit, withoutEnv } from '../shared/config/service-flags.js';
import type { Backend, MatmulShape } from '../shared/kernels/backend.js';
import { createBackend } from '../shared/kernels/index.js';
import { BENCH_MODELS, generationCase, learnerCase, shapesOf } from './models.js';

/** Methods of `Backend` that are not timed (synchronous bookkeeping). */
const UNTIMED = new Set(['length', 'free', 'dispose', 'name', 'precision']);

interface OpStat {
  ms: number;
  calls: number;
}

/** Wraps a backend so that every async method is timed into `stats`. */
class Profiler {
  readonly stats = new Map<string, OpStat>();
  private depth = 0;
  splitMatmul = true;
  /** Waits for the device after each op (webgpu's `sync`), when set. */
  sync: (() => Promise<void>) | null = null;

  wrap(be: Backend): Backend {
    return new Proxy(be, {
      get: (target, prop, receiver) => {
        const v = Reflect.get(target, prop, receiver);
        if (typeof v !== 'function' || typeof prop !== 'string') return v;
        if (UNTIMED.has(prop)) return v.bind(target);
        return (...args: unknown[]) => this.time(prop, args, () => v.apply(target, args));
      },
    });
  }

  private key(op: string, args: unknown[]): string {
    if (op === 'matmul' && this.splitMatmul) {
      const s = args[2] as MatmulShape;
      return `matmul ${s.m}x${s.k}x${s.n}${s.transA ? ' tA' : ''}${s.transB ? ' tB' : ''}`;
    }
    return op;
  }

  private time(op: string, args: unknown[], call: () => unknown): unknown {
    if (this.depth > 0) return call();
    const t0 = performance.now();
    this.depth++;
    const done = () => {
      this.depth--;
      const k = this.key(op, args);
      const s = this.stats.get(k) ?? { ms: 0, calls: 0 };
      s.ms += performance.now() - t0;
      s.calls++;
      this.stats.set(k, s);
    };
    let r: unknown;
    try {
      r = call();
    } catch (e) {
      done();
      throw e;
    }
    if (r instanceof Promise) {
      const sync = this.sync;
      if (sync)
        return r
          .then(async (v) => {
            await sync();
            return v;
          })
          .finally(done);
      return r.finally(done);
    }
    done();
    return r;
  }

  reset(): void {
    this.stats.clear();
  }
}

const USAGE =
  'usage: npx tsx bench/profile-step.ts [--backend B] [--models tiny,small] [--steps N] [--gens N] [--sync] [--json FILE]';

const FLAGS = withoutEnv(
  defineFlags({
    backend: { type: 'enum', choices: BACKENDS, default: 'webasm', doc: 'kernel backend' },
    models: {
      type: 'string',
      default: 'tiny,small',
      doc: `bench models, comma-separated (${Object.keys(BENCH_MODELS).join(', ')})`,
    },
    steps: { type: 'int', default: 3, min: 1, doc: 'timed learner steps per model' },
    gens: { type: 'int', default: 1, min: 1, doc: 'timed generations per model' },
    sync: { type: 'bool', doc: 'wait for the device after every op (charges the wait to the op)' },
    json: { type: 'string', arg: '<file>', doc: 'also write the profiles as JSON' },
  }),
);

function parseArgs(argv: string[]) {
  const a = parseServiceFlagsOrExit(FLAGS, USAGE, argv, {});
  const models = a.models.split(',');
  for (const m of models) if (!BENCH_MODELS[m]) throw new Error(`--models: unknown model ${m}`);
  return { ...a, models, json: a.json ?? null };
}

interface Profile {
  case: string;
  wall_ms: number;
  ops: { op: string; ms: number; calls: number }[];
}

/** Runs `fn` once untimed, then `reps` times under the profiler; returns per-repetition averages. */
async function profile(
  name: string,
  prof: Profiler,
  reps: number,
  fn: () => Promise<unknown>,
): Promise<Profile> {
  await fn();
  prof.reset();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await fn();
  const wall = (performance.now() - t0) / reps;
  const ops = [...prof.stats.entries()].map(([op, s]) => ({ op, ms: s.ms / reps, calls: s.calls / reps }));
  const opSum = ops.reduce((x, o) => x + o.ms, 0);
  ops.push({ op: '(host)', ms: Math.max(0, wall - opSum), calls: 0 });
  ops.sort((x, y) => y.ms - x.ms);
  return { case: name, wall_ms: wall, ops };
}

function printProfile(p: Profile): void {
  console.log(`\n## ${p.case}: ${p.wall_ms.toFixed(1)} ms`);
  const rows = [
    ['op', 'ms', '%', 'calls'],
    ...p.ops.map((o) => [
      o.op,
      o.ms.toFixed(2),
      ((100 * o.ms) / p.wall_ms).toFixed(1),
      o.calls ? String(o.calls) : '',
    ]),
  ];
  const widths = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  for (const r of rows)
    console.log(r.map((s, j) => (j === 0 ? s.padEnd(widths[j]) : s.padStart(widths[j]))).join('  '));
}

/** Adds up the matmul rows of a profile into one (for the summary next to the other ops). */
function merged(p: Profile): Profile {
  const ops = new Map<string, { op: string; ms: number; calls: number }>();
  for (const o of p.ops) {
    const k = o.op.startsWith('matmul') ? 'matmul (all shapes)' : o.op;
    const e = ops.get(k) ?? { op: k, ms: 0, calls: 0 };
    e.ms += o.ms;
    e.calls += o.calls;
    ops.set(k, e);
  }
  return {
    case: `${p.case} (matmuls merged)`,
    wall_ms: p.wall_ms,
    ops: [...ops.values()].sort((x, y) => y.ms - x.ms),
  };
}

/** The costs everything else is made of: a read-back's round trip and one small kernel call. */
async function timePrimitives(be: Backend): Promise<{ read_ms: number; enqueue_ms: number; add_ms: number }> {
  const one = be.upload([1]);
  const reads: number[] = [];
  for (let i = 0; i < 33; i++) {
    const t0 = performance.now();
    await be.read(one);
    if (i >= 3) reads.push(performance.now() - t0);
  }
  reads.sort((x, y) => x - y);
  be.free(one);
  const x = be.upload(new Float32Array(1024).fill(1));
  const chain = async (n: number) => {
    let y = await be.add(x, x);
    for (let i = 0; i < n; i++) {
      const z = await be.add(y, x);
      be.free(y);
      y = z;
    }
    return y;
  };
  be.free(await chain(20)); // compile
  const t0 = performance.now();
  const y = await chain(500);
  const enqueue = (performance.now() - t0) / 500;
  await be.read(y);
  const total = (performance.now() - t0) / 500;
  be.free(y);
  be.free(x);
  return { read_ms: reads[reads.length >> 1], enqueue_ms: enqueue, add_ms: total };
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const raw = await createBackend(a.backend);
  const prof = new Profiler();
  const be = prof.wrap(raw);
  const load = os.loadavg()[0];
  console.log(`backend ${raw.name}; load average ${load.toFixed(2)} on ${os.cpus().length} cores`);
  const syncable = raw as Backend & { sync?: () => Promise<void> };
  if (a.sync && syncable.sync) prof.sync = syncable.sync.bind(raw);
  const primitives = await timePrimitives(raw);
  console.log(
    `primitives: read-back of 1 float ${primitives.read_ms.toFixed(3)} ms (median of 30); one queued add of 1024 floats ${primitives.enqueue_ms.toFixed(4)} ms host (mean of 500), ${primitives.add_ms.toFixed(4)} ms with the device's work`,
  );
  const out: Profile[] = [];
  for (const name of a.models) {
    const c = BENCH_MODELS[name];
    const step = await profile(`${name} learner step`, prof, a.steps, learnerCase(be, c, shapesOf(name)).run);
    const gen = await profile(`${name} generation`, prof, a.gens, generationCase(be, c, shapesOf(name)).run);
    for (const p of [step, gen]) {
      printProfile(merged(p));
      printProfile(p);
      out.push(p);
    }
  }
  console.log(`\nload average at the end ${os.loadavg()[0].toFixed(2)}`);
  if (a.json)
    writeFileSync(
      a.json,
      `${JSON.stringify({ backend: raw.name, sync: a.sync, load: [load, os.loadavg()[0]], primitives, profiles: out }, null, 2)}\n`,
    );
  await raw.dispose();
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exit(1);
  },
);
