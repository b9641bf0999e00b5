import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';

/** The JSON-lines metrics log every training job writes: one object per step, keyed by `step`. */
export type MetricsRow = Record<string, number>;

interface ParsedLine {
  text: string;
  row: MetricsRow;
}

/**
 * The rows of a metrics log with the text each was read from. A last line without its newline that
 * does not parse is a write the job did not finish (killed mid-append): it is left out. Any other
 * line that is not a row is refused with the file's name and the line number, never its content.
 */
function parseLog(path: string): { lines: ParsedLine[]; terminated: boolean } {
  const text = readFileSync(path, 'utf8');
  const raw = text.split('\n');
  // split leaves '' after a final newline; anything else there is an unterminated last line
  const tail = raw.pop() ?? '';
  const lines: ParsedLine[] = [];
  const parse = (s: string, lineNo: number): MetricsRow | null => {
    let v: unknown;
    try {
      v = JSON.parse(s);
    } catch {
      return null;
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      throw new Error(`${basename(path)} line ${lineNo}: not a JSON object`);
    }
    const step = (v as { step?: unknown }).step;
    if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 0) {
      throw new Error(`${basename(path)} line ${lineNo}: field "step" must be an integer >= 0`);
    }
    return v as MetricsRow;
  };
  raw.forEach((s, i) => {
    if (s === '') return;
    const row = parse(s, i + 1);
    if (row === null) throw new Error(`${basename(path)} line ${i + 1}: not valid JSON`);
    lines.push({ text: s, row });
  });
  if (tail !== '') {
    const row = parse(tail, raw.length + 1);
    if (row !== null) lines.push({ text: tail, row });
  }
  return { lines, terminated: tail === '' };
}

export function readMetrics(path: string): MetricsRow[] {
  return parseLog(path).lines.map((l) => l.row);
}

/**
 * A job continuing from `step` keeps every row up to it, each line byte for byte, and drops the
 * rows after it (logged by an earlier attempt past its last checkpoint; they will be logged
 * again), and an unfinished last line. The log is replaced through a temporary file renamed into place, so a crash while this
 * runs leaves the old log whole, never a shortened one. Nothing is written when nothing is dropped.
 */
export function keepMetricsThrough(path: string, step: number): void {
  if (!existsSync(path)) return;
  const { lines, terminated } = parseLog(path);
  const kept = lines.filter((l) => l.row.step <= step);
  // An unterminated last line is rewritten too: the next row appended would run into it.
  if (terminated && kept.length === lines.length) return;
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, kept.map((l) => `${l.text}\n`).join(''));
    renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
}
