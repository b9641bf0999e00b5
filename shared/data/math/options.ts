/**
 * The options of the synthetic math corpus: every field with its default, and the check that
 * refuses a value out of range with the field named.
 */
import { RMT_DEFAULTS } from '../../config/rmt-defaults.js';
import type { Document } from '../corpora.js';
import {
  MATH_OPS,
  type MathOp,
  type MathSplit,
  REASONING_STYLES,
  type ReasoningStyle,
} from './arithmetic.js';

export type BudgetMode = 'length' | 'independent';

/** Inclusive integer range [min, max]. */
export type IntRange = readonly [min: number, max: number];

/**
 * Operand ranges of one operation. `add`: the two addends. `sub`: the two numbers, the larger becomes
 * the minuend. `mul`: `a` is the one-digit multiplier (must lie in [0, 9]), `b` the multiplicand.
 */
export interface OperandRanges {
  a: IntRange;
  b: IntRange;
}

export interface MathCorpusOptions {
  /** Number of documents (default 1000). */
  documents?: number;
  /** Problems per document, drawn uniformly from this range (default [4, 8]). */
  problemsPerDocument?: IntRange;
  /**
   * Fraction of problems written in the reasoning layout (default 0.3). The last problem of a
   * document is always plain, so each other problem is a reasoning example with probability
   * min(1, f * P / (P - 1)) for a document of P problems.
   */
  reasoningFraction?: number;
  /**
   * Fraction of reasoning examples cut inside the problem's statement instead of at an answer digit
   * (default 0): at the start of an operand digit, a word or an operator, with the next token's text
   * restated as the whole reasoning (no working helps there). Without them a base only ever reasons
   * before answer digits and, asked to reason at any other position, answers with a digit.
   */
  statementFraction?: number;
  /**
   * Whether a statement piece (` plus`, `4`) is one token of the tokenizer the corpus is read with;
   * statement examples are cut only before such pieces, so the rollout's one-token answer can match
   * them. Set by the code that tokenizes (not a settings-file field); without it every piece counts.
   */
  isOneToken?: (piece: string) => boolean;
  /** Fraction of problems written as word problems rather than equations (default 0.4). */
  wordProblemFraction?: number;
  /** Relative weights of the operations; a missing operation has weight 0 (default add 0.4, sub 0.3, mul 0.3). */
  operations?: Partial<Record<MathOp, number>>;
  /** Operand ranges per operation; an operation left out keeps its default. */
  ranges?: Partial<Record<MathOp, OperandRanges>>;
  /**
   * add / sub: fraction of problems with a carry (borrow) into the operands' most significant
   * column, so the answer's leading digit differs from the no-carry guess about this often
   * (default 0.5). Met by rejection sampling (64 tries, then any draw). mul: not used.
   */
  carryFraction?: number;
  /** Relative weights of the reasoning styles; a missing style has weight 0 (default full 0.8, compact 0.15, answer 0.05). */
  reasoningStyles?: Partial<Record<ReasoningStyle, number>>;
  /**
   * How a reasoning example's stated budget is chosen (default 'length'). `length`: the reasoning's
   * own length, sometimes rounded up (`budgetRoundUpFraction`); that length depends on the problem
   * (its carries, its digits), so the stated budget tells a model something about the answer.
   * `independent`: drawn uniformly from `budgetRange` before and apart from the problem, and the
   * reasoning is made to fit it: a style is drawn among those whose text fits the budget (weights
   * `reasoningStyles`; the answer alone when none does). The stated budget then carries no
   * information about the problem or its answer.
   */
  budgetMode?: BudgetMode;
  /** `independent` budgets: inclusive range (default [4, 64]); its minimum must fit every answer. */
  budgetRange?: IntRange;
  /** Fraction of reasoning examples whose budget is rounded up to a multiple of `budgetRoundTo` (default 0.3). */
  budgetRoundUpFraction?: number;
  /** See `budgetRoundUpFraction` (default 8). */
  budgetRoundTo?: number;
  /** Text after `<think>` stating the budget, `{B}` the number (default RMT_DEFAULTS.prompt.budget_marker). */
  budgetMarker?: string;
  /** Which bucket of problem statements this corpus draws from (default 'train'). */
  split?: MathSplit;
  /** Fraction of problem statements in the held-out bucket (default 0.2). */
  heldOutFraction?: number;
}

