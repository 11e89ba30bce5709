// The fused attention variant: one com.microsoft GroupQueryAttention per layer (rotary, soft-cap,
// local window, right padding via seqlens_k). Fast on CPU and recent CUDA; WebGPU ignores its softcap
// and ORT 1.19 lacks it (the runtime's capability table picks the explicit variant there). After the
// graph is built, packQkv (ort-passes.ts) feeds it the packed q/k/v projection.
//
// ORT's kernel takes head sizes that are multiples of 16 only. Other head_dims (qwen3-tiny's 24) are
// padded with zeros to the next multiple: each rotary half of q and k and the tail of v, and the rotary
// tables by the same columns. Zero columns add nothing to q.k, rotate to zero and give zero outputs,
// which are cut off again: exact.
import type { Value } from '../graph/ir';
import type { AttentionContext } from './ort-attention';

/** GroupQueryAttention's head-size rule (ORT contrib op). */
export const GQA_HEAD_MULTIPLE = 16;

export function fusedAttention(x: AttentionContext, layer: number, q: Value, k: Value, v: Value): Value {
  const { b, c } = x;
  const t = `layers.${layer}.attn`;
  const D = c.headDim;
  const Dp = Math.ceil(D / GQA_HEAD_MULTIPLE) * GQA_HEAD_MULTIPLE;
  const seqlensK = x.once('seqlens_k', () =>
    b.cast(b.reshape(x.lastIndex(), [-1], 'seqlens_k_flat'), 'int32', 'seqlens_k'),
  );
  const total = x.once('total_seq', () => b.cast(x.seqLen(), 'int32', 'total_sequence_length'));
  let rope = x.rope();
  if (Dp !== D) {
    const half = (Dp - D) / 2;
    /** Zeros appended to the last axis of a rank-`rank` value. */
    const pad = (h: Value, n: number, rank: number, name: string) => {
      const pads = b.constInt64(`${name}.pads`, [...Array(2 * rank - 1).fill(0), n]);
      const shape = h.shape ? [...h.shape.slice(0, -1), null] : null;
      return b.op('Pad', [h, pads], [{ dtype: h.dtype, shape }], {}, { name })[0];
    };
    const padHeads = (h: Value, heads: number, rotary: boolean, name: string) => {
      const h4 = b.reshape(h, [0, 0, heads, D], `${name}.heads`);
      const parts = rotary
        ? b.split(h4, [D / 2, D / 2], -1, `${name}.halves`).map((p, i) => pad(p, half, 4, `${name}.pad${i}`))
        : [pad(h4, Dp - D, 4, `${name}.pad`)];
      return b.reshape(
        parts.length === 1 ? parts[0] : b.concat(parts, -1, `${name}.padded`),
        [0, 0, heads * Dp],
        `${name}.flat`,
      );
    };
    q = padHeads(q, c.numHeads, true, `${t}.q`);
    k = padHeads(k, c.numKvHeads, true, `${t}.k`);
    v = padHeads(v, c.numKvHeads, false, `${t}.v`);
    rope = {
      cos: x.once('cos_padded', () => pad(rope.cos, half, 2, 'rotary.cos_padded')),
      sin: x.once('sin_padded', () => pad(rope.sin, half, 2, 'rotary.sin_padded')),
    };
  }
  const o = b.groupQueryAttention(
    { query: q, key: k, value: v },
    { seqlensK, totalSeqLen: total },
    rope,
    {
      numHeads: c.numHeads,
      kvNumHeads: c.numKvHeads,
      headDim: Dp,
      scale: c.attnScale,
      softcap: c.attnSoftcap,
      localWindow: x.windowOf(layer),
    },
    t,
  );
  if (Dp === D) return o;
  const [kept] = b.split(b.reshape(o, [0, 0, c.numHeads, Dp], `${t}.out_heads`), [D, Dp - D], -1, `${t}.unpad`);
  return b.reshape(kept, [0, 0, c.numHeads * D], `${t}.out`);
}
