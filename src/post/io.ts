// File edges of post-processing: read prediction files (id + one probability column per task label:
// id,winner_model_a,winner_model_b,winner_tie for LMSYS, id,model_a,model_b for WSDM), read labels (and
// text lengths) from a train-style CSV or a WSDM train parquet, and line them up by id. Writing goes
// through the atomic submission writer.
import { accessSync, constants, createReadStream, readFileSync } from 'node:fs';
import { parse } from 'fast-csv';
import { parseCell, readRows } from '../data/rows';
import { LABEL_COLUMNS, TASKS } from '../task/task';
import { taskOfColumns } from '../task/labels';
import { textLength } from '../util/text';
import { fsReason } from '../util/files';

export class PredictionFileError extends Error {
  override name = 'PredictionFileError';
}

async function readCsv(path: string, onRow: (row: Record<string, string>, line: number) => void): Promise<string[]> {
  try {
    accessSync(path, constants.R_OK);
  } catch (e) {
    throw new PredictionFileError(`${path}: cannot be read (${fsReason(e)})`);
  }
  let headers: string[] = [];
  let line = 1;
  await new Promise<void>((resolve, reject) => {
    createReadStream(path)
      .pipe(parse({ headers: true }))
      .on('headers', (h: string[]) => (headers = h))
      .on('error', (e: Error) =>
        reject(new PredictionFileError(`${path}: CSV parse error near line ${line + 1}: ${e.message}`)),
      )
      .on('data', (row: Record<string, string>) => {
        line++;
        try {
          onRow(row, line);
        } catch (e) {
          reject(e);
        }
      })
      .on('end', () => resolve());
  });
  return headers;
}

export interface Predictions {
  ids: string[];
  /** The probability columns of the file (a task's labels). */
  columns: readonly string[];
  /** Flat [n*k], `columns` order, rows renormalised to sum 1. */
  probs: Float64Array;
}

/** A number cell: blank or non-numeric text is not 0 (Number('') would be). */
const cellNumber = (v: string | undefined) => (v === undefined || v.trim() === '' ? NaN : Number(v));

/** Refuses a second row with the same id (a silent "later wins" would mix two predictions). */
function uniqueIds(path: string): (id: string, line: number) => void {
  const seen = new Map<string, number>();
  return (id, line) => {
    if (id === undefined || id === '') throw new PredictionFileError(`${path} line ${line}: empty id`);
    const before = seen.get(id);
    if (before !== undefined)
      throw new PredictionFileError(`${path} line ${line}: id ${id} already appeared on line ${before}; each id once`);
    seen.set(id, line);
  };
}

export async function readPredictions(path: string): Promise<Predictions> {
  const ids: string[] = [];
  const vals: number[] = [];
  const once = uniqueIds(path);
  let cols: readonly string[] | undefined;
  const headers = await readCsv(path, (row, line) => {
    cols ??= taskOfColumns(Object.keys(row))?.labels ?? LABEL_COLUMNS;
    const p = cols.map((c) => cellNumber(row[c]));
    const s = p.reduce((a, b) => a + b, 0);
    if (!p.every((x) => Number.isFinite(x) && x >= 0) || !(s > 0))
      throw new PredictionFileError(
        `${path} line ${line} (id ${row.id}): probabilities ${JSON.stringify(cols.map((c) => row[c]))} are not valid (${cols.length === 3 ? 'three' : cols.length} non-negative numbers, not all 0, none blank)`,
      );
    once(row.id, line);
    ids.push(row.id);
    for (const x of p) vals.push(x / s);
  });
  const columns = taskOfColumns(headers)?.labels;
  if (!headers.includes('id') || !columns) {
    const missing = ['id', ...LABEL_COLUMNS].filter((c) => !headers.includes(c));
    throw new PredictionFileError(
      `${path}: missing column(s) ${missing.join(', ')}; a prediction file has the submission header id,${LABEL_COLUMNS.join(',')} (WSDM: id,${TASKS.wsdm.labels.join(',')})`,
    );
  }
  return { ids, columns, probs: Float64Array.from(vals) };
}

export interface LabelSet {
  ids: string[];
  labels: Uint8Array;
  /** Characters of prompt + response_a + response_b per row, when the file has those columns. */
  lengths?: Float64Array;
}

/**
 * Characters of one text cell as the runner reads it (src/data/rows.ts parseCell: JSON-list items, a
 * non-JSON cell as one raw string), so length bins fitted here bin rows exactly as predict's textLength does.
 */
