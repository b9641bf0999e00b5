// The events of rmt in one place: subject names, payload schemas, and the validators that both bus
// adapters run. Payloads are JSON with snake_case fields so that a `nats sub` in a terminal or a client
// in another language reads them without our types.

/** Which half of the corpus a scored position belongs to. */
export type Split = 'train' | 'held_out';

export interface ScoredPosition {
  /** Key position id, unique within a run; the same id the difficulty table and rollouts use. */
  id: number;
  /** Top-k entropy (nats) of the proxy checkpoint's next-token distribution at this position. */
  entropy: number;
}

/** `rmt.positions.scored`: one chunk of the scorer's output for a run and split. */
export interface PositionsScored {
  /** The run these positions were scored for. */
  run_id: string;
  /** Which split the chunk belongs to; the coordinator keeps them apart (held-out is eval only). */
  split: Split;
  /** 0-based index of this chunk among `chunks`; a split is complete once all indices arrived. */
  chunk: number;
  /** Total number of chunks of this split, >= 1 (a split without positions is one empty chunk). */
  chunks: number;
  /** The positions of this chunk; chunked so one message stays well below NATS' max payload. */
  positions: ScoredPosition[];
}

/** `rmt.difficulty.observed`: what one rollout group taught us about one key position. */
export interface DifficultyObserved {
  /** The run the rollouts belong to. */
  run_id: string;
  /** Training step the rollouts were generated for. */
  step: number;
  /** The key position the group was sampled at. */
  position_id: number;
  /** Fraction of the group's rollouts that were correct, in [0, 1]. */
  accuracy: number;
  /** Number of rollouts in the group (G), >= 1; lets a reader weight the observation. */
  group_size: number;
  /** Weight version the rollouts were sampled with; staleness = learner version - this. */
  weight_version: number;
  /** The rollout worker that produced the group. */
  worker_id: string;
}

/** `rmt.weights.published`: the learner has a new weight version ready to be pulled. */
export interface WeightsPublished {
  /** The run the weights belong to. */
  run_id: string;
  /** Monotonic weight version; workers pull only versions newer than the one they hold. */
  version: number;
  /** Optimizer step that produced this version. */
  step: number;
  /** gRPC address (host:port) of the learner serving `GetWeights` for this version. */
  learner: string;
  /** Number of named tensors in the version, so a puller can check it got all of them. */
  tensors: number;
  /** Total payload size in bytes, for progress reporting and buffer sizing. */
  bytes: number;
}

/** `rmt.metrics.step`: the metrics row of one training step. */
export interface StepMetrics {
  /** The run the metrics belong to. */
  run_id: string;
  /** The step the row describes. */
  step: number;
  /** Metric name -> finite value; JSON has no NaN or Infinity, so those are rejected. */
  metrics: Record<string, number>;
}

/** `rmt.workers.heartbeat`: a rollout worker is alive (ephemeral, never stored). */
export interface WorkerHeartbeat {
  /** Stable id of the worker process. */
  worker_id: string;
  /** gRPC address (host:port) the coordinator dispatches rollout jobs to. */
  address: string;
  /** Weight version the worker currently holds. */
  weight_version: number;
  /** Whether the worker is generating right now. */
  busy: boolean;
  /** The run the worker is serving, or null while idle between runs. */
  run_id: string | null;
  /** Sender's wall clock, ms since the epoch; lets a reader drop beats that arrive late. */
  ts: number;
}

/** Subject -> payload type. */
export interface BusSchemas {
  'rmt.positions.scored': PositionsScored;
  'rmt.difficulty.observed': DifficultyObserved;
  'rmt.weights.published': WeightsPublished;
  'rmt.metrics.step': StepMetrics;
  'rmt.workers.heartbeat': WorkerHeartbeat;
}

export type Subject = keyof BusSchemas;

/** Subjects stored in the JetStream stream (replayable, acknowledged, redelivered). */
export const PERSISTED_SUBJECTS = [
  'rmt.positions.scored',
  'rmt.difficulty.observed',
  'rmt.weights.published',
  'rmt.metrics.step',
] as const satisfies readonly Subject[];
export type PersistedSubject = (typeof PERSISTED_SUBJECTS)[number];

