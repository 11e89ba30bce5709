// Block-wise round-to-nearest quantization in ORT MatMulNBits layout (see shared docs/model.md):
// B uint8 [N, n_blocks, block_size * bits / 8] (the transposed [K, N] weight packed along K, element
// 2i in the low nibble for 4-bit), scales [N, n_blocks], zero points packed [N, ceil(n_blocks / 2)]
// (4-bit) or [N, n_blocks] (8-bit). Symmetric = no zero-point input (ORT's default 8 / 128).
// Also the JS dequantize reference the tests check MatMulNBits against, and reconstruction errors.
import { roundTo } from '../util/fp16';

/** The block sizes (weights per scale, along K) an import may choose: ORT's MatMulNBits takes powers of two >= 16; larger blocks lose accuracy for no speed. */
export const BLOCK_SIZES = [16, 32, 64, 128] as const;
export type BlockSize = (typeof BLOCK_SIZES)[number];
/** The block size of weights a GPU graph reads (the CUDA kernels' and the fp16 graph's; also a CPU graph written beside one). */
export const GPU_BLOCK_SIZE: BlockSize = 32;
/** The block size of a CPU-only import: 1.3x faster than 32 with int8 activations (BENCHMARKS.md, issue 21). */
export const CPU_BLOCK_SIZE: BlockSize = 128;
/**
 * MatMulNBits accuracy_level of a CPU-only import's graph: 4 = the activations quantized to int8 per block and
 * int8 dot products (VNNI / AMX), against 0 = the weights dequantized to fp32 on every call for SGEMM (int8
 * weights) or fp32 accumulation. Measured in BENCHMARKS.md ("CPU prefill"); its logit cost is printed by
 * tests/cpu-defaults.test.ts. GPU graphs leave it unset (the CUDA kernels do not read it).
 */
export const CPU_ACCURACY_LEVEL = 4;

/**
 * The one rule for the quantization defaults of an import's CPU graph, from the graphs it writes. CPU only:
 * block 128, accuracy_level 4 (the fast CPU path). Beside a CUDA graph (fp16 or bf16): block 32 (the GPU kernels' block, and the
 * bytes both graphs share) and accuracy_level 0, because that CPU graph is the reference the GPU self-check
 * compares the fp16 graph with (src/infer/selfcheck.ts, tolerance 5e-2): int8 activations alone move the tiny
 * fixture's logits by 0.095 there. A separate self-check reference graph would let it take level 4 too.
 */
export function cpuGraphDefaults(graphs: readonly string[]): {
  blockSize: BlockSize;
  accuracyLevel: AccuracyLevel;
  int8Linear: Int8Linear;
  int4Linear: Int4Linear;
} {
  return graphs.some((g) => g !== 'cpu')
    ? { blockSize: GPU_BLOCK_SIZE, accuracyLevel: 0, int8Linear: 'nbits', int4Linear: 'nbits' }
    : {
        blockSize: CPU_BLOCK_SIZE,
        accuracyLevel: CPU_ACCURACY_LEVEL,
        int8Linear: 'int8-rows',
        int4Linear: 'int4-rows',
      };
}

/**
 * The int8 CPU graph's kernel: 'nbits' = MatMulNBits (per-block weights; at accuracy_level 4 int8 activations per
 * block), 'int8-rows' = MatMulInteger over int8 weights per output feature and int8 activations per token (ORT's
 * MLAS u8 x s8 GEMM, which uses AMX where the CPU has it: 2.9x MatMulNBits on the bench model; BENCHMARKS.md).
 * A CPU-only int8 import takes int8-rows; a CPU graph beside a GPU graph stays MatMulNBits (it shares the GPU
 * graph's bytes and is the self-check's exact reference).
 */
export const INT8_LINEARS = ['nbits', 'int8-rows'] as const;
export type Int8Linear = (typeof INT8_LINEARS)[number];

/**
 * The int4 CPU graph's kernel: 'nbits' = MatMulNBits (4-bit per block), 'int4-rows' = 4-bit codes with integer
 * block multipliers of a per-feature scale, expanded exactly into int8-rows weights at session start
 * (src/quant/int4-rows.ts): the int8-rows kernel's speed from a 4-bit file, with 8-bit weights in memory.
 * A CPU-only int4 import takes int4-rows; a CPU graph beside a GPU graph stays MatMulNBits.
 */
