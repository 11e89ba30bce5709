// The explicit attention variant, standard ONNX ops only (every runtime and EP runs it): rotary
// (rotate-half), Q K^T, scale (q pre-scaled in fp16 to keep Q K^T in range), Tanh soft-cap, the mask
// (causal + sliding window + padding) as one additive fp32 bias per batch and window (0 or fp32's lowest,
// built once, added in every layer: a broadcast Add, where a per-layer Where of a bool mask was 9 % of a
// 2,048-token row on the CPU; s + lowest == lowest exactly for any |s| < 1e31, so the softmax is the same),
// Softmax in fp32 as HF, weighted sum of V. Query heads are grouped by their kv head, so k / v are never repeated.
import type { Value } from '../graph/ir';
import { softcap } from './decoder';
import type { AttentionContext } from './ort-attention';

/** Allowed (query i, key j) pairs [B, 1, 1, S, S]: j <= i, i - j < window, key j is not padding. */
function allowed(x: AttentionContext, window: number | null): Value {
  const { b, once } = x;
  return once(`allowed.${window}`, () => {
    const i64 = (n: string, v: number) => b.constInt64(n, [v], []);
    const pos = once('positions', () => b.range(i64('zero', 0), x.seqLen(), i64('step', 1), 'positions'));
    const qi = once('qi', () => b.unsqueeze(pos, [1], 'query_pos')); // [S, 1]
    const kj = once('kj', () => b.unsqueeze(pos, [0], 'key_pos')); // [1, S]
    let ok = once('causal', () => b.compare('GreaterOrEqual', qi, kj, 'causal'));
    if (window !== null)
      ok = b.compare(
        'And',
        ok,
        b.compare('Less', b.sub(qi, kj, `distance.${window}`), i64('window', window), `in_window.${window}`),
        `causal_window.${window}`,
      );
    const keys = once('key_valid', () => b.unsqueeze(b.cast(x.mask(), 'bool', 'mask_bool'), [1, 2, 3], 'key_valid')); // [B, 1, 1, 1, S]
    return b.compare('And', b.unsqueeze(ok, [0, 1, 2], `pairs.${window}`), keys, `allowed.${window}`);
  });
}

/** 0 where allowed, fp32's lowest elsewhere [B, 1, 1, S, S], built once per window for every layer. */
function maskBias(x: AttentionContext, window: number | null): Value {
  const { b, once } = x;
  return once(`mask_bias.${window}`, () =>
    b.where(
      allowed(x, window),
      b.scalar('mask_bias.zero', 0, 'float32'),
      b.scalar('mask_bias.lowest', -3.4028234663852886e38, 'float32'),
      `mask_bias.${window}`,
    ),
  );
}

export function explicitAttention(x: AttentionContext, layer: number, q: Value, k: Value, v: Value): Value {
  const { b, c, act, once } = x;
  const t = `layers.${layer}.attn`;
  const D = c.headDim;
  const nH = c.numHeads;
  const nKV = c.numKvHeads;
  const rep = nH / nKV;
  const { cos, sin } = x.rope();
  const pos = once('positions', () =>
    b.range(b.constInt64('zero', [0], []), x.seqLen(), b.constInt64('step', [1], []), 'positions'),
  );
  const c0 = once('cos_rows', () => b.gather(cos, pos, 0, 'rotary.cos')); // [S, D/2]
  const s0 = once('sin_rows', () => b.gather(sin, pos, 0, 'rotary.sin'));
  // x * cos + rotate_half(x) * sin, with rotate_half(x) = cat(-x2, x1)
  const rotary = (h: Value, n: string) => {
    const [x1, x2] = b.split(h, [D / 2, D / 2], -1, `${n}.halves`);
    const o1 = b.sub(b.mul(x1, c0), b.mul(x2, s0), `${n}.rot1`);
    const o2 = b.add(b.mul(x2, c0), b.mul(x1, s0), `${n}.rot2`);
    return b.concat([o1, o2], -1, `${n}.rotated`);
  };
  const heads = (h: Value, n: number, name: string) =>
    b.transpose(b.reshape(h, [0, 0, n, D], `${name}.split_heads`), [0, 2, 1, 3], `${name}.bhsd`); // [B, n, S, D]
  let qh = rotary(heads(q, nH, `${t}.q`), `${t}.q`);
  const kh = rotary(heads(k, nKV, `${t}.k`), `${t}.k`);
  const vh = heads(v, nKV, `${t}.v`);
  // query heads grouped by their kv head: [B, nKV, rep, S, D] against k, v [B, nKV, 1, S, D]
  const scale = b.scalar(`${t}.scale`, c.attnScale, act);
  if (act === 'float16') qh = b.mul(qh, scale, `${t}.q_scaled`); // keeps Q K^T inside fp16's range
  const q5 = b.reshape(qh, [0, nKV, rep, -1, D], `${t}.q_groups`);
  const kT = b.transpose(b.unsqueeze(kh, [2], `${t}.k_groups`), [0, 1, 2, 4, 3], `${t}.k_t`);
  let s = b.matmul(q5, kT, `${t}.scores`);
  if (act !== 'float16') s = b.mul(s, scale, `${t}.scaled`);
  if (c.attnSoftcap !== null) s = softcap(b, s, c.attnSoftcap, `${t}.softcap`);
  s = x.toF32(s); // softmax in fp32, as HF
  const masked = b.add(s, maskBias(x, x.windowOf(layer)), `${t}.masked`);
  const p = x.toAct(b.softmax(masked, -1, `${t}.probs`));
  const o = b.matmul(p, b.unsqueeze(vh, [2], `${t}.v_groups`), `${t}.weighted`); // [B, nKV, rep, S, D]
  const merged = b.transpose(b.reshape(o, [0, nH, -1, D], `${t}.heads`), [0, 2, 1, 3], `${t}.bshd`);
  return b.reshape(merged, [0, 0, nH * D], `${t}.out`);
}
