/**
 * The sentences of the synthetic math corpus: equation and word-problem templates, the people and
 * objects they name, and the renderer that fills them.
 */
import type { MathOp } from './arithmetic.js';

export interface Person {
  name: string;
  he: string;
  him: string;
}

export const PEOPLE: readonly Person[] = [
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

export const OBJECTS: readonly string[] = [
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

export const CONTAINERS: readonly string[] = [
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
export const EQUATIONS: Readonly<Record<MathOp, readonly string[]>> = {
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
export const EQUATION_FIRST_WEIGHT = 5;

/**
 * Word-problem templates (ten per operation). `{a}`/`{b}` as in MathProblem (mul: `{a}` the
 * multiplier), `{N}`/`{M}` two different people, `{he}`/`{He}`/`{him}` the pronouns of `{N}`,
 * `{obj}` a plural object, `{box}` a plural container.
 */
export const WORD_PROBLEMS: Readonly<Record<MathOp, readonly string[]>> = {
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

export function capitalise(s: string): string {
  return s[0].toUpperCase() + s.slice(1);
}

/** Fills a template; returns the text before `{ans}` and after it. */
export function render(template: string, values: Record<string, string>): { before: string; after: string } {
  const fill = (s: string) =>
    s.replace(/\{(\w+)\}/g, (whole, k: string) => {
      const v = values[k];
      if (v === undefined) throw new Error(`template ${JSON.stringify(template)}: no value for ${whole}`);
      return v;
    });
  const at = template.indexOf('{ans}');
  return { before: fill(template.slice(0, at)), after: fill(template.slice(at + '{ans}'.length)) };
}
