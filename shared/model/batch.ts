/**
 * A padded batch of token sequences as the decoder consumes it: [batch, seqLen] flattened, with the
 * attention mask (1 = real token) and position ids counted over real tokens only, so a left-padded
 * sequence starts at position 0 like an unpadded one (what transformers' generate does).
 */
export interface TokenBatch {
  batch: number;
  seqLen: number;
  ids: Int32Array;
  mask: Uint8Array;
  positions: Int32Array;
}

/** Next-token targets and per-token loss weights over a `TokenBatch` (target -1 = no loss). */
export interface LossTargets {
  targets: Int32Array;
  weights: Float64Array;
}

export function positionsFromMask(mask: Uint8Array, batch: number, seqLen: number): Int32Array {
  const pos = new Int32Array(batch * seqLen);
  for (let b = 0; b < batch; b++) {
    let count = 0;
    for (let t = 0; t < seqLen; t++) {
      const i = b * seqLen + t;
      pos[i] = Math.max(0, count - 1 + mask[i]);
      count += mask[i];
    }
  }
  return pos;
}

/**
 * Pads sequences to a common length on the given side with `padId` (masked out, never attended).
 * The length is rounded up to a multiple of `bucket`: kernels are compiled per shape, so a few
 * recurring lengths cost far less than a new length every batch.
 */
export function padBatch(
  seqs: readonly ArrayLike<number>[],
  padId: number,
  side: 'left' | 'right' = 'right',
  bucket = 1,
): TokenBatch {
  const batch = seqs.length;
  const seqLen = roundUp(Math.max(1, ...seqs.map((s) => s.length)), bucket);
  const ids = new Int32Array(batch * seqLen).fill(padId);
  const mask = new Uint8Array(batch * seqLen);
  seqs.forEach((s, b) => {
    const start = side === 'left' ? seqLen - s.length : 0;
    for (let t = 0; t < s.length; t++) {
      ids[b * seqLen + start + t] = s[t];
      mask[b * seqLen + start + t] = 1;
    }
  });
  return { batch, seqLen, ids, mask, positions: positionsFromMask(mask, batch, seqLen) };
}

/**
 * Plain next-token prediction targets: every real token predicts the next real token, each weighted
 * 1 / (number of predictions in the batch) so the loss is the mean NLL.
 */
export function nextTokenTargets(b: TokenBatch): LossTargets {
  const n = b.batch * b.seqLen;
  const targets = new Int32Array(n).fill(-1);
  let count = 0;
  for (let s = 0; s < b.batch; s++) {
    for (let t = 0; t + 1 < b.seqLen; t++) {
      const i = s * b.seqLen + t;
      if (b.mask[i] && b.mask[i + 1]) {
        targets[i] = b.ids[i + 1];
        count++;
      }
    }
  }
  const weights = new Float64Array(n);
  for (let i = 0; i < n; i++) if (targets[i] >= 0) weights[i] = 1 / count;
  return { targets, weights };
}

export const roundUp = (n: number, multiple: number): number => Math.ceil(n / multiple) * multiple;
