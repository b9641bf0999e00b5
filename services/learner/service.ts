import type { EventBus } from '../../shared/bus/bus.js';
import { SERVICE_LIMITS } from '../../shared/config/service-limits.js';
import { groupFromPb, keyPositionFromPb } from '../../shared/rpc/adapters/convert.js';
import { asStatus, runOf } from '../../shared/rpc/adapters/library-errors.js';
import {
  failedPrecondition,
  handleServerStream,
  handleUnary,
  invalidArgument,
} from '../../shared/rpc/errors.js';
import { LearnerServiceService, type WeightsChunk } from '../../shared/rpc/gen/rmt/v1/learner.js';
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
    trainStep: handleUnary(async (req) => {
      const learner = await asStatus(async () => o.host.learner(req.runId));
      const groups = req.groups.map(groupFromPb);
      const positions = req.positions.map((p) => keyPositionFromPb(p));
      for (const [i, g] of groups.entries()) {
        if (g.length === 0)
          throw invalidArgument(`groups[${i}].rollouts`, 'a group needs at least one rollout');
      }
      const metrics = await asStatus(() =>
        o.host.trainStep(
          { runId: req.runId, cfg: learner.cfg, holder: holderOf(req.coordinatorId) },
          req.step,
          groups,
          positions,
          req.groups.map((g) => g.weightVersion),
        ),
      );
      o.onStep?.(metrics);
      await announce(req.runId);
      return { step: learner.step, weightVersion: learner.step, metrics };
    }),
    getWeights: handleServerStream(async function* (req, ctx): AsyncGenerator<WeightsChunk> {
      const learner = await asStatus(async () => o.host.learner(req.runId));
      if (req.minVersion > learner.step) {
        throw failedPrecondition(`weights ${req.minVersion} asked for, the learner is at ${learner.step}`);
      }
      const maxChunk = SERVICE_LIMITS.max_weights_chunk_bytes;
      if (req.chunkBytes !== 0 && !(req.chunkBytes >= 4096 && req.chunkBytes <= maxChunk)) {
        throw invalidArgument('chunk_bytes', `0 (1 MiB) or in [4096, ${maxChunk}], got ${req.chunkBytes}`);
      }
      const chunkBytes = req.chunkBytes > 0 ? req.chunkBytes : DEFAULT_CHUNK_BYTES;
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
      const per = Math.max(1, Math.floor(chunkBytes / 4));
      for (const [name, data] of weights) {
        ctx.signal.throwIfAborted();
        const shape = learner.shapeOf(name);
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
