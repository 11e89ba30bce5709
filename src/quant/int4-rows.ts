// int4-rows: 4-bit weights that expand exactly, at session start, into the int8-rows CPU kernel's weights
// (MatMulInteger over int8 weights with one scale per output feature; src/graph/builder.ts matmulInt8Rows).
//
// Each output feature n has a float scale s[n] = max|w[n, :]| / 120. Along K, every block of `blockSize`
// weights has a signed integer multiplier m in [-15, 15] (m = 0 only for an all-zero block) and 4-bit codes c in
// [-8, 7]; the weight is c * m * s[n]. c * m is an integer in [-120, 120], so the int8 weight the kernel
// multiplies is exactly c * m: the expansion is an integer product, with no second rounding, and the graph
// computes with precisely the weights the file holds. Storage: 4 bits per weight, plus one byte per block of 32
// (4.25 bits; llama.cpp's Q4_0 takes 4.5), plus the per-feature scales. In memory the session holds int8 (8 bits
// per weight): ORT's MatMulInteger takes 8-bit operands only, and its u8 x s8 GEMM is the one with an AMX path
// (MatMulNBits' 4-bit kernels have none in ORT 1.29 / 1.30: BENCHMARKS.md, issue 21).
//
// Layouts (x [.., K] @ w [K, N], the int8-rows orientation):
//   codes       uint8 [K, ceil(N / 2)]: features 2j (low nibble) and 2j+1 (high nibble) of row k, stored c + 8
//   multipliers int8  [nBlocks, N]: the multiplier of block k / blockSize of feature n
//   scales      float32 [N]
// Pure: the writer stores codes and multipliers in the data file (src/model/lower.ts), the loader expands them
// (src/weights/expand.ts).
import { QuantError } from './nbits';

/** The block along K that one multiplier covers. */
export const INT4_ROWS_BLOCK = 32;
/** Largest |multiplier|: |c * m| <= 8 * 15 = 120 <= 127, the int8 range. */
const MAX_MULT = 15;
const CODE_MIN = -8;
const CODE_MAX = 7;

export interface Int4RowsWeight {
  N: number;
  K: number;
  blockSize: number;
  nBlocks: number;
  codes: Uint8Array;
  multipliers: Int8Array;
  scales: Float32Array;
}

export const int4RowsBytes = (N: number, K: number, blockSize = INT4_ROWS_BLOCK) => ({
  codes: K * Math.ceil(N / 2),
  multipliers: Math.ceil(K / blockSize) * N,
});

/** Quantizes an HF row-major weight W [N, K] (y = x W^T). */
export function quantizeInt4Rows(w: Float32Array, N: number, K: number, blockSize = INT4_ROWS_BLOCK): Int4RowsWeight {
  if (w.length !== N * K) throw new QuantError(`quantizeInt4Rows: weight has ${w.length} values, expected ${N} x ${K}`);
  if (!Number.isInteger(blockSize) || blockSize < 1)
    throw new QuantError(`quantizeInt4Rows: block size must be a positive integer, got ${blockSize}`);
  const nBlocks = Math.ceil(K / blockSize);
  const half = Math.ceil(N / 2);
  const codes = new Uint8Array(K * half).fill(0x88); // code 0 in both nibbles (an odd N's padding stays 0)
  const multipliers = new Int8Array(nBlocks * N);
  const scales = new Float32Array(N);
  const block = new Int8Array(blockSize);
  const trial = new Int8Array(blockSize);
  for (let n = 0; n < N; n++) {
    const row = n * K;
    let mx = 0;
    for (let k = 0; k < K; k++) mx = Math.max(mx, Math.abs(w[row + k]));
    const s = Math.fround(mx / (8 * MAX_MULT)) || 1;
    scales[n] = s;
    for (let blk = 0; blk < nBlocks; blk++) {
      const k0 = blk * blockSize;
      const k1 = Math.min(K, k0 + blockSize);
      // The value of largest magnitude maps to code -8 (ORT's symmetric convention, as quantizeNBits): m takes its
      // sign flipped. Of the two multipliers around the exact step, keep the one with the smaller squared error.
      let vmax = 0;
      for (let k = k0; k < k1; k++) if (Math.abs(w[row + k]) > Math.abs(vmax)) vmax = w[row + k];
      const ideal = Math.abs(vmax) / (8 * s);
      const sign = vmax > 0 ? -1 : 1;
      let best = 0;
      let bestErr = Infinity;
      if (vmax !== 0)
        for (const a of new Set([Math.floor(ideal), Math.ceil(ideal)])) {
          const m = sign * Math.min(MAX_MULT, Math.max(1, a));
          const step = m * s;
          let err = 0;
          for (let k = k0; k < k1; k++) {
            const c = Math.min(CODE_MAX, Math.max(CODE_MIN, Math.round(w[row + k] / step)));
            trial[k - k0] = c;
            const d = w[row + k] - c * step;
            err += d * d;
          }
          if (err < bestErr) {
            bestErr = err;
            best = m;
            block.set(trial);
          }
        }
      else block.fill(0);
      multipliers[blk * N + n] = best;
      const shift = n & 1 ? 4 : 0;
      const j = n >> 1;
      for (let k = k0; k < k1; k++) {
        const at = k * half + j;
        codes[at] = (codes[at] & ~(15 << shift)) | ((block[k - k0] + 8) << shift);
      }
    }
  }
  return { N, K, blockSize, nBlocks, codes, multipliers, scales };
}

/**
 * The int8 weights [K, N] the codes and multipliers stand for (c * m), written into `out` (length K * N).
 * One pass over the codes, row by row: the session-start cost of an int4-rows graph.
 */
export function expandInt4Rows(
  q: { N: number; K: number; blockSize: number; codes: Uint8Array; multipliers: Int8Array },
  out: Int8Array = new Int8Array(q.K * q.N),
): Int8Array {
  const { N, K, blockSize } = q;
  const half = Math.ceil(N / 2);
  if (q.codes.length !== K * half)
    throw new QuantError(`expandInt4Rows: ${q.codes.length} code bytes, expected ${K} x ${half}`);
  if (q.multipliers.length !== Math.ceil(K / blockSize) * N)
    throw new QuantError(
      `expandInt4Rows: ${q.multipliers.length} multipliers, expected ${Math.ceil(K / blockSize)} x ${N}`,
    );
  if (out.length !== K * N)
    throw new QuantError(`expandInt4Rows: output holds ${out.length} values, expected ${K} x ${N}`);
  const pairs = N >> 1;
  for (let k = 0; k < K; k++) {
    const m0 = ((k / blockSize) | 0) * N;
    const c0 = k * half;
    const o0 = k * N;
    for (let j = 0; j < pairs; j++) {
      const byte = q.codes[c0 + j];
      const n = 2 * j;
      out[o0 + n] = ((byte & 15) - 8) * q.multipliers[m0 + n];
      out[o0 + n + 1] = ((byte >> 4) - 8) * q.multipliers[m0 + n + 1];
    }
    if (N & 1) out[o0 + N - 1] = ((q.codes[c0 + pairs] & 15) - 8) * q.multipliers[m0 + N - 1];
  }
  return out;
}

/** The HF-layout [N, K] float32 weight an Int4RowsWeight stands for (the quantization report's side). */
export function dequantizeInt4Rows(q: Int4RowsWeight): Float32Array {
  const b = expandInt4Rows(q);
  const out = new Float32Array(q.N * q.K);
  for (let n = 0; n < q.N; n++) for (let k = 0; k < q.K; k++) out[n * q.K + k] = b[k * q.N + n] * q.scales[n];
  return out;
}
