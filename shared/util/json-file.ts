import { readFileSync } from 'node:fs';

/** A plain JSON object (not null, not an array). */
export function isJsonObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * JSON text parsed, or an error naming the file and the position: never the parser's own message,
 * which quotes the start of the text (a path pointed at a secret would show its first characters).
 */
export function parseJsonText(path: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const at = /position (\d+)/.exec((e as Error).message);
    throw new Error(`${path}: not valid JSON${at ? ` (at character ${at[1]})` : ''}`);
  }
}

/** A JSON file whose top level must be an object; errors name the file, never its contents. */
export function readJsonObject(path: string): Record<string, unknown> {
  const v = parseJsonText(path, readFileSync(path, 'utf8'));
  if (!isJsonObject(v)) throw new Error(`${path}: expected a JSON object at the top level`);
  return v;
}
