import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { RMT_DEFAULTS } from '../shared/config/rmt-defaults.js';
import { writeGpt2Tokenizer } from '../shared/data/gpt2-bpe.js';
import {
  applyOp,
  carryIntoTop,
  columnReasoning,
  generateMathDocuments,
  MATH_CORPUS_DEFAULTS,
  MATH_TEMPLATE_COUNTS,
  type MathDocument,
  type MathOp,
  type MathProblem,
  mathKeyPositions,
  mathKeyTokenIndices,
  problemKey,
  problemSplit,
  type ReasoningStyle,
  resolveMathCorpusOptions,
  tokenIndicesAtChars,
} from '../shared/data/synthetic-math.js';
import { loadTokenizer, type Tokenizer } from '../shared/data/tokenizer.js';
import { BareFormat } from '../shared/rl/prompt-format.js';

const dir = mkdtempSync(join(tmpdir(), 'rmt-synthetic-math-'));
let tok: Tokenizer;
let bare: BareFormat;

test.before(async () => {
  writeGpt2Tokenizer(dir, { merges: 2000 });
  tok = await loadTokenizer(dir);
  bare = new BareFormat(tok, RMT_DEFAULTS.prompt);
});

test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const corpus = generateMathDocuments({ documents: 400 }, 7);
const problems = corpus.flatMap((d) => d.problems.map((p) => ({ doc: d, p })));
const reasoningExamples = problems.filter(({ p }) => p.layout === 'reasoning');

/** Digits of n, least significant first. */
const lsd = (n: number) => [...String(n)].reverse().map(Number);

/**
 * Reads a reasoning back, independently of the generator: checks every column step against the
 * operands and the carries, and returns the answer the columns give and the answer stated after ';'.
 */
function checkReasoning(
  op: MathOp,
  a: number,
  b: number,
  style: ReasoningStyle,
  text: string,
): { columns: number | null; stated: number } {
  if (style === 'verbose') {
    const m = /^(\d+)([+*-])(\d+):(.*):(\d+)([+/-])(\d+)=(\d+);(\d+)$/.exec(text);
    if (!m) throw new Error(`verbose style: ${text}`);
    const sign = { add: '+', sub: '-', mul: '*' }[op];
    if (Number(m[1]) !== a || m[2] !== sign || Number(m[3]) !== b) throw new Error(`${text}: restatement`);
    const [x, inv, y, z] = [Number(m[5]), m[6], Number(m[7]), Number(m[8])];
    const back = inv === '-' ? x - y : inv === '+' ? x + y : x / y;
    const wantInv = { add: '-', sub: '+', mul: '/' }[op];
    if (inv !== wantInv || x !== Number(m[9]) || back !== z || z !== (op === 'mul' ? b : a))
      throw new Error(`${text}: check`);
    return checkReasoning(op, a, b, 'full', `${m[4]};${m[9]}`);
  }
  const semi = text.lastIndexOf(';');
  if (style === 'answer') {
    if (!/^\d+$/.test(text)) throw new Error(`answer style: ${text}`);
    return { columns: null, stated: Number(text) };
  }
  const stated = Number(text.slice(semi + 1));
  const steps = text.slice(0, semi).split(',');
  const da = lsd(a);
  const db = lsd(b);
  const digits: number[] = [];
  let c = 0;
  const n = op === 'add' ? Math.max(da.length, db.length) : op === 'sub' ? da.length : db.length;
  if (steps.length !== n) throw new Error(`${text}: ${steps.length} steps for ${n} columns`);
  steps.forEach((step, i) => {
    const fail = () => new Error(`${op} ${a} ${b}: step ${i} "${step}" of ${text} is wrong`);
    if (style === 'compact') {
      const m = /^(\d)(\d)$/.exec(step);
      if (!m) throw fail();
      const [out, d] = [Number(m[1]), Number(m[2])];
      let want: number;
      if (op === 'add') want = (da[i] ?? 0) + (db[i] ?? 0) + c;
      else if (op === 'sub') want = da[i] - c - (db[i] ?? 0) + 10 * out;
      else want = a * db[i] + c;
      if (op === 'sub' ? want !== d || want < 0 || want > 9 : want !== 10 * out + d) throw fail();
      digits.push(d);
      c = out;
    } else if (op === 'add') {
      const m = /^(\d)\+(\d)(\+1)?=(\d+)$/.exec(step);
      if (!m) throw fail();
      const [x, y, cin, s] = [Number(m[1]), Number(m[2]), m[3] ? 1 : 0, Number(m[4])];
      if (x !== (da[i] ?? 0) || y !== (db[i] ?? 0) || cin !== c || s !== x + y + cin) throw fail();
      digits.push(s % 10);
      c = s >= 10 ? 1 : 0;
    } else if (op === 'sub') {
      const m = /^(1?)(\d)(-1)?-(\d)=(\d)$/.exec(step);
      if (!m) throw fail();
      const [out, x, bin, y, d] = [m[1] ? 1 : 0, Number(m[2]), m[3] ? 1 : 0, Number(m[4]), Number(m[5])];
      if (x !== da[i] || y !== (db[i] ?? 0) || bin !== c || d !== 10 * out + x - bin - y) throw fail();
      if (out === 1 && x - bin - y >= 0) throw fail(); // borrowed without need
      if (out === 0 && x - bin - y < 0) throw fail();
      digits.push(d);
      c = out;
    } else {
      const m = /^(\d)\*(\d)(?:\+(\d))?=(\d+)$/.exec(step);
      if (!m) throw fail();
      const [k, x, cin, p] = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0), Number(m[4])];
      if (k !== a || x !== db[i] || cin !== c || p !== k * x + cin) throw fail();
      if (m[3] !== undefined && cin === 0) throw fail();
      digits.push(p % 10);
      c = Math.floor(p / 10);
    }
  });
  if (op === 'sub' && c !== 0) throw new Error(`${text}: borrow out of the top column`);
  const columns = Number(`${c > 0 ? c : ''}${digits.reverse().join('')}`);
  return { columns, stated };
}

