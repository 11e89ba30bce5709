// Turns the records of any tabular reader (CSV, parquet) into ArenaRows. This module owns every
// decision about what a "clean" row is: required columns, id rules, JSON-list cells, nulls, broken
// text (invalid UTF-8, NUL, lone surrogates), absurd cells, duplicate ids and labels. Readers only
// decode their format into records; later stages never look at raw cells.
import type { ArenaRow, ReadRowsResult } from '../types';
import { LABEL_COLUMNS } from '../task/task';
import { oneHotLabel, winnerLabel, WSDM_LABEL_COLUMN, type RowLabel } from '../task/labels';

export { WSDM_LABEL_COLUMN };

export class RowsError extends Error {
  override name = 'RowsError';
}

export const REQUIRED_COLUMNS = ['id', 'prompt', 'response_a', 'response_b'] as const;
/** WSDM Cup files say which language the prompt is in; kept for per-language reports. */
export const LANGUAGE_COLUMN = 'language';

/**
 * Longest cell kept whole, in characters. The longest real cell of the LMSYS data is about 35,000
 * characters (the 999-row sample's README) and the runner reads at most a few thousand tokens per
 * row, so 4,000,000 is far above anything real; a longer cell (a runaway paste, a file glued into a
 * cell, a cut quote swallowing the rest of a file) keeps its first and last 2,000,000 characters,
 * which is what head+tail truncation would look at anyway, and is counted in a warning.
 */
export const MAX_CELL_CHARS = 4_000_000;

export interface ReadRowsOptions {
  /** Fail unless the file has labels (the three one-hot columns, or WSDM's `winner`). */
  requireLabels?: boolean;
}

/**
 * One record of a reader, cells in header order. A cell is text, null (parquet's missing value), or
 * a list of turns (a parquet list column). `cut` maps a cell index to its length before capping.
 */
export interface SourceRecord {
  /** 1-based record number with the header as 1 (CSV) or 1-based data row + 1 (parquet), for messages. */
  line: number;
  cells: Cell[];
  cut?: Map<number, number>;
}
export type Cell = string | null | (string | null)[];

export interface ParsedCell {
  /** One item per turn; null items are ''. */
  items: string[];
  /** The cell was not a JSON list of strings/nulls and was kept as one raw string (WSDM files, broken cells). */
  raw: boolean;
  /** How many null items became ''. */
  nulls: number;
  /** How many lone UTF-16 surrogates (from JSON escapes) became U+FFFD. */
  surrogates: number;
  /** How many invalid UTF-8 byte sequences (read as lone surrogates, see csv.ts) became U+FFFD. */
  badBytes: number;
  /** How many NUL characters were removed. */
  nuls: number;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Replaces lone UTF-16 surrogates (they break strict UTF-8 tokenizers) with U+FFFD; returns the count. */
export function fixSurrogates(s: string): { text: string; count: number } {
  if (!/[\uD800-\uDFFF]/.test(s)) return { text: s, count: 0 };
  let count = 0;
  const text = s.replace(LONE_SURROGATE, () => {
    count++;
    return '\uFFFD';
  });
  return { text, count };
}

/** Removes NUL characters (C strings and some tokenizers stop at them; no annotator saw one). */
function dropNuls(s: string): { text: string; count: number } {
  if (!s.includes('\0')) return { text: s, count: 0 };
  const text = s.replace(/\0/g, '');
  return { text, count: s.length - text.length };
}

/** Cleans one text item: lone surrogates -> U+FFFD, NULs removed. */
function cleanText(s: string, c: ParsedCell, surrogatesAreBadBytes: boolean): string {
  const sur = fixSurrogates(s);
  if (surrogatesAreBadBytes) c.badBytes += sur.count;
  else c.surrogates += sur.count;
  const nul = dropNuls(sur.text);
  c.nuls += nul.count;
  return nul.text;
}

/**
 * Decodes one prompt/response cell. A JSON list whose items are strings or nulls gives one item per
 * turn; anything else (plain text, a JSON scalar, a list with other item types, broken JSON) is kept
 * whole as ONE raw item, so nothing the annotator saw is dropped. Lone surrogates in the raw cell can
 * only be invalid UTF-8 bytes (a UTF-8 decoder never yields them), those inside decoded JSON strings
 * come from `\ud800`-style escapes: both become U+FFFD, counted apart.
 */
export function parseCell(cell: string): ParsedCell {
  const c: ParsedCell = { items: [], raw: false, nulls: 0, surrogates: 0, badBytes: 0, nuls: 0 };
  const text = cleanText(cell, c, true);
  let items: string[] | null = null;
  if (text.trimStart().startsWith('[')) {
    try {
      const v: unknown = JSON.parse(text);
      if (Array.isArray(v) && v.every((x) => x === null || typeof x === 'string')) {
        items = v.map((x: string | null) => {
          if (x !== null) return cleanText(x, c, false);
          c.nulls++;
          return '';
        });
      }
    } catch {
      items = null;
    }
  }
  c.raw = items === null;
  c.items = items ?? [text];
  return c;
}

/** A list cell (parquet list<string>): items as turns, nulls as ''. */
function listCell(v: (string | null)[]): ParsedCell {
  const c: ParsedCell = { items: [], raw: false, nulls: 0, surrogates: 0, badBytes: 0, nuls: 0 };
  c.items = v.map((x) => {
    if (x !== null && x !== undefined) return cleanText(String(x), c, true);
    c.nulls++;
    return '';
  });
  return c;
}

/** The first n characters, one fewer rather than split a surrogate pair (a split pair reads as a broken byte). */
export function headOf(s: string, n: number): string {
  const c = s.charCodeAt(n - 1);
  return s.slice(0, c >= 0xd800 && c <= 0xdbff ? n - 1 : n);
}
/** The last n characters, one fewer rather than split a surrogate pair. */
export function tailOf(s: string, n: number): string {
  const from = Math.max(0, s.length - n);
  const c = s.charCodeAt(from);
  return s.slice(c >= 0xdc00 && c <= 0xdfff ? from + 1 : from);
}

/** Keeps the first and last MAX_CELL_CHARS / 2 characters of an absurd cell. */
export function capText(s: string, max = MAX_CELL_CHARS): string {
  return s.length <= max ? s : headOf(s, max / 2) + tailOf(s, max / 2);
}

/** A warning's example list: the first few ids, then how many more. */
function examples(ids: string[], max = 5): string {
  const head = ids.slice(0, max).join(', ');
  return ids.length > max ? `${head}, ... (+${ids.length - max} more)` : head;
}

/** How text cells are read: CSV cells are JSON lists (LMSYS), parquet string cells are the text itself (WSDM). */
export type TextCells = 'json-list' | 'plain';

type LabelMode = 'onehot' | 'wsdm';

/** A counted clean-up: how many, and the ids of the rows it touched. */
class Tally {
  count = 0;
  ids: string[] = [];
  add(n: number, id: string): void {
    if (!n) return;
    this.count += n;
    if (this.ids[this.ids.length - 1] !== id) this.ids.push(id);
  }
}

/**
 * Collects rows from one file. Construct with the header (throws RowsError for missing columns),
 * `add` each record (throws RowsError for a row that cannot be read), then `finish`.
 */
export class RowBuilder {
  private rows: ArenaRow[] = [];
  private seen = new Map<string, number>();
  private dupes: string[] = [];
  private col: Record<string, number> = {};
  private labelMode: LabelMode | null = null;
  private unlabelled: number[] = [];
  private raw = new Tally();
  private nulls = new Tally();
  private surrogates = new Tally();
  private badBytes = new Tally();
  private nuls = new Tally();
  private capped = new Tally();

