// The project's one IEEE half / bfloat16 conversion: float32 -> half bits (round to nearest even),
// half bits -> float32 (sign, zero, subnormals, Inf, NaN), and rounding a number to each dtype.
// The fp16 graph rounds quantization scales with it, so a mistake here flips signs of whole blocks.

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** float32 -> IEEE half bits, round to nearest even; overflow -> Inf, NaN stays NaN. */
export function f32ToF16(v: number): number {
  F32[0] = v;
  const x = U32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry into the exponent is the correct rounding
  return sign | h;
}

/** IEEE half bits -> the exact float value. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

export function f32ArrayToF16(a: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f32ToF16(a[i]);
  return out;
}

/** The nearest value of the given float dtype (bfloat16: round to nearest even on the top 16 bits). */
export function roundTo(v: number, dtype: 'float32' | 'bfloat16' | 'float16'): number {
  if (dtype === 'float32') return Math.fround(v);
  if (dtype === 'float16') return f16ToF32(f32ToF16(v));
  F32[0] = v;
  const u = U32[0];
  if ((u & 0x7f800000) === 0x7f800000) return F32[0]; // Inf / NaN unchanged
  U32[0] = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000;
  return F32[0];
}
