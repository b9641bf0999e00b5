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
import { Rng } from '../util/rng.js';
import { END_THINK_TOKEN, EOS_TOKEN, THINK_TOKEN } from './gpt2-bpe.js';
import {
  applyOp,
  carryIntoTop,
  columnReasoning,
  type MathOp,
  problemKey,
  problemSplit,
  REASONING_STYLES,
  type ReasoningStyle,
} from './math/arithmetic.js';
import {
  type IntRange,
  type MathCorpusOptions,
  type MathDocument,
  type MathKeyPosition,
  type MathProblem,
  type ResolvedMathCorpusOptions,
  resolveMathCorpusOptions,
} from './math/options.js';
import {
  CONTAINERS,
  capitalise,
  EQUATION_FIRST_WEIGHT,
  EQUATIONS,
  OBJECTS,
  PEOPLE,
  render,
  WORD_PROBLEMS,
} from './math/templates.js';
import type { Tokenizer } from './tokenizer.js';

export * from './math/arithmetic.js';
export * from './math/options.js';
export { MATH_TEMPLATE_COUNTS } from './math/templates.js';

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
