// Training rows: `--tokenized` JSON lines {"input_ids": [...], "label": k}, or a competition CSV
// formatted and tokenized like the runner does (the same recipe: template + truncation) with the base
// folder's tokenizer; optional swap augmentation (responses swapped, A/B labels swapped, tie kept).
// A bad line is skipped with a warning naming it; the rest still train. Also: seeded shuffling and
// micro-batching in the order HF Trainer consumes them.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { totalmem } from 'node:os';
import { StringDecoder } from 'node:string_decoder';
import { fsReason } from '../util/files';
import { readRows } from '../data/rows';
import { encodeRowInfo, loadTokenizer, type ArenaTokenizer } from '../format/encode';
import type { Example } from './feeds';
import { uniform } from '../util/rng';
import type { OutcomeIndex } from '../task/labels';

export class TrainDataError extends Error {
  override name = 'TrainDataError';
}

export interface LoadedRows {
  rows: Example[];
  warnings: string[];
  /** Rows head+tail truncation cut to the token budget (competition files only). */
  truncated?: number;
}

/** JSON lines of one file, read in 1 MiB chunks (a file past the string-length limit still reads); a UTF-8 BOM is dropped. */
function* jsonLines(path: string): Generator<[string, number]> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new TrainDataError(`${path}: cannot be read (${fsReason(e)})`);
  }
  try {
    if (fstatSync(fd).isDirectory()) throw new TrainDataError(`${path}: is a folder; --tokenized takes a .jsonl file`);
    const decoder = new StringDecoder('utf8');
    const buf = Buffer.alloc(1 << 20);
    let rest = '';
    let line = 0;
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) {
      const parts = (rest + decoder.write(buf.subarray(0, n))).split('\n');
      rest = parts.pop()!;
      if (rest.length > MAX_LINE_CHARS)
        throw new TrainDataError(
          `${path}:${line + 1}: a line over ${MAX_LINE_CHARS / 1e6} million characters; split or truncate its input_ids`,
        );
      for (const t of parts) yield [line === 0 ? t.replace(/^\uFEFF/, '') : t, ++line];
    }
    rest += decoder.end();
    if (rest) yield [line === 0 ? rest.replace(/^\uFEFF/, '') : rest, ++line];
  } finally {
    closeSync(fd);
  }
}

const MAX_LINE_CHARS = 64e6;

/** `--tokenized` rows; ids past maxTokens are cut from the right (as `tokenizer(..., truncation=True)`), counted. */
/** How many bytes of token ids the rows may take: half of this machine's memory (ARENAKIT_TRAIN_ROWS_MAX_BYTES overrides). */
export function rowsMemoryLimit(): number {
  const v = Number(process.env.ARENAKIT_TRAIN_ROWS_MAX_BYTES);
  return Number.isFinite(v) && v > 0 ? v : totalmem() / 2;
}

const gb = (b: number) => (b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : `${(b / 1e6).toFixed(1)} MB`);

/**
 * `--tokenized` rows; ids past maxTokens are cut from the right (as `tokenizer(..., truncation=True)`),
 * counted. Ids are kept as 4-byte integers; rows past `maxBytes` of them are refused with the line reached.
 */