export const INT4_LINEARS = ['nbits', 'int4-rows'] as const;
export type Int4Linear = (typeof INT4_LINEARS)[number];

/** The accuracy levels ORT's MatMulNBits accepts (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8). */
export const ACCURACY_LEVELS = [0, 1, 2, 3, 4] as const;
export type AccuracyLevel = (typeof ACCURACY_LEVELS)[number];

export interface NBitsSpec {
  bits: 4 | 8;
  blockSize: number;
  symmetric: boolean;
}

export interface NBitsWeight extends NBitsSpec {
  /** Output features (rows of the HF [out, in] weight). */
  N: number;
  /** Input features. */
  K: number;
  nBlocks: number;
  b: Uint8Array;
  /** [N, nBlocks] float32 (cast to the activation dtype when written). */
  scales: Float32Array;
  /** Packed zero points, null when symmetric. */
  zeroPoints: Uint8Array | null;
}

export class QuantError extends Error {
  override name = 'QuantError';
}

/** The one block-size rule (import options, the CLI, the writer and the quantizer all ask it). */
export function isBlockSize(bs: number): bs is BlockSize {
  return (BLOCK_SIZES as readonly number[]).includes(bs);
}

function checkSpec(spec: NBitsSpec, where: string): void {
  if (spec.bits !== 4 && spec.bits !== 8) throw new QuantError(`${where}: bits must be 4 or 8, got ${spec.bits}`);
  if (!isBlockSize(spec.blockSize))
    throw new QuantError(`${where}: block size must be one of ${BLOCK_SIZES.join(', ')}, got ${spec.blockSize}`);
}

/** Scales are rounded to fp16 before the codes are chosen, in every graph: the fp16 (CUDA) graph stores
 * them as halves, and the fp32 (CPU) graph of the same import then holds exactly the same weights, so
 * the two differ only by activation precision (and the CPU graph is an exact reference for the GPU one). */
const roundScale = (s: number) => roundTo(s, 'float16');

