// Parquet -> records, one row group at a time (hyparquet: pure JS, no native code, no install
// scripts; hyparquet-compressors adds the codecs pyarrow/DuckDB may use besides snappy). WSDM Cup
// files hold plain-string cells (each one turn), a `winner` column and `language`; LMSYS-layout
// parquet files work too (JSON-list strings are NOT decoded here: a parquet string cell is the text
// itself, a list<string> column is the list of turns). Row rules live in row-builder.ts.
import { statSync } from 'node:fs';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema, type FileMetaData, type SchemaTree } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { Progress } from '../util/progress';
import { LABEL_COLUMNS, type ReadRowsResult } from '../types';
import { Utf8Decoder, PROGRESS_MIN_BYTES } from './csv';
import { capText, LANGUAGE_COLUMN, MAX_CELL_CHARS, REQUIRED_COLUMNS, RowBuilder, RowsError, WSDM_LABEL_COLUMN, type Cell, type ReadRowsOptions } from './row-builder';

/** Columns the rows are built from; any other column is not decoded at all. */
const USED_COLUMNS = [...REQUIRED_COLUMNS, ...LABEL_COLUMNS, WSDM_LABEL_COLUMN, LANGUAGE_COLUMN];

/** Strings from bytes with invalid UTF-8 marked (see csv.ts BAD_BYTE), instead of hyparquet's silent U+FFFD. */
const parsers = {
  stringFromBytes: (b: Uint8Array | undefined) => b && new Utf8Decoder().decode(Buffer.from(b.buffer, b.byteOffset, b.byteLength), true),
};

/** One parquet value as a cell: text, null, or a list of turns; numbers, booleans and bigints as text. */
function toCell(v: unknown): Cell {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map((x) => (x === null || x === undefined ? null : typeof x === 'string' ? x : JSON.stringify(x)));
  if (v instanceof Uint8Array) return new Utf8Decoder().decode(Buffer.from(v.buffer, v.byteOffset, v.byteLength), true);
  if (v instanceof Date) return v.toISOString();
  return typeof v === 'object' ? JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x)) : String(v);
}

async function openParquet(path: string) {
  try {
    statSync(path);
  } catch (e) {
    throw new RowsError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); check the path`);
  }
  const file = await asyncBufferFromFile(path);
  let metadata: FileMetaData;
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    throw new RowsError(`${path}: not a readable parquet file (${(e as Error).message}); re-export it (pandas to_parquet) or pass a CSV`);
  }
  // hyparquet trusts the footer: a column chunk whose path is not a schema column makes a read with
  // `columns` wait forever (found by npm run fuzz), so the footer is checked first.
  const leaves = new Set<string>();
  const walk = (node: SchemaTree, path: string[]) => {
    if (!node.children.length) leaves.add(path.join('.'));
    for (const c of node.children) walk(c, [...path, c.element.name]);
  };
  walk(parquetSchema(metadata), []);
  metadata.row_groups.forEach((g, gi) => {
    for (const c of g.columns) {
      const p = c.meta_data?.path_in_schema?.join('.');
      if (p === undefined || !leaves.has(p))
        throw new RowsError(`${path}: row group ${gi + 1} has a column chunk for ${JSON.stringify(p)}, which is not in the schema; the file is damaged: re-export it`);
    }
  });
  return { file, metadata };
}

/**
 * Rejects when the process would exit with `p` still pending: a decoder that stops without settling
 * its promise must not let a run end silently with exit code 0 and no submission.
 */
function settles<T>(p: Promise<T>, path: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const stuck = () => reject(new RowsError(`${path}: the parquet decoder stopped without finishing (a damaged file?); re-export it`));
    process.once('beforeExit', stuck);
    p.then(resolve, reject).finally(() => process.off('beforeExit', stuck));
  });
}

/**
 * Reads a parquet train/test file into rows, row group by row group. Record numbers (`line`) are
 * 1-based data rows plus 1, as for a CSV with its header (pandas index + 2).
 */
export async function readParquetRows(path: string, opts: ReadRowsOptions = {}): Promise<ReadRowsResult> {
  const { file, metadata } = await openParquet(path);
  const header = parquetSchema(metadata).children.map((c) => c.element.name);
  const builder = new RowBuilder(path, header, { ...opts, textCells: 'plain' });
  const columns = header.filter((h) => USED_COLUMNS.includes(h));
  const total = Number(metadata.num_rows);
  const progress = file.byteLength >= PROGRESS_MIN_BYTES ? new Progress(`reading ${path}`, total, 'rows') : null;
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    let objects: Record<string, unknown>[];
    try {
      objects = await settles(parquetReadObjects({ file, metadata, columns, rowStart, rowEnd, compressors, parsers }), path);
    } catch (e) {
      if (e instanceof RowsError) throw e;
      throw new RowsError(`${path}: rows ${rowStart + 1}-${rowEnd}: cannot decode the row group (${(e as Error).message}); the file is damaged: re-export it`);
    }
    objects.forEach((o, k) => {
      const cut = new Map<number, number>();
      const cells = header.map((h, i) => {
        const c = columns.includes(h) ? toCell(o[h]) : null;
        if (typeof c === 'string' && c.length > MAX_CELL_CHARS) {
          cut.set(i, c.length);
          return capText(c);
        }
        return c;
      });
      builder.add({ line: rowStart + k + 2, cells, cut: cut.size ? cut : undefined });
    });
    rowStart = rowEnd;
    progress?.update(rowStart);
  }
  progress?.done(rowStart);
  return builder.finish();
}
