// Writes a float32 safetensors file (the layout the HF fixtures use) for tests that need a modified
// copy of a fixture checkpoint or adapter: header length, JSON header, little-endian data.
import { writeFileSync } from 'node:fs';
import type { HostTensor } from '../../src/types';

export function writeSafetensors(path: string, tensors: Record<string, HostTensor>): void {
  const header: Record<string, unknown> = {};
  const parts: Buffer[] = [];
  let off = 0;
  for (const [n, t] of Object.entries(tensors)) {
    header[n] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
    parts.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    off += t.data.byteLength;
  }
  const hj = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hj.length));
  writeFileSync(path, Buffer.concat([len, hj, ...parts]));
}
