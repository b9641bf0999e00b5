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

/** The same loss without gradients (evaluation). */
export async function lossOnly(
  model: Decoder,
  batch: TokenBatch,
  t: LossTargets,
): Promise<{ loss: number; nll: Float64Array }> {
  const be = model.backend;
  const rows = batch.batch * batch.seqLen;
  const tape = await model.forward(batch);
  const logits: Buf = await model.logits(tape);
  model.releaseTape(tape);
  const { nll, dlogits } = await be.crossEntropy(logits, t.targets, t.weights, rows, model.config.vocab_size);
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
