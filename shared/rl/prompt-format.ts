/**
 * How a next-token-reasoning rollout is laid out in tokens (docs/method.md section 1): the prompt built from a
 * context and a budget, and the parse of what the policy wrote back. Two layouts share one
 * interface so the generator, the reward and the learner never look at the layout themselves.
 *
 * Parsing never repairs a response: a missing `</think>` is not patched in, an empty or missing
 * prediction is `no_answer`, and a response cut by the hard cap is `length` whatever it contains.
 */
import type { PromptConfig } from '../config/rmt-defaults.js';
import type { Tokenizer } from '../data/tokenizer.js';

export type FinishReason = 'stop' | 'length' | 'no_answer';

export interface ParsedResponse {
  /** Tokens between `<think>` and `</think>` (all generated tokens when `</think>` never came). */
  reasoningIds: number[];
  /** The prediction as token ids; empty unless `finishReason` is `stop`. */
  predictionIds: number[];
  /** UTF-8 bytes of the prediction (what the byte-prefix reward compares); empty unless `stop`. */
  predictionBytes: Uint8Array;
  finishReason: FinishReason;
}

export interface PromptFormat {
  readonly name: 'bare' | 'rpt-v0';
  /** Ids that end generation (the generator stops after the first of them). */
  readonly stopIds: readonly number[];
  /** Prompt ids for a context; `budget` null states no budget (methods without DTB). */
  buildPrompt(contextIds: readonly number[], budget: number | null): number[];
  /** Splits generated ids (everything after the prompt) into reasoning and prediction. */
  parseResponse(responseIds: readonly number[]): ParsedResponse;
}

/** The bytes a run of tokens stands for: byte-level BPE tokens may split a UTF-8 character. */
export function bytesOfTokens(ids: readonly number[], tokenizer: Pick<Tokenizer, 'tokenBytes'>): Uint8Array {
  const parts = ids.map((id) => tokenizer.tokenBytes(id));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function checkBudget(budget: number | null): void {
  if (budget !== null && !(Number.isInteger(budget) && budget >= 1)) {
    throw new Error(`budget must be a positive integer or null (got ${budget})`);
  }
}

/** Replaces `{name}` by a value without String.replace's `$` patterns (contexts may contain `$&`). */
function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (whole, key: string) => (key in values ? values[key] : whole));
}

interface Split {
  /** Generated ids before the first stop id. */
  body: readonly number[];
  truncated: boolean;
}

function splitAtStop(responseIds: readonly number[], stopIds: readonly number[]): Split {
  const end = responseIds.findIndex((id) => stopIds.includes(id));
  return end < 0
    ? { body: responseIds, truncated: true }
    : { body: responseIds.slice(0, end), truncated: false };
}

const NO_BYTES = new Uint8Array(0);

function unanswered(reasoningIds: number[], finishReason: 'length' | 'no_answer'): ParsedResponse {
  return { reasoningIds, predictionIds: [], predictionBytes: NO_BYTES, finishReason };
}

/**
 * `context <think> [budget marker] c_1 ... c_k </think> y_1 ... y_m <eos>` for the small models this
 * project trains. The budget is the text of `budget_marker` (default ` budget {B}:`) right after
 * `<think>`: plain tokens the model learns to read, with no vocabulary change. Our tokenizers give
 * every digit its own token, so each budget is the same few tokens in the same place, and the
 * colon closes the number so a reasoning that starts with a digit cannot extend it.
 */
export class BareFormat implements PromptFormat {
  readonly name = 'bare';
  readonly stopIds: readonly number[];

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly config: Pick<PromptConfig, 'budget_marker'>,
  ) {
    this.stopIds = [tokenizer.eosId];
  }

  /** The marker tokens for a budget (empty for null). */
  budgetMarkerIds(budget: number | null): number[] {
    checkBudget(budget);
    if (budget === null) return [];
    return this.tokenizer.encode(fill(this.config.budget_marker, { B: String(budget) }));
  }

  buildPrompt(contextIds: readonly number[], budget: number | null): number[] {
    return [...contextIds, this.tokenizer.thinkId, ...this.budgetMarkerIds(budget)];
  }

  parseResponse(responseIds: readonly number[]): ParsedResponse {
    const { body, truncated } = splitAtStop(responseIds, this.stopIds);
    const close = body.indexOf(this.tokenizer.endThinkId);
    const reasoningIds = close < 0 ? [...body] : body.slice(0, close);
    if (truncated) return unanswered(reasoningIds, 'length');
    if (close < 0) return unanswered(reasoningIds, 'no_answer');
    const predictionIds = body.slice(close + 1);
    if (predictionIds.length === 0) return unanswered(reasoningIds, 'no_answer');
    return {
      reasoningIds,
      predictionIds,
      predictionBytes: bytesOfTokens(predictionIds, this.tokenizer),
      finishReason: 'stop',
    };
  }
}