  constructor(
    private file: string,
    header: string[],
    private opts: ReadRowsOptions & { textCells: TextCells },
  ) {
    const twice = header.filter((h, i) => h !== '' && header.indexOf(h) !== i);
    if (twice.length)
      throw new RowsError(
        `${file}: column(s) ${[...new Set(twice)].join(', ')} appear more than once in the header; keep one of each`,
      );
    header.forEach((h, i) => (this.col[h] = i));
    const missing = REQUIRED_COLUMNS.filter((c) => !(c in this.col));
    if (missing.length)
      throw new RowsError(
        `${file}: missing required column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} ` +
          `(found: ${header.join(', ')}); expected a Kaggle train/test file with ${REQUIRED_COLUMNS.join(', ')}`,
      );
    const present = LABEL_COLUMNS.filter((c) => c in this.col);
    const absent = LABEL_COLUMNS.filter((c) => !(c in this.col));
    if (present.length === LABEL_COLUMNS.length) this.labelMode = 'onehot';
    else if (present.length > 0)
      throw new RowsError(`${file}: has ${present.join(', ')} but is missing label column(s) ${absent.join(', ')}`);
    else if (WSDM_LABEL_COLUMN in this.col) this.labelMode = 'wsdm';
    if (opts.requireLabels && !this.labelMode)
      throw new RowsError(
        `${file}: labels required but the file has no label columns: missing ${absent.join(', ')} ` +
          `(or WSDM's ${WSDM_LABEL_COLUMN}); pass a train file, not a test file`,
      );
  }

  private cell(rec: SourceRecord, name: string): Cell {
    const v = rec.cells[this.col[name]];
    return v === undefined ? null : v;
  }

  /** A scalar cell as trimmed text ('' for null). */
  private scalar(rec: SourceRecord, name: string): string {
    const v = this.cell(rec, name);
    return v === null ? '' : (Array.isArray(v) ? JSON.stringify(v) : v).trim();
  }

