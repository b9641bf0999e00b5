import { open } from 'node:fs/promises';
import {
  decodeUtf8,
  type ReadLimits,
  rowDocument,
  type SourceDocument,
  SourceError,
} from './source-documents.js';

const CHUNK = 1 << 20;

/**
 * The documents of a JSON Lines file, one per non-blank line, read in 1 MiB chunks so memory stays
 * bounded by the longest line. Each line must be a JSON object whose `field` is a string.
 */
export async function* jsonlDocuments(
  path: string,
  field: string,
  idField: string | null,
  limits: ReadLimits,
): AsyncGenerator<SourceDocument> {
  const fh = await open(path, 'r').catch(() => {
    throw new SourceError(`${path}: file not found or unreadable`);
  });
  try {
    const buf = new Uint8Array(CHUNK);
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    let line = 0;
    const parseLine = (bytes: Uint8Array): SourceDocument | null => {
      line++;
      let end = bytes.length;
      if (end > 0 && bytes[end - 1] === 0x0d) end--;
      const text = decodeUtf8(bytes.subarray(0, end));
      if (text === null) throw new SourceError(`${path}:${line}: invalid UTF-8`);
      if (text.trim() === '') return null;
      let row: unknown;
      try {
        row = JSON.parse(text);
      } catch (e) {
        // The parser's message quotes the line; only its position is reported.
        const at = /position (\d+)/.exec((e as Error).message);
        throw new SourceError(`${path}:${line}: invalid JSON${at ? ` at character ${at[1]}` : ''}`);
      }
      if (row === null || typeof row !== 'object' || Array.isArray(row)) {
        throw new SourceError(`${path}:${line}: expected a JSON object`);
      }
      return rowDocument(row as Record<string, unknown>, field, idField, `${path}:${line}`, limits);
    };
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      let start = 0;
      for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
        const piece = chunk.subarray(start, nl);
        const bytes = pendingBytes === 0 ? piece : concat([...pending, piece], pendingBytes + piece.length);
        pending = [];
        pendingBytes = 0;
        start = nl + 1;
        if (bytes.length > limits.maxDocumentBytes) {
          throw new SourceError(
            `${path}:${line + 1}: line longer than data.max_document_bytes (${limits.maxDocumentBytes})`,
          );
        }
        const doc = parseLine(bytes);
        if (doc) yield doc;
      }
      if (start < chunk.length) {
        pending.push(chunk.slice(start));
        pendingBytes += chunk.length - start;
        if (pendingBytes > limits.maxDocumentBytes) {
          throw new SourceError(
            `${path}:${line + 1}: line longer than data.max_document_bytes (${limits.maxDocumentBytes})`,
          );
        }
      }
    }
    if (pendingBytes > 0) {
      const doc = parseLine(concat(pending, pendingBytes));
      if (doc) yield doc;
    }
  } finally {
    await fh.close();
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
