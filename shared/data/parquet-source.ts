import { statSync } from 'node:fs';
import {
  asyncBufferFromFile,
  type FileMetaData,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
} from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import {
  decodeUtf8,
  InvalidUtf8,
  type ReadLimits,
  rowDocument,
  type SourceDocument,
  SourceError,
} from './source-documents.js';

/**
 * The documents of a Parquet file (the Hugging Face datasets layout: one row per document, the text
 * in a string column), read one row group at a time through hyparquet so memory stays bounded by
 * the largest row group. Every codec Parquet writers use is accepted (hyparquet-compressors).
 */
export async function* parquetDocuments(
  path: string,
  field: string,
  idField: string | null,
  limits: ReadLimits,
): AsyncGenerator<SourceDocument> {
  if (!statSync(path, { throwIfNoEntry: false })?.isFile()) throw new SourceError(`${path}: file not found`);
  const file = await asyncBufferFromFile(path);
  let metadata: FileMetaData;
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    throw new SourceError(`${path}: not a readable Parquet file (${(e as Error).message})`);
  }
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  for (const f of idField === null ? [field] : [field, idField]) {
    if (!columns.includes(f)) {
      throw new SourceError(`${path}: no column "${f}" (columns: ${columns.join(', ')})`);
    }
  }
  // Strings are decoded strictly: invalid UTF-8 becomes a marker the row check reports by row and field.
  const stringFromBytes = (bytes: Uint8Array | undefined) =>
    bytes === undefined ? undefined : (decodeUtf8(bytes) ?? new InvalidUtf8());
  let rowStart = 0;
  for (const [g, group] of metadata.row_groups.entries()) {
    const n = Number(group.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({
        file,
        metadata,
        columns: idField === null ? [field] : [field, idField],
        rowStart,
        rowEnd: rowStart + n,
        compressors,
        parsers: { stringFromBytes: stringFromBytes as (b: Uint8Array) => string },
      });
    } catch (e) {
      throw new SourceError(`${path}: row group ${g}: cannot be read (${(e as Error).message})`);
    }
    for (const [i, row] of rows.entries()) {
      yield rowDocument(row, field, idField, `${path}: row ${rowStart + i}`, limits);
    }
    rowStart += n;
  }
}
