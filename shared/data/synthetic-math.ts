/**
 * A synthetic math corpus for the paper benchmark (`docs/paper-table.md`): short documents of arithmetic lines and
 * small word problems whose answers are the hard tokens, plus some problems written in the RL
 * rollout layout of `BareFormat` (`context <think> budget B:reasoning</think>digit<|endoftext|>`),
 * so the pre-trained base model has seen next-token reasoning as a reasoning base model would.
 * See docs/synthetic-math.md for why the answer digits are hard without reasoning and tractable
 * with it, the exact layouts and every option.
 *
 * Everything is a pure function of the options and the seed. Document i comes from the i-th fork
 * of `new Rng(seed)`, so asking for more documents never changes the earlier ones. Train and
 * held-out problems are disjoint by construction: each problem's canonical statement (operation and
 * operands, commutative operands sorted) is hashed into a bucket, and a corpus of one split only
 * ever holds problems of its own bucket, whatever the seeds.
 */
import { RMT_DEFAULTS } from '../config/rmt-defaults.js';
import { Rng } from '../util/rng.js';
import type { Document } from './corpora.js';
import { END_THINK_TOKEN, EOS_TOKEN, THINK_TOKEN } from './gpt2-bpe.js';
import type { Tokenizer } from './tokenizer.js';

export type MathOp = 'add' | 'sub' | 'mul';
export const MATH_OPS: readonly MathOp[] = ['add', 'sub', 'mul'];

/**
 * `verbose`: the problem restated, the column procedure and a check by the inverse operation;
 * `full`: the column procedure; `compact`: each column's carry and digit only; `answer`: the answer only.
 */
export type ReasoningStyle = 'verbose' | 'full' | 'compact' | 'answer';
export const REASONING_STYLES: readonly ReasoningStyle[] = ['full', 'compact', 'answer', 'verbose'];

export type MathSplit = 'train' | 'held_out';

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

// ---------------------------------------------------------------------------------------------
// Problems, the split and the reasoning

/** The most digits an answer of an operation with non-zero weight can have under the ranges. */
function maxAnswerDigits(o: Pick<ResolvedMathCorpusOptions, 'operations' | 'ranges'>): number {
  let most = 1;
  for (const op of MATH_OPS) {
    if (!(o.operations[op] > 0)) continue;
    const { a, b } = o.ranges[op];
    const largest = op === 'add' ? a[1] + b[1] : op === 'sub' ? Math.max(a[1], b[1]) : a[1] * b[1];
    most = Math.max(most, String(largest).length);
  }
  return most;
}

/** Canonical statement of a problem: commutative operands sorted. */
export function problemKey(op: MathOp, a: number, b: number): string {
  return op === 'sub' ? `sub:${a}:${b}` : `${op}:${Math.min(a, b)}:${Math.max(a, b)}`;
}

/** FNV-1a over the key's characters with a murmur3 finaliser, as a number in [0, 1). */
function keyHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

/** The split a problem statement belongs to (depends only on the key and the fraction). */
export function problemSplit(key: string, heldOutFraction: number): MathSplit {
  return keyHash(key) < heldOutFraction ? 'held_out' : 'train';
}

export function applyOp(op: MathOp, a: number, b: number): number {
  return op === 'add' ? a + b : op === 'sub' ? a - b : a * b;
}

/** Decimal digits, least significant first. */
function digitsLsd(n: number): number[] {
  return [...String(n)].reverse().map(Number);
}

/**
 * add / sub: whether a carry (borrow) enters the most significant column of the operands, i.e.
 * whether the answer's leading digit depends on the lower columns. mul: whether the top partial
 * product gets a carry.
 */
export function carryIntoTop(op: MathOp, a: number, b: number): boolean {
  const da = digitsLsd(a);
  const db = digitsLsd(b);
  const n = op === 'add' ? Math.max(da.length, db.length) : op === 'sub' ? da.length : db.length;
  let c = 0;
  for (let i = 0; i < n - 1; i++) {
    if (op === 'add') c = (da[i] ?? 0) + (db[i] ?? 0) + c >= 10 ? 1 : 0;
    else if (op === 'sub') c = da[i] - c - (db[i] ?? 0) < 0 ? 1 : 0;
    else c = Math.floor((a * db[i] + c) / 10);
  }
  return c > 0;
}

