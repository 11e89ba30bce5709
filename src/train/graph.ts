// The training lowering of the Gemma / Gemma-2 classifier: the decoder spelled out in primitive ONNX
// ops (explicit attention, RMSNorm, tanh-GELU, rotate-half rotary) so that src/graph/grad.ts can
// differentiate it, with PEFT LoRA linears whose A/B tensors and the trainable score head are graph
// INPUTS; frozen weights stay initializers. Outputs: loss (mean cross-entropy of the pooled logits),
// logits and one `grad.<key>` per trainable tensor. HF Gemma2ForSequenceClassification 4.45.2
// semantics (fixtures README); the per-batch masks, rotary tables and pooling rows arrive as inputs
// (src/train/feeds.ts), so the graph is the model and nothing else.
import { GraphBuilder } from '../graph/builder';
import { addGradients, type GradRule } from '../graph/grad';
import type { Graph, Value } from '../graph/ir';
import type { TensorStore } from '../graph/store';
import type { ModelConfig, WeightSource } from '../types';
import type { TrainableSpec } from './lora';

export interface TrainGraphOptions {
  /** Gradient rules (tests swap one for a wrong one). */
  rules?: Record<string, GradRule>;
  /** Loss and logits only: no backward, no dropout (eval mode, validation passes). */
  forwardOnly?: boolean;
  /** Where frozen weights go (default inline; an external store keeps a 2B-width graph under protobuf's 2 GB). */
  store?: TensorStore;
}

export interface TrainGraph {
  graph: Graph;
  /** Trainable tensor keys in graph-input order (adapter-file names). */
  params: string[];
  /** lora_dropout > 0: the modules whose input gets a dropout-mask input `dropout.<module>`. */
  dropoutModules: { module: string; inFeatures: number }[];
}

const f32 = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function transposed(w: Float32Array, out: number, inn: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let o = 0; o < out; o++) for (let i = 0; i < inn; i++) t[i * out + o] = w[o * inn + i];
  return t;
}