function cellTextLength(cell: string | undefined): number {
  if (!cell) return 0;
  return parseCell(cell).items.reduce((s, t) => s + t.length, 0);
}

/** Labels from a train file: a WSDM parquet (winner -> 0/1) through the rows reader, else a train.csv-style CSV. */
export async function readLabels(path: string): Promise<LabelSet> {
  if (/\.parquet$/i.test(path)) {
    const { rows } = await readRows(path, { requireLabels: true });
    return {
      ids: rows.map((r) => r.id),
      labels: Uint8Array.from(rows, (r) => r.label!),
      lengths: Float64Array.from(rows, textLength),
    };
  }
  const ids: string[] = [];
  const labels: number[] = [];
  const lengths: number[] = [];
  const once = uniqueIds(path);
  const headers = await readCsv(path, (row, line) => {
    const oneHot = LABEL_COLUMNS.map((c) => cellNumber(row[c]));
    const k = oneHot.indexOf(1);
    if (!oneHot.every((x) => x === 0 || x === 1) || oneHot.reduce((a: number, b) => a + b, 0) !== 1)
      throw new PredictionFileError(
        `${path} line ${line} (id ${row.id}): label columns ${JSON.stringify(LABEL_COLUMNS.map((c) => row[c]))} are not one-hot (each 0 or 1, exactly one 1)`,
      );
    once(row.id, line);
    ids.push(row.id);
    labels.push(k);
    lengths.push(cellTextLength(row.prompt) + cellTextLength(row.response_a) + cellTextLength(row.response_b));
  });
  const missing = ['id', ...LABEL_COLUMNS].filter((c) => !headers.includes(c));
  if (missing.length)
    throw new PredictionFileError(
      `${path}: missing column(s) ${missing.join(', ')}; the labels file is a train.csv-style file`,
    );
  const hasText = ['prompt', 'response_a', 'response_b'].every((c) => headers.includes(c));
  return { ids, labels: Uint8Array.from(labels), ...(hasText ? { lengths: Float64Array.from(lengths) } : {}) };
}

/** Reorders `pred` to the order of `ids`; throws naming the first ids missing from the prediction file. */
export function alignPredictions(pred: Predictions, ids: string[], source: string): Float64Array {
  const at = new Map(pred.ids.map((id, i) => [id, i]));
  const missing = ids.filter((id) => !at.has(id));
  if (missing.length)
    throw new PredictionFileError(
      `${source}: ${missing.length} labelled id(s) have no prediction (first: ${missing.slice(0, 5).join(', ')}); predict the same rows as the labels file`,
    );
  const k = pred.columns.length;
  const out = new Float64Array(ids.length * k);
  ids.forEach((id, j) => out.set(pred.probs.subarray(at.get(id)! * k, at.get(id)! * k + k), j * k));
  return out;
}

/** Text lengths (prompt + both responses, characters) by id from any competition CSV (train or test). */
export async function readTextLengths(path: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const headers = await readCsv(path, (row) =>
    out.set(row.id, cellTextLength(row.prompt) + cellTextLength(row.response_a) + cellTextLength(row.response_b)),
  );
  const missing = ['id', 'prompt', 'response_a', 'response_b'].filter((c) => !headers.includes(c));
  if (missing.length)
    throw new PredictionFileError(
      `${path}: missing column(s) ${missing.join(', ')}; give the competition CSV the predictions were made from`,
    );
  return out;
}

/** What a prediction file holds, written beside it by `validate --predictions-out` (see Calibration.fittedOn). */
export interface PredictionsMeta {
  frame: 'scored';
  tta: 'none' | 'swap';
  calibrated: boolean;
  weights: string[];
}

export const predictionsMeta = (path: string) => `${path}.meta.json`;

/** The meta file of a prediction file, or undefined when it has none (predictions made elsewhere). */
export function readPredictionsMeta(path: string): PredictionsMeta | undefined {
  const p = predictionsMeta(path);
  let text: string;
  try {
    text = readFileSync(p, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new PredictionFileError(`${p}: cannot be read (${fsReason(e)})`);
  }
  try {
    return JSON.parse(text) as PredictionsMeta;
  } catch (e) {
    throw new PredictionFileError(
      `${p}: not valid JSON (${(e as Error).message}); delete it or write the predictions again with validate --predictions-out`,
    );
  }
}
