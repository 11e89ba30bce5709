// `npm run fuzz [-- --seconds 600 --cases 10000 --seed 1 --only csv,parquet,safetensors,jsonl,adapter-config,train-checkpoint,train-base --case N --skip N,M]`: seeded
// mutation fuzzing of the readers that take files from outside. CSV cases are built from real rows
// of ../shared/data/arena-sample-999.csv and then broken (byte flips, cut or extra quotes, huge
// cells, BOMs, UTF-16, NULs, invalid UTF-8, bad JSON, duplicate ids, missing or repeated columns,
// bad labels, truncation ...); parquet cases are rows of wsdm-sample-train.parquet written with
// hyparquet-writer and then broken (footer and data bytes, truncation, row rules); safetensors cases
// start from a valid file whose header is mutated.
// A case passes when the reader returns rows that keep the row invariants, or throws one of the
// kit's named errors (ALLOWED_ERRORS); anything else (a TypeError, a RangeError, a hang, a broken
// invariant) is a failure, printed with its case number so `--case N` replays it. Cases over 5 s
// are listed (parquet pages hyparquet loops on end there, at the reader's time limit per row group). Case i draws from
// its own stream (seed, i), so a case replays alone. tests/fuzz.test.ts runs a few hundred in CI.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CsvParser } from '../src/data/csv';
import { MAX_CELL_CHARS, readRows } from '../src/data/rows';
import { openSafetensors } from '../src/weights/safetensors';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { mulberry32, type Rng } from '../src/util/rng';
import type { ReadRowsResult } from '../src/types';

/** The only errors a reader may throw on bad input: each names the file and what to fix. */
export const ALLOWED_ERRORS: Record<
  'csv' | 'parquet' | 'safetensors' | 'jsonl' | 'adapter-config' | 'train-checkpoint' | 'train-base',
  string[]
> = {
  csv: ['RowsError'],
  parquet: ['RowsError'],
  safetensors: ['SafetensorsError'],
  // the trainer's inputs (bench/fuzz-train.ts)
  jsonl: ['TrainDataError'],
  'adapter-config': ['AdapterError', 'CheckpointError', 'LoraSetupError', 'SafetensorsError'],
  'train-checkpoint': ['LoraSetupError', 'SafetensorsError'],
  'train-base': ['CheckpointError', 'HfConfigError', 'LoraSetupError', 'HeadError', 'FamilyError'],
};
export const WSDM_TRAIN = resolve(__dirname, '..', '..', 'shared', 'data', 'wsdm-sample-train.parquet');

export const SAMPLE_CSV = resolve(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');

export interface FuzzResult {
  target: keyof typeof ALLOWED_ERRORS;
  seed: number;
  cases: number;
  seconds: number;
  /** Cases that read without error, and that ended in each allowed error. */
  ok: number;
  errors: Record<string, number>;
  /** Mutations used, with their counts. */
  mutations: Record<string, number>;
  failures: { case: number; mutations: string[]; error: string; file?: string }[];
  /** Cases passed over with --skip. */
  skipped: number[];
  /** Cases that took over SLOW_SECONDS (a parquet page the decoder loops on ends at the reader's time limit). */
  slow: { case: number; seconds: number }[];
}

export const SLOW_SECONDS = 5;

/** Independent stream per case: replaying case i needs only (seed, i). */
export function caseRng(seed: number, i: number): Rng {
  return mulberry32((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b)) >>> 0);
}
export const int = (r: Rng, n: number) => Math.floor(r.next() * n);
export const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)];

export interface FuzzOptions {
  seed: number;
  /** Cases 0..cases-1, unless the time budget ends first. */
  cases: number;
  seconds: number;
  /** Run this one case only (a replay). */
  only?: number;
  /** Keep files here (failing cases are always kept). */
  dir?: string;
  /** Cases not run (known hangs that would stop the run; reported as skipped). */
  skip?: number[];
}

