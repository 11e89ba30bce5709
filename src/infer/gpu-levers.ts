// GPU-side speed levers that need no GPU to build (issue 21), pure: which MatMulNBits nodes ONNX Runtime's CUDA
// fpA_intB GEMM takes and the session config that turns it on, and the token budget per batch sized from the
// GPU's memory and the model's activation size (DESIGN.md "GPU levers" has the formula and what was measured).
import type { ModelConfig } from '../types';
import type { RuntimeName } from './runtime';

/** A MatMulNBits node as the fpA_intB eligibility rule reads it. */
export interface NBitsNode {
  N: number;
  K: number;
  bits: number;
  blockSize: number;
  /** Activation dtype of input A. */
  activations: 'float32' | 'float16' | 'bfloat16';
}

/**
 * ORT 1.29's CUDA MatMulNBits takes the CUTLASS fpA_intB GEMM (+ GEMV for one-row calls) for a node when the
 * option is on and: A is fp16 / bf16, 4 or 8 bits, N % 64 == 0 (4-bit) or N % 32 == 0 (8-bit), K % block_size
 * == 0, no g_idx, compute capability >= 7.5 (checked by ORT at session start). Block 32 runs on the SM80-class
 * kernel (the SM90 Hopper layout needs 64 / 128). Zero points are optional; the kit writes none (symmetric).
 * Read from the provider library's own messages and onnxruntime's matmul_nbits.h.
 */
export function fpaIntbEligible(n: NBitsNode): boolean {
  return (
    (n.activations === 'float16' || n.activations === 'bfloat16') &&
    (n.bits === 4 || n.bits === 8) &&
    [32, 64, 128].includes(n.blockSize) &&
    n.N % (n.bits === 8 ? 32 : 64) === 0 &&
    n.K % n.blockSize === 0
  );
}

/** Cores whose CUDA provider library holds the fpA_intB kernels (strings of libonnxruntime_providers_cuda.so). */
export const FPA_INTB_CORES: readonly RuntimeName[] = ['cu13'];

/**
 * Session config entries (onnxruntime-node `extra`) for a CUDA session: `ep.cuda.fpa_intb_gemm` (the session form
 * of ORT_FPA_INTB_GEMM) when the core has the kernels and ARENAKIT_FPA_INTB=1 asks for it. Off by default until a
 * GPU measures it (the Kaggle issue's GPU script): ORT profiles every eligible node's GEMM at session start.
 */
export function fpaIntbConfig(runtime: RuntimeName, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return env.ARENAKIT_FPA_INTB === '1' && FPA_INTB_CORES.includes(runtime) ? { 'ep.cuda.fpa_intb_gemm': '1' } : {};
}

/**
 * Bytes of activations alive per token at the peak of one layer (the MLP), by the activation dtype's size `a`:
 * the fp32 residual stream, its norm and the skip-norm output (3 x H x 4), gate, up and their product (3 x I x a),
 * and the projected q, k, v ((nH + 2 nKV) x D x a). The explicit attention variant adds its fp32 scores and
 * probabilities per token: 2 x nH x S x 4 for rows of S tokens.
 */
export function activationBytesPerToken(c: ModelConfig, a: 2 | 4, explicitSeqLen = 0): number {
  const H = c.hiddenSize;
  const qkv = (c.numHeads + 2 * c.numKvHeads) * c.headDim;
  return 3 * H * 4 + 3 * c.intermediateSize * a + qkv * a + 2 * c.numHeads * explicitSeqLen * 4;
}

/**
 * Token budget per batch (rows x padded length) from the GPU's memory: (memory - weights - reserve) / per-token
 * activation bytes x the safety factor, reserve = 1 GiB + 10 % of memory (CUDA context, cuDNN / cuBLAS
 * workspaces, the allocator's arena growth). Rounded down to a multiple of 256 tokens, at least `maxTokens`
 * (one row must always fit: a larger row still runs alone), at most 262,144.
 */
export function memoryTokenBudget(o: {
  memoryBytes: number;
  weightBytes: number;
  perTokenBytes: number;
  maxTokens: number;
  safety?: number;
}): number {
  const reserve = 2 ** 30 + 0.1 * o.memoryBytes;
  const usable = Math.max(0, o.memoryBytes - o.weightBytes - reserve) * (o.safety ?? 0.5);
  const t = Math.floor(usable / o.perTokenBytes / 256) * 256;
  return Math.min(262144, Math.max(o.maxTokens, t));
}

/** "Tesla T4, 15360 MiB" (nvidia-smi --query-gpu=name,memory.total) -> bytes, or null. */
export function gpuMemoryBytes(line: string): number | null {
  const m = /,\s*([0-9]+)\s*MiB\s*$/.exec(line);
  return m ? Number(m[1]) * 2 ** 20 : null;
}