/**
 * The reasoning for `a op b`: digits and single punctuation characters, each punctuation character
 * between two digits, so with a digit-splitting byte-level BPE every character is one token and the
 * token length is `text.length`. Columns run from the least significant; `;` introduces the answer.
 *
 * - add, full: `x+y[+1]=s` per column (`+1` the carry in), e.g. 48 + 37: `8+7=15,4+3+1=8;85`.
 * - sub (a >= b), full: `[1]x[-1]-y=d` per column (a leading `1` borrows ten, `-1` is the borrow in),
 *   e.g. 52 - 37: `12-7=5,5-1-3=1;15`.
 * - mul (a one digit), full: `a*x[+c]=p` per digit of b (`+c` the carry in), e.g. 7 * 48:
 *   `7*8=56,7*4+5=33;336`.
 * - compact: each column's carry (borrow) out and digit as two digits, e.g. `15,08;85`.
 * - answer: the answer alone, e.g. `85`.
 * - verbose: the problem restated before the full columns and the answer checked by the inverse
 *   operation before it is stated, as a reasoning model that restates and verifies writes, e.g.
 *   48 + 37: `48+37:8+7=15,4+3+1=8:85-37=48;85`; 52 - 37: `52-37:...:15+37=52;15`; 7 * 48:
 *   `7*48:...:336/7=48;336`. Nothing in the restatement or the check is needed for the answer, so a
 *   budget below its length can be met by dropping them (the shrinking budget's job).
 *   (A restated operand is a run of digits between punctuation, one token per digit as well.)
 *
 * A missing digit of the shorter operand is written as 0.
 */
export function columnReasoning(op: MathOp, a: number, b: number, style: ReasoningStyle): string {
  const answer = applyOp(op, a, b);
  if (op === 'sub' && answer < 0) throw new Error(`sub needs a >= b (got ${a} - ${b})`);
  if (op === 'mul' && !(a >= 0 && a <= 9)) throw new Error(`mul needs a one-digit multiplier (got ${a})`);
  if (style === 'answer') return String(answer);
  if (style === 'verbose') {
    const full = columnReasoning(op, a, b, 'full');
    const columns = full.slice(0, full.lastIndexOf(';'));
    const sign = op === 'add' ? '+' : op === 'sub' ? '-' : '*';
    const check =
      op === 'add' ? `${answer}-${b}=${a}` : op === 'sub' ? `${answer}+${b}=${a}` : `${answer}/${a}=${b}`;
    return `${a}${sign}${b}:${columns}:${check};${answer}`;
  }
  const da = digitsLsd(a);
  const db = digitsLsd(b);
  const steps: string[] = [];
  let c = 0;
  if (op === 'add') {
    for (let i = 0; i < Math.max(da.length, db.length); i++) {
      const x = da[i] ?? 0;
      const y = db[i] ?? 0;
      const s = x + y + c;
      steps.push(style === 'full' ? `${x}+${y}${c ? '+1' : ''}=${s}` : `${s >= 10 ? 1 : 0}${s % 10}`);
      c = s >= 10 ? 1 : 0;
    }
  } else if (op === 'sub') {
    for (let i = 0; i < da.length; i++) {
      const x = da[i];
      const y = db[i] ?? 0;
      const out = x - c - y < 0 ? 1 : 0;
      const d = x - c - y + 10 * out;
      steps.push(style === 'full' ? `${out ? '1' : ''}${x}${c ? '-1' : ''}-${y}=${d}` : `${out}${d}`);
      c = out;
    }
  } else {
    for (const x of db) {
      const p = a * x + c;
      steps.push(style === 'full' ? `${a}*${x}${c ? `+${c}` : ''}=${p}` : `${Math.floor(p / 10)}${p % 10}`);
      c = Math.floor(p / 10);
    }
  }
  return `${steps.join(',')};${answer}`;
}

