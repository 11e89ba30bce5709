// Reads a competition file into ArenaRows, whatever its format: a registry of readers chosen by the
// file's first bytes (parquet's PAR1 magic) or its extension. Every reader hands its records to
// row-builder.ts, so CSV and parquet rows obey the same rules and warnings.
import { closeSync, openSync, readSync } from 'node:fs';
import { extname } from 'node:path';
import type { ReadRowsResult } from '../types';
import { csvColumns, readCsvRows } from './csv';
import { readParquetRows } from './parquet';
import type { ReadRowsOptions } from './row-builder';

export {
  RowsError,
  REQUIRED_COLUMNS,
  WSDM_LABEL_COLUMN,
  MAX_CELL_CHARS,
  parseCell,
  fixSurrogates,
  type ParsedCell,
  type ReadRowsOptions,
} from './row-builder';

interface Reader {
  name: string;
  matches(head: Buffer, ext: string): boolean;
  read(path: string, opts: ReadRowsOptions): Promise<ReadRowsResult>;
  /** Column names read cheaply before the rows (the task is chosen from them), or [] when not known up front. */
  columns(path: string): string[];
}

/** First match wins; CSV takes everything else (its reader names what is wrong with a non-CSV file). */
export const READERS: Reader[] = [
  // parquet means WSDM unless told otherwise (--task), so its columns are not read up front
  { name: 'parquet', matches: (head, ext) => ext === '.parquet' || head.subarray(0, 4).toString('latin1') === 'PAR1', read: readParquetRows, columns: () => [] },
  { name: 'csv', matches: () => true, read: readCsvRows, columns: csvColumns },
];

/** The first bytes of a file ('' when it cannot be read: the reader then reports why). */
function fileHead(path: string): Buffer {
  try {
    const fd = openSync(path, 'r');
    try {
      const b = Buffer.alloc(4);
      const n = readSync(fd, b, 0, 4, 0);
      return b.subarray(0, n);
    } finally {
      closeSync(fd);
    }
  } catch {
    return Buffer.alloc(0);
  }
}

const readerFor = (path: string): Reader => READERS.find((r) => r.matches(fileHead(path), extname(path).toLowerCase()))!;

/** Reads a Kaggle train/test file (LMSYS CSV, WSDM parquet, or either layout in the other format). */
export function readRows(path: string, opts: ReadRowsOptions = {}): Promise<ReadRowsResult> {
  return readerFor(path).read(path, opts);
}

/** The file's column names when its reader knows them before reading the rows (a CSV header), else []. */
export function dataColumns(path: string): string[] {
  return readerFor(path).columns(path);
}
