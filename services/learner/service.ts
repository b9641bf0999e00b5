import type { EventBus } from '../../shared/bus/bus.js';
import { SERVICE_LIMITS } from '../../shared/config/service-limits.js';
import { dataParallelFromPb, groupFromPb, keyPositionFromPb } from '../../shared/rpc/adapters/convert.js';
import { asStatus, runOf } from '../../shared/rpc/adapters/library-errors.js';
import {
  failedPrecondition,
  handleServerStream,
  handleUnary,
  invalidArgument,
} from '../../shared/rpc/errors.js';
import {
  type GradientChunk,
  LearnerServiceService,
  type TensorChunk,
  type WeightsChunk,
} from '../../shared/rpc/gen/rmt/v1/learner.js';
import { bindService, type ServiceBinding } from '../../shared/rpc/server.js';
import type { DataRoot } from '../../shared/run/data-root.js';
import type { CoordinatorState } from '../../shared/run/learner.js';
import type { LearnerHost } from '../../shared/run/local.js';
import { RunContexts } from '../../shared/run/run-context.js';

const DEFAULT_CHUNK_BYTES = 1 << 20;

export interface LearnerServiceOptions {
  host: LearnerHost;
  /** Where run paths must lie (the host resolves them under the same root). */
  root?: DataRoot;
  /** Longest RunRef.config_json accepted (SERVICE_LIMITS.max_config_bytes by default). */
  maxConfigBytes?: number;
  bus: EventBus;
  /** The address workers pull weights from (announced in rmt.weights.published). */
  advertise: () => string;
  onStep?: (metrics: Record<string, number>) => void;
  /** Where a failed weights announcement is reported (the step itself stands: workers pull on demand). */
  log?: (line: string) => void;
}

/**
 * rmt.v1.LearnerService over the library's learner: one run at a time, a dual-loss step per
 * TrainStep, checkpoints, and the weights as a chunked stream. After every step the new version is
 * announced on `rmt.weights.published` so workers can start pulling before they are asked to.
 */