export interface ResolvedMathCorpusOptions {
  documents: number;
  problemsPerDocument: IntRange;
  reasoningFraction: number;
  statementFraction: number;
  /** Not a settings-file field, so not in MATH_CORPUS_DEFAULTS (whose keys are the known settings). */
  isOneToken?: (piece: string) => boolean;
  wordProblemFraction: number;
  operations: Record<MathOp, number>;
  ranges: Record<MathOp, OperandRanges>;
  carryFraction: number;
  reasoningStyles: Record<ReasoningStyle, number>;
  budgetMode: BudgetMode;
  budgetRange: IntRange;
  budgetRoundUpFraction: number;
  budgetRoundTo: number;
  budgetMarker: string;
  split: MathSplit;
  heldOutFraction: number;
}

const DEFAULTS: ResolvedMathCorpusOptions = {
  documents: 1000,
  problemsPerDocument: [4, 8],
  reasoningFraction: 0.3,
  statementFraction: 0,
  wordProblemFraction: 0.4,
  operations: { add: 0.4, sub: 0.3, mul: 0.3 },
  ranges: {
    add: { a: [10, 999], b: [10, 999] },
    sub: { a: [10, 999], b: [10, 999] },
    mul: { a: [2, 9], b: [10, 99] },
  },
  carryFraction: 0.5,
  reasoningStyles: { full: 0.8, compact: 0.15, answer: 0.05, verbose: 0 },
  budgetMode: 'length',
  budgetRange: [4, 64],
  budgetRoundUpFraction: 0.3,
  budgetRoundTo: 8,
  budgetMarker: RMT_DEFAULTS.prompt.budget_marker,
  split: 'train',
  heldOutFraction: 0.2,
};
export const MATH_CORPUS_DEFAULTS: Readonly<ResolvedMathCorpusOptions> = Object.freeze(DEFAULTS);

/** A problem written in the reasoning layout (all offsets are character offsets into the document text). */
export interface ReasoningExample {
  /** Index of the answer digit that is the prediction (the context holds digits [0, digit)); -1 when cut in the statement. */
  digit: number;
  /** The text written after `</think>` (an answer digit, or the statement's next piece: ` plus`, `4`, ` =`). */
  target: string;
  /** Start of the context: the document start or just after the previous example's `<|endoftext|>`. */
  contextStart: number;
  /** Offset of `<think>` (the context is text[contextStart, thinkStart)). */
  thinkStart: number;
  /** The budget B stated after `<think>`. */
  budget: number;
  style: ReasoningStyle;
  /** The reasoning text between the budget marker and `</think>`. */
  reasoning: string;
  /** Offset of the prediction digit (right after `</think>`). */
  predictionOffset: number;
}

export interface MathProblem {
  op: MathOp;
  /** add: first addend as written; sub: minuend; mul: the one-digit multiplier. */
  a: number;
  /** add: second addend; sub: subtrahend; mul: the multiplicand. */
  b: number;
  answer: number;
  /** Canonical statement (`add:37:48`, `sub:85:37`, `mul:7:48`): what the split hashes. */
  key: string;
  kind: 'equation' | 'word';
  /** Index into the equation or word templates of `op`. */
  template: number;
  /** Offset where the problem's text starts. */
  start: number;
  /** Offset just past the problem (its final '.', or `<|endoftext|>` of a reasoning example). */
  end: number;
  /** Offset of the answer's first digit (for a reasoning example, of the context's first answer digit). */
  answerStart: number;
  layout: 'plain' | 'reasoning';
  /** Present for the reasoning layout. */
  reasoning?: ReasoningExample;
}

