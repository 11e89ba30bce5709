// Initializer storage: where a tensor's bytes go when the builder adds it. The external store
// appends each tensor to a `.onnx.data` file as it arrives (so a 9B model is never whole in memory)
// and keeps only its offset; the memory store keeps bytes inline (tests, tiny models). A tensor can
// also arrive as consecutive chunks (`putChunks`), so even one huge tensor (a 256k-row embedding)
// is never whole in memory on its way to the file. With `dedupe`, a tensor whose dtype, shape and
// bytes equal one already in the file is not written again: it points at the stored copy (the CPU and
// the GPU graph of one import share their quantized weights this way, whatever their names).
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import type { DType, InitializerRef } from './ir';

export interface TensorStore {
  put(name: string, dtype: DType, shape: number[], bytes: Uint8Array): InitializerRef;
  /** The same tensor given as consecutive byte chunks that add up to `byteLength`. */
  putChunks(
    name: string,
    dtype: DType,
    shape: number[],
    byteLength: number,
    chunks: Iterable<Uint8Array>,
  ): InitializerRef;
  /** Flushes and closes the data file; returns its name (relative to the model) or null when inline. */
  close(): string | null;
}

export class TensorStoreError extends Error {
  override name = 'TensorStoreError';
}

/** Concatenates chunks into one buffer, checking they add up to `byteLength`. */
function gather(where: string, byteLength: number, chunks: Iterable<Uint8Array>): Uint8Array {
  const data = new Uint8Array(byteLength);
  let off = 0;
  for (const c of chunks) {
    if (off + c.length > byteLength) throw new TensorStoreError(`${where}: got more than its ${byteLength} bytes`);
    data.set(c, off);
    off += c.length;
  }
  if (off !== byteLength) throw new TensorStoreError(`${where}: got ${off} of its ${byteLength} bytes`);
  return data;
}

export function memoryStore(): TensorStore {
  return {
    put: (name, dtype, shape, bytes) => ({ name, dtype, shape, data: bytes }),
    putChunks: (name, dtype, shape, byteLength, chunks) => ({
      name,
      dtype,
      shape,
      data: gather(`tensor "${name}"`, byteLength, chunks),
    }),
    close: () => null,
  };
}

/**
 * Tensors below `inlineBelow` bytes stay inline (shape constants, norms); the rest go to `path`.
 * `dedupe`: a tensor equal to a stored one (dtype, shape, sha256 of its bytes) is written, found
 * equal, and its bytes given back (the file's end moves back), so the graph refers to the first copy.
 */
export function externalStore(path: string, inlineBelow = 1024, opts: { dedupe?: boolean } = {}): TensorStore {
  const fd = openSync(path, 'w');
  const location = basename(path);
  let offset = 0;
  let open = true;
  const stored = new Map<string, NonNullable<InitializerRef['external']>>();
  const write = (bytes: Uint8Array, at: number) => {
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, at + done);
  };
  const putChunks = (
    name: string,
    dtype: DType,
    shape: number[],
    byteLength: number,
    chunks: Iterable<Uint8Array>,
  ): InitializerRef => {
    const where = `${path}: tensor "${name}"`;
    if (!open) throw new TensorStoreError(`${path}: external data file already closed; cannot add tensor "${name}"`);
    if (byteLength < inlineBelow) return { name, dtype, shape, data: gather(where, byteLength, chunks) };
    // Page-aligned starts let ORT memory-map large tensors instead of copying them.
    const align = byteLength >= 65536 ? 4096 : 64;
    const start = Math.ceil(offset / align) * align;
    if (start > offset) write(new Uint8Array(start - offset), offset);
    const hash = opts.dedupe ? createHash('sha256').update(`${dtype}[${shape.join(',')}]`) : null;
    let pos = start;
    for (const c of chunks) {
      if (pos + c.length > start + byteLength)
        throw new TensorStoreError(`${where}: got more than its ${byteLength} bytes`);
      write(c, pos);
      hash?.update(c);
      pos += c.length;
    }
    if (pos !== start + byteLength)
      throw new TensorStoreError(`${where}: got ${pos - start} of its ${byteLength} bytes`);
    if (hash) {
      const key = hash.digest('hex');
      const same = stored.get(key);
      if (same) return { name, dtype, shape, external: same }; // offset stays: the next tensor overwrites this copy
      stored.set(key, { location, offset: start, length: byteLength });
    }
    offset = pos;
    return { name, dtype, shape, external: { location, offset: start, length: byteLength } };
  };
  return {
    put: (name, dtype, shape, bytes) => putChunks(name, dtype, shape, bytes.length, [bytes]),
    putChunks,
    close() {
      if (open) {
        ftruncateSync(fd, offset); // a duplicate written last leaves bytes past the end
        closeSync(fd);
      }
      open = false;
      return location;
    },
  };
}