// ---------------------------------------------------------------------------------------------
// Templates

interface Person {
  name: string;
  he: string;
  him: string;
}

const PEOPLE: readonly Person[] = [
  ...['Tom', 'Sam', 'Ben', 'Max', 'Leo', 'Jack', 'Omar', 'Ravi', 'Hugo', 'Ivan', 'Kofi'].map((name) => ({
    name,
    he: 'he',
    him: 'him',
  })),
  ...['Anna', 'Mia', 'Lucy', 'Emma', 'Sara', 'Nina', 'Zoe', 'Maya', 'Lena', 'Aisha', 'Rosa'].map((name) => ({
    name,
    he: 'she',
    him: 'her',
  })),
];

const OBJECTS: readonly string[] = [
  'apples',
  'marbles',
  'stickers',
  'pencils',
  'books',
  'cards',
  'shells',
  'stamps',
  'buttons',
  'beads',
  'cookies',
  'balloons',
  'blocks',
  'eggs',
  'oranges',
  'flowers',
  'rocks',
  'ribbons',
  'nuts',
  'crayons',
];

const CONTAINERS: readonly string[] = [
  'bags',
  'boxes',
  'packs',
  'jars',
  'baskets',
  'crates',
  'tins',
  'bowls',
];

/**
 * Equation templates per operation. `{a}` and `{b}` are the operands as written (for mul in either
 * order), `{ans}` the answer, always after both operands and followed by a non-digit. The first
 * template is the bare equation and is drawn more often (EQUATION_FIRST_WEIGHT).
 */
const EQUATIONS: Readonly<Record<MathOp, readonly string[]>> = {
  add: [
    '{a} + {b} = {ans}.',
    '{a} plus {b} is {ans}.',
    'The sum of {a} and {b} is {ans}.',
    'What is {a} + {b}? It is {ans}.',
    'Add {a} and {b} to get {ans}.',
  ],
  sub: [
    '{a} - {b} = {ans}.',
    '{a} minus {b} is {ans}.',
    'The difference of {a} and {b} is {ans}.',
    'What is {a} - {b}? It is {ans}.',
    'Take {b} from {a} to get {ans}.',
  ],
  mul: [
    '{a} * {b} = {ans}.',
    '{a} times {b} is {ans}.',
    'The product of {a} and {b} is {ans}.',
    'What is {a} * {b}? It is {ans}.',
    'Multiply {a} by {b} to get {ans}.',
  ],
};
const EQUATION_FIRST_WEIGHT = 5;

/**
 * Word-problem templates (ten per operation). `{a}`/`{b}` as in MathProblem (mul: `{a}` the
 * multiplier), `{N}`/`{M}` two different people, `{he}`/`{He}`/`{him}` the pronouns of `{N}`,
 * `{obj}` a plural object, `{box}` a plural container.
 */
