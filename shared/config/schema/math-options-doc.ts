import type { ResolvedMathCorpusOptions } from '../../data/synthetic-math.js';

/**
 * The rows of docs/config.md's `data.math` table. The generator's options keep their camelCase
 * names (they are its parameter names); the keys of this record are checked against its defaults by
 * the type, so a new option without a row does not compile.
 */
type Row = { default?: string; description: string };

export const MATH_OPTION_DOCS: Record<Exclude<keyof ResolvedMathCorpusOptions, 'isOneToken'>, Row> = {
  documents: { description: 'number of documents' },
  problemsPerDocument: { description: 'problems per document, uniform in this inclusive range' },
  reasoningFraction: {
    description: 'share of problems written in the reasoning layout (the RL configs set 0)',
  },
  statementFraction: {
    description:
      "share of those reasoning examples cut inside the problem's statement (before an operand digit, a word or an operator that is one token) instead of at an answer digit, with that piece restated as the reasoning; a base that reasons at every kind of position, for `data.positions: all`",
  },
  wordProblemFraction: { description: 'share written as word problems rather than equations' },
  operations: { description: 'relative weights of the operations; a missing one has weight 0' },
  ranges: {
    default: 'add/sub `a, b ∈ [10, 999]`, mul `a ∈ [2, 9]`, `b ∈ [10, 99]`',
    description: 'operand ranges per operation; an operation left out keeps its default',
  },
  carryFraction: { description: 'add/sub: share of problems with a carry into the leading column' },
  reasoningStyles: { description: 'relative weights of the reasoning styles' },
  budgetMode: {
    description:
      "how a reasoning example's stated budget is chosen: `length` (its own reasoning length, which depends on the problem, so it leaks the answer) or `independent` (drawn from `budgetRange` apart from the problem; the reasoning is made to fit it)",
  },
  budgetRange: { description: '`independent` budgets: inclusive range; its minimum must fit every answer' },
  budgetRoundUpFraction: {
    description:
      'share of reasoning examples whose stated budget is rounded up to a multiple of `budgetRoundTo`',
  },
  budgetRoundTo: { description: 'see `budgetRoundUpFraction`' },
  budgetMarker: {
    default: "`prompt.budget_marker`'s default",
    description: 'text after `<think>` stating the budget',
  },
  split: {
    description:
      'bucket of problem statements drawn from (`train` or `held_out`; the held-out stream sets it)',
  },
  heldOutFraction: { description: 'share of problem statements in the held-out bucket' },
};