/**
 * Writes case i to a file and runs `check` on it, for each case until `cases` or `seconds`: a case
 * passes when `check` returns, or throws an allowed error naming the file.
 */
async function runCases<C extends { bytes: Buffer; mutations: string[] }>(
  target: FuzzResult['target'],
  opts: FuzzOptions,
  ext: string,
  make: (i: number) => C,
  check: (file: string, c: C) => unknown,
): Promise<FuzzResult> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), `arenakit-fuzz-${target}-`));
  const res: FuzzResult = {
    target,
    seed: opts.seed,
    cases: 0,
    seconds: 0,
    ok: 0,
    errors: {},
    mutations: {},
    failures: [],
    skipped: [],
    slow: [],
  };
  const t0 = Date.now();
  const file = join(dir, `case.${ext}`);
  const [from, to] = opts.only !== undefined ? [opts.only, opts.only + 1] : [0, opts.cases];
  for (let i = from; i < to && (Date.now() - t0) / 1000 <= opts.seconds; i++) {
    if (opts.skip?.includes(i)) {
      res.skipped.push(i);
      continue;
    }
    running = `${target} case ${i}`;
    const c = make(i);
    for (const m of c.mutations) res.mutations[m] = (res.mutations[m] ?? 0) + 1;
    writeFileSync(file, c.bytes);
    res.cases++;
    const started = Date.now();
    try {
      await check(file, c);
      res.ok++;
    } catch (e) {
      const err = e as Error;
      if (ALLOWED_ERRORS[target].includes(err.name) && err.message.includes(file))
        res.errors[err.name] = (res.errors[err.name] ?? 0) + 1;
      else {
        const keep = join(dir, `failure-${i}.${ext}`);
        writeFileSync(keep, c.bytes);
        const where = err.stack?.split('\n').slice(1, 4).join('\n');
        res.failures.push({
          case: i,
          mutations: c.mutations,
          error: `${err.name}: ${err.message.slice(0, 300)}\n${where}`,
          file: keep,
        });
      }
    }
    const took = (Date.now() - started) / 1000;
    if (took > SLOW_SECONDS) res.slow.push({ case: i, seconds: took });
  }
  running = null;
  res.seconds = (Date.now() - t0) / 1000;
  if (!opts.dir && !res.failures.length) rmSync(dir, { recursive: true, force: true });
  return res;
}

/** The case being read: a reader whose promise never settles lets the process exit mid-run; main() reports it. */
let running: string | null = null;

// ---------------------------------------------------------------- CSV

interface CsvBase {
  header: string[];
  records: string[][];
}

export function loadCsvBase(path = SAMPLE_CSV): CsvBase {
  const records: string[][] = [];
  const p = new CsvParser(path, (r) => records.push(r.fields));
  p.write(readFileSync(path, 'utf8'));
  p.end();
  return { header: records[0], records: records.slice(1) };
}

