// Parquet -> records, one row group at a time (hyparquet: pure JS, no native code, no install
// scripts; hyparquet-compressors adds the codecs pyarrow/DuckDB may use besides snappy). WSDM Cup
// files hold plain-string cells (each one turn), a `winner` column and `language`; LMSYS-layout
// parquet files work too (JSON-list strings are NOT decoded here: a parquet string cell is the text
// itself, a list<string> column is the list of turns). Row rules live in row-builder.ts.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  asyncBufferFromFile,
  parquetMetadataAsync,
  parquetSchema,
  type FileMetaData,
  type SchemaTree,
} from 'hyparquet';
import { Progress } from '../util/progress';
import type { ReadRowsResult } from '../types';
import { LABEL_COLUMNS } from '../task/task';
import { PROGRESS_MIN_BYTES, utf8Text } from './csv';
import type { DecodedRows, DecodeReply, DecodeRequest, PackedCell } from './parquet-worker';
import {
  capText,
  LANGUAGE_COLUMN,
  MAX_CELL_CHARS,
  REQUIRED_COLUMNS,
  RowBuilder,
  RowsError,
  WSDM_LABEL_COLUMN,
  type Cell,
  type ReadRowsOptions,
} from './row-builder';

/** Columns the rows are built from; any other column is not decoded at all. */
const USED_COLUMNS = [...REQUIRED_COLUMNS, ...LABEL_COLUMNS, WSDM_LABEL_COLUMN, LANGUAGE_COLUMN];

async function openParquet(path: string) {
  try {
    statSync(path);
  } catch (e) {
    throw new RowsError(
      `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); check the path`,
    );
  }
  const file = await asyncBufferFromFile(path);
  let metadata: FileMetaData;
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    throw new RowsError(
      `${path}: not a readable parquet file (${(e as Error).message}); re-export it (pandas to_parquet) or pass a CSV`,
    );
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
        throw new RowsError(
          `${path}: row group ${gi + 1} has a column chunk for ${JSON.stringify(p)}, which is not in the schema; the file is damaged: re-export it`,
        );
    }
  });
  return { file, metadata };
}

/** Worker-thread decoder code: the bundled parquet-worker.ts, set by build/build.mjs (esbuild `define`). */
declare const __ARENAKIT_PARQUET_WORKER__: string | undefined;

/** Code for `new Worker(code, { eval: true })`: the bundle's string, or from source (tsx) the TS module through tsx's loader. */
function workerCode(): string {
  if (typeof __ARENAKIT_PARQUET_WORKER__ === 'string') return __ARENAKIT_PARQUET_WORKER__;
  return `require(${JSON.stringify(require.resolve('tsx/cjs'))}); require(${JSON.stringify(join(__dirname, 'parquet-worker.ts'))});`;
}

/** Time limit of one row group unless ARENAKIT_PARQUET_TIMEOUT_MS sets it: FLOOR_MS plus MS_PER_MB per compressed MB. */
export const TIMEOUT_ENV = 'ARENAKIT_PARQUET_TIMEOUT_MS';
const FLOOR_MS = 10_000;
const MS_PER_MB = 2_000;
/** An idle worker is ended after this long: its heap still holds the last row group's garbage. */
const IDLE_MS = 1_000;
/**
 * Nothing allocates in an idle worker, so its heap keeps a row group's garbage (pages, values) until
 * it ends: after a row group this big (compressed), or the last one of a file this big, the worker
 * is ended at once (100 MB less peak memory reading a 40 MB file; a new one starts in about 0.1 s).
 */
const END_AFTER_GROUP_BYTES = 16e6;
const END_AFTER_FILE_BYTES = 32e6;

/**
 * Decodes row groups in one worker thread, so that a decoder stuck in a synchronous loop (hyparquet
 * 1.31.5 on some damaged data pages; `npm run fuzz`) is terminated by a time limit instead of hanging
 * the run. The worker is shared by reads in turn and kept between back-to-back reads (starting one
 * costs about 0.1 s bundled, 0.4 s from source), ended when idle or stuck.
 */
class DecoderThread {
  private worker: Promise<Worker> | null = null;
  private idle: NodeJS.Timeout | null = null;
  private turn: Promise<unknown> = Promise.resolve();

  /** `keep`: keep the worker for the next request; false ends it once it has answered. */
  decode(req: DecodeRequest, limitMs: number, where: string, keep: boolean): Promise<DecodedRows> {
    const mine = this.turn.then(() => this.run(req, limitMs, where, keep));
    this.turn = mine.catch(() => undefined);
    return mine;
  }

  private start(): Promise<Worker> {
    return new Promise<Worker>((resolve, reject) => {
      const w = new Worker(workerCode(), { eval: true });
      const fail = (e: unknown) =>
        reject(
          new Error(
            `the parquet decoder thread did not start (${e instanceof Error ? e.message : `exit code ${e}`}); this is a bug in arenakit`,
          ),
        );
      w.once('error', fail).once('exit', fail);
      w.once('message', () => {
        w.off('error', fail).off('exit', fail);
        resolve(w);
      });
    });
  }