export function readTokenized(
  path: string,
  numLabels: number,
  vocabSize: number,
  maxTokens = Infinity,
  maxBytes = rowsMemoryLimit(),
): LoadedRows {
  const rows: Example[] = [];
  let bytes = 0;
  const warnings: string[] = [];
  let truncated = 0;
  for (const [text, lineNo] of jsonLines(path)) {
    if (!text.trim()) continue;
    const where = `${path}:${lineNo}`;
    let j: unknown;
    try {
      j = JSON.parse(text);
    } catch (e) {
      warnings.push(`${where}: not JSON (${(e as Error).message.slice(0, 120)}); line skipped`);
      continue;
    }
    if (!j || typeof j !== 'object' || Array.isArray(j)) {
      warnings.push(
        `${where}: expected an object {"input_ids": [...], "label": k}, got ${JSON.stringify(j)?.slice(0, 40)}; line skipped`,
      );
      continue;
    }
    const { input_ids: ids, label } = j as { input_ids?: unknown; label?: unknown };
    if (!Array.isArray(ids) || ids.length === 0 || !ids.every((x) => Number.isInteger(x) && x >= 0 && x < vocabSize)) {
      warnings.push(`${where}: "input_ids" must be a non-empty list of token ids in 0..${vocabSize - 1}; line skipped`);
      continue;
    }
    if (!(Number.isInteger(label) && (label as number) >= 0 && (label as number) < numLabels)) {
      warnings.push(
        `${where}: "label" must be an integer in 0..${numLabels - 1}, got ${JSON.stringify(label)}; line skipped`,
      );
      continue;
    }
    if (ids.length > maxTokens) truncated++;
    const kept = Int32Array.from((ids.length > maxTokens ? ids.slice(0, maxTokens) : ids) as number[]);
    bytes += kept.byteLength + 96; // the ids and the row's own objects
    if (bytes > maxBytes)
      throw new TrainDataError(
        `${where}: the ${rows.length} rows read so far take ${gb(bytes)} as token ids, past the ${gb(maxBytes)} this run allows ` +
          `(half of this machine's memory unless ARENAKIT_TRAIN_ROWS_MAX_BYTES says otherwise; training needs the rest). ` +
          'Split the file, lower --max-tokens (rows are cut to it as they are read), or train on a machine with more memory',
      );
    rows.push({ inputIds: kept, label: label as number });
  }
  if (truncated)
    warnings.push(
      `${path}: ${truncated} rows longer than --max-tokens ${maxTokens} cut to their first ${maxTokens} ids`,
    );
  if (!rows.length) throw new TrainDataError(`${path}: no usable rows${warnings.length ? ` (${warnings[0]})` : ''}`);
  return { rows, warnings, truncated };
}

export interface CsvOptions {
  tokenizerDir: string;
  /** The tokenizer of tokenizerDir when already loaded (training and validation files share one; Gemma's takes seconds to load). */
  tokenizer?: ArenaTokenizer;
  template: string;
  /** Truncation rule (default: the template's own). */
  truncation?: string;
  maxTokens: number;
  /** Add every row a second time with the responses swapped (label A <-> B). */
  swapAugment: boolean;
  /** Logit index of each outcome (src/task/labels.ts OUTCOMES: A, B, tie; from the base's id2label); -1 = no such output. */
  labelIndex: OutcomeIndex;
}

/** A labelled competition file (LMSYS CSV, WSDM parquet) -> training rows. */
export async function readCsv(path: string, o: CsvOptions): Promise<LoadedRows> {
  const r = await readRows(path, { requireLabels: true });
  const tok = o.tokenizer ?? loadTokenizer(o.tokenizerDir);
  const rows: Example[] = [];
  const warnings = [...r.warnings];
  let truncated = 0;
  for (const row of r.rows) {
    for (const swap of o.swapAugment ? [false, true] : [false]) {
      try {
        const enc = encodeRowInfo(tok, row, {
          template: o.template,
          truncation: o.truncation,
          maxTokens: o.maxTokens,
          swap,
        });
        const ids = enc.ids;
        if (enc.truncated) truncated++;
        const outcome = swap && row.label !== 2 ? 1 - row.label! : row.label!;
        if (o.labelIndex[outcome] < 0) {
          warnings.push(
            `${path}: row ${row.id} (line ${row.line}) is a tie, which a 2-label head cannot learn; row skipped`,
          );
          break;
        }
        rows.push({ inputIds: Array.from(ids), label: o.labelIndex[outcome] });
      } catch (e) {
        warnings.push(`${path}: ${(e as Error).message}; row skipped`);
      }
    }
  }
  if (!rows.length)
    throw new TrainDataError(`${path}: no usable rows${warnings.length ? ` (first problem: ${warnings.at(-1)})` : ''}`);
  return { rows, warnings, truncated };
}

/** Row order of one epoch: file order, or a seeded Fisher-Yates shuffle per (seed, epoch). */
export function epochOrder(n: number, shuffle: boolean, seed: number, epoch: number): number[] {
  const order = [...Array(n).keys()];
  if (!shuffle) return order;
  const rnd = uniform((seed * 1000003 + epoch) >>> 0);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** Optimizer steps of one epoch: groups of `accum` micro-batches of `batch` rows (the last group may be short). */
export function epochSteps(order: number[], rows: Example[], batch: number, accum: number): Example[][][] {
  const mbs: Example[][] = [];
  for (let i = 0; i < order.length; i += batch) mbs.push(order.slice(i, i + batch).map((k) => rows[k]));
  const steps: Example[][][] = [];
  for (let i = 0; i < mbs.length; i += accum) steps.push(mbs.slice(i, i + accum));
  return steps;
}