const WORD_PROBLEMS: Readonly<Record<MathOp, readonly string[]>> = {
  add: [
    '{N} has {a} {obj} and buys {b} more. Now {he} has {ans} {obj}.',
    '{N} had {a} {obj}. {He} found {b} more, so {he} has {ans} {obj} now.',
    'There are {a} {obj} in a box and {b} {obj} on the table. In all there are {ans} {obj}.',
    '{N} picked {a} {obj} on Monday and {b} on Tuesday. {He} picked {ans} {obj} in all.',
    'A shop sold {a} {obj} in the morning and {b} in the afternoon. It sold {ans} {obj} that day.',
    '{N} has {a} {obj}. {M} gives {him} {b} more. {He} now has {ans} {obj}.',
    '{N} scored {a} points and then {b} points. {He} scored {ans} points in total.',
    'A farm has {a} {obj} and gets {b} more. The farm now has {ans} {obj}.',
    '{N} walked {a} steps before lunch and {b} steps after lunch. That is {ans} steps.',
    '{N} saved {a} coins and {M} saved {b} coins. Together they saved {ans} coins.',
  ],
  sub: [
    '{N} has {a} {obj} and gives away {b}. Now {he} has {ans} {obj}.',
    '{N} had {a} {obj} and lost {b} of them. {He} has {ans} {obj} left.',
    'There were {a} {obj} in a box. {N} took out {b}. There are {ans} {obj} left in the box.',
    'A shop had {a} {obj} and sold {b}. It has {ans} {obj} left.',
    '{N} has {a} {obj} and {M} has {b} {obj}. {N} has {ans} more {obj} than {M}.',
    '{N} needs {a} {obj} and already has {b}. {He} needs {ans} more.',
    'A train had {a} people on it. At the station {b} people got off. Now {ans} people are on the train.',
    '{N} read {a} pages and {M} read {b} pages. {N} read {ans} more pages than {M}.',
    '{N} had {a} coins and spent {b} coins. {He} has {ans} coins left.',
    'A tank held {a} liters of water and {b} liters leaked out. Now it holds {ans} liters.',
  ],
  mul: [
    '{N} has {a} {box} with {b} {obj} in each. {He} has {ans} {obj} in all.',
    'There are {a} {box} of {b} {obj}. That makes {ans} {obj}.',
    '{N} buys {a} {box} of {obj}. Each holds {b} {obj}. {He} buys {ans} {obj}.',
    'A hall has {a} rows of {b} chairs. There are {ans} chairs in the hall.',
    '{N} reads {b} pages a day for {a} days. {He} reads {ans} pages.',
    'Each of {a} shelves holds {b} {obj}. The shelves hold {ans} {obj} in all.',
    '{N} earns {b} coins a week. After {a} weeks {he} has earned {ans} coins.',
    'A truck carries {b} {obj} on each trip. In {a} trips it carries {ans} {obj}.',
    '{a} friends each bring {b} {obj}. They bring {ans} {obj} together.',
    '{N} plants {a} rows with {b} trees in each row. {He} plants {ans} trees.',
  ],
};

/** The number of templates of each kind, per operation. */
export const MATH_TEMPLATE_COUNTS: Readonly<Record<MathOp, { equation: number; word: number }>> = {
  add: { equation: EQUATIONS.add.length, word: WORD_PROBLEMS.add.length },
  sub: { equation: EQUATIONS.sub.length, word: WORD_PROBLEMS.sub.length },
  mul: { equation: EQUATIONS.mul.length, word: WORD_PROBLEMS.mul.length },
};

function capitalise(s: string): string {
  return s[0].toUpperCase() + s.slice(1);
}

/** Fills a template; returns the text before `{ans}` and after it. */
function render(template: string, values: Record<string, string>): { before: string; after: string } {
  const fill = (s: string) =>
    s.replace(/\{(\w+)\}/g, (whole, k: string) => {
      const v = values[k];
      if (v === undefined) throw new Error(`template ${JSON.stringify(template)}: no value for ${whole}`);
      return v;
    });
  const at = template.indexOf('{ans}');
  return { before: fill(template.slice(0, at)), after: fill(template.slice(at + '{ans}'.length)) };
}

// ---------------------------------------------------------------------------------------------
// Generation

function pick<K extends string>(rng: Rng, w: Record<K, number>): K {
  const keys = Object.keys(w) as K[];
  const total = keys.reduce((s, k) => s + w[k], 0);
  let u = rng.next() * total;
  for (const k of keys) {
    u -= w[k];
    if (u < 0 && w[k] > 0) return k;
  }
  return keys.filter((k) => w[k] > 0).at(-1)!;
}

/** Uniform number of digits among those the range allows, then uniform within the range. */
function sampleOperand(rng: Rng, [min, max]: IntRange): number {
  const lengths: IntRange[] = [];
  for (let lo = 0, hi = 9; lo <= max; lo = hi + 1, hi = hi * 10 + 9) {
    const from = Math.max(lo, min);
    const to = Math.min(hi, max);
    if (from <= to) lengths.push([from, to]);
  }
  const [from, to] = lengths[rng.int(lengths.length)];
  return from + rng.int(to - from + 1);
}

const CARRY_TRIES = 64;
const MAX_DRAWS = 100_000;

