// One micro-batch -> the training graph's non-parameter inputs, as plain typed arrays: right-padded
// input_ids, additive attention biases (causal + padding, and the sliding-window variant the sliding
// layers use, layerWindow: query i sees key j iff i - window < j <= i), rotary tables, the one-hot pooling row
// (HF: (argmax(input_ids == pad) - 1) mod L, from input_ids) and one-hot labels. Pure.
import { rotaryTables } from '../model/rotary';
import type { ModelConfig } from '../types';
import { mulberry32 } from '../util/rng';

export interface Example {
  inputIds: ArrayLike<number>;
  label: number;
}

export type FeedTensor =
  { dtype: 'int64'; dims: number[]; data: BigInt64Array } | { dtype: 'float32'; dims: number[]; data: Float32Array };
export type Feeds = Record<string, FeedTensor>;

/** float32 min, what HF 4.45 adds for masked positions. */
const MASKED = -3.4028234663852886e38;

/** HF's pooled row: first pad position - 1, wrapping to the last position when there is no pad. */
export function poolIndex(ids: ArrayLike<number>, length: number, pad: number): number {
  let first = 0;
  for (let i = 0; i < length; i++)
    if (ids[i] === pad) {
      first = i;
      break;
    }
  return (((first - 1) % length) + length) % length;
}

export function batchFeeds(c: ModelConfig, rows: Example[]): Feeds {
  const B = rows.length;
  const S = Math.max(...rows.map((r) => r.inputIds.length));
  const ids = new BigInt64Array(B * S).fill(BigInt(c.padTokenId));
  const bias = new Float32Array(B * S * S);
  const local = c.slidingWindow !== null ? new Float32Array(B * S * S) : null;
  const pool = new Float32Array(B * S);
  const onehot = new Float32Array(B * c.numLabels);
  rows.forEach((r, b) => {
    const n = r.inputIds.length;
    const padded = new Array<number>(S).fill(c.padTokenId);
    for (let i = 0; i < n; i++) {
      ids[b * S + i] = BigInt(r.inputIds[i]);
      padded[i] = r.inputIds[i];
    }
    for (let i = 0; i < S; i++)
      for (let j = 0; j < S; j++) {
        const visible = j <= i && j < n;
        bias[(b * S + i) * S + j] = visible ? 0 : MASKED;
        if (local) local[(b * S + i) * S + j] = visible && j > i - c.slidingWindow! ? 0 : MASKED;
      }
    pool[b * S + poolIndex(padded, S, c.padTokenId)] = 1;
    if (!(Number.isInteger(r.label) && r.label >= 0 && r.label < c.numLabels))
      throw new RangeError(`label ${r.label} is outside 0..${c.numLabels - 1}`);
    onehot[b * c.numLabels + r.label] = 1;
  });
  const { cos, sin } = rotaryTables(c.rope, c.headDim, S);
  const half = c.headDim / 2;
  const full = (t: Float32Array) => {
    const out = new Float32Array(S * c.headDim);
    for (let p = 0; p < S; p++)
      for (let i = 0; i < half; i++) out[p * c.headDim + i] = out[p * c.headDim + half + i] = t[p * half + i];
    return out;
  };
  const f: Feeds = {
    input_ids: { dtype: 'int64', dims: [B, S], data: ids },
    attn_bias: { dtype: 'float32', dims: [B, 1, 1, S, S], data: bias },
    rope_cos: { dtype: 'float32', dims: [S, c.headDim], data: full(cos) },
    rope_sin: { dtype: 'float32', dims: [S, c.headDim], data: full(sin) },
    pool: { dtype: 'float32', dims: [B, 1, S], data: pool },
    labels_onehot: { dtype: 'float32', dims: [B, c.numLabels], data: onehot },
  };
  if (local) f.attn_bias_local = { dtype: 'float32', dims: [B, 1, 1, S, S], data: local };
  return f;
}

/** Inverted-dropout masks (keep with 1 - p, scaled by 1 / (1 - p)) per LoRA module, from one seed. */
export function dropoutFeeds(
  modules: { module: string; inFeatures: number }[],
  p: number,
  B: number,
  S: number,
  seed: number,
): Feeds {
  const f: Feeds = {};
  const rnd = mulberry32(seed).next;
  const keep = Math.fround(1 / (1 - p));
  for (const m of modules) {
    const data = new Float32Array(B * S * m.inFeatures);
    for (let i = 0; i < data.length; i++) data[i] = rnd() >= p ? keep : 0;
    f[`dropout.${m.module}`] = { dtype: 'float32', dims: [B, S, m.inFeatures], data };
  }
  return f;
}