/** Subjects sent over core NATS only: fire-and-forget, seen only by subscribers present at the time. */
export const CORE_SUBJECTS = ['rmt.workers.heartbeat'] as const satisfies readonly Subject[];
export type CoreSubject = (typeof CORE_SUBJECTS)[number];

export const SUBJECTS: readonly Subject[] = [...PERSISTED_SUBJECTS, ...CORE_SUBJECTS];

/** The JetStream stream that holds every persisted subject. */
export const STREAM_NAME = 'RMT';

/**
 * Positions per `rmt.positions.scored` chunk that keeps a message around 400 KB, under the 1 MiB
 * default max payload of nats-server even with long ids and full-precision entropies.
 */
export const POSITIONS_PER_CHUNK = 8192;

export function isSubject(s: string): s is Subject {
  return (SUBJECTS as readonly string[]).includes(s);
}

export function isPersisted(s: Subject): s is PersistedSubject {
  return (PERSISTED_SUBJECTS as readonly string[]).includes(s);
}

/** Splits one split's scored positions into messages of at most `perChunk` positions each. */
export function positionChunks(
  run_id: string,
  split: Split,
  positions: readonly ScoredPosition[],
  perChunk = POSITIONS_PER_CHUNK,
): PositionsScored[] {
  if (!Number.isInteger(perChunk) || perChunk < 1)
    throw new Error(`perChunk must be an integer >= 1, got ${perChunk}`);
  const chunks = Math.max(1, Math.ceil(positions.length / perChunk));
  const out: PositionsScored[] = [];
  for (let c = 0; c < chunks; c++) {
    const slice = positions
      .slice(c * perChunk, (c + 1) * perChunk)
      .map((p) => ({ id: p.id, entropy: p.entropy }));
    out.push({ run_id, split, chunk: c, chunks, positions: slice });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Validation

/** A message that does not match its subject's schema. */
export class BusValidationError extends Error {
  constructor(
    readonly subject: string,
    /** Path of the offending field, e.g. `positions[3].entropy`; empty for the message itself. */
    readonly field: string,
    problem: string,
  ) {
    super(`${subject}: ${field ? `field "${field}" ` : 'message '}${problem}`);
    this.name = 'BusValidationError';
  }
}

export interface ValidateOptions {
  /**
   * Reject fields the schema does not name. On by default, which catches typos at the publisher;
   * receivers turn it off so a newer publisher may add fields during a rolling upgrade.
   */
  strict?: boolean;
}

type Obj = Record<string, unknown>;

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (v === undefined) return 'undefined';
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : typeof v;
}

// One checker per message: collects the subject and the path prefix so each rule reads as one line.
class Checker {
  constructor(
    private readonly subject: string,
    private readonly strict: boolean,
  ) {}

  fail(field: string, problem: string): never {
    throw new BusValidationError(this.subject, field, problem);
  }

  object(v: unknown, path: string, keys: readonly string[]): Obj {
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      this.fail(path, `must be an object, got ${show(v)}`);
    const o = v as Obj;
    if (this.strict) {
      for (const k of Object.keys(o)) {
        if (!keys.includes(k))
          this.fail(join(path, k), `is not part of the schema (expected ${keys.join(', ')})`);
      }
    }
    return o;
  }

  string(o: Obj, path: string, k: string): string {
    const v = o[k];
    if (typeof v !== 'string' || v.length === 0)
      this.fail(join(path, k), `must be a non-empty string, got ${show(v)}`);
    return v;
  }

  int(o: Obj, path: string, k: string, min = 0): number {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      this.fail(join(path, k), `must be an integer >= ${min}, got ${show(v)}`);
    }
    return v;
  }

  finite(o: Obj, path: string, k: string, min = -Infinity, max = Infinity): number {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
      const range =
        min > -Infinity && max < Infinity
          ? ` in [${min}, ${max}]`
          : min > -Infinity
            ? ` >= ${min}`
            : max < Infinity
              ? ` <= ${max}`
              : '';
      this.fail(join(path, k), `must be a finite number${range}, got ${show(v)}`);
    }
    return v;
  }

  boolean(o: Obj, path: string, k: string): boolean {
    const v = o[k];
    if (typeof v !== 'boolean') this.fail(join(path, k), `must be a boolean, got ${show(v)}`);
    return v;
  }
}

