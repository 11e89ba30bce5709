// CSV -> records, streaming, in time linear in the file size (fast-csv re-parses the whole pending
// text of a quoted cell on every 64 KB chunk, so one 4 MB cell took 18 s and a 30 MB one hung).
// Also the byte-level checks only a reader can make: UTF-16 files, invalid UTF-8 (marked for
// row-builder.ts, which repairs text and refuses ids), absurd cells capped while read so memory stays
// bounded, and progress lines on large files. Quoting follows RFC 4180 as pandas reads it: a quote
// opens a quoted cell only at the start of a cell, "" inside one is a quote, text after a closing
// quote is kept, and CRLF, LF or CR end a record; blank lines are skipped.
import { isUtf8 } from 'node:buffer';
import { createReadStream, statSync } from 'node:fs';
import { readHead } from '../util/files';
import { Progress } from '../util/progress';
import type { ReadRowsResult } from '../types';
import { headOf, MAX_CELL_CHARS, RowBuilder, RowsError, tailOf, type ReadRowsOptions } from './row-builder';

/** Files at least this big print progress lines (rate, ETA) while read. */
export const PROGRESS_MIN_BYTES = 32 * 1024 * 1024;
const CHUNK_BYTES = 1024 * 1024;
/**
 * Stands for one invalid UTF-8 byte in decoded text: a lone surrogate, which a UTF-8 decoder never
 * yields, so row-builder.ts can tell broken bytes from real text and from JSON `\udfff` escapes.
 */
export const BAD_BYTE = '\uDFFF';

const Q = 34; // "
const COMMA = 44;
const LF = 10;
const CR = 13;

/** Bytes to skip at the start (a UTF-8 BOM); throws RowsError for UTF-16/32 files. */
export function checkEncoding(head: Buffer, file: string): number {
  const utf16 = (why: string) =>
    new RowsError(
      `${file}: the file is UTF-16 (${why}); convert it to UTF-8, e.g. iconv -f UTF-16 -t UTF-8 IN > OUT, or pandas to_csv(..., encoding='utf-8')`,
    );
  if (head.length >= 3 && head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) return 3;
  if (head.length >= 2 && ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff)))
    throw utf16('byte-order mark');
  if (head.length >= 4 && head[0] === 0 && head[1] === 0 && head[2] === 0xfe && head[3] === 0xff)
    throw utf16('UTF-32 byte-order mark');
  // No BOM: ASCII text in UTF-16 has a NUL in every other byte.
  const n = Math.min(head.length, 4096) & ~1;
  let even = 0;
  let odd = 0;
  for (let i = 0; i < n; i += 2) {
    if (head[i] === 0) even++;
    if (head[i + 1] === 0) odd++;
  }
  if (n >= 8 && Math.max(even, odd) > n / 8) throw utf16('NUL bytes between the characters, no byte-order mark');
  return 0;
}

/** Length of the valid UTF-8 sequence starting at buf[i] (non-ASCII lead), or 0 if it is invalid. */
function seqLength(buf: Buffer, i: number): number {
  const c = buf[i];
  let need: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) need = 1;
  else if (c === 0xe0) ((need = 2), (lo = 0xa0));
  else if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) need = 2;
  else if (c === 0xed) ((need = 2), (hi = 0x9f));
  else if (c === 0xf0) ((need = 3), (lo = 0x90));
  else if (c >= 0xf1 && c <= 0xf3) need = 3;
  else if (c === 0xf4) ((need = 3), (hi = 0x8f));
  else return 0;
  if (i + need >= buf.length) return 0;
  const b1 = buf[i + 1];
  if (b1 < lo || b1 > hi) return 0;
  for (let k = 2; k <= need; k++) if ((buf[i + k] & 0xc0) !== 0x80) return 0;
  return need + 1;
}

/** Decodes UTF-8 chunk by chunk; each invalid byte becomes BAD_BYTE. */
export class Utf8Decoder {
  private rest: Buffer = Buffer.alloc(0);

  decode(chunk: Buffer, final = false): string {
    let buf = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    this.rest = Buffer.alloc(0);
    if (!final) {
      // Hold back a multi-byte character cut by the chunk boundary.
      let i = buf.length - 1;
      while (i >= 0 && i >= buf.length - 3 && (buf[i] & 0xc0) === 0x80) i--;
      if (i >= 0 && buf[i] >= 0xc0) {
        const want = buf[i] >= 0xf0 ? 4 : buf[i] >= 0xe0 ? 3 : 2;
        if (buf.length - i < want) {
          this.rest = Buffer.from(buf.subarray(i));
          buf = buf.subarray(0, i);
        }
      }
    }
    if (isUtf8(buf)) return buf.toString('utf8');
    let out = '';
    let start = 0;
    for (let i = 0; i < buf.length;) {
      if (buf[i] < 0x80) {
        i++;
        continue;
      }
      const len = seqLength(buf, i);
      if (len) {
        i += len;
        continue;
      }
      out += buf.toString('utf8', start, i) + BAD_BYTE;
      start = ++i;
    }
    return out + buf.toString('utf8', start);
  }
}

