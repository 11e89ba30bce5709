// `trainer import`: HF checkpoint (+ PEFT adapter) -> merged, quantized arenakit weights directory.
import { need, num, parse, UsageError } from '../args';
import { ATTENTION_VARIANTS, type AttentionVariant } from '../../model/lower';
import {
  ACCURACY_LEVELS,
  BLOCK_SIZES,
  CPU_ACCURACY_LEVEL,
  CPU_BLOCK_SIZE,
  GPU_BLOCK_SIZE,
  INT8_LINEARS,
  isBlockSize,
  type AccuracyLevel,
  INT4_LINEARS,
} from '../../quant/nbits';
import { ACTIVATIONS, type Activation } from '../../types';
import { TEMPLATE_NAMES } from '../../format/templates';
import { importCheckpoint } from '../../weights/import';
import { GRAPH_KINDS, isGraphKind, type GraphKind } from '../../weights/manifest';
import { planTarget, TARGET_NAMES, TARGETS } from '../../weights/targets';

const USAGE = `usage: node dist/trainer.cjs import --base HF_DIR [--adapter PEFT_DIR] (--target ${TARGET_NAMES.join('|')} | --quant int4|int8|fp16|fp32) --out DIR
  --base DIR         Hugging Face model folder (config.json + model.safetensors or a sharded index)
  --adapter DIR      PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors), merged in
  --tokenizer DIR    folder with tokenizer.json (+ tokenizer_config.json) when HF_DIR has none
  --target NAME      write what that machine runs and nothing else (--graphs / --attention follow from it;
                     CPU and GPU graphs share one data file, so the quantized weights are stored once):
${TARGET_NAMES.map((t) => `                       ${t.padEnd(5)} ${TARGETS[t].what} (default --quant ${TARGETS[t].quant})`).join('\n')}
  --quant KIND       int4 | int8 | fp16 | fp32 weights (default int8 for a CPU-only import: the fastest CPU graph and
                     ~10x closer to fp32 than int4; required with cuda)
  --int8-kernel K    int8's CPU kernel: int8-rows (MatMulInteger: int8 weights per output feature, int8 activations
                     per token; AMX / VNNI; the default for a CPU-only import, 2.9x nbits on the bench model) or nbits
                     (MatMulNBits per block; the default beside a cuda graph, and implied by the three options below)
  --int4-kernel K    int4's CPU kernel: int4-rows (4-bit codes with integer multipliers per block of 32, expanded
                     exactly into int8-rows weights at session start: the int8 kernel's speed from a 4-bit file,
                     8-bit weights in memory; the default for a CPU-only import) or nbits (MatMulNBits 4-bit per
                     block; the default beside a cuda graph, and implied by the three options below)
  --block-size N     quantization block size for int4/int8: ${BLOCK_SIZES.join(', ')} (default ${CPU_BLOCK_SIZE} for a CPU-only
                     import, ${GPU_BLOCK_SIZE} when a cuda graph is written)
  --accuracy-level N MatMulNBits accuracy_level of the CPU graph: ${ACCURACY_LEVELS.join(', ')} (default ${CPU_ACCURACY_LEVEL} for a CPU-only
                     import: int8 activations, the fast CPU path; 0 when a cuda graph is written, whose self-check
                     reference the CPU graph is: the weights dequantized, exact against the JS reference)
  --asymmetric       int4/int8 with per-block zero points (default: symmetric, no zero points)
  --template NAME    input recipe (README "Templates and recipes"): ${TEMPLATE_NAMES.join(', ')}
                     (default: the one the adapter was trained with (its training.json), else the model family's)
  --truncation RULE  head-tail | right | left (whole-string recipes), part-budget (notebook-parts)
                     (default: the trained one, else the template's own)
  --max-tokens N     token budget N per row recorded in the manifest (default: the trained one, else 2048)
  --graphs LIST      cpu,cuda,cuda-bf16 (default cpu): float32 CPU graph, float16 CUDA graph (every GPU; the T4's),
                     bfloat16 CUDA graph (sm80+: L4, A100, H100); predict picks the GPU graph by compute capability;
                     several graphs share one data file
  --labels LIST      Kaggle column of each output in logit order (default: config.json id2label, which must name
                     winner_model_a / winner_model_b / winner_tie; HF's LABEL_0.. says nothing and is refused)
  --head-activation A  activation between the linears of a multi-layer score.N.* head: ${ACTIVATIONS.join('|')}
  --label-tokens LIST  causal-LM judge: the tokens for A,B[,tie] (strings of the model's tokenizer or ids, e.g. 65,66,67);
                     logits = lm_head (or tied embedding) rows at the last real token (+ Gemma-2's final soft-cap);
                     two tokens A,B make a single score logit(A) - logit(B) (fit its tie model with validate --fit-tie)
  --attention LIST   fused,explicit (default both): GroupQueryAttention graph and/or the standard-op graph, sharing one data file
                     (the runner picks per core and EP: WebGPU and the CUDA 12 core (ORT 1.19.2) need explicit)
  --out DIR          weights directory to write`;

