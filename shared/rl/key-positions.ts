/**
 * A key position of the RL set: where in the corpus the policy reasons before predicting, with the
 * context it sees and the ground truth its rewards compare against (docs/method.md section 1).
 */
export interface KeyPosition {
  /** Index in the token stream: stable id for the difficulty table and the bus. */
  id: number;
  /** tau[pos - context_len, pos), or the document's prefix before pos (at most max_context tokens). */
  context: number[];
  /** tau[pos]. */
  target: number;
  /** tau[pos, pos + continuation_len): what the byte-prefix reward reads. */
  continuation: number[];
  /** The proxy's top-k entropy at pos. */
  entropy: number;
}

export interface KeyPositionOptions {
  context_len: number;
  /**
   * null/absent: the fixed window of context_len tokens. A number: the document's prefix before the
   * position, its last max_context tokens; any position with a token before it in its document.
   */
  max_context?: number | null;
  continuation_len: number;
  /** Token ids that are never targets (end-of-text, `<think>`: the layout cannot predict them). */
  excluded: readonly number[];
  /** When given, only tokens marked 1 here can be key positions (e.g. math answer digits). */
  allowed?: Uint8Array;
}

/**
 * Every scored position of the stream that can be a key position: a context before it (a full
 * window, or with max_context at least one token of the document's prefix), a finite entropy, a
 * target the prompt layout can express, and no document boundary inside the context (a context
 * spanning two documents asks the model to predict across an end-of-text).
 */
export function keyPositions(
  tokens: Int32Array,
  entropy: Float32Array,
  o: KeyPositionOptions,
  boundary: number,
): KeyPosition[] {
  const out: KeyPosition[] = [];
  let lastBoundary = -1;
  const prefix = o.max_context ?? 0;
  for (let p = 0; p < tokens.length; p++) {
    if (p > 0 && tokens[p - 1] === boundary) lastBoundary = p - 1;
    const from = prefix ? Math.max(lastBoundary + 1, p - prefix) : p - o.context_len;
    if (from <= lastBoundary || from >= p || !Number.isFinite(entropy[p])) continue;
    if (o.excluded.includes(tokens[p]) || (o.allowed && !o.allowed[p])) continue;
    out.push({
      id: p,
      context: Array.from(tokens.subarray(from, p)),
      target: tokens[p],
      continuation: Array.from(tokens.subarray(p, Math.min(tokens.length, p + o.continuation_len))),
      entropy: entropy[p],
    });
  }
  return out;
}

/**
 * The key set C of a training step: the positions the curriculum drew, then every position of a
 * trained group that is not among them (those dynamic sampling added in place of zero-variance
 * groups), each once. The learner's NTP term takes a window around each and leaves every member
 * of C out of its targets, so a replacement position needs its window and its mask as much as a
 * drawn one.
 */
export function stepKeySet(
  drawn: readonly KeyPosition[],
  trainedGroups: readonly (readonly { positionId: number }[])[],
  byId: ReadonlyMap<number, KeyPosition>,
): KeyPosition[] {
  const out = [...drawn];
  const seen = new Set(drawn.map((p) => p.id));
  for (const g of trainedGroups) {
    const id = g[0]?.positionId;
    if (id === undefined || seen.has(id)) continue;
    const p = byId.get(id);
    if (!p) throw new Error(`a trained group's position ${id} is not a key position of the run`);
    out.push(p);
    seen.add(id);
  }
  return out;
}