  add(rec: SourceRecord): void {
    const { file } = this;
    const line = rec.line;
    const id = this.scalar(rec, 'id');
    if (!id) throw new RowsError(`${file}: line ${line} has an empty id; every row needs a unique id`);
    // An id is copied into the submission: a broken byte or control character there would make
    // the submission invalid (or key the wrong row), so it is refused, not repaired.
    if (/[\uD800-\uDFFF]/.test(id) && fixSurrogates(id).count)
      throw new RowsError(
        `${file}: line ${line}: id ${JSON.stringify(id)} contains invalid UTF-8 bytes; ids key the submission: re-save the file as UTF-8`,
      );
    if (/[\u0000-\u001f\u007f]/.test(id))
      throw new RowsError(
        `${file}: line ${line}: id ${JSON.stringify(id)} contains a NUL or control character; ids key the submission: fix the id (a NUL often means a UTF-16 or binary file)`,
      );
    const first = this.seen.get(id);
    if (first !== undefined) this.dupes.push(`${id} (lines ${first} and ${line})`);
    else this.seen.set(id, line);

    const text = (name: string): string[] => {
      const idx = this.col[name];
      if (rec.cut?.has(idx)) this.capped.add(1, id);
      const v = this.cell(rec, name);
      let c: ParsedCell;
      if (v === null) {
        this.nulls.add(1, id);
        return [''];
      }
      if (Array.isArray(v)) c = listCell(v);
      else if (this.opts.textCells === 'plain') {
        c = listCell([v]);
      } else {
        c = parseCell(v);
        if (c.raw) this.raw.add(1, id);
      }
      this.nulls.add(c.nulls, id);
      this.surrogates.add(c.surrogates, id);
      this.badBytes.add(c.badBytes, id);
      this.nuls.add(c.nuls, id);
      return c.items;
    };
    const row: ArenaRow = {
      id,
      line,
      prompt: text('prompt'),
      responseA: text('response_a'),
      responseB: text('response_b'),
    };
    if (LANGUAGE_COLUMN in this.col) row.language = this.scalar(rec, LANGUAGE_COLUMN);
    if (this.labelMode) {
      const label = this.label(rec, line, id, this.labelMode);
      if (label === null) this.unlabelled.push(line);
      else row.label = label;
    }
    this.rows.push(row);
  }

  /** The row's label, or null when every label cell is empty (a test row). */
  private label(rec: SourceRecord, line: number, id: string, mode: LabelMode): RowLabel | null {
    if (mode === 'wsdm') {
      const w = this.scalar(rec, WSDM_LABEL_COLUMN);
      const label = winnerLabel(w);
      if (label !== undefined) return label;
      throw new RowsError(
        `${this.file}: line ${line} (id ${id}): ${WSDM_LABEL_COLUMN} is ${JSON.stringify(w)}, expected model_a, model_b or tie; fix the row or drop it`,
      );
    }
    const cells = LABEL_COLUMNS.map((c) => this.scalar(rec, c));
    const label = oneHotLabel(cells);
    if (label === undefined) {
      const shown = LABEL_COLUMNS.map((c, i) => `${c}=${JSON.stringify(cells[i])}`).join(', ');
      throw new RowsError(
        `${this.file}: line ${line} (id ${id}): label columns must hold exactly one 1 and two 0s, got ${shown}; fix the row or drop it`,
      );
    }
    return label;
  }

  finish(): ReadRowsResult {
    const { file, rows } = this;
    if (!rows.length) throw new RowsError(`${file}: has a header but no rows; pass the full file`);
    if (this.dupes.length)
      throw new RowsError(
        `${file}: ${this.dupes.length} duplicate id(s): ${examples(this.dupes)}; ids must be unique (they key the submission)`,
      );
    const labelCols = this.labelMode === 'wsdm' ? WSDM_LABEL_COLUMN : LABEL_COLUMNS.join(', ');
    let hasLabels = this.labelMode !== null;
    // Label columns that are empty in every row make a test file (some exports keep the columns).
    if (hasLabels && this.unlabelled.length === rows.length) {
      hasLabels = false;
      if (this.opts.requireLabels)
        throw new RowsError(
          `${file}: labels required but the label column(s) ${labelCols} are empty in every row; this is a test file: pass a train file`,
        );
    } else if (this.unlabelled.length) {
      const n = this.unlabelled.length;
      throw new RowsError(
        `${file}: ${n} row(s) have empty label column(s) ${labelCols} while the others are labelled ` +
          `(lines ${examples(this.unlabelled.map(String))}); fill or drop them`,
      );
    }
    const warnings: string[] = [];
    const warn = (t: Tally, noun: string, verb: string) =>
      t.count &&
      warnings.push(`${file}: ${t.count} ${noun} in ${t.ids.length} row(s) ${verb} (ids ${examples(t.ids)})`);
    warn(this.raw, 'cell(s)', 'were not JSON lists of strings and were kept as one raw string');
    warn(this.nulls, 'null item(s)', "read as ''");
    warn(this.surrogates, 'lone UTF-16 surrogate(s)', 'replaced with U+FFFD');
    warn(this.badBytes, 'invalid UTF-8 byte(s)', 'replaced with U+FFFD');
    warn(this.nuls, 'NUL character(s)', 'removed');
    const half = (MAX_CELL_CHARS / 2).toLocaleString('en-US');
    warn(
      this.capped,
      `cell(s) longer than ${MAX_CELL_CHARS.toLocaleString('en-US')} characters`,
      `cut to their first and last ${half}`,
    );
    return { rows, warnings, hasLabels };
  }
}
