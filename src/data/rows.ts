// Reads a competition file into ArenaRows, whatever its format: a registry of readers chosen by the
// file's first bytes (parquet's PAR1 magic) or its extension. Every reader hands its records to
// row-builder.ts, so CSV and parquet rows obey the same rules and warnings.
import { extname } from 'node:path';
import type { ReadRowsResult } from '../types';
import { readHead } from '../util/files';
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
  {
    name: 'parquet',
    matches: (head, ext) => ext === '.parquet' || head.subarray(0, 4).toString('latin1') === 'PAR1',
    read: readParquetRows,
    columns: () => [],
  },
  { name: 'csv', matches: () => true, read: readCsvRows, columns: csvColumns },
];

const readerFor = (path: string): Reader =>
  READERS.find((r) => r.matches(readHead(path, 4), extname(path).toLowerCase()))!;

/** Reads a Kaggle train/test file (LMSYS CSV, WSDM parquet, or either layout in the other format). */
export function readRows(path: string, opts: ReadRowsOptions = {}): Promise<ReadRowsResult> {
  return readerFor(path).read(path, opts);
}

/** The file's column names when its reader knows them before reading the rows (a CSV header), else []. */
export function dataColumns(path: string): string[] {
  return readerFor(path).columns(path);
}
