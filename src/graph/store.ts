// Initializer storage: where a tensor's bytes go when the builder adds it. The external store
// appends each tensor to a `.onnx.data` file as it arrives (so a 9B model is never whole in memory)
// and keeps only its offset; the memory store keeps bytes inline (tests, tiny models).
import { closeSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import type { DType, InitializerRef } from './ir';

export interface TensorStore {
  put(name: string, dtype: DType, shape: number[], bytes: Uint8Array): InitializerRef;
  /** Flushes and closes the data file; returns its name (relative to the model) or null when inline. */
  close(): string | null;
}

export function memoryStore(): TensorStore {
  return {
    put: (name, dtype, shape, bytes) => ({ name, dtype, shape, data: bytes }),
    close: () => null,
  };
}

/** Tensors below `inlineBelow` bytes stay inline (shape constants, norms); the rest go to `path`. */
export function externalStore(path: string, inlineBelow = 1024): TensorStore {
  const fd = openSync(path, 'w');
  const location = basename(path);
  let offset = 0;
  let open = true;
  return {
    put(name, dtype, shape, bytes) {
      if (!open) throw new Error(`${path}: external data file already closed; cannot add tensor "${name}"`);
      if (bytes.length < inlineBelow) return { name, dtype, shape, data: bytes };
      // Page-aligned starts let ORT memory-map large tensors instead of copying them.
      const align = bytes.length >= 65536 ? 4096 : 64;
      const start = Math.ceil(offset / align) * align;
      if (start > offset) writeSync(fd, new Uint8Array(start - offset), 0, start - offset, offset);
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, start + done);
      offset = start + bytes.length;
      return { name, dtype, shape, external: { location, offset: start, length: bytes.length } };
    },
    close() {
      if (open) closeSync(fd);
      open = false;
      return location;
    },
  };
}
