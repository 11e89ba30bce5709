// The training lowering: the one decoder definition (src/model/decoder.ts) lowered to primitive ONNX
// ops that src/graph/grad.ts can differentiate (explicit attention, RMSNorm, activations spelled out,
// rotate-half rotary), with PEFT LoRA linears whose A/B tensors and the trainable head are graph
// INPUTS; frozen weights stay initializers. Outputs: loss (mean cross-entropy of the pooled logits),
// logits and one `grad.<key>` per trainable tensor. The per-batch masks, rotary tables and pooling rows
// arrive as inputs (src/train/feeds.ts), so the graph is the model and nothing else.
import { GraphBuilder, GraphBuildError } from '../graph/builder';
import { addGradients, type GradRule } from '../graph/grad';
import type { Graph, Value } from '../graph/ir';
import type { TensorStore } from '../graph/store';
import { decoder, scoreHead, type Lowering } from '../model/decoder';
import { familyOf, layerWindow } from '../model/families';
import type { Activation, ModelConfig, WeightSource } from '../types';
import { linearModules } from '../model/lora';
import type { TrainableSpec } from './lora';

export interface TrainGraphOptions {
  /** Gradient rules (tests swap one for a wrong one). */
  rules?: Record<string, GradRule>;
  /** Loss, logits and pooled features only: no backward, no dropout (eval mode, validation, head-only training). */
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

/**
 * Each activation spelled out in primitives that have a gradient rule (the inference lowering uses
 * the fused ONNX Gelu / Relu ops instead). Keyed by Activation, so a new one must be added here.
 */
export const TRAIN_ACTIVATIONS: Record<Activation, (b: GraphBuilder, x: Value) => Value> = {
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  gelu_tanh: (b, x) => {
    const inner = b.mul(
      b.add(x, b.mul(b.mul(b.mul(x, x), x), b.scalar('c', 0.044715))),
      b.scalar('c', Math.sqrt(2 / Math.PI)),
    );
    return b.mul(b.mul(x, b.scalar('c', 0.5)), b.add(b.tanh(inner), b.scalar('c', 1)));
  },
  // torch's exact GELU: x * 0.5 * (1 + erf(x * M_SQRT1_2))
  gelu: (b, x) =>
    b.mul(b.mul(x, b.scalar('c', 0.5)), b.add(b.unary('Erf', b.mul(x, b.scalar('c', Math.SQRT1_2))), b.scalar('c', 1))),
  relu: (b, x) => b.unary('Relu', x),
  silu: (b, x) => b.mul(x, b.unary('Sigmoid', x)),
  tanh: (b, x) => b.tanh(x),
};

/** The training Lowering plus what the loss needs (pooled features). */
function trainLowering(
  b: GraphBuilder,
  c: ModelConfig,
  weights: WeightSource,
  spec: TrainableSpec,
  opts: TrainGraphOptions,
  params: Value[],
  dropoutModules: TrainGraph['dropoutModules'],
) {
  const H = c.hiddenSize;
  const D = c.headDim;
  const kvh = c.numKvHeads;
  const groups = c.numHeads / kvh;
  const dims = new Map(linearModules(c).map((m) => [m.module, m]));
  const headBy = new Map(spec.head.map((t) => [t.hf, t]));

  const param = (key: string, shape: number[]) => {
    const v = b.input(key, 'float32', shape);
    params.push(v);
    return v;
  };
  const frozen = (name: string, data: Float32Array, shape: number[]) =>
    b.initializer(name, 'float32', shape, f32(data));

  // per-batch inputs (src/train/feeds.ts)
  let biasGlobal: Value;
  let biasLocal: Value | null = null;
  let cos: Value;
  let sin: Value;
  let pool: Value;
  let pooled: Value | null = null;

  /** nn.Linear y = x W^T (+ b); with LoRA (PEFT): + scale * (B (A dropout(x))). */
  const linear1 = (module: string, x: Value, bias: boolean): Value => {
    const m = dims.get(module);
    if (!m) throw new GraphBuildError(`no projection "${module}" in the ${c.family} layer table`);
    const w = weights(`${module}.weight`);
    let y = b.matmul(x, frozen(`${module}.weight_t`, transposed(w.data, m.outF, m.inF), [m.inF, m.outF]), module);
    if (bias) y = b.add(y, frozen(`${module}.bias`, weights(`${module}.bias`).data, [m.outF]));
    const lora = spec.lora.get(module);
    if (!lora) return y;
    const A = param(lora.aKey, [lora.rank, m.inF]);
    const B = param(lora.bKey, [m.outF, lora.rank]);
    let xin = x;
    if (spec.dropout > 0 && !opts.forwardOnly) {
      dropoutModules.push({ module, inFeatures: m.inF });
      xin = b.mul(x, b.input(`dropout.${module}`, 'float32', ['batch', 'seq', m.inF]));
    }
    const t = b.matmul(b.matmul(xin, b.transpose(A, [1, 0])), b.transpose(B, [1, 0]), `${module}.lora`);
    return b.add(y, b.mul(t, b.scalar(`${module}.scaling`, lora.scale)));
  };

  /** rotate_half rotary: x * cos + cat(-x2, x1) * sin over the last axis (HF non-interleaved layout). */
  const rotary = (x: Value): Value => {
    const [x1, x2] = b.split(x, [D / 2, D / 2], -1);
    return b.add(b.mul(x, cos), b.mul(b.concat([b.neg(x2), x1], -1), sin));
  };

  const L: Lowering = {
    b,
    inputs() {
      const ids = b.input('input_ids', 'int64', ['batch', 'seq']);
      biasGlobal = b.input('attn_bias', 'float32', ['batch', 1, 1, 'seq', 'seq']);
      if (c.slidingWindow !== null) biasLocal = b.input('attn_bias_local', 'float32', ['batch', 1, 1, 'seq', 'seq']);
      cos = b.input('rope_cos', 'float32', ['seq', D]);
      sin = b.input('rope_sin', 'float32', ['seq', D]);
      pool = b.input('pool', 'float32', ['batch', 1, 'seq']);
      return ids;
    },
    embed(ids) {
      const name = `${familyOf(c).embed}.weight`;
      const e = weights(name);
      const x = b.gather(frozen(name, e.data, e.shape), ids, 0);
      // HF's normalizer is a float32 tensor of sqrt(hidden)
      return c.embedScale ? b.mul(x, b.scalar('normalizer', Math.sqrt(H))) : x;
    },
    norm(module, x) {
      // HF RMSNorm in fp32: x / sqrt(mean(x^2) + eps) * w, or * (1 + w) where the family adds one (normPlusOne: Gemma, Gemma-2; rounded to fp32 once, like torch)
      const w = weights(`${module}.weight`).data;
      const g = Float32Array.from(w, (v) => (c.normPlusOne ? 1 + v : v));
      const ms = b.reduceMean(b.mul(x, x), [-1], true, `${module}.ms`);
      const n = b.div(x, b.sqrt(b.add(ms, b.scalar('eps', c.rmsNormEps))));
      return b.mul(n, frozen(`${module}.gamma`, g, [H]), module);
    },
    linear: (modules, x, bias) => modules.map((m) => linear1(m, x, bias)),
    // Eager attention, grouped KV heads by broadcasting: q [B, kvh, groups, S, D] against k, v [B, kvh, 1, S, D].
    attention(layer, q, k, v) {
      const q5 = b.transpose(b.reshape(q, [0, 0, kvh, groups, D]), [0, 2, 3, 1, 4]);
      const k5 = b.transpose(b.reshape(k, [0, 0, kvh, 1, D]), [0, 2, 3, 1, 4]);
      const v5 = b.transpose(b.reshape(v, [0, 0, kvh, 1, D]), [0, 2, 3, 1, 4]);
      let s = b.mul(
        b.matmul(rotary(q5), b.transpose(rotary(k5), [0, 1, 2, 4, 3])),
        b.scalar('attn_scale', c.attnScale),
      );
      if (c.attnSoftcap !== null) {
        const cap = b.scalar('softcap', c.attnSoftcap);
        s = b.mul(b.tanh(b.div(s, cap)), cap);
      }
      const probs = b.softmax(b.add(s, layerWindow(c, layer) !== null ? biasLocal! : biasGlobal), -1);
      return b.reshape(b.transpose(b.matmul(probs, v5), [0, 3, 1, 2, 4]), [0, 0, c.numHeads * D]);
    },
    act: (kind, x) => TRAIN_ACTIVATIONS[kind](b, x),
    residual: (x, delta) => b.add(x, delta),
    // One-hot pooling row per batch item (HF's index from input_ids): exact. The Reshape's own output is
    // named 'pooled' (no Identity rename for the graph output): onnxruntime 1.29's basic optimizer loses a
    // renamed 'pooled' in a forward-only graph with a ReLU head ("pooled_out0 is not ... a previous node").
    lastToken: (x) =>
      (pooled = b.op(
        'Reshape',
        [b.matmul(pool, x), b.constInt64('pooled_shape', [0, H])],
        [{ dtype: x.dtype, shape: [x.shape?.[0] ?? null, H] }],
        {},
        { name: 'pool', outNames: ['pooled'] },
      )[0]),
    dense(weight, bias, x, rows) {
      if (rows) throw new GraphBuildError('training a causal-LM label-token head is not supported; train a score head');
      const t = headBy.get(weight);
      const w = weights(weight);
      const [out] = w.shape;
      const W = t ? param(t.key, w.shape) : frozen(weight, w.data, w.shape);
      let y = b.matmul(x, b.transpose(W, [1, 0]), weight);
      if (bias) {
        const tb = headBy.get(bias);
        y = b.add(y, tb ? param(tb.key, [out]) : frozen(bias, weights(bias).data, [out]));
      }
      return y;
    },
  };
  return { L, pooled: () => pooled! };
}

export function buildTrainGraph(
  c: ModelConfig,
  weights: WeightSource,
  spec: TrainableSpec,
  opts: TrainGraphOptions = {},
): TrainGraph {
  const b = new GraphBuilder('train', opts.store);
  const params: Value[] = [];
  const dropoutModules: TrainGraph['dropoutModules'] = [];
  const { L, pooled } = trainLowering(b, c, weights, spec, opts, params, dropoutModules);
  const logits = decoder(c, L);
  b.output(logits, 'logits');
  if (opts.forwardOnly) b.output(pooled()); // head-only training fits the head on these

  lossAndGradients(b, c, logits, params, opts);
  b.store.close();
  return { graph: b.finish(), params: params.map((p) => p.name), dropoutModules };
}

/**
 * The score head alone, on pooled final-norm states fed as input `pooled` [batch, hidden] (what a
 * forward-only graph outputs): the same head lowering, loss and gradients as the full graph, for
 * head-only training (`--train head`), which fits any head (linear or score.N.* stack) in seconds.
 */
export function buildHeadGraph(
  c: ModelConfig,
  weights: WeightSource,
  spec: TrainableSpec,
  opts: TrainGraphOptions = {},
): TrainGraph {
  const b = new GraphBuilder('train-head', opts.store);
  const params: Value[] = [];
  const { L } = trainLowering(b, c, weights, { ...spec, lora: new Map(), dropout: 0 }, opts, params, []);
  const logits = scoreHead(c, L, b.input('pooled', 'float32', ['batch', c.hiddenSize]));
  b.output(logits, 'logits');
  lossAndGradients(b, c, logits, params, opts);
  b.store.close();
  return { graph: b.finish(), params: params.map((p) => p.name), dropoutModules: [] };
}

/** Mean cross-entropy over the labelled rows (output `loss`) and, unless forward-only, `grad.<key>` per parameter. */
function lossAndGradients(
  b: GraphBuilder,
  c: ModelConfig,
  logits: Value,
  params: Value[],
  opts: TrainGraphOptions,
): void {
  const onehot = b.input('labels_onehot', 'float32', ['batch', c.numLabels]);
  const nll = b.neg(b.reduceSum(b.mul(b.logSoftmax(logits, -1), onehot), [0, 1], false, 'nll_sum'));
  const loss = b.div(nll, b.reduceSum(onehot, [0, 1], false, 'rows'), 'loss_mean');
  b.output(loss, 'loss');
  if (opts.forwardOnly) return;
  const seed = b.input('loss_grad', 'float32', []);
  const grads = addGradients(b, loss, params, { seed, rules: opts.rules });
  grads.forEach((g, i) => b.output(g, `grad.${params[i].name}`));
}