export function buildTrainGraph(c: ModelConfig, weights: WeightSource, spec: TrainableSpec, opts: TrainGraphOptions = {}): TrainGraph {
  const b = new GraphBuilder('gemma_train', opts.store);
  const H = c.hiddenSize;
  const D = c.headDim;
  const kvh = c.numKvHeads;
  const groups = c.numHeads / kvh;

  // ---- per-batch inputs (src/train/feeds.ts makes them)
  const ids = b.input('input_ids', 'int64', ['batch', 'seq']);
  const biasGlobal = b.input('attn_bias', 'float32', ['batch', 1, 1, 'seq', 'seq']);
  const biasLocal = c.slidingWindow !== null ? b.input('attn_bias_local', 'float32', ['batch', 1, 1, 'seq', 'seq']) : null;
  const cos = b.input('rope_cos', 'float32', ['seq', D]);
  const sin = b.input('rope_sin', 'float32', ['seq', D]);
  const pool = b.input('pool', 'float32', ['batch', 1, 'seq']);
  const onehot = b.input('labels_onehot', 'float32', ['batch', c.numLabels]);

  // ---- trainable tensors as inputs
  const params: Value[] = [];
  const param = (key: string, shape: number[]) => {
    const v = b.input(key, 'float32', shape);
    params.push(v);
    return v;
  };
  const dropoutModules: TrainGraph['dropoutModules'] = [];

  const frozen = (name: string, data: Float32Array, shape: number[]) => b.initializer(name, 'float32', shape, f32(data));

  /** nn.Linear y = x W^T; with LoRA (PEFT): + scale * (B (A dropout(x))). */
  const linear = (x: Value, module: string, inF: number, outF: number): Value => {
    const w = weights(`${module}.weight`);
    const y = b.matmul(x, frozen(`${module}.weight_t`, transposed(w.data, outF, inF), [inF, outF]), module);
    const lora = spec.lora.get(module);
    if (!lora) return y;
    const A = param(lora.aKey, [lora.rank, inF]);
    const B = param(lora.bKey, [outF, lora.rank]);
    let xin = x;
    if (spec.dropout > 0 && !opts.forwardOnly) {
      dropoutModules.push({ module, inFeatures: inF });
      xin = b.mul(x, b.input(`dropout.${module}`, 'float32', ['batch', 'seq', inF]));
    }
    const t = b.matmul(b.matmul(xin, b.transpose(A, [1, 0])), b.transpose(B, [1, 0]), `${module}.lora`);
    return b.add(y, b.mul(t, b.scalar(`${module}.scaling`, lora.scale)));
  };

  /** HF Gemma RMSNorm in fp32: x / sqrt(mean(x^2) + eps) * (1 + w), (1 + w) rounded to fp32 once like torch. */
  const rmsNorm = (x: Value, hfName: string): Value => {
    const w = weights(hfName).data;
    const g = new Float32Array(H);
    for (let i = 0; i < H; i++) g[i] = 1 + w[i];
    const ms = b.reduceMean(b.mul(x, x), [-1], true, `${hfName}.ms`);
    const n = b.div(x, b.sqrt(b.add(ms, b.scalar('eps', c.rmsNormEps))));
    return b.mul(n, frozen(hfName.replace(/\.weight$/, '.gamma'), g, [H]), hfName);
  };

  /** rotate_half rotary: x * cos + cat(-x2, x1) * sin over the last axis (HF non-interleaved layout). */
  const rotary = (x: Value): Value => {
    const [x1, x2] = b.split(x, [D / 2, D / 2], -1);
    return b.add(b.mul(x, cos), b.mul(b.concat([b.neg(x2), x1], -1), sin));
  };

  /** gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
  const geluTanh = (x: Value): Value => {
    const x3 = b.mul(b.mul(x, x), x);
    const inner = b.mul(b.add(x, b.mul(x3, b.scalar('gelu_c', 0.044715))), b.scalar('gelu_k', Math.sqrt(2 / Math.PI)));
    return b.mul(b.mul(x, b.scalar('half', 0.5)), b.add(b.tanh(inner), b.scalar('one', 1)));
  };

  /**
   * Eager attention with grouped KV heads by broadcasting: q [B, kvh, groups, S, D] against
   * k, v [B, kvh, 1, S, D] (HF repeat_kv: query head h reads kv head h / groups).
   */
  const attention = (h: Value, p: string, bias: Value): Value => {
    const q = b.transpose(b.reshape(linear(h, `${p}.q_proj`, H, c.numHeads * D), [0, 0, kvh, groups, D]), [0, 2, 3, 1, 4]);
    const k = b.transpose(b.reshape(linear(h, `${p}.k_proj`, H, kvh * D), [0, 0, kvh, 1, D]), [0, 2, 3, 1, 4]);
    const v = b.transpose(b.reshape(linear(h, `${p}.v_proj`, H, kvh * D), [0, 0, kvh, 1, D]), [0, 2, 3, 1, 4]);
    let s = b.mul(b.matmul(rotary(q), b.transpose(rotary(k), [0, 1, 2, 4, 3])), b.scalar('attn_scale', c.attnScale));
    if (c.attnSoftcap !== null) {
      const cap = b.scalar('softcap', c.attnSoftcap);
      s = b.mul(b.tanh(b.div(s, cap)), cap);
    }
    const probs = b.softmax(b.add(s, bias), -1);
    const o = b.reshape(b.transpose(b.matmul(probs, v), [0, 3, 1, 2, 4]), [0, 0, c.numHeads * D]);
    return linear(o, `${p}.o_proj`, c.numHeads * D, H);
  };

  const mlp = (h: Value, p: string): Value => {
    const I = c.intermediateSize;
    const gated = b.mul(geluTanh(linear(h, `${p}.gate_proj`, H, I)), linear(h, `${p}.up_proj`, H, I));
    return linear(gated, `${p}.down_proj`, I, H);
  };

  // ---- decoder: embeddings * sqrt(H) (normalizer in fp32, as HF), then the blocks with visible residuals
  const emb = weights('model.embed_tokens.weight');
  let x = b.mul(b.gather(frozen('model.embed_tokens.weight', emb.data, emb.shape), ids, 0), b.scalar('normalizer', Math.sqrt(H)));
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    // HF marks EVEN layer indices as sliding-window layers.
    const bias = biasLocal && i % 2 === 0 ? biasLocal : biasGlobal;
    if (c.sandwichNorms) {
      x = b.add(x, rmsNorm(attention(rmsNorm(x, `${p}.input_layernorm.weight`), `${p}.self_attn`, bias), `${p}.post_attention_layernorm.weight`));
      x = b.add(x, rmsNorm(mlp(rmsNorm(x, `${p}.pre_feedforward_layernorm.weight`), `${p}.mlp`), `${p}.post_feedforward_layernorm.weight`));
    } else {
      x = b.add(x, attention(rmsNorm(x, `${p}.input_layernorm.weight`), `${p}.self_attn`, bias));
      x = b.add(x, mlp(rmsNorm(x, `${p}.post_attention_layernorm.weight`), `${p}.mlp`));
    }
  }
  const h = rmsNorm(x, 'model.norm.weight');

  // ---- pooling (one-hot row per batch item: exact) and the score head
  const pooled = b.reshape(b.matmul(pool, h), [0, H], 'pooled'); // [B, H]
  const scoreW = spec.headKey
    ? param(spec.headKey, [c.numLabels, H])
    : frozen('score.weight', weights('score.weight').data, [c.numLabels, H]);
  const logits = b.matmul(pooled, b.transpose(scoreW, [1, 0]), 'score');
  b.output(logits, 'logits');

  // ---- mean cross-entropy over the labelled rows
  const nll = b.neg(b.reduceSum(b.mul(b.logSoftmax(logits, -1), onehot), [0, 1], false, 'nll_sum'));
  const loss = b.div(nll, b.reduceSum(onehot, [0, 1], false, 'rows'), 'loss_mean');
  b.output(loss, 'loss');

  if (!opts.forwardOnly) {
    const seed = b.input('loss_grad', 'float32', []);
    const grads = addGradients(b, loss, params, { seed, rules: opts.rules });
    grads.forEach((g, i) => b.output(g, `grad.${params[i].name}`));
  }
  b.store.close();
  return { graph: b.finish(), params: params.map((p) => p.name), dropoutModules };
}