const quote = (s: string) => (/[",\r\n]/.test(s) || s === '' ? `"${s.replace(/"/g, '""')}"` : s);

type Table = { header: string[]; rows: string[][] };
type TableMutation = (t: Table, r: Rng) => void;
type ByteMutation = (b: Buffer, r: Rng) => Buffer;

/** Mutations on the parsed table (before it is written as CSV). */
const TABLE_MUTATIONS: Record<string, TableMutation> = {
  'duplicate id': (t, r) => t.rows.length > 1 && (t.rows[int(r, t.rows.length)][0] = t.rows[int(r, t.rows.length)][0]),
  'drop a column': (t, r) => {
    const k = int(r, t.header.length);
    t.header.splice(k, 1);
    t.rows.forEach((row) => row.splice(k, 1));
  },
  'repeat a column name': (t, r) => (t.header[int(r, t.header.length)] = pick(r, t.header)),
  'rename a column': (t, r) =>
    (t.header[int(r, t.header.length)] = pick(r, ['ID', ' id', 'prompt ', 'winner', 'language', '', 'Response_A'])),
  'test layout': (t) => {
    const keep = ['id', 'prompt', 'response_a', 'response_b'].map((c) => t.header.indexOf(c));
    t.header = keep.map((k) => t.header[k]);
    t.rows = t.rows.map((row) => keep.map((k) => row[k]));
  },
  'empty labels': (t) => t.rows.forEach((row) => t.header.forEach((h, k) => h.startsWith('winner') && (row[k] = ''))),
  'bad label': (t, r) => {
    const k = t.header.findIndex((h) => h.startsWith('winner'));
    if (k >= 0 && t.rows.length) t.rows[int(r, t.rows.length)][k] = pick(r, ['2', '-1', '', 'x', '0.5', '1e0', ' 1']);
  },
  'empty id': (t, r) => t.rows.length && (t.rows[int(r, t.rows.length)][0] = pick(r, ['', ' ', '\t'])),
  'id with control char': (t, r) =>
    t.rows.length && (t.rows[int(r, t.rows.length)][0] += pick(r, ['\0', '\x01', '\n', '\x7f', '\ud800'])),
  'huge cell': (t, r) => {
    if (!t.rows.length) return;
    const row = t.rows[int(r, t.rows.length)];
    // Rarely past the cap (slow), usually large.
    const n = r.next() < 0.02 ? MAX_CELL_CHARS + 1000 + int(r, 1000) : 50_000 + int(r, 200_000);
    const filler = pick(r, ['x', 'word "q" ', '\\u00e9 ', '😀', 'line\n']);
    row[1 + int(r, row.length - 1)] = JSON.stringify([filler.repeat(Math.ceil(n / filler.length)).slice(0, n)]);
  },
  'bad JSON cell': (t, r) => {
    if (!t.rows.length) return;
    const row = t.rows[int(r, t.rows.length)];
    const k = 1 + int(r, row.length - 1);
    const c = row[k];
    row[k] = pick(r, [
      c.slice(0, int(r, c.length + 1)),
      c + ']',
      '[' + c,
      '[1,2]',
      '{"a":1}',
      'null',
      '[null]',
      '["\\ud800"]',
      '["a\\',
      '[' + '['.repeat(5000),
    ]);
  },
  'null items': (t, r) =>
    t.rows.length && (t.rows[int(r, t.rows.length)][1 + int(r, 3)] = JSON.stringify([null, 'x', null])),
  'no rows': (t) => (t.rows = []),
  'extra cell': (t, r) => t.rows.length && t.rows[int(r, t.rows.length)].push('extra'),
  'missing cell': (t, r) => t.rows.length && t.rows[int(r, t.rows.length)].pop(),
};

/** Mutations on the written bytes. */
const BYTE_MUTATIONS: Record<string, ByteMutation> = {
  'byte flips': (b, r) => {
    const c = Buffer.from(b);
    for (let k = 1 + int(r, 8); k > 0 && c.length; k--) c[int(r, c.length)] = int(r, 256);
    return c;
  },
  'cut a quote': (b, r) => {
    const at = b.indexOf(34, int(r, b.length));
    return at < 0 ? b : Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
  },
  'extra quote': (b, r) => {
    const at = int(r, b.length + 1);
    return Buffer.concat([b.subarray(0, at), Buffer.from('"'), b.subarray(at)]);
  },
  truncate: (b, r) => b.subarray(0, int(r, b.length + 1)),
  'UTF-8 BOM': (b) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b]),
  'UTF-16LE with BOM': (b) => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(b.toString('utf8'), 'utf16le')]),
  'UTF-16LE no BOM': (b) => Buffer.from(b.toString('utf8'), 'utf16le'),
  'UTF-16BE with BOM': (b) =>
    Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(b.toString('utf8'), 'utf16le').swap16()]),
  'NUL bytes': (b, r) => {
    const c = Buffer.from(b);
    for (let k = 1 + int(r, 4); k > 0 && c.length; k--) c[int(r, c.length)] = 0;
    return c;
  },
  'invalid UTF-8': (b, r) => {
    const at = int(r, b.length + 1);
    return Buffer.concat([
      b.subarray(0, at),
      Buffer.from(pick(r, [[0xff], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80]])),
      b.subarray(at),
    ]);
  },
  CRLF: (b) => Buffer.from(b.toString('latin1').replace(/\n/g, '\r\n'), 'latin1'),
  'CR only': (b) => Buffer.from(b.toString('latin1').replace(/\n/g, '\r'), 'latin1'),
  'blank lines': (b) => Buffer.from(b.toString('latin1').replace(/\n/g, '\n\n'), 'latin1'),
  'random bytes': (b, r) => Buffer.from(Array.from({ length: int(r, 2000) }, () => int(r, 256))),
  'empty file': () => Buffer.alloc(0),
};

/** Checks what every successful read must give; returns a broken invariant or null. */
function csvInvariant(res: ReadRowsResult): string | null {
  const ids = new Set<string>();
  for (const row of res.rows) {
    if (!row.id || /[\u0000-\u001f\u007f\uD800-\uDFFF]/.test(row.id) || row.id !== row.id.trim())
      return `bad id ${JSON.stringify(row.id)}`;
    if (ids.has(row.id)) return `duplicate id ${row.id} accepted`;
    ids.add(row.id);
    for (const part of [row.prompt, row.responseA, row.responseB]) {
      if (!Array.isArray(part)) return `row ${row.id}: text is not a list`;
      for (const s of part) {
        if (typeof s !== 'string') return `row ${row.id}: non-string item`;
        if (s.includes('\0')) return `row ${row.id}: NUL kept`;
        if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s))
          return `row ${row.id}: lone surrogate kept`;
        if (s.length > MAX_CELL_CHARS) return `row ${row.id}: item of ${s.length} chars over the cap`;
      }
    }
    if (res.hasLabels ? ![0, 1, 2].includes(row.label as number) : row.label !== undefined)
      return `row ${row.id}: label ${row.label} with hasLabels ${res.hasLabels}`;
  }
  return null;
}

/** Builds case i: a few real rows, 1-3 table mutations and 0-2 byte mutations. */
export function csvCase(
  base: CsvBase,
  seed: number,
  i: number,
): { bytes: Buffer; mutations: string[]; requireLabels: boolean } {
  const r = caseRng(seed, i);
  const t: Table = {
    header: [...base.header],
    rows: Array.from({ length: 1 + int(r, 6) }, () => [...pick(r, base.records)]),
  };
  const mutations: string[] = [];
  const tableNames = Object.keys(TABLE_MUTATIONS);
  const byteNames = Object.keys(BYTE_MUTATIONS);
  for (let k = int(r, 3); k > 0; k--) {
    const m = pick(r, tableNames);
    TABLE_MUTATIONS[m](t, r);
    mutations.push(m);
  }
  let bytes: Buffer = Buffer.from(
    [t.header, ...t.rows].map((row) => row.map(quote).join(',')).join('\n') + '\n',
    'utf8',
  );
  for (let k = int(r, 3); k > 0; k--) {
    const m = pick(r, byteNames);
    bytes = BYTE_MUTATIONS[m](bytes, r);
    mutations.push(m);
  }
  return { bytes, mutations, requireLabels: r.next() < 0.3 };
}

export function fuzzCsv(opts: FuzzOptions): Promise<FuzzResult> {
  const base = loadCsvBase();
  return runCases(
    'csv',
    opts,
    'csv',
    (i) => csvCase(base, opts.seed, i),
    async (file, c) => {
      const broken = csvInvariant(await readRows(file, { requireLabels: c.requireLabels }));
      if (broken) throw Object.assign(new Error(broken), { name: 'InvariantBroken' });
    },
  );
}

// ---------------------------------------------------------------- parquet

type PqRow = Record<string, string | null>;

export async function loadParquetBase(path = WSDM_TRAIN): Promise<PqRow[]> {
  const file = await asyncBufferFromFile(path);
  return (await parquetReadObjects({ file, compressors })) as PqRow[];
}

const PQ_COLUMNS = ['id', 'prompt', 'response_a', 'response_b', 'winner', 'model_a', 'model_b', 'language'];

/** Mutations of the rows before they are written (the reader's row rules, through parquet). */
const PQ_TABLE_MUTATIONS: Record<string, (rows: PqRow[], cols: string[], r: Rng) => string[]> = {
  'duplicate id': (rows, cols, r) => ((rows[int(r, rows.length)].id = rows[int(r, rows.length)].id), cols),
  'null cell': (rows, cols, r) => ((rows[int(r, rows.length)][pick(r, cols)] = null), cols),
  'drop a column': (_rows, cols, r) => cols.filter((c) => c !== pick(r, cols)),
  'bad winner': (rows, cols, r) => ((rows[int(r, rows.length)].winner = pick(r, ['tie', 'model_c', '', 'A'])), cols),
  'id with control char': (rows, cols, r) => ((rows[int(r, rows.length)].id += pick(r, ['\0', '\n', '\x7f'])), cols),
};

/** Builds case i: 1-6 WSDM rows written with a random row-group size and codec, then byte mutations. */
export function parquetCase(base: PqRow[], seed: number, i: number): { bytes: Buffer; mutations: string[] } {
  const r = caseRng(seed, i);
  const rows = Array.from({ length: 1 + int(r, 6) }, () => ({ ...pick(r, base) }));
  let cols = [...PQ_COLUMNS];
  const mutations: string[] = [];
  for (let k = int(r, 2); k > 0; k--) {
    const m = pick(r, Object.keys(PQ_TABLE_MUTATIONS));
    cols = PQ_TABLE_MUTATIONS[m](rows, cols, r);
    mutations.push(m);
  }
  const codec = pick(r, ['SNAPPY', 'UNCOMPRESSED'] as const);
  let bytes: Buffer = Buffer.from(
    parquetWriteBuffer({
      columnData: cols.map((c) => ({ name: c, data: rows.map((x) => x[c]), type: 'STRING' as const })),
      rowGroupSize: 1 + int(r, 4),
      codec,
    }),
  );
  const byteNames = ['byte flips', 'footer byte flips', 'footer name', 'truncate', 'append'];
  for (let k = mutations.length ? int(r, 2) : 1 + int(r, 2); k > 0; k--) {
    const m = pick(r, byteNames);
    mutations.push(m);
    if (m === 'truncate') bytes = bytes.subarray(0, int(r, bytes.length + 1));
    else if (m === 'append') bytes = Buffer.concat([bytes, Buffer.alloc(1 + int(r, 16))]);
    else if (m === 'footer name') {
      // One character of a column name in the footer: the schema and the chunks' paths disagree.
      const name = Buffer.from(pick(r, cols));
      const at = r.next() < 0.5 ? bytes.lastIndexOf(name) : bytes.indexOf(name, Math.max(0, bytes.length - 2000));
      if (at >= 0) (bytes = Buffer.from(bytes))[at + int(r, name.length)] = pick(r, [0x28, 0x41, 0x5f, 0x00, 0xff]);
    } else {
      bytes = Buffer.from(bytes);
      // The footer (metadata) is the last few hundred bytes: flip there as often as anywhere.
      const from = m === 'footer byte flips' ? Math.max(0, bytes.length - 400) : 0;
      for (let f = 1 + int(r, 4); f > 0 && bytes.length; f--) bytes[from + int(r, bytes.length - from)] = int(r, 256);
    }
  }
  return { bytes, mutations };
}

export async function fuzzParquet(opts: FuzzOptions): Promise<FuzzResult> {
  const base = await loadParquetBase();
  return runCases(
    'parquet',
    opts,
    'parquet',
    (i) => parquetCase(base, opts.seed, i),
    async (file) => {
      const broken = csvInvariant(await readRows(file));
      if (broken) throw Object.assign(new Error(broken), { name: 'InvariantBroken' });
    },
  );
}

// ---------------------------------------------------------------- safetensors

interface StTensor {
  dtype: string;
  shape: number[];
}

/** A valid small file: header object + data bytes. */
function stBase(r: Rng): { header: Record<string, unknown>; data: Buffer } {
  const tensors: Record<string, StTensor> = {};
  const n = 1 + int(r, 4);
  const width: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, U8: 1 };
  const header: Record<string, unknown> = {};
  if (r.next() < 0.5) header.__metadata__ = { format: 'pt' };
  let off = 0;
  for (let k = 0; k < n; k++) {
    const dtype = pick(r, Object.keys(width));
    const shape = Array.from({ length: int(r, 3) + 1 }, () => 1 + int(r, 6));
    const bytes = shape.reduce((a, d) => a * d, 1) * width[dtype];
    tensors[`layer.${k}.weight`] = { dtype, shape };
    header[`layer.${k}.weight`] = { dtype, shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  const data = Buffer.alloc(off);
  for (let k = 0; k < off; k++) data[k] = int(r, 256);
  return { header, data };
}

const JUNK: unknown[] = [
  null,
  -1,
  1.5,
  2 ** 53 + 2,
  1e308,
  'x',
  '',
  [],
  {},
  [1, 2, 3],
  [-1, 4],
  [4, 2],
  [0, 1e15],
  true,
  [[1]],
  ['1', '2'],
  'F8_E9',
  'toString',
  '__proto__',
];

/** Mutations of the header object (JSON level). */
const HEADER_MUTATIONS: Record<string, (h: Record<string, any>, r: Rng) => void> = {
  dtype: (h, r) => (pickTensor(h, r).dtype = pick(r, [...JUNK, 'F64', 'I64', 'BOOL', 'F32', 'BF16'])),
  shape: (h, r) => (pickTensor(h, r).shape = pick(r, [...JUNK, [1e9, 1e9], [2 ** 31, 2 ** 31, 4], [0], []])),
  'shape dim': (h, r) => {
    const t = pickTensor(h, r);
    if (Array.isArray(t.shape) && t.shape.length)
      t.shape[int(r, t.shape.length)] = pick(r, [0, 1, 3, 1000, -2, 0.5, 2 ** 40, 'x', null]);
  },
  offsets: (h, r) =>
    (pickTensor(h, r).data_offsets = pick(r, [...JUNK, [0, 0], [10, 5], [0, 2 ** 53], [-8, 8], [0, 1e300]])),
  'offset shift': (h, r) => {
    const t = pickTensor(h, r);
    if (Array.isArray(t.data_offsets))
      t.data_offsets = t.data_offsets.map((o: number) =>
        typeof o === 'number' ? o + pick(r, [-4, -1, 1, 4, 1000]) : o,
      );
  },
  overlap: (h, r) => {
    const names = Object.keys(h).filter((k) => k !== '__metadata__' && Array.isArray(h[k]?.data_offsets));
    if (names.length > 1) h[pick(r, names)].data_offsets = [...h[pick(r, names)].data_offsets];
  },
  'drop key': (h, r) => delete pickTensor(h, r)[pick(r, ['dtype', 'shape', 'data_offsets'])],
  'entry junk': (h, r) => (h[pick(r, Object.keys(h))] = pick(r, JUNK)),
  'metadata junk': (h, r) => (h.__metadata__ = pick(r, JUNK)),
  'huge name': (h, r) => (h['n'.repeat(1 + int(r, 100_000))] = { dtype: 'F32', shape: [0], data_offsets: [0, 0] }),
  'no tensors': (h) => Object.keys(h).forEach((k) => k !== '__metadata__' && delete h[k]),
};
function pickTensor(h: Record<string, any>, r: Rng): Record<string, any> {
  const names = Object.keys(h).filter((k) => k !== '__metadata__' && h[k] && typeof h[k] === 'object');
  if (!names.length) return (h['made.up'] = {});
  return h[pick(r, names)];
}

/** Mutations of the file bytes (length prefix, header text, data). */
const ST_BYTE_MUTATIONS: Record<string, (b: Buffer, r: Rng, headerLen: number) => Buffer> = {
  'length prefix': (b, r, hl) => {
    if (b.length < 8) return b;
    const c = Buffer.from(b);
    const v = pick(r, [
      0n,
      1n,
      BigInt(hl - 1),
      BigInt(hl + 1),
      BigInt(b.length),
      2n ** 63n,
      2n ** 64n - 1n,
      BigInt(int(r, 2 ** 31)),
      100n * 1024n * 1024n + 1n,
    ]);
    c.writeBigUInt64LE(v, 0);
    return c;
  },
  'header byte flips': (b, r, hl) => {
    const c = Buffer.from(b);
    for (let k = 1 + int(r, 6); k > 0 && c.length > 8; k--)
      c[8 + int(r, Math.min(hl, c.length - 8))] = pick(r, [
        int(r, 256),
        0x22,
        0x7b,
        0x7d,
        0x5b,
        0x5d,
        0x2c,
        0x3a,
        0x30,
      ]);
    return c;
  },
  truncate: (b, r) => b.subarray(0, int(r, b.length + 1)),
  append: (b, r) => Buffer.concat([b, Buffer.alloc(1 + int(r, 64))]),
  'non-JSON header': (b, r) => {
    const c = Buffer.from(b);
    if (c.length > 8) c.write(pick(r, ['#', 'nul', '\0', '[', '{"a":', '\uFEFF']), 8);
    return c;
  },
};

/** An existing safetensors file mutated like stCase's (header and / or bytes): the trainer's checkpoint state. */
export function stMutate(file: Buffer, r: Rng): { bytes: Buffer; mutations: string[] } {
  const hl = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + hl).toString('utf8'));
  const data = file.subarray(8 + hl);
  const mutations: string[] = [];
  for (let k = int(r, 3); k > 0; k--) {
    const m = pick(r, Object.keys(HEADER_MUTATIONS));
    HEADER_MUTATIONS[m](header, r);
    mutations.push(m);
  }
  const hj = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hj.length));
  let bytes: Buffer = Buffer.concat([len, hj, data]);
  for (let k = mutations.length ? int(r, 2) : 1 + int(r, 2); k > 0; k--) {
    const m = pick(r, Object.keys(ST_BYTE_MUTATIONS));
    bytes = ST_BYTE_MUTATIONS[m](bytes, r, hj.length);
    mutations.push(m);
  }
  return { bytes, mutations };
}

export function stCase(seed: number, i: number): { bytes: Buffer; mutations: string[] } {
  const r = caseRng(seed, i);
  const { header, data } = stBase(r);
  const mutations: string[] = [];
  const hNames = Object.keys(HEADER_MUTATIONS);
  const bNames = Object.keys(ST_BYTE_MUTATIONS);
  for (let k = int(r, 3); k > 0; k--) {
    const m = pick(r, hNames);
    HEADER_MUTATIONS[m](header, r);
    mutations.push(m);
  }
  const hj = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hj.length));
  let bytes: Buffer = Buffer.concat([len, hj, data]);
  for (let k = mutations.length ? int(r, 2) : 1 + int(r, 2); k > 0; k--) {
    const m = pick(r, bNames);
    bytes = ST_BYTE_MUTATIONS[m](bytes, r, hj.length);
    mutations.push(m);
  }
  return { bytes, mutations };
}

export function fuzzSafetensors(opts: FuzzOptions): Promise<FuzzResult> {
  return runCases(
    'safetensors',
    opts,
    'safetensors',
    (i) => stCase(opts.seed, i),
    (file) => {
      const f = openSafetensors(file);
      try {
        // Every tensor is read whole and by rows: reading must succeed or name the tensor.
        for (const [name, t] of f.tensors) {
          try {
            f.read(name);
            if (t.shape.length && t.shape[0] > 0) f.readRows(name, t.shape[0] - 1, 1);
          } catch (e) {
            if ((e as Error).name === 'SafetensorsError' && (e as Error).message.includes('not a float type')) continue;
            throw e;
          }
        }
      } finally {
        f.close();
      }
    },
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '600' },
      cases: { type: 'string', default: '10000' },
      seed: { type: 'string', default: '1' },
      only: { type: 'string', default: 'csv,parquet,safetensors' },
      case: { type: 'string' },
      skip: { type: 'string' },
    },
  });
  const seed = Number(values.seed);
  const cases = Number(values.cases);
  const targets = values.only!.split(',');
  // The time budget is shared: each target gets its part, so the whole run ends in --seconds.
  const seconds = Number(values.seconds) / targets.length;
  const only = values.case !== undefined ? Number(values.case) : undefined;
  const skip = values.skip ? values.skip.split(',').map(Number) : undefined;
  if (![seed, cases, seconds].every(Number.isFinite) || (only !== undefined && !Number.isInteger(only))) {
    console.error('fuzz: --seconds, --cases, --seed and --case take numbers');
    process.exit(2);
  }
  const results: FuzzResult[] = [];
  if (targets.includes('csv')) results.push(await fuzzCsv({ seed, cases, seconds, only, skip }));
  process.on('exit', () => {
    if (running === null) return;
    console.log(`fuzz: FAIL ${running}: the reader's promise never settled and the process ran out of work`);
    process.exitCode = 1;
  });
  if (targets.includes('parquet')) results.push(await fuzzParquet({ seed, cases, seconds, only, skip }));
  if (targets.includes('safetensors')) results.push(await fuzzSafetensors({ seed, cases, seconds, only, skip }));
  // The trainer's inputs (issue 19): loaded on demand, they pull in the training code.
  const train = await import('./fuzz-train');
  if (targets.includes('jsonl')) results.push(await train.fuzzJsonl({ seed, cases, seconds, only, skip }));
  if (targets.includes('adapter-config'))
    results.push(await train.fuzzAdapterConfig({ seed, cases, seconds, only, skip }));
  if (targets.includes('train-checkpoint'))
    results.push(await train.fuzzTrainCheckpoint({ seed, cases, seconds, only, skip }));
  if (targets.includes('train-base'))
    results.push(await (await import('./fuzz-train-base')).fuzzTrainBase({ seed, cases, seconds, only, skip }));
  for (const r of results) {
    console.log(
      `fuzz ${r.target}: ${r.cases} cases in ${r.seconds.toFixed(1)} s (seed ${r.seed}): ${r.ok} read, ` +
        `${
          Object.entries(r.errors)
            .map(([k, v]) => `${v} ${k}`)
            .join(', ') || 'no named errors'
        }, ${r.failures.length} failures` +
        (r.skipped.length ? `, skipped cases ${r.skipped.join(',')}` : '') +
        (r.slow.length
          ? `, slow cases (over ${SLOW_SECONDS} s) ${r.slow.map((x) => `${x.case} (${x.seconds.toFixed(1)} s)`).join(', ')}`
          : ''),
    );
    console.log(`  mutations: ${JSON.stringify(r.mutations)}`);
    for (const f of r.failures.slice(0, 10))
      console.log(`  FAIL case ${f.case} [${f.mutations.join(', ')}] (${f.file}): ${f.error}`);
  }
  const short = results.filter((r) => only === undefined && r.cases < cases);
  if (short.length)
    console.log(
      `fuzz: the time budget ended before ${cases} cases for ${short.map((r) => r.target).join(', ')}; raise --seconds`,
    );
  process.exit(results.some((r) => r.failures.length) ? 1 : 0);
}

if (process.argv[1] && /fuzz\.ts$/.test(process.argv[1])) main();