function sampleProblem(rng: Rng, o: ResolvedMathCorpusOptions): { op: MathOp; a: number; b: number } {
  const op = pick(rng, o.operations);
  const wantCarry = rng.next() < o.carryFraction;
  for (let tries = 0; tries < MAX_DRAWS; tries++) {
    let a = sampleOperand(rng, o.ranges[op].a);
    let b = sampleOperand(rng, o.ranges[op].b);
    if (op === 'sub') {
      if (a < b) [a, b] = [b, a];
      if (a - b < 2) continue; // a plural answer ("1 apples" reads wrong) and never 0
    }
    if (op !== 'mul' && tries < CARRY_TRIES && carryIntoTop(op, a, b) !== wantCarry) continue;
    if (problemSplit(problemKey(op, a, b), o.heldOutFraction) !== o.split) continue;
    return { op, a, b };
  }
  throw new Error(`no ${op} problem of split ${o.split} found in ${MAX_DRAWS} draws: widen ranges.${op}`);
}

/** `length` budgets: a style, its reasoning, and the budget its length (sometimes rounded up). */
function reasoningThenBudget(
  rng: Rng,
  o: ResolvedMathCorpusOptions,
  op: MathOp,
  a: number,
  b: number,
): { style: ReasoningStyle; reasoning: string; budget: number } {
  const style = pick(rng, o.reasoningStyles);
  const reasoning = columnReasoning(op, a, b, style);
  const length = reasoning.length; // = its token count (see columnReasoning)
  const budget =
    rng.next() < o.budgetRoundUpFraction ? Math.ceil(length / o.budgetRoundTo) * o.budgetRoundTo : length;
  return { style, reasoning, budget };
}

/**
 * `independent` budgets: the budget first, uniform in `budgetRange` and drawn apart from the
 * problem, then a style among those whose reasoning fits it (longer styles compress to shorter ones
 * as the budget falls; the answer alone always fits, see the budgetRange check).
 */
function fitToBudget(
  rng: Rng,
  o: ResolvedMathCorpusOptions,
  op: MathOp,
  a: number,
  b: number,
): { style: ReasoningStyle; reasoning: string; budget: number } {
  const [lo, hi] = o.budgetRange;
  const budget = lo + rng.int(hi - lo + 1);
  const texts = new Map(REASONING_STYLES.map((st) => [st, columnReasoning(op, a, b, st)] as const));
  const fitting = {} as Record<ReasoningStyle, number>;
  let any = false;
  for (const st of REASONING_STYLES) {
    const fits = texts.get(st)!.length <= budget;
    fitting[st] = fits ? o.reasoningStyles[st] : 0;
    any ||= fitting[st] > 0;
  }
  const style: ReasoningStyle = any ? pick(rng, fitting) : 'answer';
  return { style, reasoning: texts.get(style)!, budget };
}

/**
 * Offsets in a statement where a token starts for the digit-splitting byte-level pre-tokenizer: each
 * digit, and each space that begins a word (` plus`) or an operator (` =`). Offset 0 is left out so
 * the example has context of its own problem.
 */
export function statementCuts(before: string): number[] {
  const cuts: number[] = [];
  for (let i = 1; i < before.length; i++) {
    const c = before[i];
    const next = before[i + 1] ?? '';
    if (/\p{N}/u.test(c)) cuts.push(i);
    else if (c === ' ' && next !== '' && !/[\s\p{N}]/u.test(next)) cuts.push(i);
  }
  return cuts;
}

/** End of the pre-tokenizer piece starting at `cut` (see statementCuts). */
function pieceEnd(text: string, cut: number): number {
  if (/\p{N}/u.test(text[cut])) return cut + 1;
  let j = cut + 1;
  const letters = /\p{L}/u.test(text[j]);
  while (j < text.length && (letters ? /\p{L}/u.test(text[j]) : /[^\s\p{L}\p{N}]/u.test(text[j]))) j++;
  return j;
}

function fillBudget(marker: string, budget: number): string {
  return marker.replace(/\{B\}/g, String(budget));
}