/** Text of one whole UTF-8 value (a parquet cell), invalid bytes marked as BAD_BYTE. */
export function utf8Text(b: Uint8Array): string {
  return new Utf8Decoder().decode(Buffer.from(b.buffer, b.byteOffset, b.byteLength), true);
}

/** One cell being read; past `max` characters it keeps only its first and last max/2 (memory stays bounded). */
class FieldBuffer {
  private pieces: string[] = [];
  private len = 0;
  private head: string | null = null;
  total = 0;
  constructor(private max: number) {}

  add(s: string): void {
    if (!s) return;
    this.pieces.push(s);
    this.len += s.length;
    this.total += s.length;
    if (this.len > this.max) {
      const all = this.pieces.join('');
      const half = this.max / 2;
      if (this.head === null) this.head = headOf(all, half);
      this.pieces = [tailOf(all, half)];
      this.len = this.pieces[0].length;
    }
  }

  /** The cell's text and whether it was cut; resets the buffer. */
  take(): { text: string; cut: boolean } {
    const rest = this.pieces.length === 1 ? this.pieces[0] : this.pieces.join('');
    const cut = this.head !== null;
    const text = cut ? this.head + tailOf(rest, this.max / 2) : rest;
    this.pieces = [];
    this.len = 0;
    this.head = null;
    this.total = 0;
    return { text, cut };
  }
}

export interface CsvRecord {
  /** Record number, header = 1 (a quoted cell spanning lines counts once). */
  line: number;
  /** Physical line (1-based) where the record starts, for finding it in an editor. */
  physicalLine: number;
  fields: string[];
  /** Field index -> length before it was capped. */
  cut?: Map<number, number>;
}

const enum State {
  FieldStart,
  Unquoted,
  Quoted,
  QuoteSeen,
}

/** RFC 4180 state machine over decoded text; calls `emit` per record. */
export class CsvParser {
  private state = State.FieldStart;
  private field: FieldBuffer;
  private fields: string[] = [];
  private cut: Map<number, number> | undefined;
  private quotedRecord = false;
  /** The current cell holds "" pairs still to undouble. */
  private pairs = false;
  private started = false;
  private skipLf = false;
  private physical = 1;
  private recordStart = 1;
  private quoteStart = 1;
  private line = 0;
  /** Next LF at or after the scan position in the current chunk (-1: none). */
  private nl = -1;

  constructor(
    private file: string,
    private emit: (r: CsvRecord) => void,
    maxCell = MAX_CELL_CHARS,
  ) {
    this.field = new FieldBuffer(maxCell);
  }

  private endField(): void {
    const total = this.field.total;
    const { text: raw, cut } = this.field.take();
    const text = this.pairs ? raw.replace(/""/g, '"') : raw;
    this.pairs = false;
    if (cut) (this.cut ??= new Map()).set(this.fields.length, total);
    this.fields.push(text);
  }

  private endRecord(): void {
    this.endField();
    const blank = this.fields.length === 1 && this.fields[0] === '' && !this.quotedRecord;
    if (!blank) this.emit({ line: ++this.line, physicalLine: this.recordStart, fields: this.fields, cut: this.cut });
    this.fields = [];
    this.cut = undefined;
    this.quotedRecord = false;
    this.started = false;
    this.state = State.FieldStart;
  }

  /** Counts the LFs in t[from, to) (quoted cells); `nl` walks forward once per chunk, so this stays linear. */
  private newlines(t: string, from: number, to: number): void {
    while (this.nl >= 0 && this.nl < to) {
      if (this.nl >= from) this.physical++;
      this.nl = t.indexOf('\n', this.nl + 1);
    }
  }

