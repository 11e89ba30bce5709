// What an ONNX Runtime attention variant gets from the lowering (src/model/lower.ts): the builder,
// the config, and the graph-wide pieces it shares with every layer (masks, lengths, rotary caches,
// the layer's window), each built once. The variants: ort-attention-fused.ts (GroupQueryAttention)
// and ort-attention-explicit.ts (standard ONNX ops).
import type { GraphBuilder } from '../graph/builder';
import type { Value } from '../graph/ir';
import type { ModelConfig } from '../types';

export type AttentionVariant = 'fused' | 'explicit';

export interface AttentionContext {
  b: GraphBuilder;
  c: ModelConfig;
  /** Activation dtype of the graph. */
  act: 'float32' | 'float16' | 'bfloat16';
  /** The value built by `make` the first time `key` is asked for (graph-wide pieces shared by layers). */
  once(key: string, make: () => Value): Value;
  /** The attention_mask input (int64 [B, S], right padding). */
  mask(): Value;
  /** S, an int64 [1] vector. */
  seqLen(): Value;
  /** Index of each row's last real token [B, 1]. */
  lastIndex(): Value;
  /** cos / sin caches [maxSeq, D / 2] in the activation dtype. */
  rope(): { cos: Value; sin: Value };
  /** The window layer `layer` uses in this graph: none when no input can be longer than it. */
  windowOf(layer: number): number | null;
  toF32(x: Value): Value;
  toAct(x: Value): Value;
}

/** Attention of one layer on projected q [B, S, nH*D], k, v [B, S, nKV*D] -> [B, S, nH*D]. */
export type OrtAttention = (ctx: AttentionContext, layer: number, q: Value, k: Value, v: Value) => Value;