function generateDocument(rng: Rng, o: ResolvedMathCorpusOptions, id: string): MathDocument {
  const [pMin, pMax] = o.problemsPerDocument;
  const count = pMin + rng.int(pMax - pMin + 1);
  const pReasoning = count > 1 ? Math.min(1, (o.reasoningFraction * count) / (count - 1)) : 0;
  let text = '';
  let contextStart = 0;
  const problems: MathProblem[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0 && problems[i - 1].layout === 'plain') text += '\n';
    const { op, a, b } = sampleProblem(rng, o);
    const answer = applyOp(op, a, b);
    const kind = rng.next() < o.wordProblemFraction ? 'word' : 'equation';
    let template: number;
    const values: Record<string, string> = { a: String(a), b: String(b) };
    if (kind === 'equation') {
      const n = EQUATIONS[op].length;
      const u = rng.int(n - 1 + EQUATION_FIRST_WEIGHT);
      template = u < EQUATION_FIRST_WEIGHT ? 0 : u - EQUATION_FIRST_WEIGHT + 1;
      if (op === 'mul' && rng.next() < 0.5) [values.a, values.b] = [values.b, values.a];
    } else {
      template = rng.int(WORD_PROBLEMS[op].length);
      const n1 = rng.int(PEOPLE.length);
      const n2 = (n1 + 1 + rng.int(PEOPLE.length - 1)) % PEOPLE.length;
      const p = PEOPLE[n1];
      Object.assign(values, {
        N: p.name,
        M: PEOPLE[n2].name,
        he: p.he,
        He: capitalise(p.he),
        him: p.him,
        obj: OBJECTS[rng.int(OBJECTS.length)],
        box: CONTAINERS[rng.int(CONTAINERS.length)],
      });
    }
    const source = kind === 'equation' ? EQUATIONS[op][template] : WORD_PROBLEMS[op][template];
    const { before, after } = render(source, values);
    const start = text.length;
    const answerStart = start + before.length;
    const ans = String(answer);
    const problem: MathProblem = {
      op,
      a,
      b,
      answer,
      key: problemKey(op, a, b),
      kind,
      template,
      start,
      end: 0,
      answerStart,
      layout: 'plain',
    };
    const reasoningHere = i < count - 1 && rng.next() < pReasoning;
    // Drawn only when asked for, so a corpus without statement examples is the one it always was.
    const inStatement = reasoningHere && o.statementFraction > 0 && rng.next() < o.statementFraction;
    const oneToken = o.isOneToken ?? (() => true);
    const cuts = inStatement
      ? statementCuts(before).filter((c) => oneToken(before.slice(c, pieceEnd(before, c))))
      : [];
    if (cuts.length > 0) {
      const cut = cuts[rng.int(cuts.length)];
      const target = before.slice(cut, pieceEnd(before, cut));
      const budget = o.budgetRange[0] + rng.int(o.budgetRange[1] - o.budgetRange[0] + 1);
      const said = target.trim();
      const reasoning = said.length <= budget ? said : '';
      text += before.slice(0, cut);
      const thinkStart = text.length;
      text += THINK_TOKEN + fillBudget(o.budgetMarker, budget) + reasoning + END_THINK_TOKEN;
      const predictionOffset = text.length;
      text += target + EOS_TOKEN;
      problem.layout = 'reasoning';
      problem.reasoning = {
        digit: -1,
        target,
        contextStart,
        thinkStart,
        budget,
        style: 'answer',
        reasoning,
        predictionOffset,
      };
      contextStart = text.length;
    } else if (reasoningHere) {
      const digit = rng.int(ans.length);
      const { style, reasoning, budget } =
        o.budgetMode === 'independent'
          ? fitToBudget(rng, o, op, a, b)
          : reasoningThenBudget(rng, o, op, a, b);
      text += before + ans.slice(0, digit);
      const thinkStart = text.length;
      text += THINK_TOKEN + fillBudget(o.budgetMarker, budget) + reasoning + END_THINK_TOKEN;
      const predictionOffset = text.length;
      text += ans[digit] + EOS_TOKEN;
      problem.layout = 'reasoning';
      problem.reasoning = {
        digit,
        target: ans[digit],
        contextStart,
        thinkStart,
        budget,
        style,
        reasoning,
        predictionOffset,
      };
      contextStart = text.length;
    } else {
      text += before + ans + after;
    }
    problem.end = text.length;
    problems.push(problem);
  }
  return { id, text, problems };
}

