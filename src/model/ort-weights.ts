// Weights into ONNX Runtime initializers: shape checks against the config, float32 / float16 bytes,
// and the embedding table streamed in row chunks when the source reads row ranges.
import type { GraphBuilder } from '../graph/builder';
import type { Value } from '../graph/ir';
import type { HostTensor, WeightSource } from '../types';
import { f32ToF16 } from '../util/fp16';

export class DecoderGraphError extends Error {
  override name = 'DecoderGraphError';
}

export function expectShape(t: HostTensor, shape: number[], name: string): HostTensor {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
    throw new DecoderGraphError(
      `weight "${name}" has shape [${t.shape}], config expects [${shape}]; the checkpoint does not match its config.json`,
    );
  return t;
}

export function f32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** float32 -> the storage bytes of `dtype`. */
export function floatBytes(a: Float32Array, dtype: 'float32' | 'float16'): Uint8Array {
  if (dtype === 'float32') return f32Bytes(a);
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f32ToF16(a[i]);
  return new Uint8Array(out.buffer);
}

/** Embedding rows read and converted per step when the source reads row ranges (4096 x 3584 fp32 = 59 MB). */
export const EMBED_CHUNK_ROWS = 4096;

/**
 * The embedding table as an initializer. With a row-reading source (WeightSource.rows + shape) the
 * table is read `chunkRows` rows at a time and each chunk converted on its own and handed to the
 * store (an external store appends it to the data file, so only one chunk is ever resident).
 * Otherwise the whole tensor is read. Byte-identical either way.
 */
export function embeddingInit(
  b: GraphBuilder,
  weights: WeightSource,
  name: string,
  shape: [number, number],
  dtype: 'float32' | 'float16',
  chunkRows: number,
): Value {
  const { rows, shape: shapeOf } = weights;
  if (!rows || !shapeOf)
    return b.initializer(name, dtype, shape, floatBytes(expectShape(weights(name), shape, name).data, dtype));
  expectShape({ shape: shapeOf(name), data: new Float32Array(0) }, shape, name);
  const [V, H] = shape;
  function* chunks(): Generator<Uint8Array> {
    for (let r0 = 0; r0 < V; r0 += chunkRows) {
      const n = Math.min(chunkRows, V - r0);
      yield floatBytes(expectShape(rows!(name, r0, n), [n, H], `${name} rows ${r0}..${r0 + n - 1}`).data, dtype);
    }
  }
  return b.initializerChunks(name, dtype, shape, V * H * (dtype === 'float16' ? 2 : 4), chunks());
}
