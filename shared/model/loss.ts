import type { Buf } from '../kernels/backend.js';
import type { LossTargets, TokenBatch } from './batch.js';
import type { Decoder, Params } from './decoder.js';

export interface LossResult {
  /** sum over rows of weights[r] * nll[r]. */
  loss: number;
  /** Per-row negative log-likelihood of the target (0 where the target is ignored), on the host. */
  nll: Float64Array;
  grads: Params;
}

/** Weighted next-token cross-entropy and the gradient of every parameter, in one forward/backward. */
export async function lossAndGrad(model: Decoder, batch: TokenBatch, t: LossTargets): Promise<LossResult> {
  const be = model.backend;
  const rows = batch.batch * batch.seqLen;
  const tape = await model.forward(batch);
  const logits = await model.logits(tape);
  const { nll, dlogits } = await be.crossEntropy(logits, t.targets, t.weights, rows, model.config.vocab_size);
  be.free(logits);
  const nllHost = Float64Array.from(await be.read(nll));
  be.free(nll);
  const grads = await model.backward(tape, dlogits);
  be.free(dlogits);
  return { loss: weightedSum(nllHost, t.weights), nll: nllHost, grads };
}

/**
 * Forward and backward where the per-token weights depend on the tokens' own log-likelihoods (the
 * policy-gradient loss: its weight on a token is dL/dnll, a function of the new log-probability).
 * `weightsOf` receives nll for every row (0 where the target is ignored) and returns the weights;
 * the gradient is that of sum_r weights[r] * nll[r] with the weights held fixed. The nll is that of
 * softmax(logits / temperature) (default 1; see Backend.crossEntropy).
 */
export async function lossAndGradWeightedBy(
  model: Decoder,
  batch: TokenBatch,
  targets: Int32Array,
  weightsOf: (nll: Float64Array) => Float64Array,
  temperature = 1,
): Promise<LossResult> {
  const be = model.backend;
  const rows = batch.batch * batch.seqLen;
  const V = model.config.vocab_size;
  const tape = await model.forward(batch);
  const logits = await model.logits(tape);
  const first = await be.crossEntropy(logits, targets, new Float64Array(rows), rows, V, temperature);
  be.free(first.dlogits);
  const nll = Float64Array.from(await be.read(first.nll));
  be.free(first.nll);
  const weights = weightsOf(nll);
  const second = await be.crossEntropy(logits, targets, weights, rows, V, temperature);
  be.free(second.nll);
  be.free(logits);
  const grads = await model.backward(tape, second.dlogits);
  be.free(second.dlogits);
  return { loss: weightedSum(nll, weights), nll, grads };
}

/** Adds `more` into `into` (both gradient maps of one model), freeing what it replaces. */
export async function accumulateGrads(model: Decoder, into: Params, more: Params): Promise<Params> {
  const be = model.backend;
  for (const [name, g] of more) {
    const prev = into.get(name);
    if (!prev) {
      into.set(name, g);
      continue;
    }
    into.set(name, await be.add(prev, g));
    be.free(prev);
    be.free(g);
  }
  return into;
}

/**
 * The same loss without gradients (evaluation); `temperature` scales the logits as in
 * Backend.crossEntropy (default 1: plain next-token cross-entropy).
 */
export async function lossOnly(
  model: Decoder,
  batch: TokenBatch,
  t: LossTargets,
  temperature = 1,
): Promise<{ loss: number; nll: Float64Array }> {
  const be = model.backend;
  const rows = batch.batch * batch.seqLen;
  const tape = await model.forward(batch);
  const logits: Buf = await model.logits(tape);
  model.releaseTape(tape);
  const { nll, dlogits } = await be.crossEntropy(
    logits,
    t.targets,
    t.weights,
    rows,
    model.config.vocab_size,
    temperature,
  );
  be.free(logits);
  be.free(dlogits);
  const nllHost = Float64Array.from(await be.read(nll));
  be.free(nll);
  return { loss: weightedSum(nllHost, t.weights), nll: nllHost };
}

function weightedSum(nll: Float64Array, w: Float64Array): number {
  let s = 0;
  for (let i = 0; i < nll.length; i++) if (w[i] !== 0) s += w[i] * nll[i];
  return s;
}
