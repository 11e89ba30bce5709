// The fused attention variant: one com.microsoft GroupQueryAttention per layer (rotary, soft-cap,
// local window, right padding via seqlens_k). Fast on CPU and recent CUDA; WebGPU ignores its softcap
// and ORT 1.19 lacks it (the runtime's capability table picks the explicit variant there). After the
// graph is built, packQkv (ort-passes.ts) feeds it the packed q/k/v projection.
import type { Value } from '../graph/ir';
import type { AttentionContext } from './ort-attention';

export function fusedAttention(x: AttentionContext, layer: number, q: Value, k: Value, v: Value): Value {
  const { b, c } = x;
  const seqlensK = x.once('seqlens_k', () =>
    b.cast(b.reshape(x.lastIndex(), [-1], 'seqlens_k_flat'), 'int32', 'seqlens_k'),
  );
  const total = x.once('total_seq', () => b.cast(x.seqLen(), 'int32', 'total_sequence_length'));
  return b.groupQueryAttention(
    { query: q, key: k, value: v },
    { seqlensK, totalSeqLen: total },
    x.rope(),
    {
      numHeads: c.numHeads,
      kvNumHeads: c.numKvHeads,
      headDim: c.headDim,
      scale: c.attnScale,
      softcap: c.attnSoftcap,
      localWindow: x.windowOf(layer),
    },
    `layers.${layer}.attn`,
  );
}
