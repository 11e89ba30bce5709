// Reads a competition CSV (Kaggle LMSYS train/test layout, or a WSDM file converted to CSV) into
// ArenaRows: column checks, JSON-list cells, nulls, broken unicode, duplicate ids and one-hot labels.
// This module owns every decision about what a "clean" row is; later stages never look at raw cells.
import { createReadStream } from 'node:fs';
import { parse } from 'fast-csv';
import { LABEL_COLUMNS, type ArenaRow, type ReadRowsResult } from '../types';

export class RowsError extends Error {
  override name = 'RowsError';
}

export const REQUIRED_COLUMNS = ['id', 'prompt', 'response_a', 'response_b'] as const;
/** WSDM Cup train files carry one `winner` column (`model_a` | `model_b`) instead of the one-hot columns. */
export const WSDM_LABEL_COLUMN = 'winner';

export interface ReadRowsOptions {
  /** Fail unless the file has labels (the three one-hot columns, or WSDM's `winner`). */
  requireLabels?: boolean;
}

export interface ParsedCell {
  /** One item per turn; null items are ''. */
  items: string[];
  /** The cell was not a JSON list of strings/nulls and was kept as one raw string (WSDM files, broken cells). */
  raw: boolean;
  /** How many null items became ''. */
  nulls: number;
  /** How many lone UTF-16 surrogates became U+FFFD. */
  surrogates: number;
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

/**
 * Decodes one prompt/response cell. A JSON list whose items are strings or nulls gives one item per
 * turn; anything else (plain text, a JSON scalar, a list with other item types, broken JSON) is kept
 * whole as ONE raw item, so nothing the annotator saw is dropped.
 */
export function parseCell(cell: string): ParsedCell {
  let items: string[] | null = null;
  let nulls = 0;
  const t = cell.trimStart();
  if (t.startsWith('[')) {
    try {
      const v: unknown = JSON.parse(cell);
      if (Array.isArray(v) && v.every((x) => x === null || typeof x === 'string')) {
        items = v.map((x: string | null) => {
          if (x === null) {
            nulls++;
            return '';
          }
          return x;
        });
      }
    } catch {
      items = null;
    }
  }
  const raw = items === null;
  if (raw) {
    items = [cell];
    nulls = 0;
  }
  let surrogates = 0;
  const fixed = items!.map((s) => {
    const r = fixSurrogates(s);
    surrogates += r.count;
    return r.text;
  });
  return { items: fixed, raw, nulls, surrogates };
}

/** A warning's example list: the first few ids, then how many more. */
function examples(ids: string[], max = 5): string {
  const head = ids.slice(0, max).join(', ');
  return ids.length > max ? `${head}, ... (+${ids.length - max} more)` : head;
}

function parseLabel(
  rec: Record<string, string>,
  file: string,
  line: number,
  id: string,
  mode: 'onehot' | 'wsdm',
): 0 | 1 | 2 {
  if (mode === 'wsdm') {
    const w = (rec[WSDM_LABEL_COLUMN] ?? '').trim();
    if (w === 'model_a') return 0;
    if (w === 'model_b') return 1;
    if (w === 'tie') return 2;
    throw new RowsError(
      `${file}: line ${line} (id ${id}): ${WSDM_LABEL_COLUMN} is ${JSON.stringify(w)}, expected model_a, model_b or tie; fix the row or drop it`,
    );
  }
  const vals = LABEL_COLUMNS.map((c) => Number((rec[c] ?? '').trim() || NaN));
  const ones = vals.filter((v) => v === 1).length;
  const zeros = vals.filter((v) => v === 0).length;
  if (ones !== 1 || zeros !== 2) {
    const shown = LABEL_COLUMNS.map((c) => `${c}=${JSON.stringify(rec[c] ?? '')}`).join(', ');
    throw new RowsError(
      `${file}: line ${line} (id ${id}): label columns must hold exactly one 1 and two 0s, got ${shown}; fix the row or drop it`,
    );
  }
  return vals.indexOf(1) as 0 | 1 | 2;
}

/**
 * Streams a CSV into rows. Errors (RowsError) name the file, and the line/id where it applies.
 * `line` counts CSV records with the header as line 1 (a quoted cell spanning several physical lines
 * still counts once), which matches the row numbers pandas users see plus 2.
 */
export function readRows(path: string, opts: ReadRowsOptions = {}): Promise<ReadRowsResult> {
  return new Promise<ReadRowsResult>((resolve, reject) => {
    const rows: ArenaRow[] = [];
    const seen = new Map<string, number>();
    const dupes: string[] = [];
    const rawIds: string[] = [];
    const nullIds: string[] = [];
    const surrogateIds: string[] = [];
    let rawCells = 0;
    let nullItems = 0;
    let surrogates = 0;
    let labelMode: 'onehot' | 'wsdm' | null = null;
    let line = 1;
    let failed = false;
    let headerSeen = false;

    const input = createReadStream(path);
    const parser = parse<Record<string, string>, Record<string, string>>({
      // BOM: fast-csv keeps it glued to the first header name; strip it so `id` is found.
      headers: (hs) => hs.map((h, i) => (i === 0 ? (h ?? '').replace(/^\uFEFF/, '') : (h ?? '')).trim()),
    });
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      input.destroy();
      parser.destroy();
      reject(err);
    };

    input.on('error', (e: NodeJS.ErrnoException) =>
      fail(new RowsError(`${path}: cannot read (${e.code ?? e.message}); check the path`)),
    );
    parser.on('headers', (headers: string[]) => {
      headerSeen = true;
      const missing = REQUIRED_COLUMNS.filter((c) => !headers.includes(c));
      if (missing.length) {
        fail(
          new RowsError(
            `${path}: missing required column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} ` +
              `(found: ${headers.join(', ')}); expected a Kaggle train/test CSV with ${REQUIRED_COLUMNS.join(', ')}`,
          ),
        );
        return;
      }
      const present = LABEL_COLUMNS.filter((c) => headers.includes(c));
      const absent = LABEL_COLUMNS.filter((c) => !headers.includes(c));
      if (present.length === LABEL_COLUMNS.length) labelMode = 'onehot';
      else if (present.length > 0) {
        fail(new RowsError(`${path}: has ${present.join(', ')} but is missing label column(s) ${absent.join(', ')}`));
        return;
      } else if (headers.includes(WSDM_LABEL_COLUMN)) labelMode = 'wsdm';
      if (opts.requireLabels && !labelMode) {
        fail(
          new RowsError(
            `${path}: labels required but the file has no label columns: missing ${absent.join(', ')} ` +
              `(or WSDM's ${WSDM_LABEL_COLUMN}); pass a train file, not a test file`,
          ),
        );
      }
    });
    parser.on('error', (e: Error) => fail(new RowsError(`${path}: CSV error after line ${line}: ${e.message}`)));
    parser.on('data', (rec: Record<string, string>) => {
      if (failed) return;
      line++;
      const id = (rec.id ?? '').trim();
      if (!id) return fail(new RowsError(`${path}: line ${line} has an empty id; every row needs a unique id`));
      const first = seen.get(id);
      if (first !== undefined) dupes.push(`${id} (lines ${first} and ${line})`);
      else seen.set(id, line);

      let rowRaw = false;
      let rowNull = false;
      let rowSur = false;
      const cell = (name: string): string[] => {
        const c = parseCell(rec[name] ?? '');
        if (c.raw) {
          rawCells++;
          rowRaw = true;
        }
        if (c.nulls) {
          nullItems += c.nulls;
          rowNull = true;
        }
        if (c.surrogates) {
          surrogates += c.surrogates;
          rowSur = true;
        }
        return c.items;
      };
      const row: ArenaRow = {
        id,
        line,
        prompt: cell('prompt'),
        responseA: cell('response_a'),
        responseB: cell('response_b'),
      };
      if (rowRaw) rawIds.push(id);
      if (rowNull) nullIds.push(id);
      if (rowSur) surrogateIds.push(id);
      if (labelMode) {
        try {
          row.label = parseLabel(rec, path, line, id, labelMode);
        } catch (e) {
          return fail(e as Error);
        }
      }
      rows.push(row);
    });
    parser.on('end', () => {
      if (failed) return;
      // fast-csv emits no 'headers' event for an empty file.
      if (!headerSeen) return fail(new RowsError(`${path}: empty file, missing required columns ${REQUIRED_COLUMNS.join(', ')}`));
      if (dupes.length) {
        return fail(
          new RowsError(`${path}: ${dupes.length} duplicate id(s): ${examples(dupes)}; ids must be unique (they key the submission)`),
        );
      }
      const warnings: string[] = [];
      if (rawCells)
        warnings.push(
          `${path}: ${rawCells} cell(s) in ${rawIds.length} row(s) were not JSON lists of strings and were kept as one raw string (ids ${examples(rawIds)})`,
        );
      if (nullItems)
        warnings.push(`${path}: ${nullItems} null item(s) in ${nullIds.length} row(s) read as '' (ids ${examples(nullIds)})`);
      if (surrogates)
        warnings.push(
          `${path}: ${surrogates} lone UTF-16 surrogate(s) in ${surrogateIds.length} row(s) replaced with U+FFFD (ids ${examples(surrogateIds)})`,
        );
      resolve({ rows, warnings, hasLabels: labelMode !== null });
    });
    input.pipe(parser);
  });
}
