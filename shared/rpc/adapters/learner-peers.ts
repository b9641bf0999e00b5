import type { LearnerPeers } from '../../run/data-parallel.js';
import type { GradientPiece } from '../../run/gradient-reduce.js';
import { type ClientOptions, type LearnerClient, learnerClient } from '../client.js';
import { failedPrecondition, internal, isServiceError, Status, unavailable } from '../errors.js';
import { readWeightsStream } from './weights-stream.js';

/**
 * Another learner's failure as this learner's caller reads it: away stays away (UNAVAILABLE, the run
 * waits for it), a learner not in the state for the call stays FAILED_PRECONDITION (the coordinator
 * reconnects every learner), a deadline or cancellation keeps its code, anything else is INTERNAL;
 * each names the learner.
 */
async function* peerErrors<T>(stream: AsyncIterable<T>, address: string): AsyncGenerator<T> {
  try {
    yield* stream;
  } catch (e) {
    if (!isServiceError(e)) throw e;
    const why = `learner ${address}: ${e.details || e.message}`;
    if (e.code === Status.UNAVAILABLE) throw unavailable(`learner ${address}`, e.details || e.message);
    if (e.code === Status.FAILED_PRECONDITION) throw failedPrecondition(why);
    if (e.code === Status.DEADLINE_EXCEEDED || e.code === Status.CANCELLED) throw e;
    throw internal(why, e);
  }
}

/**
 * How a data-parallel learner reaches the others over gRPC: GetShardGradient (the leader pulls a
 * follower's gradient) and GetWeights (a follower pulls the leader's weights). One client per
 * address, kept for the process's life (a StatefulSet's peers are a handful of stable names).
 */
export class RemoteLearnerPeers implements LearnerPeers {
  private readonly clients = new Map<string, LearnerClient>();

  constructor(private readonly options: ClientOptions) {}

  private client(address: string): LearnerClient {
    let c = this.clients.get(address);
    if (!c) {
      c = learnerClient(address, this.options);
      this.clients.set(address, c);
    }
    return c;
  }

  async *gradient(
    address: string,
    runId: string,
    step: number,
    rank: number,
    signal?: AbortSignal,
  ): AsyncGenerator<GradientPiece> {
    for await (const m of peerErrors(
      this.client(address).getShardGradient({ runId, step, rank }, { signal }),
      address,
    )) {
      const p = m.part;
      if (p?.$case === 'header') {
        const h = p.value;
        yield {
          kind: 'header',
          step: h.step,
          rank: h.rank,
          version: h.weightVersion,
          tensors: h.tensors,
          metrics: h.metrics,
        };
      } else if (p?.$case === 'tensor') {
        const t = p.value;
        yield { kind: 'tensor', name: t.name, shape: t.shape, offset: t.offset, data: t.data };
      }
    }
  }

  async weights(
    address: string,
    runId: string,
    version: number,
    signal?: AbortSignal,
  ): Promise<{ version: number; weights: Map<string, Float32Array> }> {
    const { header, params } = await readWeightsStream(
      peerErrors(this.client(address).getWeights({ runId, minVersion: version }, { signal }), address),
      address,
    );
    return { version: header.version, weights: params };
  }
}