const BOXED = new TextEncoder().encode('\\boxed{');
const OPEN = 0x7b; // '{'
const CLOSE = 0x7d; // '}'

function lastIndexOfBytes(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = hay.length - needle.length; i >= 0; i--) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * Bytes inside the last `\boxed{...}`, braces balanced; null when there is none or it never closes
 * (an earlier, closed one is not used: the last box is the answer, as in RPT and verl's math
 * scorer). Works on bytes because the box may start or end inside a token.
 */
export function lastBoxedBytes(bytes: Uint8Array): Uint8Array | null {
  const start = lastIndexOfBytes(bytes, BOXED);
  if (start < 0) return null;
  const from = start + BOXED.length;
  let depth = 1;
  for (let i = from; i < bytes.length; i++) {
    if (bytes[i] === OPEN) depth++;
    else if (bytes[i] === CLOSE && --depth === 0) return bytes.slice(from, i);
  }
  return null;
}

export interface RptTemplateOptions extends Pick<PromptConfig, 'rpt_template' | 'rpt_budget_sentence'> {
  /** Ids that end the response (an instruction model's end-of-turn); default the tokenizer's eos. */
  stopIds?: readonly number[];
}

/**
 * RPT's template v0 for instruction-following models: an instruction, the context as text, the
 * budget sentence of RMT, and the answer as the last `\boxed{...}` after `</think>`. The prediction
 * is text, so its ids are the tokenizer's own encoding of the boxed text.
 */
export class RptTemplateV0 implements PromptFormat {
  readonly name = 'rpt-v0';
  readonly stopIds: readonly number[];
  private readonly decoder = new TextDecoder();

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly options: RptTemplateOptions,
  ) {
    this.stopIds = options.stopIds ?? [tokenizer.eosId];
  }

  /** The prompt as text (a context ending inside a UTF-8 character decodes to U+FFFD there). */
  promptText(contextIds: readonly number[], budget: number | null): string {
    checkBudget(budget);
    const sentence = budget === null ? '' : fill(this.options.rpt_budget_sentence, { B: String(budget) });
    return fill(this.options.rpt_template, {
      context: this.tokenizer.decode(contextIds),
      budget_sentence: sentence,
    });
  }

  buildPrompt(contextIds: readonly number[], budget: number | null): number[] {
    return this.tokenizer.encode(this.promptText(contextIds, budget));
  }

  parseResponse(responseIds: readonly number[]): ParsedResponse {
    const split = splitAtStop(responseIds, this.stopIds);
    // A template that does not end in `<think>` leaves the model to open it: not reasoning.
    const body = split.body[0] === this.tokenizer.thinkId ? split.body.slice(1) : split.body;
    const close = body.indexOf(this.tokenizer.endThinkId);
    const reasoningIds = close < 0 ? [...body] : body.slice(0, close);
    if (split.truncated) return unanswered(reasoningIds, 'length');
    if (close < 0) return unanswered(reasoningIds, 'no_answer');
    const boxed = lastBoxedBytes(bytesOfTokens(body.slice(close + 1), this.tokenizer));
    if (boxed === null || boxed.length === 0) return unanswered(reasoningIds, 'no_answer');
    return {
      reasoningIds,
      predictionIds: this.tokenizer.encode(this.decoder.decode(boxed)),
      predictionBytes: boxed,
      finishReason: 'stop',
    };
  }
}

/** The format a run config names. */
export function makePromptFormat(tokenizer: Tokenizer, config: PromptConfig): PromptFormat {
  return config.format === 'bare' ? new BareFormat(tokenizer, config) : new RptTemplateV0(tokenizer, config);
}