function join(path: string, k: string): string {
  return path ? `${path}.${k}` : k;
}

type Validator<S extends Subject> = (m: unknown, c: Checker) => BusSchemas[S];

const VALIDATORS: { [S in Subject]: Validator<S> } = {
  'rmt.positions.scored': (m, c) => {
    const o = c.object(m, '', ['run_id', 'split', 'chunk', 'chunks', 'positions']);
    c.string(o, '', 'run_id');
    if (o.split !== 'train' && o.split !== 'held_out')
      c.fail('split', `must be "train" or "held_out", got ${show(o.split)}`);
    const chunks = c.int(o, '', 'chunks', 1);
    const chunk = c.int(o, '', 'chunk', 0);
    if (chunk >= chunks) c.fail('chunk', `must be < chunks (${chunks}), got ${chunk}`);
    if (!Array.isArray(o.positions)) c.fail('positions', `must be an array, got ${show(o.positions)}`);
    const positions = o.positions as unknown[];
    for (let i = 0; i < positions.length; i++) {
      const path = `positions[${i}]`;
      const p = c.object(positions[i], path, ['id', 'entropy']);
      c.int(p, path, 'id', 0);
      c.finite(p, path, 'entropy', 0);
    }
    return o as unknown as PositionsScored;
  },
  'rmt.difficulty.observed': (m, c) => {
    const o = c.object(m, '', [
      'run_id',
      'step',
      'position_id',
      'accuracy',
      'group_size',
      'weight_version',
      'worker_id',
    ]);
    c.string(o, '', 'run_id');
    c.int(o, '', 'step');
    c.int(o, '', 'position_id');
    c.finite(o, '', 'accuracy', 0, 1);
    c.int(o, '', 'group_size', 1);
    c.int(o, '', 'weight_version');
    c.string(o, '', 'worker_id');
    return o as unknown as DifficultyObserved;
  },
  'rmt.weights.published': (m, c) => {
    const o = c.object(m, '', ['run_id', 'version', 'step', 'learner', 'tensors', 'bytes']);
    c.string(o, '', 'run_id');
    c.int(o, '', 'version');
    c.int(o, '', 'step');
    c.string(o, '', 'learner');
    c.int(o, '', 'tensors');
    c.int(o, '', 'bytes');
    return o as unknown as WeightsPublished;
  },
  'rmt.metrics.step': (m, c) => {
    const o = c.object(m, '', ['run_id', 'step', 'metrics']);
    c.string(o, '', 'run_id');
    c.int(o, '', 'step');
    // Metric names are open-ended, so strictness does not apply to the keys of this record.
    const metrics = o.metrics;
    if (typeof metrics !== 'object' || metrics === null || Array.isArray(metrics)) {
      c.fail('metrics', `must be an object of name -> number, got ${show(metrics)}`);
    }
    for (const k of Object.keys(metrics as Obj)) c.finite(metrics as Obj, 'metrics', k);
    return o as unknown as StepMetrics;
  },
  'rmt.workers.heartbeat': (m, c) => {
    const o = c.object(m, '', ['worker_id', 'address', 'weight_version', 'busy', 'run_id', 'ts']);
    c.string(o, '', 'worker_id');
    c.string(o, '', 'address');
    c.int(o, '', 'weight_version');
    c.boolean(o, '', 'busy');
    if (o.run_id !== null) c.string(o, '', 'run_id');
    c.finite(o, '', 'ts', 0);
    return o as unknown as WorkerHeartbeat;
  },
};

/**
 * Checks `msg` against the schema of `subject` and returns it typed; throws a BusValidationError
 * naming the subject and the field otherwise.
 */
export function validate<S extends Subject>(
  subject: S,
  msg: unknown,
  opts: ValidateOptions = {},
): BusSchemas[S] {
  const v = VALIDATORS[subject] as Validator<S> | undefined;
  if (!v)
    throw new BusValidationError(String(subject), '', `unknown subject (known: ${SUBJECTS.join(', ')})`);
  return v(msg, new Checker(subject, opts.strict ?? true));
}
