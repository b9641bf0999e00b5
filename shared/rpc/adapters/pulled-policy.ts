import type { Backend } from '../../kernels/backend.js';
import { parseModelConfig } from '../../model/config.js';
import { Decoder } from '../../model/decoder.js';
import { uploadParams } from '../../model/weights.js';
import type { Policy, PolicySource } from '../../run/policy.js';
import type { LearnerClient } from '../client.js';
import { failedPrecondition, isServiceError, Status } from '../errors.js';
import { readWeightsStream } from './weights-stream.js';

interface Downloaded {
  runId: string;
  version: number;
  configJson: string;
  params: Map<string, Float32Array>;
  bytes: number;
  seconds: number;
}

/**
 * The learner's FAILED_PRECONDITION (no such run, weights older than asked for) is the caller's
 * precondition too: a min_weight_version ahead of the learner is not a fault of this worker.
 */
async function* asPrecondition<T>(stream: AsyncIterable<T>, minVersion: number): AsyncGenerator<T> {
  try {
    yield* stream;
  } catch (e) {
    if (isServiceError(e) && e.code === Status.FAILED_PRECONDITION) {
      throw failedPrecondition(`min_weight_version ${minVersion}: the learner says: ${e.details}`);
    }
    throw e;
  }
}

/**
 * A rollout worker's copy of the policy, pulled from the learner's GetWeights stream. A
 * `rmt.weights.published` announcement starts a download in the background (`prefetch`); the new
 * weights are only swapped in when a job asks for them (`acquire`), between jobs, so a generation
 * in flight never sees its buffers change.
 */
export class PulledPolicy implements PolicySource {
  private current: { runId: string; version: number; configJson: string; model: Decoder } | null = null;
  private pending: Promise<Downloaded> | null = null;
  /** Seconds and bytes of the last download (weight-sync time in the services benchmark). */
  lastSync = { seconds: 0, bytes: 0, version: -1 };

  constructor(
    private readonly client: LearnerClient,
    private readonly backend: Backend,
  ) {}

  get version(): number {
    return this.current?.version ?? 0;
  }

  prefetch(runId: string, version: number): void {
    if (this.current && this.current.runId === runId && this.current.version >= version) return;
    if (this.pending) return;
    const p = this.download(runId, version);
    this.pending = p;
    p.catch(() => {}).finally(() => {
      if (this.pending === p) this.pending = null;
    });
  }

  async acquire(
    runId: string,
    minVersion: number,
    signal?: AbortSignal,
    maxVersion = Number.POSITIVE_INFINITY,
  ): Promise<Policy> {
    const fits = (v: number) => v >= minVersion && v <= maxVersion;
    const usable = () => this.current && this.current.runId === runId && fits(this.current.version);
    if (!usable() && this.pending) {
      const d = await this.pending.catch(() => null);
      if (d && d.runId === runId && fits(d.version)) this.install(d, true);
    }
    // Weights newer than the job's step are from before the learner went back to a checkpoint.
    if (!usable()) this.install(await this.download(runId, minVersion, signal), true);
    const c = this.current!;
    if (c.version < minVersion) throw failedPrecondition(`weights ${c.version} are older than ${minVersion}`);
    if (c.version > maxVersion) {
      throw failedPrecondition(
        `the learner serves weights ${c.version}, newer than step ${maxVersion} asks for`,
      );
    }
    return { model: c.model, version: c.version };
  }

  private async download(runId: string, minVersion: number, signal?: AbortSignal): Promise<Downloaded> {
    const t0 = performance.now();
    const stream = this.client.getWeights({ runId, minVersion }, { signal });
    const { header, params, bytes } = await readWeightsStream(
      asPrecondition(stream, minVersion),
      'the learner',
    );
    const seconds = (performance.now() - t0) / 1000;
    this.lastSync = { seconds, bytes, version: header.version };
    return { runId, version: header.version, configJson: header.modelConfigJson, params, bytes, seconds };
  }

  /** Swaps `d` in unless it is older than what is held; `anyVersion`: also when it is (a learner that went back). */
  private install(d: Downloaded, anyVersion = false): void {
    if (this.current && this.current.runId === d.runId && this.current.version === d.version) return;
    if (!anyVersion && this.current && this.current.runId === d.runId && this.current.version > d.version)
      return;
    const old = this.current;
    const model =
      old && old.configJson === d.configJson
        ? old.model
        : new Decoder(
            parseModelConfig(JSON.parse(d.configJson), 'GetWeights header'),
            this.backend,
            new Map(),
          );
    const previous = model.params;
    model.params = uploadParams(this.backend, d.params);
    for (const b of previous.values()) this.backend.free(b);
    if (old && old.model !== model) for (const b of old.model.params.values()) this.backend.free(b);
    this.current = { runId: d.runId, version: d.version, configJson: d.configJson, model };
  }
}
