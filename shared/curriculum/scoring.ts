import type { Decoder } from '../model/decoder.js';
import { topKEntropy } from '../model/sampling.js';
import type { Progress } from '../util/progress.js';

/**
 * Difficulty scoring (docs/method.md section 4): the top-k entropy of a proxy model's next-token distribution
 * at every position of a token stream. Windows overlap by half so every scored position (past the
 * first half-window) sees at least half a window of context, as it would in training.
 *
 * Returns entropy[p] for predicting tokens[p] from what precedes it; position 0 has no context and
 * stays NaN. `usable` is the tokenizer's vocabulary size (default: every row of the model).
 */
export async function scoreStream(
  model: Decoder,
  tokens: Int32Array,
  opts: {
    window: number;
    k: number;
    batch: number;
    usable?: number;
    progress?: Progress;
    signal?: AbortSignal;
  },
): Promise<Float32Array> {
  const { window: L, k } = opts;
  const be = model.backend;
  const V = model.config.vocab_size;
  const usable = Math.min(opts.usable ?? V, V);
  const out = new Float32Array(tokens.length).fill(Number.NaN);
  const stride = Math.max(1, Math.floor(L / 2));
  const starts: number[] = [];
  for (let s = 0; s < tokens.length - 1; s += stride) {
    starts.push(Math.max(0, Math.min(s, tokens.length - L)));
    if (s + L >= tokens.length) break;
  }
  for (let i = 0; i < starts.length; i += opts.batch) {
    opts.signal?.throwIfAborted();
    const group = starts.slice(i, i + opts.batch);
    const len = Math.min(L, tokens.length);
    const ids = new Int32Array(group.length * len);
    group.forEach((s, b) => {
      ids.set(tokens.subarray(s, s + len), b * len);
    });
    const positions = new Int32Array(group.length * len).map((_, j) => j % len);
    const batch = {
      batch: group.length,
      seqLen: len,
      ids,
      mask: new Uint8Array(ids.length).fill(1),
      positions,
    };
    const tape = await model.forward(batch);
    const logitsBuf = await model.logits(tape);
    model.releaseTape(tape);
    const logits = await be.read(logitsBuf);
    be.free(logitsBuf);
    group.forEach((s, b) => {
      // Row j predicts tokens[s + j + 1]; keep only rows with half a window of context, except at the start.
      const firstRow = s === 0 ? 0 : Math.min(stride, len) - 1;
      for (let j = firstRow; j < len - 1; j++) {
        const row = b * len + j;
        out[s + j + 1] = topKEntropy(logits.subarray(row * V, (row + 1) * V), k, usable);
      }
    });
    opts.progress?.update(Math.min(starts.length, i + group.length), {});
  }
  return out;
}
