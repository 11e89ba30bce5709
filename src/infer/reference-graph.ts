// The exact CPU reference of a graph whose MatMulNBits nodes run at accuracy_level 4 (int8 activations; the
// CPU-only import's default, src/quant/nbits.ts cpuGraphDefaults): the same graph with every accuracy_level set
// to 0, so the CPU EP computes with the dequantized weights in fp32. The self-check compares another EP's
// run of a graph (WebGPU runs the CPU graph) with this, not with the int8-activation path, which differs from
// any exact kernel by its own quantization error (0.1 logits on the tiny fixture, far over the 5e-3 tolerance).
import { parseModel } from '../graph/serialise';
import { onnx } from 'onnx-proto';

/** The model bytes with every MatMulNBits accuracy_level at 0, or null when no node sets another level. */
export function exactNBitsModel(bytes: Uint8Array): Uint8Array | null {
  const m = parseModel(bytes);
  let changed = false;
  for (const n of m.graph?.node ?? []) {
    if (n.opType !== 'MatMulNBits') continue;
    for (const a of n.attribute ?? [])
      if (a.name === 'accuracy_level' && Number(a.i) !== 0) {
        a.i = 0;
        changed = true;
      }
  }
  return changed ? onnx.ModelProto.encode(m).finish() : null;
}
