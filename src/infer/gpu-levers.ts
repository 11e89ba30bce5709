// GPU-side speed levers that need no GPU to build (issue 21), pure: which MatMulNBits nodes ONNX Runtime's CUDA
// fpA_intB GEMM takes and the session config that turns it on, and the token budget per batch sized from the
// GPU's memory and the model's activation size (DESIGN.md "GPU levers" has the formula and what was measured).
import type { onnx } from 'onnx-proto';
import type { ModelConfig } from '../types';
import type { RuntimeName } from './runtime';
import { querySmi } from './gpu-precision';

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

/** The budget a run takes when no GPU memory figure applies (CPU, WebGPU, an unknown GPU): the old default. */
export const DEFAULT_TOKEN_BUDGET = 16384;

/** `--token-budget N|auto` as given: a positive number, or 'auto' (the default). */
export type TokenBudgetOption = number | 'auto';

/** Free memory per GPU from `nvidia-smi --query-gpu=memory.free --format=csv,noheader` ("15101 MiB" per line). */
export function parseFreeMemory(text: string): number[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      const m = /^([0-9]+)\s*MiB$/.exec(l);
      if (!m) throw new RangeError(`nvidia-smi memory.free printed "${l}", expected a figure in MiB such as 15101 MiB`);
      return Number(m[1]) * 2 ** 20;
    });
}

/**
 * The smallest free memory among the GPUs a run uses (`devices`: their indices; every GPU when empty), from
 * nvidia-smi (ARENAKIT_NVIDIA_SMI as elsewhere); undefined with a note when it cannot tell. Never throws.
 */
export function readGpuFreeMemory(
  devices: number[],
  env: NodeJS.ProcessEnv = process.env,
): { bytes?: number; note?: string } {
  const r = querySmi('memory.free', env);
  if ('note' in r) return { note: r.note };
  try {
    const free = parseFreeMemory(r.stdout);
    const used = devices.length ? devices.map((d) => free[d]).filter((b) => b !== undefined) : free;
    if (!used.length)
      return { note: `${env.ARENAKIT_NVIDIA_SMI || 'nvidia-smi'} listed no memory for GPU ${devices.join(', ')}` };
    return { bytes: Math.min(...used) };
  } catch (e) {
    return { note: (e as Error).message };
  }
}

/** Bytes of the weights a graph holds: its initializers' external-data lengths plus inline raw data (pure). */
export function graphWeightBytes(model: onnx.IModelProto): number {
  let total = 0;
  for (const t of model.graph?.initializer ?? []) {
    const len = t.externalData?.find((e) => e.key === 'length')?.value;
    total += len !== undefined && len !== null ? Number(len) : (t.rawData?.length ?? 0);
  }
  return total;
}

/**
 * The token budget a model's passes take. A number given is kept. 'auto': on the CUDA EP with the GPU's free
 * memory known, `memoryTokenBudget` from that memory, the graph's weight bytes and its per-token activation
 * bytes (2-byte activations for fp16 / bf16 graphs; the explicit variant's scores at the longest row); anywhere
 * else DEFAULT_TOKEN_BUDGET (the CPU EP batches rows of one length, where the budget only caps the rows).
 */
export function chooseTokenBudget(o: {
  requested: TokenBudgetOption;
  ep: string;
  gpuFreeBytes?: number;
  weightBytes: number;
  config?: ModelConfig;
  activations: 'float32' | 'float16' | 'bfloat16';
  variant: 'fused' | 'explicit';
  maxTokens: number;
}): { budget: number; reason: string } {
  if (o.requested !== 'auto') return { budget: o.requested, reason: '--token-budget' };
  if (o.ep !== 'cuda') return { budget: DEFAULT_TOKEN_BUDGET, reason: `default for the ${o.ep} EP` };
  if (o.gpuFreeBytes === undefined || !o.config)
    return {
      budget: DEFAULT_TOKEN_BUDGET,
      reason: o.config ? 'default: the GPU memory is unknown' : 'default: the manifest has no model config',
    };
  const perTokenBytes = activationBytesPerToken(
    o.config,
    o.activations === 'float32' ? 4 : 2,
    o.variant === 'explicit' ? o.maxTokens : 0,
  );
  const budget = memoryTokenBudget({
    memoryBytes: o.gpuFreeBytes,
    weightBytes: o.weightBytes,
    perTokenBytes,
    maxTokens: o.maxTokens,
  });
  const gib = (b: number) => (b / 2 ** 30).toFixed(1);
  return {
    budget,
    reason: `from ${gib(o.gpuFreeBytes)} GiB free GPU memory, ${gib(o.weightBytes)} GiB of weights, ${Math.round(perTokenBytes / 1024)} KiB of activations per token`,
  };
}
