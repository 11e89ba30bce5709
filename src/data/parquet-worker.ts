// The worker-thread side of the parquet reader (parquet.ts): decodes one row group per request with
// hyparquet and answers with its cells. It runs in a worker so that a decoder stuck in a synchronous
// loop on a damaged data page (hyparquet 1.31.5, found by npm run fuzz) can be terminated by the
// reader's time limit; nothing here knows about time limits or row rules.
import { parentPort } from 'node:worker_threads';
import {
  asyncBufferFromFile,
  parquetMetadataAsync,
  parquetReadObjects,
  type AsyncBuffer,
  type FileMetaData,
} from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { utf8Text } from './csv';

/** One row group to decode: rows [rowStart, rowEnd) of `path`, the named columns only. */
export interface DecodeRequest {
  /** Same for every request of one read: the file and its footer are opened once per read. */
  readId: number;
  path: string;
  columns: string[];
  rowStart: number;
  rowEnd: number;
}

/**
 * A cell as sent back: null, text, a list of turns, or a number k standing for UTF-8 bytes: byte
 * range `refs[3k+1]`, length `refs[3k+2]` of `buffers[refs[3k]]`. The buffers are hyparquet's own
 * (decompressed) pages, transferred, not copied: copying between threads (structured clone) costs
 * about 1 s per 80 MB of text here, as long as decoding it.
 */
export type PackedCell = null | number | string | (null | number | string)[];

export interface DecodedRows {
  /** Each row's cells in `columns` order. */
  rows: PackedCell[][];
  buffers: ArrayBuffer[];
  refs: Float64Array;
}

/** The decoded row group, or the decoder's error message. */
export type DecodeReply = DecodedRows | { error: string };

/**
 * Bytes hyparquet would have turned into strings (its `stringFromBytes`): kept as bytes, decoded by
 * the reader with invalid UTF-8 marked (csv.ts BAD_BYTE) instead of hyparquet's silent U+FFFD.
 */
const texts = new WeakSet<Uint8Array>();
const parsers = {
  stringFromBytes: (b: Uint8Array | undefined) => (b && texts.add(b), b) as unknown as string,
};

/** Numbers, booleans, dates, bigints and nested values (structs) as text, as one cell or one turn. */
function asText(v: unknown): string {
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return utf8Text(v);
  return typeof v === 'object' && v !== null
    ? JSON.stringify(v, (_k, x) =>
        typeof x === 'bigint' ? x.toString() : x instanceof Uint8Array && texts.has(x) ? utf8Text(x) : x,
      )
    : String(v);
}

/** Packs one row group's values: byte cells (top level, or turns of a list) as references into their pages, the rest as text. */
function pack(objects: Record<string, unknown>[], columns: string[]): DecodedRows {
  const index = new Map<Uint8Array, number>();
  const buffers = new Map<ArrayBuffer, number>();
  const refs: number[] = [];
  const ref = (b: Uint8Array): number => {
    let k = index.get(b);
    if (k === undefined) {
      const buf = b.buffer as ArrayBuffer;
      let bi = buffers.get(buf);
      if (bi === undefined) buffers.set(buf, (bi = buffers.size));
      index.set(b, (k = refs.push(bi, b.byteOffset, b.byteLength) / 3 - 1));
    }
    return k;
  };
  const rows = objects.map((o) =>
    columns.map((c): PackedCell => {
      const v = o[c];
      if (v === null || v === undefined) return null;
      if (typeof v === 'string') return v;
      if (v instanceof Uint8Array) return ref(v);
      if (Array.isArray(v))
        return v.map((x) =>
          x === null || x === undefined
            ? null
            : typeof x === 'string'
              ? x
              : x instanceof Uint8Array && texts.has(x)
                ? ref(x)
                : JSON.stringify(x),
        );
      return asText(v);
    }),
  );
  return { rows, buffers: [...buffers.keys()], refs: Float64Array.from(refs) };
}

let open: { readId: number; file: AsyncBuffer; metadata: FileMetaData } | null = null;

async function decode(req: DecodeRequest): Promise<DecodedRows> {
  if (open?.readId !== req.readId) {
    const file = await asyncBufferFromFile(req.path);
    open = { readId: req.readId, file, metadata: await parquetMetadataAsync(file) };
  }
  const { file, metadata } = open;
  const objects = await parquetReadObjects({
    file,
    metadata,
    columns: req.columns,
    rowStart: req.rowStart,
    rowEnd: req.rowEnd,
    compressors,
    parsers,
  });
  return pack(objects, req.columns);
}

if (parentPort) {
  const port = parentPort;
  port.on('message', (req: DecodeRequest) => {
    decode(req).then(
      // Transferred: the worker drops the row group anyway. Buffers node marks untransferable (its
      // small-allocation pool) are copied instead.
      (reply) => port.postMessage(reply satisfies DecodeReply, [...reply.buffers, reply.refs.buffer as ArrayBuffer]),
      (e) => port.postMessage({ error: (e as Error)?.message ?? String(e) } satisfies DecodeReply),
    );
  });
  // Loading this module (hyparquet, codecs) is not part of any row group's time limit.
  port.postMessage('ready');
}
