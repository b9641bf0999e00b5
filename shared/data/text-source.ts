import { lstatSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { decodeUtf8, type ReadLimits, type SourceDocument, SourceError, within } from './source-documents.js';

const TEXT_EXTENSIONS = ['.txt', '.md'];

/**
 * The files of a source: the file itself, or every file with one of `extensions` under a folder
 * (hidden entries skipped, links followed only inside `root`), sorted by path so every machine reads
 * them in the same order.
 */
export function sourceFiles(
  path: string,
  root: string,
  extensions: readonly string[] = TEXT_EXTENSIONS,
): string[] {
  if (!statSync(path).isDirectory()) return [path];
  const realRoot = realpathSync(root);
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      if (name.startsWith('.')) continue;
      const full = join(dir, name);
      let st = lstatSync(full);
      if (st.isSymbolicLink()) {
        if (!within(realRoot, realpathSync(full))) {
          throw new SourceError(`${full}: a link that leads outside the data root ${root}`);
        }
        st = statSync(full);
      }
      if (st.isDirectory()) walk(full);
      else if (st.isFile() && extensions.some((e) => name.toLowerCase().endsWith(e))) out.push(full);
    }
  };
  walk(path);
  if (out.length === 0) {
    throw new SourceError(`${path}: no ${extensions.map((e) => `*${e}`).join(' or ')} files in this folder`);
  }
  return out.sort((a, b) => cmp(relative(path, a), relative(path, b)));
}

/** Each file is one document, its whole text (the file is refused above data.max_document_bytes). */
export async function* textDocuments(
  path: string,
  root: string,
  limits: ReadLimits,
): AsyncGenerator<SourceDocument> {
  for (const file of sourceFiles(path, root)) {
    const size = statSync(file).size;
    if (size > limits.maxDocumentBytes) {
      throw new SourceError(
        `${file}: ${size} bytes, above data.max_document_bytes (${limits.maxDocumentBytes})`,
      );
    }
    const bytes = readFileSync(file);
    const text = decodeUtf8(bytes);
    if (text === null) throw new SourceError(`${file}:${firstBadLine(bytes)}: invalid UTF-8`);
    yield { identity: text, text };
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The 1-based line of the first invalid UTF-8 sequence (only called once decoding has failed). */
function firstBadLine(bytes: Uint8Array): number {
  let line = 1;
  let start = 0;
  for (;;) {
    const nl = bytes.indexOf(0x0a, start);
    const end = nl === -1 ? bytes.length : nl;
    if (decodeUtf8(bytes.subarray(start, end)) === null || nl === -1) return line;
    line++;
    start = nl + 1;
  }
}
