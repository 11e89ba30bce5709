// safetensors reader (https://huggingface.co/docs/safetensors): 8-byte little-endian header
// length, JSON header, raw little-endian tensor bytes. The header is validated up front; tensors
// are read one at a time (positioned reads), converted to float32, so a 9B checkpoint is never
// held in memory at once. Sharded checkpoints come through model.safetensors.index.json.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { HostTensor, WeightSource } from '../types';

const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
/** Largest header we accept: real checkpoints have headers of well under 1 MB. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** Chunk size of read(): bounds the transient raw-byte copy next to the float32 result. */
const READ_CHUNK_BYTES = 16 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

/** A header value for a message, cut short: a fuzzed header can hold megabytes in one field. */
function show(v: unknown): string {
  const j = JSON.stringify(v) ?? String(v);
  return j.length > 120 ? `${j.slice(0, 120)}...` : j;
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

export class SafetensorsFile {
  readonly tensors = new Map<string, TensorInfo>();
  readonly metadata: Record<string, string>;
  readonly size: number;
  private fd: number;

  constructor(readonly path: string) {
    if (!existsSync(path)) throw new SafetensorsError(`${path}: file not found`);
    try {
      this.fd = openSync(path, 'r');
    } catch (e) {
      throw new SafetensorsError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); check the path and its permissions`);
    }
    try {
      const st = fstatSync(this.fd);
      if (!st.isFile()) throw new SafetensorsError(`${path}: not a file; pass a .safetensors file`);
      this.size = st.size;
      const fail = (msg: string): never => {
        throw new SafetensorsError(`${path}: ${msg}; the file is damaged or not safetensors; re-download or re-save it`);
      };
      if (this.size < 8) fail(`file is ${this.size} bytes, shorter than the 8-byte header length`);
      const lenBuf = Buffer.alloc(8);
      readSync(this.fd, lenBuf, 0, 8, 0);
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      if (headerLen > MAX_HEADER_BYTES) fail(`header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte cap`);
      if (8 + headerLen > this.size) fail(`header length ${headerLen} runs past the end of the ${this.size}-byte file (truncated?)`);
      const hb = Buffer.alloc(headerLen);
      readSync(this.fd, hb, 0, headerLen, 8);
      let header: Record<string, unknown>;
      try {
        header = JSON.parse(hb.toString('utf8'));
      } catch (e) {
        header = fail(`header is not valid JSON (${(e as Error).message})`);
      }
      if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('header is not a JSON object');
      const dataStart = 8 + headerLen;
      const dataLen = this.size - dataStart;
      const meta = header.__metadata__ ?? {};
      if (typeof meta !== 'object' || Array.isArray(meta)) fail(`"__metadata__" is ${show(meta)}, not an object of strings`);
      this.metadata = meta as Record<string, string>;
      const ranges: TensorInfo[] = [];
      for (const [name, v] of Object.entries(header)) {
        if (name === '__metadata__') continue;
        const where = `tensor "${name.length > 200 ? name.slice(0, 200) + "..." : name}"`;
        if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(`${where} has entry ${show(v)}, not an object with dtype, shape and data_offsets`);
        const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
        if (typeof e.dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, e.dtype)) fail(`${where} has unknown dtype ${show(e.dtype)}`);
        if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`${where} has an invalid shape ${show(e.shape)}`);
        const off = e.data_offsets;
        if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isInteger(o) && o >= 0) || off[0] > off[1])
          fail(`${where} has invalid data_offsets ${show(off)}`);
        const [b, en] = off as [number, number];
        if (en > dataLen) fail(`${where} data_offsets [${b}, ${en}] point past the end of the data (${dataLen} bytes; truncated file?)`);
        const shape = e.shape as number[];
        const want = shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[e.dtype as string];
        if (en - b !== want) fail(`${where} has ${en - b} bytes but shape [${shape}] of ${e.dtype} needs ${want}`);
        const info = { name, dtype: e.dtype as string, shape, begin: dataStart + b, end: dataStart + en };
        ranges.push(info);
        this.tensors.set(name, info);
      }
      ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
      for (let i = 1; i < ranges.length; i++)
        if (ranges[i].begin < ranges[i - 1].end && ranges[i].end > ranges[i].begin)
          fail(`tensors "${ranges[i - 1].name}" and "${ranges[i].name}" overlap`);
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** Raw bytes of one tensor. */
  readBytes(name: string): Buffer {
    const t = this.info(name);
    const buf = Buffer.alloc(t.end - t.begin);
    let done = 0;
    while (done < buf.length) {
      const n = readSync(this.fd, buf, done, buf.length - done, t.begin + done);
      if (n === 0) throw new SafetensorsError(`${this.path}: tensor "${name}" ends early (file changed while reading?)`);
      done += n;
    }
    return buf;
  }

  /** One tensor converted to float32, read in chunks so a big bf16 tensor never sits in memory twice. */
  read(name: string): HostTensor {
    const t = this.info(name);
    return { shape: [...t.shape], data: this.readRange(t, 0, t.end - t.begin) };
  }

  /**
   * Rows [start, start + count) along the first axis, converted to float32: a positioned read of just
   * those bytes, so a 256000-row embedding can be converted a few thousand rows at a time.
   */
  readRows(name: string, start: number, count: number): HostTensor {
    const t = this.info(name);
    const rows = t.shape[0];
    if (t.shape.length < 1 || !Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > rows)
      throw new SafetensorsError(
        `${this.path}: tensor "${name}" of shape [${t.shape}]: row range [${start}, ${start + count}) is outside its ${t.shape.length ? rows : 0} rows`,
      );
    const rowBytes = rows === 0 ? 0 : (t.end - t.begin) / rows;
    return { shape: [count, ...t.shape.slice(1)], data: this.readRange(t, start * rowBytes, count * rowBytes) };
  }

  /** Bytes [from, from + len) of tensor `t` (relative to its start) as float32, in READ_CHUNK_BYTES steps. */
  private readRange(t: TensorInfo, from: number, len: number): Float32Array {
    const where = `${this.path}: tensor "${t.name}"`;
    const width = DTYPE_BYTES[t.dtype];
    if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16') toFloat32(Buffer.alloc(0), t.dtype, where);
    const out = new Float32Array(len / width);
    const chunk = Buffer.alloc(Math.min(len, READ_CHUNK_BYTES));
    for (let pos = 0; pos < len; ) {
      const n0 = Math.min(chunk.length, len - pos);
      let done = 0;
      while (done < n0) {
        const n = readSync(this.fd, chunk, done, n0 - done, t.begin + from + pos + done);
        if (n === 0) throw new SafetensorsError(`${where} ends early (file changed while reading?)`);
        done += n;
      }
      out.set(toFloat32(chunk.subarray(0, n0), t.dtype, where), pos / width);
      pos += n0;
    }
    return out;
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(`${this.path}: no tensor named "${name}" (has ${this.tensors.size} tensors)`);
    return t;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

export function openSafetensors(path: string): SafetensorsFile {
  return new SafetensorsFile(path);
}

const f16Table = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();

export function toFloat32(raw: Buffer, dtype: string, where: string): Float32Array {
  const n = raw.length / (DTYPE_BYTES[dtype] ?? 1);
  const out = new Float32Array(n);
  if (dtype === 'F32') {
    new Uint8Array(out.buffer).set(raw);
  } else if (dtype === 'F16') {
    for (let i = 0; i < n; i++) out[i] = f16Table[raw[2 * i] | (raw[2 * i + 1] << 8)];
  } else if (dtype === 'BF16') {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = (raw[2 * i] | (raw[2 * i + 1] << 8)) << 16;
  } else {
    throw new SafetensorsError(`${where}: dtype ${dtype} is not a float type (F32, F16, BF16 supported)`);
  }
  return out;
}

/** A checkpoint directory: model.safetensors, or shards listed in model.safetensors.index.json. */
export interface Checkpoint {
  names: string[];
  /** Whole tensors; also carries `get.rows` (row ranges) and `get.shape`. */
  get: WeightSource;
  info(name: string): TensorInfo & { file: string };
  files: SafetensorsFile[];
  close(): void;
}

export function openCheckpoint(dir: string, stem = 'model'): Checkpoint {
  const index = join(dir, `${stem}.safetensors.index.json`);
  const single = join(dir, `${stem}.safetensors`);
  const byName = new Map<string, SafetensorsFile>();
  const files: SafetensorsFile[] = [];
  if (existsSync(index)) {
    let map: Record<string, string>;
    try {
      map = JSON.parse(readFileSync(index, 'utf8'))?.weight_map;
    } catch (e) {
      throw new SafetensorsError(`${index}: not valid JSON (${(e as Error).message})`);
    }
    if (!map || typeof map !== 'object' || Array.isArray(map)) throw new SafetensorsError(`${index}: no "weight_map" object`);
    const opened = new Map<string, SafetensorsFile>();
    try {
      for (const [name, shard] of Object.entries(map)) {
        let f = opened.get(shard);
        if (!f) {
          if (typeof shard !== 'string' || shard === '' || basename(shard) !== shard)
            throw new SafetensorsError(`${index}: maps "${name}" to ${JSON.stringify(shard)}, which is not a file name in ${dir}`);
          if (!existsSync(join(dir, shard)))
            throw new SafetensorsError(`${index}: names shard ${shard} (for "${name}"), which is missing from ${dir}; download every shard the index lists`);
          f = openSafetensors(join(dir, shard));
          opened.set(shard, f);
          files.push(f);
        }
        if (!f.has(name)) throw new SafetensorsError(`${index}: maps "${name}" to ${shard}, which has no such tensor`);
        byName.set(name, f);
      }
    } catch (e) {
      files.forEach((f) => f.close());
      throw e;
    }
  } else if (existsSync(single)) {
    const f = openSafetensors(single);
    files.push(f);
    for (const name of f.tensors.keys()) byName.set(name, f);
  } else {
    throw new SafetensorsError(`${dir}: neither ${stem}.safetensors nor ${stem}.safetensors.index.json found`);
  }
  const find = (name: string) => {
    const f = byName.get(name);
    if (!f) throw new SafetensorsError(`${dir}: checkpoint has no tensor "${name}"`);
    return f;
  };
  const get: WeightSource = Object.assign((name: string) => find(name).read(name), {
    rows: (name: string, start: number, count: number) => find(name).readRows(name, start, count),
    shape: (name: string) => [...find(name).info(name).shape],
  });
  return {
    names: [...byName.keys()],
    get,
    info: (name) => ({ ...find(name).info(name), file: find(name).path }),
    files,
    close: () => files.forEach((f) => f.close()),
  };
}