  write(t: string): void {
    const n = t.length;
    let i = 0;
    this.nl = t.indexOf('\n');
    while (i < n) {
      if (this.skipLf) {
        this.skipLf = false;
        if (t.charCodeAt(i) === LF) {
          i++;
          continue;
        }
      }
      if (!this.started) {
        this.started = true;
        this.recordStart = this.physical;
      }
      switch (this.state) {
        case State.FieldStart:
          if (t.charCodeAt(i) === Q) {
            this.state = State.Quoted;
            this.quotedRecord = true;
            this.quoteStart = this.physical;
            i++;
          } else this.state = State.Unquoted;
          break;
        case State.Unquoted: {
          let j = i;
          let c = 0;
          while (j < n) {
            c = t.charCodeAt(j);
            if (c === COMMA || c === LF || c === CR) break;
            j++;
          }
          this.field.add(t.slice(i, j));
          i = j;
          if (j === n) break;
          i++;
          if (c === COMMA) {
            this.endField();
            this.state = State.FieldStart;
          } else {
            this.physical++;
            this.skipLf = c === CR;
            this.endRecord();
          }
          break;
        }
        case State.Quoted: {
          // The buffer keeps the cell's raw text ("" pairs included) and undoubles it once when the
          // cell ends: one replace per chunk made a 30 MB cell spend seconds in the garbage collector.
          let j = t.indexOf('"', i);
          while (j >= 0 && j + 1 < n && t.charCodeAt(j + 1) === Q) {
            this.pairs = true;
            j = t.indexOf('"', j + 2);
          }
          const end = j < 0 ? n : j;
          this.field.add(t.slice(i, end));
          this.newlines(t, i, end);
          i = j < 0 ? n : j + 1;
          if (j >= 0) this.state = State.QuoteSeen;
          break;
        }
        case State.QuoteSeen:
          if (t.charCodeAt(i) === Q) {
            this.field.add('""');
            this.pairs = true;
            this.state = State.Quoted;
            i++;
          } else this.state = State.Unquoted; // a delimiter, a line end, or text kept as pandas does
          break;
      }
    }
  }

  end(): void {
    if (this.state === State.Quoted)
      throw new RowsError(
        `${this.file}: a quoted cell opened on physical line ${this.quoteStart} (record ${this.line + 1}) never closes; ` +
          'a quote is missing or a quote inside a cell is not doubled ("")',
      );
    if (this.started) this.endRecord();
  }
}

/**
 * Reads a competition CSV into rows. Errors (RowsError) name the file, and the line/id where it
 * applies; `line` counts CSV records with the header as 1, which matches the row numbers pandas
 * users see plus 2.
 */
export async function readCsvRows(path: string, opts: ReadRowsOptions = {}): Promise<ReadRowsResult> {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw new RowsError(
      `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); check the path`,
    );
  }
  let builder: RowBuilder | null = null;
  let width = 0;
  const parser = new CsvParser(path, (rec) => {
    if (!builder) {
      const header = rec.fields.map((h) => h.trim());
      builder = new RowBuilder(path, header, { ...opts, textCells: 'json-list' });
      width = header.length;
      return;
    }
    if (rec.fields.length !== width)
      throw new RowsError(
        `${path}: line ${rec.line} (physical line ${rec.physicalLine}) has ${rec.fields.length} cells but the header has ${width}; ` +
          'a quote is probably missing or not doubled, or a comma is outside quotes: fix the row or drop it',
      );
    builder.add({ line: rec.line, cells: rec.fields, cut: rec.cut });
  });
  const progress = size >= PROGRESS_MIN_BYTES ? new Progress(`reading ${path}`, Math.round(size / 1e6), 'MB') : null;
  const decoder = new Utf8Decoder();
  let read = 0;
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: CHUNK_BYTES }) as AsyncIterable<Buffer>) {
      const skip = read === 0 ? checkEncoding(chunk, path) : 0;
      read += chunk.length;
      parser.write(decoder.decode(skip ? chunk.subarray(skip) : chunk));
      progress?.update(Math.round(read / 1e6));
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code && !(e instanceof RowsError)) throw new RowsError(`${path}: cannot read (${code}); check the path`);
    throw e;
  }
  parser.write(decoder.decode(Buffer.alloc(0), true));
  parser.end();
  progress?.done(Math.round(read / 1e6));
  const b = builder as RowBuilder | null;
  if (!b) throw new RowsError(`${path}: empty file, missing required columns id, prompt, response_a, response_b`);
  return b.finish();
}

/**
 * The header's column names from the file's first 64 KB, or [] when they cannot be read there (the
 * full read then reports why). Cheap: the task is chosen from these before any row is read.
 */
export function csvColumns(path: string): string[] {
  const head = readHead(path, 64 * 1024);
  let header: string[] = [];
  try {
    const text = utf8Text(head.subarray(checkEncoding(head, path)));
    const nl = text.indexOf('\n');
    if (nl < 0) return [];
    new CsvParser(path, (rec) => (header = rec.fields.map((h) => h.trim()))).write(text.slice(0, nl + 1));
  } catch {
    return [];
  }
  return header;
}
