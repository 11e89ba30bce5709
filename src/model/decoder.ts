// The model definition: one decoder for every family (Gemma, Gemma-2, Llama-3.x, Qwen2/2.5, Mistral),
// written against a small set of pieces (`Lowering`) so that it reads like the reference code.
// What differs between families is data: ModelConfig (from the family's config parser) and the
// family's tensor names (src/model/families.ts). How each piece becomes ONNX nodes (fused runtime
// ops, quantized weights, fp16, the attention variant) is the lowering's business (src/model/lower.ts);
// a training lowering can swap `linear` for LoRA and `attention` for primitive ops.
import type { GraphBuilder } from '../graph/builder';
import type { Value } from '../graph/ir';
import type { Activation, ModelConfig } from '../types';
import { familyOf } from './families';

export interface Lowering {
  readonly b: GraphBuilder;
  /** The graph inputs input_ids and attention_mask (int64 [batch, seq], right padding); returns input_ids. */
  inputs(): Value;
  /** Embedding rows of the token ids ([B, S, H], fp32), times sqrt(hidden) when the family scales them. */
  embed(ids: Value): Value;
  /** RMSNorm over the last axis (`width`, default hidden_size) with the HF weight of `module` (scale w, or 1 + w for Gemma); fp32 out. */
  norm(module: string, x: Value, width?: number): Value;
  /** x W^T (+ b) for each HF module, one output each (the lowering may pack them into one MatMul). */
  linear(modules: string[], x: Value, bias: boolean): Value[];
  /** Attention of layer `layer` on projected q [B, S, nH*D], k, v [B, S, nKV*D]: rotary, scaled scores,
   * soft-cap, causal + sliding-window + padding mask, softmax, weighted sum of v -> [B, S, nH*D]. */
  attention(layer: number, q: Value, k: Value, v: Value): Value;
  act(kind: Activation, x: Value): Value;
  /** The residual stream update x + delta, in fp32. */
  residual(x: Value, delta: Value): Value;
  /** Hidden state of the last real token of each row ([B, S, H] -> [B, H]). */
  lastToken(x: Value): Value;
  /** Take each row's last real token right after the last layer's attention (o_proj, residual, norms and MLP of
   * the last layer then run on one token per row: the same logits, ~(1 - attention share) / layers less work).
   * Needs `lastToken` to be a plain gather that may run on any [B, S, W] value. */
  readonly lastTokenEarly?: boolean;
  /** Head linear in fp32: x W^T (+ b), W an HF [out, in] tensor, optionally only the rows `rows` of it. */
  dense(weight: string, bias: string | null, x: Value, rows?: number[]): Value;
}

/** cap * tanh(x / cap), the three float ops HF uses. */
export function softcap(b: GraphBuilder, x: Value, cap: number, name: string): Value {
  const c = b.scalar(`${name}.cap`, cap, x.dtype);
  return b.mul(b.tanh(b.div(x, c, `${name}.div`), `${name}.tanh`), c, name);
}

/** Logits [B, numLabels] of the decoder described by `c`. */
export function decoder(c: ModelConfig, L: Lowering): Value {
  const f = familyOf(c);
  const b = L.b;
  let x = L.embed(L.inputs());
  let pooled = false;
  for (let i = 0; i < c.numLayers; i++) {
    const m = f.layer(i);
    // attention block
    let [q, k, v] = L.linear([m.q, m.k, m.v], L.norm(m.attnNorm, x), c.qkvBias);
    if (m.qNorm) q = headNorm(c, L, m.qNorm, q, c.numHeads, `layers.${i}.q_norm`);
    if (m.kNorm) k = headNorm(c, L, m.kNorm, k, c.numKvHeads, `layers.${i}.k_norm`);
    let att = L.attention(i, q, k, v);
    if (L.lastTokenEarly && i === c.numLayers - 1) {
      // beyond the last attention only the last real token reaches the head
      att = L.lastToken(att);
      x = L.lastToken(x);
      pooled = true;
    }
    let a = L.linear([m.o], att, false)[0];
    if (m.postAttnNorm) a = L.norm(m.postAttnNorm, a);
    x = L.residual(x, a);
    // MLP block: down(act(gate(h)) * up(h))
    const [gate, up] = L.linear([m.gate, m.up], L.norm(m.mlpNorm, x), false);
    let h = L.linear([m.down], b.mul(L.act(c.activation, gate), up, `layers.${i}.gated`), false)[0];
    if (m.postMlpNorm) h = L.norm(m.postMlpNorm, h);
    x = L.residual(x, h);
  }
  x = L.norm(f.finalNorm, x);
  return scoreHead(c, L, pooled ? x : L.lastToken(x));
}

/** RMSNorm of each of the `heads` heads of a projection [B, S, heads*D] over head_dim (Qwen3's q_norm / k_norm), in its dtype. */
function headNorm(c: ModelConfig, L: Lowering, module: string, x: Value, heads: number, name: string): Value {
  const b = L.b;
  const D = c.headDim;
  let y = L.norm(module, b.reshape(x, [0, 0, heads, D], `${name}.heads`), D);
  if (y.dtype !== x.dtype) y = b.cast(y, x.dtype, `${name}.cast`);
  return b.reshape(y, [0, 0, heads * D], `${name}.out`);
}

/**
 * The head on the last real token's final hidden state (HF computes it at every position, then picks
 * that one). Exported for head-only training, which runs it alone on cached pooled states.
 */
export function scoreHead(c: ModelConfig, L: Lowering, h: Value): Value {
  const hd = c.head;
  if (hd.kind === 'classifier') {
    let y = h;
    hd.layers.forEach((l, j) => {
      y = L.dense(l.weight, l.bias, y);
      if (j + 1 < hd.layers.length) y = L.act(hd.activation!, y);
    });
    return y;
  }
  let y = L.dense(hd.weight, null, h, hd.tokenIds);
  if (hd.finalSoftcap !== null) y = softcap(L.b, y, hd.finalSoftcap, 'final_softcap');
  if (hd.tokenIds.length === 2) {
    // an A / B judge is a single-score head: logit(A) - logit(B), A better when > 0 (a fitted tie model adds the tie)
    const [a, bLogit] = L.b.split(y, [1, 1], -1, 'judge_ab');
    y = L.b.sub(a, bLogit, 'judge_score');
  }
  return y;
}
