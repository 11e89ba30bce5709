// Plain-data contracts shared between stages. Stages are functions over these types; file and process
// I/O stays in the CLI commands, the readers and writers (src/data/, post/io.ts, weights/) and the
// inference edge (infer/model.ts opens weights directories, infer/logits-cache.ts, infer/shards.ts workers).
import type { RowLabel } from './task/labels';

/** One competition row after reading (src/data/rows.ts). Text fields are the decoded JSON list items, one per turn. */
export interface ArenaRow {
  id: string;
  /** 1-based line number of the row in its CSV (header = line 1), for error messages. */
  line: number;
  prompt: string[];
  responseA: string[];
  responseB: string[];
  /** The outcome index (src/task/labels.ts OUTCOMES: 0 = A, 1 = B, 2 = tie); undefined for test files. */
  label?: RowLabel;
  /** The file's `language` cell (WSDM Cup files), when it has that column. */
  language?: string;
}

export interface ReadRowsResult {
  rows: ArenaRow[];
  /** Human-readable warnings (counts of non-JSON cells, replaced surrogates, null items ...). */
  warnings: string[];
  hasLabels: boolean;
}

/**
 * Activation functions a model's MLP or a scoring head may use (HF names: gelu_pytorch_tanh, gelu, relu, silu, tanh).
 * One list for every `--head-activation` flag: both lowerings (inference and training) implement each.
 */
export const ACTIVATIONS = ['gelu_tanh', 'gelu', 'relu', 'silu', 'tanh'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

/** Rotary embedding: rotate-half form with HF's inv_freq = 1 / theta^(2i/d), optionally rescaled (Llama-3.x). */
export interface RopeSpec {
  theta: number;
  scaling: null | {
    type: 'llama3';
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositions: number;
  };
}

/**
 * What turns the final hidden state of the last real token into the output logits.
 * - classifier: `score.weight` [+ bias], or a stack `score.N.*` of linears with `activation` between them.
 * - label-tokens (causal-LM judge): the rows `tokenIds` of lm_head (or of the tied embedding), then
 *   the final logit soft-cap when the family has one; two tokens (A, B) give one score logit(A) - logit(B).
 */
export type HeadSpec =
  | {
      kind: 'classifier';
      layers: { weight: string; bias: string | null; inFeatures: number; outFeatures: number }[];
      activation: Activation | null;
    }
  | { kind: 'label-tokens'; tokenIds: number[]; weight: string; finalSoftcap: number | null };

/**
 * The decoder spec: everything the one graph builder (src/model/decoder.ts) needs, parsed from HF
 * config.json by the family's parser (src/weights/hfconfig.ts) or made by the tiny-model generator.
 * Plain data, recorded in the manifest.
 */
export interface ModelConfig {
  /** Key into the family table (src/model/families.ts): gemma, gemma2, llama, qwen2, mistral. */
  family: string;
  /** HF architecture of the checkpoint, e.g. 'Gemma2ForSequenceClassification', 'LlamaForCausalLM'. */
  architecture: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  /** RMSNorm scales by (1 + w) (Gemma) instead of w. */
  normPlusOne: boolean;
  /** Multiply the embedding rows by sqrt(hidden_size) (Gemma), rounded to `embedScaleDtype`. */
  embedScale: boolean;
  /** MLP activation: down(act(gate(x)) * up(x)). */
  activation: Activation;
  /** q_proj / k_proj / v_proj carry biases (Qwen2). */
  qkvBias: boolean;
  /** Attention score scale: query_pre_attn_scalar ** -0.5 (Gemma-2) or head_dim ** -0.5. */
  attnScale: number;
  /** attn_logit_softcapping (Gemma-2: 50); null = none. */
  attnSoftcap: number | null;
  /** Sliding-window size (a query sees exactly this many keys, itself included); null = none. */
  slidingWindow: number | null;
  /** Which layers slide: 'even' indices (Gemma-2, HF convention) or 'all' (Mistral). */
  slidingLayers: 'even' | 'all';
  rope: RopeSpec;
  /** Number of outputs of the head. */
  numLabels: number;
  head: HeadSpec;
  padTokenId: number;
  maxPositions: number;
}

/** A float32 host tensor (row-major). */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/**
 * Weights by Hugging Face name (model.embed_tokens.weight, model.layers.{i}.self_attn.q_proj.weight,
 * model.layers.{i}.input_layernorm.weight, ..., model.norm.weight, score.weight). Linear weights are
 * in HF's [out, in] layout. Fetched one at a time so a 9B import never holds the whole model.
 */
export type WeightSource = ((hfName: string) => HostTensor) & {
  /**
   * Optional: rows [start, start + count) of a tensor along its first axis, as float32 of shape
   * [count, ...rest], without materialising the rest. Lets the 256000-row embedding be converted in
   * chunks (a 9B table is 3.7 GB as float32). Sources without it are read whole.
   */
  rows?: (hfName: string, start: number, count: number) => HostTensor;
  /** Optional: a tensor's shape without reading it (needed with `rows` to know the row count). */
  shape?: (hfName: string) => number[];
};

export type LinearFormat =
  | { kind: 'float' }
  | { kind: 'nbits'; bits: 4 | 8; blockSize: 16 | 32 | 64 | 128; symmetric: boolean }
  /** int8 weights per output feature x int8 activations per token (MatMulInteger; the CPU-only int8 import). */
  | { kind: 'int8-rows' }
  /** 4-bit codes x integer block multipliers, expanded exactly to int8-rows weights at load (src/quant/int4-rows.ts). */
  | { kind: 'int4-rows'; blockSize: number };

export interface GraphOptions {
  linear: LinearFormat;
  /** 'float32' = CPU graph; 'float16' / 'bfloat16' = CUDA graph (fp16 / bf16 activations, norms + residual in fp32; bf16 from sm80, src/infer/gpu-precision.ts). */
  activations: 'float32' | 'float16' | 'bfloat16';
}