export function learnerService(o: LearnerServiceOptions): ServiceBinding {
  const contexts = new RunContexts({ root: o.root, maxConfigBytes: o.maxConfigBytes });
  // A notification: with the bus away the step has still been taken, and workers pull the weights
  // a job asks for anyway, so a failed announcement is logged rather than failing the call.
  const announce = async (runId: string) => {
    const l = o.host.learner(runId);
    let bytes = 0;
    for (const [name] of l.model.params) bytes += 4 * numel(l, name);
    await o.bus
      .publish('rmt.weights.published', {
        run_id: runId,
        version: l.step,
        step: l.step,
        learner: o.advertise(),
        tensors: l.model.params.size,
        bytes,
      })
      .catch((e: Error) => o.log?.(`announcing weights ${l.step} of run "${runId}" failed: ${e.message}`));
  };
  return bindService(LearnerServiceService, {
    initRun: handleUnary(async (req) => {
      const run = await runOf(contexts, req.run);
      const holder = holderOf(req.coordinatorId);
      const start = await asStatus(() => o.host.init({ ...run, holder }));
      await announce(run.runId);
      return {
        step: start.step,
        weightVersion: start.step,
        extraJson: start.extra ? JSON.stringify(start.extra) : '',
        resumedFrom: start.resumedFrom ?? '',
        backend: o.host.backendName,
        leaseS: start.leaseS ?? 0,
      };
    }),
    trainStep: handleUnary(async (req, ctx) => {
      const learner = await asStatus(async () => o.host.learner(req.runId));
      const groups = req.groups.map(groupFromPb);
      const positions = req.positions.map((p) => keyPositionFromPb(p));
      for (const [i, g] of groups.entries()) {
        if (g.length === 0)
          throw invalidArgument(`groups[${i}].rollouts`, 'a group needs at least one rollout');
      }
      const dp = dataParallelFromPb(req.dataParallel);
      const metrics = await asStatus(() =>
        o.host.trainStep(
          { runId: req.runId, cfg: learner.cfg, holder: holderOf(req.coordinatorId) },
          req.step,
          groups,
          positions,
          req.groups.map((g) => g.weightVersion),
          dp,
          ctx.signal,
        ),
      );
      // A follower's shard moved no weights: the leader announces the step.
      if (dp && dp.rank > 0) return { step: learner.step, weightVersion: learner.step, metrics };
      o.onStep?.(metrics);
      await announce(req.runId);
      return { step: learner.step, weightVersion: learner.step, metrics };
    }),
    getShardGradient: handleServerStream(async function* (req, ctx): AsyncGenerator<GradientChunk> {
      const chunkBytes = chunkBytesOf(req.chunkBytes);
      const learner = await asStatus(async () => o.host.learner(req.runId));
      const { grads, metrics } = await asStatus(() => o.host.shardGradient(req.runId, req.step, ctx.signal));
      yield {
        part: {
          $case: 'header',
          value: { step: req.step, rank: req.rank, weightVersion: req.step, tensors: grads.size, metrics },
        },
      };
      for (const [name, data] of grads) {
        ctx.signal.throwIfAborted();
        yield* tensorChunks(name, learner.shapeOf(name), data, chunkBytes);
      }
    }),
    getWeights: handleServerStream(async function* (req, ctx): AsyncGenerator<WeightsChunk> {
      const learner = await asStatus(async () => o.host.learner(req.runId));
      if (req.minVersion > learner.step) {
        throw failedPrecondition(`weights ${req.minVersion} asked for, the learner is at ${learner.step}`);
      }
      const chunkBytes = chunkBytesOf(req.chunkBytes);
      // A consistent snapshot: the weights of this version, read before any later step changes them.
      const { version, weights } = await learner.snapshot();
      let bytes = 0;
      for (const w of weights.values()) bytes += w.byteLength;
      yield {
        part: {
          $case: 'header',
          value: {
            version,
            step: version,
            modelConfigJson: JSON.stringify(learner.config),
            tensors: weights.size,
            bytes,
          },
        },
      };
      for (const [name, data] of weights) {
        ctx.signal.throwIfAborted();
        yield* tensorChunks(name, learner.shapeOf(name), data, chunkBytes);
      }
    }),
    checkpoint: handleUnary(async (req) => {
      const learner = await asStatus(async () => o.host.learner(req.runId));
      const run = { runId: req.runId, cfg: learner.cfg, holder: holderOf(req.coordinatorId) };
      if (req.final) return { path: await asStatus(() => o.host.saveFinal(run)) };
      let state: CoordinatorState;
      try {
        state = JSON.parse(req.extraJson || '{}') as CoordinatorState;
      } catch (e) {
        throw invalidArgument('extra_json', `not JSON: ${(e as Error).message}`);
      }
      if (!Array.isArray(state.rng)) throw invalidArgument('extra_json', 'needs the sampler state "rng"');
      if (req.step > 0 && req.step !== learner.step) {
        throw failedPrecondition(
          `checkpoint of step ${req.step} asked for, the learner is at ${learner.step}`,
        );
      }
      return { path: await asStatus(() => o.host.checkpoint(run, state)) };
    }),
    renewLease: handleUnary(async (req) => {
      const r = await asStatus(() => o.host.renew({ runId: req.runId, holder: holderOf(req.coordinatorId) }));
      return { step: r.step, leaseS: r.leaseS };
    }),
  });
}

/** A request's chunk_bytes: 0 for 1 MiB, else within [4 KiB, SERVICE_LIMITS.max_weights_chunk_bytes]. */
function chunkBytesOf(chunkBytes: number): number {
  const maxChunk = SERVICE_LIMITS.max_weights_chunk_bytes;
  if (chunkBytes !== 0 && !(chunkBytes >= 4096 && chunkBytes <= maxChunk)) {
    throw invalidArgument('chunk_bytes', `0 (1 MiB) or in [4096, ${maxChunk}], got ${chunkBytes}`);
  }
  return chunkBytes > 0 ? chunkBytes : DEFAULT_CHUNK_BYTES;
}

/** One tensor as TensorChunk messages of at most `chunkBytes` of data each, in order of offset. */
function* tensorChunks(
  name: string,
  shape: number[],
  data: Float32Array,
  chunkBytes: number,
): Generator<{ part: { $case: 'tensor'; value: TensorChunk } }> {
  const per = Math.max(1, Math.floor(chunkBytes / 4));
  for (let off = 0; off < data.length || off === 0; off += per) {
    const part = data.subarray(off, Math.min(data.length, off + per));
    yield {
      part: {
        $case: 'tensor',
        value: {
          name,
          shape,
          offset: off,
          data: new Uint8Array(part.buffer, part.byteOffset, part.byteLength),
        },
      },
    };
    if (data.length === 0) break;
  }
}

/** A coordinator id as the lease compares it: a run id's characters, bounded. */
function holderOf(id: string): string | undefined {
  if (id === '') return undefined;
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(id)) {
    throw invalidArgument('coordinator_id', 'at most 128 characters of [A-Za-z0-9_-]');
  }
  return id;
}

function numel(l: { shapeOf(name: string): number[] }, name: string): number {
  return l.shapeOf(name).reduce((a, b) => a * b, 1);
}