test('same seed, same documents; another seed, other documents; more documents keep the first ones', (t) => {
  const a = generateMathDocuments({ documents: 30 }, 11);
  t.deepEqual(generateMathDocuments({ documents: 30 }, 11), a);
  const b = generateMathDocuments({ documents: 30 }, 12);
  t.notDeepEqual(
    b.map((d) => d.text),
    a.map((d) => d.text),
  );
  t.deepEqual(generateMathDocuments({ documents: 60 }, 11).slice(0, 30), a);
  t.is(a[3].id, 'math-train-11-3');
  t.is(generateMathDocuments({ documents: 1, split: 'held_out' }, 11)[0].id, 'math-held_out-11-0');
});

test('options: defaults filled, bad values refused', (t) => {
  const o = resolveMathCorpusOptions({});
  t.is(o.reasoningFraction, 0.3);
  t.is(o.budgetMarker, RMT_DEFAULTS.prompt.budget_marker);
  t.deepEqual(resolveMathCorpusOptions({ operations: { mul: 2 } }).operations, { add: 0, sub: 0, mul: 2 });
  t.deepEqual(
    resolveMathCorpusOptions({ ranges: { add: { a: [1, 9], b: [1, 9] } } }).ranges.sub,
    o.ranges.sub,
  );
  t.throws(() => resolveMathCorpusOptions({ reasoningFraction: 1.5 }));
  t.throws(() => resolveMathCorpusOptions({ operations: { add: 0 } }));
  t.throws(() => resolveMathCorpusOptions({ operations: { div: 1 } as never }));
  t.throws(() => resolveMathCorpusOptions({ ranges: { mul: { a: [2, 12], b: [10, 99] } } }));
  t.throws(() => resolveMathCorpusOptions({ problemsPerDocument: [0, 3] }));
  t.throws(() => resolveMathCorpusOptions({ split: 'held_out', heldOutFraction: 0 }));
  t.throws(() => resolveMathCorpusOptions({ split: 'test' as never }));
});

/** The problem's statement as written: its text up to the answer. */
const statement = (d: MathDocument, p: MathProblem) => d.text.slice(p.start, p.answerStart);