export interface MathDocument extends Document {
  problems: MathProblem[];
}

export interface MathKeyPosition {
  /** Character offset of the answer digit in the document text. */
  offset: number;
  /** Index of the problem in `doc.problems`. */
  problem: number;
  /** Index of the digit within the answer (0 = most significant). */
  digit: number;
  /** Number of digits of the answer. */
  answerDigits: number;
  op: MathOp;
}

// ---------------------------------------------------------------------------------------------
// Options

function isRange(r: unknown): r is IntRange {
  return (
    Array.isArray(r) &&
    r.length === 2 &&
    Number.isInteger(r[0]) &&
    Number.isInteger(r[1]) &&
    r[0] >= 0 &&
    r[0] <= r[1]
  );
}

function weights<K extends string>(
  what: string,
  keys: readonly K[],
  given: Partial<Record<K, number>> | undefined,
  fallback: Record<K, number>,
): Record<K, number> {
  if (given === undefined) return { ...fallback };
  const out = {} as Record<K, number>;
  let total = 0;
  for (const k of Object.keys(given)) {
    if (!keys.includes(k as K))
      throw new Error(`${what}: unknown key ${JSON.stringify(k)} (known: ${keys.join(', ')})`);
  }
  for (const k of keys) {
    const w = given[k] ?? 0;
    if (!(Number.isFinite(w) && w >= 0)) throw new Error(`${what}.${k} must be a weight >= 0 (got ${w})`);
    out[k] = w;
    total += w;
  }
  if (!(total > 0)) throw new Error(`${what}: at least one weight must be > 0`);
  return out;
}

function fraction(name: string, v: number): number {
  if (!(Number.isFinite(v) && v >= 0 && v <= 1)) throw new Error(`${name} must be in [0, 1] (got ${v})`);
  return v;
}