/** Quantizes a row-major HF weight W [N, K] (y = x W^T). */
export function quantizeNBits(w: Float32Array, N: number, K: number, spec: NBitsSpec): NBitsWeight {
  checkSpec(spec, 'quantizeNBits');
  if (w.length !== N * K)
    throw new QuantError(`quantizeNBits: weight has ${w.length} values, expected N*K = ${N}*${K}`);
  const { bits, blockSize: bs, symmetric } = spec;
  const nBlocks = Math.ceil(K / bs);
  const blobBytes = (bs * bits) / 8;
  const levels = (1 << bits) - 1;
  const mid = 1 << (bits - 1);
  const b = new Uint8Array(N * nBlocks * blobBytes);
  const scales = new Float32Array(N * nBlocks);
  const zpRow = bits === 4 ? Math.ceil(nBlocks / 2) : nBlocks;
  const zeroPoints = symmetric ? null : new Uint8Array(N * zpRow);
  const codes = new Uint8Array(bs);
  for (let n = 0; n < N; n++) {
    for (let blk = 0; blk < nBlocks; blk++) {
      const k0 = blk * bs;
      const k1 = Math.min(K, k0 + bs);
      let scale: number;
      let zp: number;
      if (symmetric) {
        // The value with the largest magnitude maps exactly to -mid (ORT's convention: range [-mid, mid-1]).
        let vmax = 0;
        for (let k = k0; k < k1; k++) if (Math.abs(w[n * K + k]) > Math.abs(vmax)) vmax = w[n * K + k];
        scale = roundScale(vmax / -mid);
        zp = mid;
      } else {
        let lo = 0;
        let hi = 0;
        for (let k = k0; k < k1; k++) {
          const v = w[n * K + k];
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        scale = roundScale((hi - lo) / levels);
        zp = scale === 0 ? 0 : Math.min(levels, Math.max(0, Math.round(-lo / scale)));
      }
      const inv = scale === 0 ? 0 : 1 / scale;
      codes.fill(zp);
      for (let k = k0; k < k1; k++) codes[k - k0] = Math.min(levels, Math.max(0, Math.round(w[n * K + k] * inv) + zp));
      scales[n * nBlocks + blk] = scale;
      const off = (n * nBlocks + blk) * blobBytes;
      if (bits === 8) b.set(codes, off);
      else for (let i = 0; i < bs / 2; i++) b[off + i] = codes[2 * i] | (codes[2 * i + 1] << 4);
      if (zeroPoints) {
        if (bits === 8) zeroPoints[n * zpRow + blk] = zp;
        else zeroPoints[n * zpRow + (blk >> 1)] |= blk & 1 ? zp << 4 : zp;
      }
    }
  }
  return { bits, blockSize: bs, symmetric, N, K, nBlocks, b, scales, zeroPoints };
}

/** JS reference: the HF-layout [N, K] float weight MatMulNBits computes with. */
export function dequantizeNBits(q: NBitsWeight): Float32Array {
  const { N, K, nBlocks, bits, blockSize: bs } = q;
  const out = new Float32Array(N * K);
  const blobBytes = (bs * bits) / 8;
  const zpRow = bits === 4 ? Math.ceil(nBlocks / 2) : nBlocks;
  const mid = 1 << (bits - 1);
  for (let n = 0; n < N; n++)
    for (let blk = 0; blk < nBlocks; blk++) {
      const scale = q.scales[n * nBlocks + blk];
      let zp = mid;
      if (q.zeroPoints) {
        const z = bits === 8 ? q.zeroPoints[n * zpRow + blk] : q.zeroPoints[n * zpRow + (blk >> 1)];
        zp = bits === 8 ? z : blk & 1 ? z >> 4 : z & 15;
      }
      const off = (n * nBlocks + blk) * blobBytes;
      for (let i = 0; i < bs; i++) {
        const k = blk * bs + i;
        if (k >= K) break;
        const c = bits === 8 ? q.b[off + i] : i & 1 ? q.b[off + (i >> 1)] >> 4 : q.b[off + (i >> 1)] & 15;
        out[n * K + k] = Math.fround((c - zp) * scale);
      }
    }
  return out;
}

export interface ReconstructionError {
  name: string;
  maxAbs: number;
  rmse: number;
  /** rmse / rms(weight). */
  relRmse: number;
}

export function reconstructionError(name: string, w: Float32Array, wq: Float32Array): ReconstructionError {
  let max = 0;
  let se = 0;
  let ss = 0;
  for (let i = 0; i < w.length; i++) {
    const d = Math.abs(w[i] - wq[i]);
    if (d > max) max = d;
    se += d * d;
    ss += w[i] * w[i];
  }
  const rmse = Math.sqrt(se / Math.max(1, w.length));
  return { name, maxAbs: max, rmse, relRmse: ss > 0 ? rmse / Math.sqrt(ss / w.length) : 0 };
}

export function formatErrorReport(rows: ReconstructionError[]): string {
  return rows
    .map(
      (r) =>
        `${r.name.padEnd(48)} maxAbs ${r.maxAbs.toExponential(3)}  rmse ${r.rmse.toExponential(3)}  rel ${(100 * r.relRmse).toFixed(2)}%`,
    )
    .join('\n');
}

/** int8 weights with one scale per output feature (the per-token int8 MatMulInteger CPU graph, `int8-rows`). */
export interface Int8ColumnsWeight {
  N: number;
  K: number;
  /** [K, N] int8, transposed for MatMulInteger (x [.., K] @ w [K, N]). */
  b: Int8Array;
  /** [N] float32: max |w[n, :]| / 127. */
  scales: Float32Array;
}

/** Symmetric int8 per output feature of an HF [N, K] weight (Math.round, as quantizeNBits). */
export function quantizeInt8Columns(w: Float32Array, N: number, K: number): Int8ColumnsWeight {
  if (w.length !== N * K)
    throw new QuantError(`quantizeInt8Columns: weight has ${w.length} values, expected ${N} x ${K}`);
  const b = new Int8Array(K * N);
  const scales = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    let mx = 0;
    for (let k = 0; k < K; k++) mx = Math.max(mx, Math.abs(w[n * K + k]));
    const s = mx / 127 || 1;
    scales[n] = s;
    for (let k = 0; k < K; k++) b[k * N + n] = Math.max(-127, Math.min(127, Math.round(w[n * K + k] / s)));
  }
  return { N, K, b, scales };
}

/** The [N, K] float32 weight an Int8ColumnsWeight stands for. */
export function dequantizeInt8Columns(q: Int8ColumnsWeight): Float32Array {
  const out = new Float32Array(q.N * q.K);
  for (let n = 0; n < q.N; n++) for (let k = 0; k < q.K; k++) out[n * q.K + k] = q.b[k * q.N + n] * q.scales[n];
  return out;
}
