// Rotary position tables as Hugging Face computes them (float32 throughout), shared by the ONNX Runtime
// lowering (cos / sin caches as initializers) and the training feeds (the same tables as graph inputs).
import type { RopeSpec } from '../types';

/** HF rotary inverse frequencies in float32 as torch computes them, with Llama-3 rescaling when configured. */
export function ropeInvFreq(rope: RopeSpec, headDim: number): Float32Array {
  const f = Math.fround;
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(Math.pow(rope.theta, f((2 * i) / headDim))));
  const s = rope.scaling;
  if (!s) return inv;
  // transformers 4.45 _compute_llama3_parameters, every step in float32
  const lowWl = s.originalMaxPositions / s.lowFreqFactor;
  const highWl = s.originalMaxPositions / s.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const wavelen = f(f(2 * Math.PI) / inv[i]);
    if (wavelen > lowWl) inv[i] = f(inv[i] / s.factor);
    else if (!(wavelen < highWl)) {
      const sm = f(f(f(s.originalMaxPositions / wavelen) - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor));
      inv[i] = f(f(f(f(1 - sm) * inv[i]) / s.factor) + f(sm * inv[i]));
    }
  }
  return inv;
}

/** cos / sin tables [maxSeq, headDim / 2] of angle = pos * inv_freq (float32 product, as HF). */
export function rotaryTables(
  rope: RopeSpec,
  headDim: number,
  maxSeq: number,
): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInvFreq(rope, headDim);
  const half = headDim / 2;
  const cos = new Float32Array(maxSeq * half);
  const sin = new Float32Array(maxSeq * half);
  for (let p = 0; p < maxSeq; p++)
    for (let i = 0; i < half; i++) {
      const a = Math.fround(p * inv[i]);
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  return { cos, sin };
}
