// safetensors writer (F32 only: adapters, checkpoints and optimizer state of the trainer): 8-byte
// little-endian header length, JSON header padded with spaces to a multiple of 8 (as the reference
// implementation does), tensors in name order. Written to a temporary file and renamed, so a
// crash never leaves a half-written file under the final name.
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

export function writeSafetensors(path: string, tensors: Map<string, { shape: number[]; data: Float32Array }>, metadata: Record<string, string> = {}): void {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  for (const n of names) {
    const t = tensors.get(n)!;
    const count = t.shape.reduce((a, d) => a * d, 1);
    if (count !== t.data.length) throw new RangeError(`${path}: tensor "${n}" has ${t.data.length} values but shape [${t.shape}]`);
    header[n] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const hb = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  let ok = false;
  try {
    const put = (b: Uint8Array) => {
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done, b.length - done);
    };
    put(len);
    put(hb);
    for (const n of names) {
      const d = tensors.get(n)!.data;
      put(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    }
    ok = true;
  } finally {
    closeSync(fd);
    if (!ok) rmSync(tmp, { force: true }); // a full disk leaves no partial file
  }
  try {
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
