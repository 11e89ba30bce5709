// Seeded random tiny Gemma-2 classifier (CI, demo): the real Gemma-2 vocabulary (256,000) with a
// 64-wide model, 4 layers and a 32-token sliding window, so every code path of a real model runs in
// milliseconds. Weights are fp16-representable (stored fp16 without loss) and the score head is small,
// so predictions are near-uniform but depend on the input.
import { roundTo } from '../util/fp16';
import type { HostTensor, ModelConfig, WeightSource } from '../types';
import { forName } from '../util/rng';
import { labelKeys } from './heads';

export function tinyConfig(opts: { vocabSize?: number; slidingWindow?: number } = {}): ModelConfig {
  return {
    family: 'gemma2',
    architecture: 'Gemma2ForSequenceClassification',
    vocabSize: opts.vocabSize ?? 256000,
    hiddenSize: 64,
    intermediateSize: 128,
    numLayers: 4,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 16,
    rmsNormEps: 1e-6,
    normPlusOne: true,
    embedScale: true,
    activation: 'gelu_tanh',
    qkvBias: false,
    attnScale: 16 ** -0.5,
    attnSoftcap: 50,
    slidingWindow: opts.slidingWindow ?? 32,
    slidingLayers: 'even',
    rope: { theta: 10000, scaling: null },
    numLabels: 3,
    head: {
      kind: 'classifier',
      layers: [{ weight: 'score.weight', bias: null, inFeatures: 64, outFeatures: 3 }],
      activation: null,
    },
    padTokenId: 0,
    maxPositions: 8192,
  };
}

/** Standard deviation per weight kind (the HF fixtures' recipe, score head shrunk). */
function stdFor(name: string): number {
  if (name.endsWith('layernorm.weight') || name === 'model.norm.weight') return 0.1;
  if (name === 'model.embed_tokens.weight') return 0.5;
  if (name === 'score.weight') return 0.02;
  if (/(q_proj|k_proj)/.test(name)) return 0.3;
  if (/down_proj/.test(name)) return 0.1;
  return 0.15;
}

function shapeFor(c: ModelConfig, name: string): number[] {
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  const D = c.headDim;
  if (name === 'model.embed_tokens.weight') return [c.vocabSize, H];
  if (name === 'score.weight') return [c.numLabels, H];
  if (name.endsWith('layernorm.weight') || name === 'model.norm.weight') return [H];
  if (name.endsWith('q_proj.weight')) return [c.numHeads * D, H];
  if (name.endsWith('k_proj.weight') || name.endsWith('v_proj.weight')) return [c.numKvHeads * D, H];
  if (name.endsWith('o_proj.weight')) return [H, c.numHeads * D];
  if (name.endsWith('gate_proj.weight') || name.endsWith('up_proj.weight')) return [I, H];
  if (name.endsWith('down_proj.weight')) return [H, I];
  throw new Error(`tiny model: no tensor named "${name}"`);
}

/** Weights by HF name, each from its own seeded stream (the same tensor whatever the read order). */
export function tinyWeights(c: ModelConfig, seed: number): WeightSource {
  return (name: string): HostTensor => {
    const shape = shapeFor(c, name);
    const n = shape.reduce((a, d) => a * d, 1);
    const rng = forName(seed, name);
    const std = stdFor(name);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = roundTo(rng.normal() * std, 'float16');
    return { shape, data };
  };
}

/**
 * The tiny model's config.json as transformers writes it for Gemma2ForSequenceClassification, so the
 * folder `tiny --hf` writes is read by `train --base` and `import --base` like a real checkpoint.
 * id2label names the task's columns (import maps logits to columns by name).
 */
export function tinyHfConfig(c: ModelConfig, labels: readonly string[]): Record<string, unknown> {
  if (c.family !== 'gemma2' || c.head.kind !== 'classifier')
    throw new Error('tinyHfConfig: the tiny model is a Gemma-2 classifier');
  return {
    architectures: [c.architecture],
    model_type: 'gemma2',
    attention_bias: false,
    attention_dropout: 0.0,
    attn_logit_softcapping: c.attnSoftcap,
    final_logit_softcapping: 30.0,
    head_dim: c.headDim,
    hidden_activation: 'gelu_pytorch_tanh',
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    ...labelKeys(labels),
    max_position_embeddings: c.maxPositions,
    num_attention_heads: c.numHeads,
    num_hidden_layers: c.numLayers,
    num_key_value_heads: c.numKvHeads,
    pad_token_id: c.padTokenId,
    bos_token_id: 2,
    eos_token_id: 1,
    // attnScale = query_pre_attn_scalar ** -0.5
    query_pre_attn_scalar: Math.round(c.attnScale ** -2),
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.rope.theta,
    sliding_window: c.slidingWindow,
    torch_dtype: 'float32',
    vocab_size: c.vocabSize,
  };
}