/**
 * `opts.documents` math documents for `seed`, drawn from the problems of `opts.split` only.
 * Document i is `math-<split>-<seed>-<i>` and depends only on the options, the seed and i.
 */
export function generateMathDocuments(opts: MathCorpusOptions, seed: number): MathDocument[] {
  const o = resolveMathCorpusOptions(opts);
  const root = new Rng(seed);
  const docs: MathDocument[] = [];
  for (let i = 0; i < o.documents; i++) {
    docs.push(generateDocument(root.fork(), o, `math-${o.split}-${seed}-${i}`));
  }
  return docs;
}

// ---------------------------------------------------------------------------------------------
// Key positions

/**
 * The answer digits of the plain problems of a document, in text order: the positions that are
 * hard without reasoning (RL key positions, hard evaluation positions). Reasoning examples are left
 * out (their prediction follows a `</think>`, not plain text).
 */
export function mathKeyPositions(doc: MathDocument): MathKeyPosition[] {
  const out: MathKeyPosition[] = [];
  doc.problems.forEach((p, problem) => {
    if (p.layout !== 'plain') return;
    const n = String(p.answer).length;
    for (let digit = 0; digit < n; digit++) {
      out.push({ offset: p.answerStart + digit, problem, digit, answerDigits: n, op: p.op });
    }
  });
  return out;
}

/**
 * For each character offset of `text`, the index of the token of `ids` (the tokenization of `text`)
 * that holds it, found by walking the tokens' byte lengths. Throws if `ids` do not spell `text`.
 */
export function tokenIndicesAtChars(
  text: string,
  ids: readonly number[],
  tokenizer: Pick<Tokenizer, 'tokenBytes'>,
  offsets: readonly number[],
): number[] {
  const encoder = new TextEncoder();
  const textBytes = encoder.encode(text);
  const ends: number[] = [];
  let at = 0;
  for (const id of ids) {
    const bytes = tokenizer.tokenBytes(id);
    for (let j = 0; j < bytes.length; j++) {
      if (textBytes[at + j] !== bytes[j])
        throw new Error(`token ${ends.length} (id ${id}) does not match the text`);
    }
    at += bytes.length;
    ends.push(at);
  }
  if (at !== textBytes.length)
    throw new Error(`the tokens spell ${at} bytes, the text has ${textBytes.length}`);
  return offsets.map((offset) => {
    if (!(Number.isInteger(offset) && offset >= 0 && offset < text.length)) {
      throw new Error(`offset ${offset} outside the text (length ${text.length})`);
    }
    const byte = encoder.encode(text.slice(0, offset)).length;
    // First token whose end lies beyond the byte (binary search over the increasing ends).
    let lo = 0;
    let hi = ends.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ends[mid] > byte) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  });
}

/**
 * Token indices (into `ids`, the tokenization of `doc.text`) of the answer digits that
 * `mathKeyPositions` finds. Checks that each is a one-digit token equal to that digit, which holds
 * for tokenizers that split digits (ours); throws otherwise. Add the document's offset in a stream
 * (documents joined by end-of-text) to get stream positions.
 */
export function mathKeyTokenIndices(
  doc: MathDocument,
  ids: readonly number[],
  tokenizer: Pick<Tokenizer, 'tokenBytes'>,
): number[] {
  const keys = mathKeyPositions(doc);
  const indices = tokenIndicesAtChars(
    doc.text,
    ids,
    tokenizer,
    keys.map((k) => k.offset),
  );
  indices.forEach((t, i) => {
    const bytes = tokenizer.tokenBytes(ids[t]);
    if (bytes.length !== 1 || bytes[0] !== doc.text.charCodeAt(keys[i].offset)) {
      throw new Error(`${doc.id}: answer digit at ${keys[i].offset} is not a token of its own (token ${t})`);
    }
  });
  return indices;
}