/** The options with defaults filled in; throws on a value out of range. */
export function resolveMathCorpusOptions(opts: MathCorpusOptions = {}): ResolvedMathCorpusOptions {
  const d = MATH_CORPUS_DEFAULTS;
  const o: ResolvedMathCorpusOptions = {
    documents: opts.documents ?? d.documents,
    problemsPerDocument: opts.problemsPerDocument ?? d.problemsPerDocument,
    reasoningFraction: fraction('reasoningFraction', opts.reasoningFraction ?? d.reasoningFraction),
    statementFraction: fraction('statementFraction', opts.statementFraction ?? d.statementFraction),
    isOneToken: opts.isOneToken,
    wordProblemFraction: fraction('wordProblemFraction', opts.wordProblemFraction ?? d.wordProblemFraction),
    operations: weights('operations', MATH_OPS, opts.operations, d.operations),
    ranges: { ...d.ranges, ...opts.ranges },
    carryFraction: fraction('carryFraction', opts.carryFraction ?? d.carryFraction),
    reasoningStyles: weights('reasoningStyles', REASONING_STYLES, opts.reasoningStyles, d.reasoningStyles),
    budgetMode: opts.budgetMode ?? d.budgetMode,
    budgetRange: opts.budgetRange ?? d.budgetRange,
    budgetRoundUpFraction: fraction(
      'budgetRoundUpFraction',
      opts.budgetRoundUpFraction ?? d.budgetRoundUpFraction,
    ),
    budgetRoundTo: opts.budgetRoundTo ?? d.budgetRoundTo,
    budgetMarker: opts.budgetMarker ?? d.budgetMarker,
    split: opts.split ?? d.split,
    heldOutFraction: fraction('heldOutFraction', opts.heldOutFraction ?? d.heldOutFraction),
  };
  if (!(Number.isInteger(o.documents) && o.documents >= 0)) {
    throw new Error(`documents must be an integer >= 0 (got ${o.documents})`);
  }
  if (!isRange(o.problemsPerDocument) || o.problemsPerDocument[0] < 1) {
    throw new Error(
      `problemsPerDocument must be [min, max] with 1 <= min <= max (got ${JSON.stringify(o.problemsPerDocument)})`,
    );
  }
  for (const op of MATH_OPS) {
    const r = o.ranges[op];
    if (!r || !isRange(r.a) || !isRange(r.b)) {
      throw new Error(
        `ranges.${op} must be {a: [min, max], b: [min, max]} of integers >= 0 (got ${JSON.stringify(r)})`,
      );
    }
  }
  if (o.ranges.mul.a[1] > 9) throw new Error(`ranges.mul.a is the one-digit multiplier: max must be <= 9`);
  const sub = o.ranges.sub;
  if (Math.max(sub.a[1], sub.b[1]) === Math.min(sub.a[0], sub.b[0])) {
    throw new Error('ranges.sub: the two numbers can never differ (the answer would be 0)');
  }
  if (o.budgetMode !== 'length' && o.budgetMode !== 'independent') {
    throw new Error(`budgetMode must be 'length' or 'independent' (got ${JSON.stringify(o.budgetMode)})`);
  }
  if (!isRange(o.budgetRange) || o.budgetRange[0] < 1) {
    throw new Error(
      `budgetRange must be [min, max] with 1 <= min <= max (got ${JSON.stringify(o.budgetRange)})`,
    );
  }
  if (o.budgetMode === 'independent') {
    const longest = maxAnswerDigits(o);
    if (o.budgetRange[0] < longest) {
      throw new Error(
        `budgetRange: the minimum ${o.budgetRange[0]} is below the longest answer (${longest} digits), which could then fit no reasoning`,
      );
    }
  }
  if (!(Number.isInteger(o.budgetRoundTo) && o.budgetRoundTo >= 1)) {
    throw new Error(`budgetRoundTo must be an integer >= 1 (got ${o.budgetRoundTo})`);
  }
  if (o.split !== 'train' && o.split !== 'held_out') {
    throw new Error(`split must be 'train' or 'held_out' (got ${JSON.stringify(o.split)})`);
  }
  if (o.split === 'held_out' && o.heldOutFraction === 0)
    throw new Error('split held_out with heldOutFraction 0');
  if (o.split === 'train' && o.heldOutFraction === 1) throw new Error('split train with heldOutFraction 1');
  return o;
}

/** The most digits an answer of an operation with non-zero weight can have under the ranges. */
export function maxAnswerDigits(o: Pick<ResolvedMathCorpusOptions, 'operations' | 'ranges'>): number {
  let most = 1;
  for (const op of MATH_OPS) {
    if (!(o.operations[op] > 0)) continue;
    const { a, b } = o.ranges[op];
    const largest = op === 'add' ? a[1] + b[1] : op === 'sub' ? Math.max(a[1], b[1]) : a[1] * b[1];
    most = Math.max(most, String(largest).length);
  }
  return most;
}

/** A generator option's name in a run config (`data.math`): snake_case, as every other config key. */
export const mathConfigKey = (option: string): string =>
  option.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The `data.math` keys a run config may give, each with the generator option it sets. */
export const MATH_CONFIG_KEYS: Readonly<Record<string, keyof MathCorpusOptions>> = Object.freeze(
  Object.fromEntries(
    Object.keys(MATH_CORPUS_DEFAULTS).map((k) => [mathConfigKey(k), k as keyof MathCorpusOptions]),
  ),
);

/**
 * The generator's options from a run config's `data.math` mapping (snake_case keys). An unknown key
 * is refused by name, so a misspelt option never silently keeps its default.
 */
export function mathOptionsFromConfig(m: Readonly<Record<string, unknown>>): MathCorpusOptions {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(m)) {
    const option = MATH_CONFIG_KEYS[key];
    if (option === undefined) {
      throw new Error(
        `data.math.${key}: unknown setting (known: ${Object.keys(MATH_CONFIG_KEYS).join(', ')})`,
      );
    }
    out[option] = value;
  }
  return out as MathCorpusOptions;
}