test('train and held-out problems are disjoint whatever the seeds', (t) => {
  const train = [1, 2].flatMap((s) => generateMathDocuments({ documents: 300, split: 'train' }, s));
  const held = [1, 3].flatMap((s) => generateMathDocuments({ documents: 300, split: 'held_out' }, s));
  const keys = (ds: MathDocument[]) => new Set(ds.flatMap((d) => d.problems.map((p) => p.key)));
  const statements = (ds: MathDocument[]) =>
    new Set(ds.flatMap((d) => d.problems.map((p) => statement(d, p))));
  const trainKeys = keys(train);
  const heldKeys = keys(held);
  t.true(heldKeys.size > 500);
  t.is([...heldKeys].filter((k) => trainKeys.has(k)).length, 0);
  const trainStatements = statements(train);
  t.is([...statements(held)].filter((s) => trainStatements.has(s)).length, 0);
  for (const d of held) for (const p of d.problems) t.is(problemSplit(p.key, 0.2), 'held_out');
  for (const d of train) for (const p of d.problems) t.is(problemSplit(p.key, 0.2), 'train');
  // Commutative problems share a key: 48 + 37 and 37 + 48 fall on the same side.
  t.is(problemKey('add', 48, 37), problemKey('add', 37, 48));
  t.not(problemKey('sub', 48, 37), problemKey('sub', 37, 48));
  // Seeds alone do not separate problems: two train corpora share some.
  const other = keys(generateMathDocuments({ documents: 300 }, 2));
  t.true([...keys(generateMathDocuments({ documents: 300 }, 1))].some((k) => other.has(k)));
});

test('plain problems: the answer is right and written where the record says', (t) => {
  for (const { doc, p } of problems) {
    t.is(p.answer, applyOp(p.op, p.a, p.b));
    if (p.op === 'sub') t.true(p.a - p.b >= 2);
    if (p.op === 'mul') t.true(p.a >= 2 && p.a <= 9);
    if (p.layout !== 'plain') continue;
    const written = doc.text.slice(p.answerStart, p.answerStart + String(p.answer).length);
    t.is(written, String(p.answer));
    t.false(/\d/.test(doc.text[p.answerStart + written.length]));
    t.is(doc.text[p.end - 1], '.');
  }
  for (const d of corpus) t.false(d.text.endsWith('<|endoftext|>'));
});

test('every reasoning is arithmetically right and ends with the answer whose digit is the prediction', (t) => {
  t.true(reasoningExamples.length > 300);
  for (const { doc, p } of reasoningExamples) {
    const r = p.reasoning!;
    const { columns, stated } = checkReasoning(p.op, p.a, p.b, r.style, r.reasoning);
    t.is(stated, p.answer);
    if (columns !== null) t.is(columns, p.answer);
    t.is(r.reasoning, columnReasoning(p.op, p.a, p.b, r.style));
    const ans = String(p.answer);
    t.is(doc.text[r.predictionOffset], ans[r.digit]);
    t.is(doc.text.slice(p.answerStart, r.thinkStart), ans.slice(0, r.digit));
    t.is(
      doc.text.slice(r.thinkStart, r.predictionOffset),
      `<think> budget ${r.budget}:${r.reasoning}</think>`,
    );
    t.is(doc.text.slice(r.predictionOffset + 1, p.end), '<|endoftext|>');
  }
});