export async function run(argv: string[]): Promise<void> {
  const v = parse(
    argv,
    {
      base: { type: 'string' },
      adapter: { type: 'string' },
      tokenizer: { type: 'string' },
      quant: { type: 'string' },
      'block-size': { type: 'string' },
      'accuracy-level': { type: 'string' },
      'int8-kernel': { type: 'string' },
      'int4-kernel': { type: 'string' },
      asymmetric: { type: 'boolean' },
      'max-tokens': { type: 'string' },
      template: { type: 'string' },
      truncation: { type: 'string' },
      graphs: { type: 'string' },
      labels: { type: 'string' },
      'head-activation': { type: 'string' },
      'label-tokens': { type: 'string' },
      attention: { type: 'string' },
      target: { type: 'string' },
      out: { type: 'string' },
    },
    USAGE,
  );
  const target = typeof v.target === 'string' ? v.target : undefined;
  if (target && (v.graphs !== undefined || v.attention !== undefined))
    throw new UsageError(
      `--target ${target} chooses the graphs and attention variants; drop --graphs / --attention (or drop --target)`,
    );
  if (v.quant !== undefined && !['int4', 'int8', 'fp16', 'fp32'].includes(String(v.quant)))
    throw new UsageError(`--quant must be int4, int8, fp16 or fp32, got "${v.quant}"\n\n${USAGE}`);
  let plan: ReturnType<typeof planTarget> | undefined;
  try {
    plan = target ? planTarget(target, v.quant as 'int4' | 'int8' | 'fp16' | 'fp32' | undefined) : undefined;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const cpuOnly = String(v.graphs ?? 'cpu')
    .split(',')
    .every((g) => g.trim() === 'cpu' || !g.trim());
  // A CPU-only import defaults to int8 (as fast as int4 at accuracy_level 4 / block 128, ~10x closer to fp32).
  const quant = plan?.quantKind ?? (v.quant === undefined && cpuOnly ? 'int8' : need(v.quant, '--quant', USAGE));
  const blockSize = v['block-size'] === undefined ? undefined : num(v['block-size'], '--block-size', 0);
  if (blockSize !== undefined && !isBlockSize(blockSize))
    throw new UsageError(`--block-size must be one of ${BLOCK_SIZES.join(', ')}, got ${blockSize}`);
  if (
    (v['block-size'] !== undefined || v.asymmetric || v['accuracy-level'] !== undefined) &&
    quant !== 'int4' &&
    quant !== 'int8'
  )
    throw new UsageError(`--block-size, --asymmetric and --accuracy-level only apply to --quant int4 or int8`);
  const accuracyLevel = v['accuracy-level'] === undefined ? undefined : num(v['accuracy-level'], '--accuracy-level', 0);
  if (accuracyLevel !== undefined && !(ACCURACY_LEVELS as readonly number[]).includes(accuracyLevel))
    throw new UsageError(`--accuracy-level must be one of ${ACCURACY_LEVELS.join(', ')}, got ${accuracyLevel}`);
  /** --int8-kernel / --int4-kernel: one of its kernels, for its --quant only; the rows kernel takes no MatMulNBits setting. */
  const kernel = <K extends string>(bits: 8 | 4, kernels: readonly K[]): K | undefined => {
    const flag = `--int${bits}-kernel`;
    const k = v[flag.slice(2)] as string | undefined;
    if (k === undefined) return undefined;
    if (!(kernels as readonly string[]).includes(k))
      throw new UsageError(`${flag} must be one of ${kernels.join(', ')}, got "${k}"`);
    if (quant !== `int${bits}`) throw new UsageError(`${flag} only applies to --quant int${bits}`);
    if (k !== 'nbits' && (v['block-size'] !== undefined || v.asymmetric || v['accuracy-level'] !== undefined))
      throw new UsageError(
        `--block-size, --asymmetric and --accuracy-level are MatMulNBits settings: not with ${flag} ${k}`,
      );
    return k as K;
  };
  const int8Linear = kernel(8, INT8_LINEARS);
  const int4Linear = kernel(4, INT4_LINEARS);
  const maxTokens = v['max-tokens'] === undefined ? undefined : num(v['max-tokens'], '--max-tokens', 0);
  if (maxTokens !== undefined && (!Number.isInteger(maxTokens) || maxTokens < 16))
    throw new UsageError(`--max-tokens must be an integer >= 16, got ${maxTokens}`);
  const graphs = (plan ? plan.graphs.join(',') : String(v.graphs ?? 'cpu'))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const g of graphs)
    if (!isGraphKind(g))
      throw new UsageError(`--graphs takes ${Object.keys(GRAPH_KINDS).join(', ')} (comma-separated), got "${g}"`);
  if (!graphs.length) throw new UsageError('--graphs is empty');
  const labels = typeof v.labels === 'string' ? v.labels.split(',').map((s) => s.trim()) : undefined;
  const headActivation = v['head-activation'] as string | undefined;
  if (headActivation !== undefined && !(ACTIVATIONS as readonly string[]).includes(headActivation))
    throw new UsageError(`--head-activation must be one of ${ACTIVATIONS.join(', ')}, got "${headActivation}"`);
  const labelTokens = typeof v['label-tokens'] === 'string' ? v['label-tokens'].split(',') : undefined;
  const attention = String(v.attention ?? 'fused,explicit')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const a of attention)
    if (!(ATTENTION_VARIANTS as string[]).includes(a))
      throw new UsageError(`--attention takes ${ATTENTION_VARIANTS.join(' and/or ')}, got "${a}"`);

  const tty = process.stderr.isTTY;
  const r = await importCheckpoint({
    base: need(v.base, '--base', USAGE),
    adapter: v.adapter as string | undefined,
    tokenizer: v.tokenizer as string | undefined,
    quant: quant as 'int4' | 'int8' | 'fp16' | 'fp32',
    blockSize,
    accuracyLevel: accuracyLevel as AccuracyLevel | undefined,
    int8Linear,
    int4Linear,
    symmetric: !v.asymmetric,
    graphs: [...new Set(graphs)] as GraphKind[],
    template: typeof v.template === 'string' ? v.template : undefined,
    truncation: typeof v.truncation === 'string' ? v.truncation : undefined,
    maxTokens,
    out: need(v.out, '--out', USAGE),
    labels,
    headActivation: headActivation as Activation | undefined,
    labelTokens,
    attention: [...new Set(attention)] as AttentionVariant[],
    attentionByGraph: plan?.attention,
    command: ['node', 'dist/trainer.cjs', 'import', ...argv]
      .map((a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a))
      .join(' '),
    log: (line) =>
      process.stderr.write(tty && line.startsWith('import: ') ? `\r${line.slice(0, 160).padEnd(160)}` : `${line}\n`),
  });
  if (tty) process.stderr.write('\n');
  process.stderr.write(
    `import: wrote ${r.out} (${r.config.architecture}, ${quant}, ${(r.sourceBytes / 1e6).toFixed(1)} MB source in ${r.seconds.toFixed(1)} s, ` +
      `${(r.sourceBytes / 1e6 / r.seconds).toFixed(0)} MB/s)\n`,
  );
}
