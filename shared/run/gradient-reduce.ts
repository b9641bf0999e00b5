import { numel } from '../model/params.js';
import { echo, RequestError } from './request-error.js';

/** One message of a shard's gradient stream (GetShardGradient), as the leader reads it. */
export type GradientPiece =
  | {
      kind: 'header';
      step: number;
      rank: number;
      version: number;
      tensors: number;
      metrics: Record<string, number>;
    }
  | { kind: 'tensor'; name: string; shape: readonly number[]; offset: number; data: Uint8Array };

/** The additive metrics a shard reports: each is already a share of the whole step's value. */
export const SHARD_METRICS = [
  'actor/pg_loss',
  'actor/ntp_loss',
  'actor/pg_clipfrac',
  'actor/ppo_kl',
  'actor/kl_loss',
  'rl_tokens',
  'ntp_tokens',
] as const;

/** A gradient the leader refuses: `field` names the part of the stream that is wrong. */
function refuse(rank: number, field: string, why: string): RequestError {
  return new RequestError(`the gradient of rank ${rank}: ${field}: ${why}`, 'argument', `gradient.${field}`);
}

/**
 * The sum of the shards' gradients of one step, added in rank order (rank 0 first, then 1, ...)
 * into float64 accumulators and rounded to float32 once at the end, so the result depends only on
 * the shards, never on which learner finished first. Every received piece is checked before it is
 * added: the header's step, rank and weight version, each tensor's name (a parameter, once),
 * shape (the parameter's), offsets (contiguous from 0, whole float32 values, inside the tensor)
 * and values (finite), and that every announced tensor came whole.
 */
export class GradientSum {
  private readonly acc = new Map<string, Float64Array>();
  private readonly metricSums: Record<string, number> = {};
  private nextRank = 0;

  /** `shapes`: every parameter's shape, in parameter order. */
  constructor(
    private readonly shapes: ReadonlyMap<string, readonly number[]>,
    private readonly step: number,
  ) {}

  /** Rank `rank`'s gradient and metrics held in memory (the leader's own shard). */
  addLocal(rank: number, grads: ReadonlyMap<string, Float32Array>, metrics: Record<string, number>): void {
    this.takeRank(rank);
    for (const [name, g] of grads) {
      const shape = this.shapes.get(name);
      if (!shape || numel(shape) !== g.length) throw new Error(`addLocal: gradient "${name}" does not fit`);
      const a = this.accumulator(name, g.length);
      for (let i = 0; i < g.length; i++) a[i] += g[i];
    }
    this.addMetrics(rank, metrics);
  }

  /** Rank `rank`'s gradient as it streams in; refused (nothing of it kept) at the first bad piece. */
  async addStream(rank: number, pieces: AsyncIterable<GradientPiece>): Promise<void> {
    this.takeRank(rank);
    // A rank's tensors are gathered apart first: a stream refused halfway adds nothing.
    const own = new Map<string, Float32Array>();
    let header: Extract<GradientPiece, { kind: 'header' }> | null = null;
    let current: { name: string; data: Float32Array; filled: number } | null = null;
    const finish = () => {
      if (current && current.filled !== current.data.length) {
        throw refuse(
          rank,
          `tensor.offset`,
          `"${current.name}" ended after ${current.filled} of ${current.data.length} values`,
        );
      }
      current = null;
    };
    for await (const p of pieces) {
      if (p.kind === 'header') {
        if (header) throw refuse(rank, 'header', 'a second header');
        if (p.step !== this.step)
          throw refuse(rank, 'header.step', `${p.step}, the leader takes step ${this.step}`);
        if (p.rank !== rank) throw refuse(rank, 'header.rank', `${p.rank}, expected ${rank}`);
        if (p.version !== this.step)
          throw refuse(
            rank,
            'header.weight_version',
            `${p.version}, the step is taken at version ${this.step}`,
          );
        if (!Number.isInteger(p.tensors) || p.tensors < 0 || p.tensors > this.shapes.size)
          throw refuse(rank, 'header.tensors', `${p.tensors}, the model has ${this.shapes.size}`);
        for (const k of SHARD_METRICS) {
          const v = p.metrics[k] ?? 0;
          if (!Number.isFinite(v)) throw refuse(rank, `header.metrics[${k}]`, `${v} is not finite`);
        }
        header = p;
        continue;
      }
      if (!header) throw refuse(rank, 'header', 'a tensor before the header');
      const shape = this.shapes.get(p.name);
      if (!shape) throw refuse(rank, 'tensor.name', `${echo(p.name)} is no parameter of the model`);
      if (p.shape.length !== shape.length || p.shape.some((d, i) => d !== shape[i]))
        throw refuse(
          rank,
          'tensor.shape',
          `[${p.shape.slice(0, 8)}] for "${p.name}", whose shape is [${shape}]`,
        );
      if (!current || current.name !== p.name) {
        finish();
        if (own.has(p.name)) throw refuse(rank, 'tensor.name', `"${p.name}" sent twice`);
        current = { name: p.name, data: new Float32Array(numel(shape)), filled: 0 };
        own.set(p.name, current.data);
      }
      const c = current as { name: string; data: Float32Array; filled: number };
      if (p.offset !== c.filled)
        throw refuse(rank, 'tensor.offset', `${p.offset} for "${p.name}", expected ${c.filled}`);
      if (p.data.byteLength % 4 !== 0 || c.filled + p.data.byteLength / 4 > c.data.length)
        throw refuse(
          rank,
          'tensor.data',
          `${p.data.byteLength} bytes at offset ${p.offset} do not fit "${p.name}"`,
        );
      // The bytes of a protobuf field need not be 4-byte aligned: copy before viewing as float32.
      const bytes = new Uint8Array(p.data);
      const values = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      for (let i = 0; i < values.length; i++) {
        if (!Number.isFinite(values[i]))
          throw refuse(rank, 'tensor.data', `element ${c.filled + i} of "${p.name}" is not finite`);
      }
      c.data.set(values, c.filled);
      c.filled += values.length;
    }
    finish();
    if (!header) throw refuse(rank, 'header', 'the stream ended without one');
    if (own.size !== header.tensors)
      throw refuse(rank, 'header.tensors', `${header.tensors} announced, ${own.size} came`);
    for (const [name, g] of own) {
      const a = this.accumulator(name, g.length);
      for (let i = 0; i < g.length; i++) a[i] += g[i];
    }
    this.addMetrics(rank, header.metrics);
  }

  /** The sum, one float32 array per parameter (zero where no shard had a gradient), and the metrics. */
  result(): { grads: Map<string, Float32Array>; metrics: Record<string, number> } {
    const grads = new Map<string, Float32Array>();
    for (const [name, shape] of this.shapes) {
      const a = this.acc.get(name);
      grads.set(name, a ? Float32Array.from(a) : new Float32Array(numel(shape)));
    }
    return { grads, metrics: { ...this.metricSums } };
  }

  private takeRank(rank: number): void {
    if (rank !== this.nextRank)
      throw new Error(`GradientSum: rank ${rank} added out of order (${this.nextRank} next)`);
    this.nextRank++;
  }

  private addMetrics(_rank: number, metrics: Record<string, number>): void {
    for (const k of SHARD_METRICS) this.metricSums[k] = (this.metricSums[k] ?? 0) + (metrics[k] ?? 0);
  }

  private accumulator(name: string, n: number): Float64Array {
    let a = this.acc.get(name);
    if (!a) {
      a = new Float64Array(n);
      this.acc.set(name, a);
    }
    return a;
  }
}
