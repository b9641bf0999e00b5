/**
 * The arithmetic of the synthetic math corpus: operations, the canonical statement of a problem and
 * its train / held-out bucket, carries, and the written reasoning styles.
 */
export type MathOp = 'add' | 'sub' | 'mul';
export const MATH_OPS: readonly MathOp[] = ['add', 'sub', 'mul'];

/**
 * `verbose`: the problem restated, the column procedure and a check by the inverse operation;
 * `full`: the column procedure; `compact`: each column's carry and digit only; `answer`: the answer only.
 */
export type ReasoningStyle = 'verbose' | 'full' | 'compact' | 'answer';
export const REASONING_STYLES: readonly ReasoningStyle[] = ['full', 'compact', 'answer', 'verbose'];

export type MathSplit = 'train' | 'held_out';

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
