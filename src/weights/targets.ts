// `import --target`: what a machine runs, as data. Each target names the graphs the runner opens
// there and nothing else: the GPU graph with the attention variants the cores need (ORT 1.29 runs the
// fused GroupQueryAttention, the CUDA-12 core ORT 1.19.2 only the explicit one: src/infer/runtime.ts
// RUNTIMES), and the fp32 CPU graph the self-check compares against and the CPU fallback runs, with
// the variant every core loads on the CPU EP (explicit). When both graphs are written they share one
// data file (src/weights/write.ts), so the quantized weights are stored once; the CPU graph beside a
// GPU graph therefore keeps the GPU's quantization layout (one --block-size for both). Pure.
import type { AttentionVariant } from '../model/ort-attention';
import type { GraphKind, Quantization } from './manifest';

export interface TargetPlan {
  /** What the target is, for --help and the import log. */
  what: string;
  graphs: GraphKind[];
  attention: Partial<Record<GraphKind, AttentionVariant[]>>;
  /** --quant when not given. */
  quant: Quantization['kind'];
  /** Quantizations the target runs well (others are refused: e.g. fp32 weights on a 16 GB T4). */
  quants: Quantization['kind'][];
}

const GPU = (what: string, gpu: 'cuda' | 'cuda-bf16'): TargetPlan => ({
  what,
  graphs: [gpu, 'cpu'],
  attention: { [gpu]: ['fused', 'explicit'], cpu: ['explicit'] },
  quant: 'int4',
  quants: ['int4', 'int8', 'fp16'],
});

export const TARGETS = {
  t4: GPU(
    'NVIDIA T4 (Kaggle 2 x T4, sm75): fp16 GPU graph (fused + explicit attention) + fp32 CPU reference (explicit)',
    'cuda',
  ),
  l4: GPU('NVIDIA L4 (sm89): bf16 GPU graph (fused + explicit attention) + fp32 CPU reference (explicit)', 'cuda-bf16'),
  a100: GPU(
    'NVIDIA A100 / H100 (sm80 / sm90): bf16 GPU graph (fused + explicit attention) + fp32 CPU reference (explicit)',
    'cuda-bf16',
  ),
  cpu: {
    what: 'CPU only (Kaggle CPU notebooks): fp32 CPU graph, fused attention, block 128, int8 activations',
    graphs: ['cpu'],
    attention: { cpu: ['fused'] },
    quant: 'int8', // as fast as int4 on the CPU at accuracy_level 4 / block 128, ~10x closer to fp32 (issue 21)
    quants: ['int4', 'int8', 'fp16', 'fp32'],
  },
} satisfies Record<string, TargetPlan>;

export type TargetName = keyof typeof TARGETS;
export const TARGET_NAMES = Object.keys(TARGETS) as TargetName[];

export class TargetError extends Error {
  override name = 'TargetError';
}

/**
 * The graphs, variants and quantization of `target`, with `quant` (the command line's, when given)
 * checked against what the target runs. --graphs / --attention do not mix with --target.
 */
export function planTarget(
  target: string,
  quant?: Quantization['kind'],
): TargetPlan & { target: TargetName; quantKind: Quantization['kind'] } {
  if (!(TARGET_NAMES as string[]).includes(target))
    throw new TargetError(`--target must be one of ${TARGET_NAMES.join(', ')}, got "${target}"`);
  const plan: TargetPlan = TARGETS[target as TargetName];
  const q = quant ?? plan.quant;
  if (!plan.quants.includes(q))
    throw new TargetError(`--target ${target} runs --quant ${plan.quants.join(', ')}; ${q} is not one of them`);
  return { ...plan, target: target as TargetName, quantKind: q };
}