test('the reasoning layout tokenizes exactly as BareFormat prompt + response', (t) => {
  for (const { doc, p } of reasoningExamples) {
    const r = p.reasoning!;
    const contextIds = tok.encode(doc.text.slice(r.contextStart, r.thinkStart));
    const ids = tok.encode(doc.text.slice(r.contextStart, p.end));
    const prompt = bare.buildPrompt(contextIds, r.budget);
    t.deepEqual(ids.slice(0, prompt.length), prompt);
    const response = ids.slice(prompt.length);
    const parsed = bare.parseResponse(response);
    t.is(parsed.finishReason, 'stop');
    t.is(parsed.reasoningIds.length, r.reasoning.length, r.reasoning); // one token per character
    t.deepEqual(parsed.reasoningIds, tok.encode(r.reasoning));
    t.deepEqual(parsed.predictionIds, tok.encode(String(p.answer)[r.digit]));
    t.is(parsed.predictionIds.length, 1);
    t.deepEqual(response.slice(-2), [parsed.predictionIds[0], tok.eosId]);
    t.is(response.length, r.reasoning.length + 3);
  }
  // A document is its segments: encoding them apart or together gives the same ids.
  for (const d of corpus.slice(0, 50)) {
    const parts = d.text.split('<|endoftext|>');
    const joined = parts.flatMap((s, i) => [...tok.encode(s), ...(i < parts.length - 1 ? [tok.eosId] : [])]);
    t.deepEqual(tok.encode(d.text), joined);
  }
});

test('verbose reasoning: restated, the full columns, checked by the inverse operation, one token a character', (t) => {
  t.is(columnReasoning('add', 48, 37, 'verbose'), '48+37:8+7=15,4+3+1=8:85-37=48;85');
  t.is(columnReasoning('sub', 52, 37, 'verbose'), '52-37:12-7=5,5-1-3=1:15+37=52;15');
  t.is(columnReasoning('mul', 7, 48, 'verbose'), '7*48:7*8=56,7*4+5=33:336/7=48;336');
  const docs = generateMathDocuments({ documents: 150, reasoningStyles: { verbose: 1 } }, 5);
  const examples = docs.flatMap((d) =>
    d.problems.filter((p) => p.layout === 'reasoning').map((p) => ({ d, p })),
  );
  t.true(examples.length > 100);
  for (const { d, p } of examples) {
    const r = p.reasoning!;
    t.is(r.style, 'verbose');
    t.is(checkReasoning(p.op, p.a, p.b, 'verbose', r.reasoning).stated, p.answer);
    const ids = tok.encode(d.text.slice(r.contextStart, p.end));
    const prompt = bare.buildPrompt(tok.encode(d.text.slice(r.contextStart, r.thinkStart)), r.budget);
    const parsed = bare.parseResponse(ids.slice(prompt.length));
    t.is(parsed.reasoningIds.length, r.reasoning.length, r.reasoning);
    t.true(r.reasoning.length > columnReasoning(p.op, p.a, p.b, 'full').length + 6);
  }
});

test('budgets: the reasoning length, sometimes rounded up to a multiple of 8, and varied', (t) => {
  let exact = 0;
  let rounded = 0;
  const budgets = new Set<number>();
  for (const { p } of reasoningExamples) {
    const { budget, reasoning } = p.reasoning!;
    budgets.add(budget);
    t.true(budget >= reasoning.length && budget - reasoning.length < 8);
    if (budget === reasoning.length) exact++;
    else {
      t.is(budget % 8, 0);
      rounded++;
    }
  }
  t.true(exact > rounded && rounded > 0.15 * reasoningExamples.length);
  t.true(budgets.size >= 15);
});

test('reasoning examples cover every digit position, every style and every operation', (t) => {
  const seen = new Set(reasoningExamples.map(({ p }) => `${String(p.answer).length}:${p.reasoning!.digit}`));
  for (const k of ['2:0', '2:1', '3:0', '3:1', '3:2', '4:0', '4:1', '4:2', '4:3']) t.true(seen.has(k), k);
  const styles = new Set(reasoningExamples.map(({ p }) => `${p.op}:${p.reasoning!.style}`));
  t.is(styles.size, 9);
  const frac = reasoningExamples.length / problems.length;
  t.true(frac > 0.25 && frac < 0.35, String(frac));
  // A context starts at the document or after the previous example's <|endoftext|>.
  for (const { doc, p } of reasoningExamples) {
    const s = p.reasoning!.contextStart;
    t.true(s === 0 || doc.text.slice(0, s).endsWith('<|endoftext|>'));
    t.false(doc.text.slice(s, p.reasoning!.thinkStart).includes('<|endoftext|>'));
  }
});