  private stop(): void {
    const w = this.worker;
    this.worker = null;
    void w?.then(
      (x) => x.terminate(),
      () => undefined,
    );
  }

  private async run(req: DecodeRequest, limitMs: number, where: string, keep: boolean): Promise<DecodedRows> {
    if (this.idle) clearTimeout(this.idle);
    const started = (this.worker ??= this.start());
    let w: Worker;
    try {
      w = await started;
    } catch (e) {
      this.worker = null;
      throw e;
    }
    w.ref();
    try {
      const reply = await new Promise<DecodeReply>((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          w.off('message', answered).off('error', crashed).off('exit', crashed);
        };
        const answered = (m: DecodeReply) => {
          done();
          resolve(m);
        };
        const timer = setTimeout(() => {
          done();
          this.stop();
          reject(
            new RowsError(
              `${where}: decoding did not finish in ${(limitMs / 1000).toFixed(1)} s (the parquet decoder loops on some damaged data pages); the file is damaged: re-download it or re-export it (pandas to_parquet). A file that is intact but huge can be given longer with ${TIMEOUT_ENV}=MILLISECONDS`,
            ),
          );
        }, limitMs);
        const crashed = (e: unknown) => {
          done();
          this.stop();
          reject(
            new RowsError(
              `${where}: the parquet decoder stopped (${e instanceof Error ? e.message : `exit code ${e}`}); the file is damaged: re-export it`,
            ),
          );
        };
        w.once('message', answered).once('error', crashed).once('exit', crashed);
        w.postMessage(req);
      });
      if ('error' in reply)
        throw new RowsError(
          `${where}: cannot decode the row group (${reply.error}); the file is damaged: re-export it`,
        );
      return reply;
    } finally {
      // Still this worker (not stopped by the time limit or a crash): let the process exit while it waits.
      if (this.worker === started && !keep) this.stop();
      else if (this.worker === started) {
        w.unref();
        this.idle = setTimeout(() => this.stop(), IDLE_MS).unref();
      }
    }
  }
}

const decoder = new DecoderThread();
let reads = 0;

/** The time limit for one row group: generous for its compressed size (bounded by the file's), or the env override. */
function rowGroupLimitMs(compressedBytes: number, fileBytes: number): number {
  const env = Number(process.env[TIMEOUT_ENV]);
  if (process.env[TIMEOUT_ENV] && Number.isFinite(env) && env > 0) return env;
  return FLOOR_MS + (MS_PER_MB * Math.min(compressedBytes, fileBytes)) / 1e6;
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
  const readId = ++reads;
  // Where each used column sits in the worker's answer (unused columns are null cells).
  const at = header.map((h) => columns.indexOf(h));
  const groups = metadata.row_groups;
  const starts = [0];
  for (const g of groups) starts.push(starts[starts.length - 1] + Number(g.num_rows));
  const request = (gi: number): Promise<DecodedRows> => {
    const compressed = groups[gi].columns.reduce(
      (a, c) =>
        a +
        (columns.includes(c.meta_data?.path_in_schema?.[0] ?? '')
          ? Number(c.meta_data?.total_compressed_size ?? 0)
          : 0),
      0,
    );
    const [rowStart, rowEnd] = [starts[gi], starts[gi + 1]];
    const where = `${path}: rows ${rowStart + 1}-${rowEnd} (row group ${gi + 1} of ${groups.length})`;
    const keep =
      compressed < END_AFTER_GROUP_BYTES && !(gi === groups.length - 1 && file.byteLength >= END_AFTER_FILE_BYTES);
    const p = decoder.decode(
      { readId, path, columns, rowStart, rowEnd },
      rowGroupLimitMs(compressed, file.byteLength),
      where,
      keep,
    );
    p.catch(() => undefined); // awaited below, unless an earlier row group failed first
    return p;
  };
  // The worker decodes row group g+1 while this thread turns g into rows: at most two row groups in memory.
  let next = groups.length ? request(0) : null;
  for (let gi = 0; gi < groups.length; gi++) {
    const { rows, buffers, refs } = await next!;
    next = gi + 1 < groups.length ? request(gi + 1) : null;
    // A value repeated through a dictionary is one byte range: decoded once, one shared string.
    const texts: string[] = [];
    const text = (k: number) =>
      (texts[k] ??= utf8Text(new Uint8Array(buffers[refs[3 * k]], refs[3 * k + 1], refs[3 * k + 2])));
    const cell = (p: PackedCell): Cell =>
      typeof p === 'number' ? text(p) : Array.isArray(p) ? p.map((x) => (typeof x === 'number' ? text(x) : x)) : p;
    rows.forEach((row, k) => {
      const cut = new Map<number, number>();
      const cells = at.map((j, i) => {
        const c = j < 0 ? null : cell(row[j]);
        if (typeof c === 'string' && c.length > MAX_CELL_CHARS) {
          cut.set(i, c.length);
          return capText(c);
        }
        return c;
      });
      builder.add({ line: starts[gi] + k + 2, cells, cut: cut.size ? cut : undefined });
    });
    progress?.update(starts[gi + 1]);
  }
  progress?.done(starts[groups.length]);
  return builder.finish();
}