test('mix: word problems, operations, carries and templates as configured', (t) => {
  const word = problems.filter(({ p }) => p.kind === 'word').length / problems.length;
  t.true(word > 0.35 && word < 0.45, String(word));
  const addSub = problems.filter(({ p }) => p.op !== 'mul');
  const carry = addSub.filter(({ p }) => carryIntoTop(p.op, p.a, p.b)).length / addSub.length;
  t.true(carry > 0.45 && carry < 0.55, String(carry));
  const all = generateMathDocuments({ documents: 100, carryFraction: 1, operations: { add: 1 } }, 3);
  for (const d of all) for (const p of d.problems) t.true(p.op === 'add' && carryIntoTop('add', p.a, p.b));
  const used = new Set(problems.map(({ p }) => `${p.op}:${p.kind}:${p.template}`));
  for (const op of ['add', 'sub', 'mul'] as const) {
    for (let i = 0; i < MATH_TEMPLATE_COUNTS[op].word; i++) t.true(used.has(`${op}:word:${i}`));
    for (let i = 0; i < MATH_TEMPLATE_COUNTS[op].equation; i++) t.true(used.has(`${op}:equation:${i}`));
  }
  const plain = generateMathDocuments({ documents: 50, reasoningFraction: 0 }, 7);
  t.false(plain.some((d) => d.text.includes('<think>') || d.text.includes('<|endoftext|>')));
  t.true(carryIntoTop('add', 48, 37) && !carryIntoTop('add', 41, 37));
  t.true(carryIntoTop('sub', 52, 37) && !carryIntoTop('sub', 58, 37));
});

test('key positions point at the answer digits of plain problems, as characters and as tokens', (t) => {
  let n = 0;
  for (const d of corpus.slice(0, 100)) {
    const keys = mathKeyPositions(d);
    const plain = d.problems.filter((p) => p.layout === 'plain');
    t.is(
      keys.length,
      plain.reduce((s, p) => s + String(p.answer).length, 0),
    );
    for (const k of keys) {
      const p = d.problems[k.problem];
      t.is(d.text[k.offset], String(p.answer)[k.digit]);
      t.is(k.answerDigits, String(p.answer).length);
    }
    const ids = tok.encode(d.text);
    const idx = mathKeyTokenIndices(d, ids, tok);
    t.deepEqual(
      idx.map((i) => tok.decode([ids[i]])),
      keys.map((k) => d.text[k.offset]),
    );
    // The context before a key token is exactly the text before the digit.
    for (const [j, i] of idx.entries()) t.is(tok.decode(ids.slice(0, i)), d.text.slice(0, keys[j].offset));
    n += idx.length;
  }
  t.true(n > 1000);
  t.throws(() => tokenIndicesAtChars('12 + 3', tok.encode('12 + 4'), tok, [0]));
  t.deepEqual(tokenIndicesAtChars('ab 12', tok.encode('ab 12'), tok, [3, 4]), [2, 3]);
});

test('independent budgets: drawn from budgetRange apart from the problem, the reasoning fits them', (t) => {
  const opts = {
    documents: 600,
    budgetMode: 'independent' as const,
    budgetRange: [4, 40] as const,
    reasoningStyles: { verbose: 0.55, full: 0.3, compact: 0.1, answer: 0.05 },
  };
  const examples = generateMathDocuments(opts, 11).flatMap((d) => d.problems.filter((p) => p.reasoning));
  t.true(examples.length > 600);
  const budgets = new Set<number>();
  const stylesAt = { small: new Set<string>(), large: new Set<string>() };
  for (const p of examples) {
    const r = p.reasoning!;
    budgets.add(r.budget);
    t.true(r.budget >= 4 && r.budget <= 40);
    t.true(r.reasoning.length <= r.budget, `${r.reasoning} under budget ${r.budget}`);
    t.is(r.reasoning, columnReasoning(p.op, p.a, p.b, r.style));
    (r.budget <= 8 ? stylesAt.small : stylesAt.large).add(r.style);
  }
  t.is(budgets.size, 37);
  // Small budgets switch to the short styles; large ones keep the long ones.
  t.false(stylesAt.small.has('verbose') || stylesAt.small.has('full'));
  t.true(stylesAt.large.has('verbose') && stylesAt.large.has('full'));
  // The stated budget says nothing about the problem: budgets of carrying and non-carrying sums alike.
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const carry = examples
    .filter((p) => p.op !== 'mul' && carryIntoTop(p.op, p.a, p.b))
    .map((p) => p.reasoning!.budget);
  const none = examples
    .filter((p) => p.op !== 'mul' && !carryIntoTop(p.op, p.a, p.b))
    .map((p) => p.reasoning!.budget);
  t.true(Math.abs(mean(carry) - mean(none)) < 1.5, `${mean(carry)} vs ${mean(none)}`);
  // The default mode is unchanged (a budget that is the length or rounded up from it).
  t.is(MATH_CORPUS_DEFAULTS.budgetMode, 'length');
});

test('independent budgets: a range whose minimum cannot hold the longest answer is refused', (t) => {
  t.throws(() => resolveMathCorpusOptions({ budgetMode: 'independent', budgetRange: [3, 40] }), {
    message: /budgetRange: the minimum 3 is below the longest answer \(4 digits\)/,
  });
  t.notThrows(() =>
    resolveMathCorpusOptions({
      budgetMode: 'independent',
      budgetRange: [3, 40],
      operations: { mul: 1 },
    }),
  );
  t.throws(() => resolveMathCorpusOptions({ budgetMode: 'fixed' as never }), { message: /budgetMode/ });
  t.throws(() => resolveMathCorpusOptions({ budgetRange: [0, 4] }), { message: /budgetRange/ });
});

test('statement examples: cut where a token starts, the next piece restated, prompt + response as BareFormat', (t) => {
  const opts = {
    documents: 200,
    reasoningFraction: 0.6,
    statementFraction: 0.5,
    isOneToken: (piece: string) => tok.encode(piece).length === 1,
  };
  const docs = generateMathDocuments(opts, 11);
  const examples = docs.flatMap((d) => d.problems.filter((p) => p.reasoning).map((p) => ({ doc: d, p })));
  const inStatement = examples.filter(({ p }) => p.reasoning!.digit === -1);
  t.true(inStatement.length > 0.35 * examples.length && inStatement.length < 0.65 * examples.length);
  const kinds = new Set<string>();
  for (const { doc, p } of inStatement) {
    const r = p.reasoning!;
    t.regex(r.target, /^(\p{N}| \p{L}+| [^\s\p{L}\p{N}]+)$/u);
    kinds.add(/\p{N}/u.test(r.target) ? 'digit' : /\p{L}/u.test(r.target) ? 'word' : 'operator');
    t.is(doc.text.slice(r.predictionOffset, p.end), `${r.target}<|endoftext|>`);
    t.true(r.thinkStart > p.start && r.thinkStart < p.answerStart + 1);
    t.is(r.reasoning, r.target.trim().length <= r.budget ? r.target.trim() : '');
    t.true(
      r.budget >= MATH_CORPUS_DEFAULTS.budgetRange[0] && r.budget <= MATH_CORPUS_DEFAULTS.budgetRange[1],
    );
    const contextIds = tok.encode(doc.text.slice(r.contextStart, r.thinkStart));
    const ids = tok.encode(doc.text.slice(r.contextStart, p.end));
    const prompt = bare.buildPrompt(contextIds, r.budget);
    t.deepEqual(ids.slice(0, prompt.length), prompt);
    const parsed = bare.parseResponse(ids.slice(prompt.length));
    t.is(parsed.finishReason, 'stop');
    t.deepEqual(parsed.predictionIds, tok.encode(r.target));
    t.is(parsed.predictionIds.length, 1, r.target);
  }
  t.deepEqual([...kinds].sort(), ['digit', 'operator', 'word']);
  // Asked for none, the corpus is the one it always was (no extra random draws).
  t.deepEqual(
    generateMathDocuments({ ...opts, statementFraction: 0 }, 11).map((d) => d.text),
    generateMathDocuments({ documents: 200, reasoningFraction: 0.6 }, 11).map((d) => d.text),
  );
});
