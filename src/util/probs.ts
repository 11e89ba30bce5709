// Probabilities as flat Float64Array [n * 3] in Kaggle column order (winner_model_a, winner_model_b,
// winner_tie): the one softmax of the project, the A/B flip of a swapped pass and the swap-TTA merge.
// Neutral module: data/, metrics/, post/ and infer/ all use it and it imports nothing.
export type Probs = Float64Array;

/** Row-wise softmax of k logits starting at `off` into `out` (same offset); a NaN logit gives a NaN row. */
export function softmaxAt(z: ArrayLike<number>, off: number, k: number, out: Float64Array): void {
  let m = -Infinity;
  for (let c = 0; c < k; c++) m = Math.max(m, z[off + c]);
  let s = 0;
  for (let c = 0; c < k; c++) s += out[off + c] = Math.exp(z[off + c] - m);
  for (let c = 0; c < k; c++) out[off + c] /= s;
}

export function softmaxRows(logits: ArrayLike<number>, n: number, k: number): Probs {
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) softmaxAt(logits, i * k, k, out);
  return out;
}

/** A swapped pass predicts (B wins, A wins, tie) in the original terms: exchange the first two columns. */
export function flipAB(p: Probs): Probs {
  const out = new Float64Array(p.length);
  for (let i = 0; i < p.length; i += 3) {
    out[i] = p[i + 1];
    out[i + 1] = p[i];
    out[i + 2] = p[i + 2];
  }
  return out;
}

/** Mean of the first pass and the flipped swapped pass, only on `rows` when given (selective TTA). */
export function mergeSwap(first: Probs, swappedFlipped: Probs, rows?: Iterable<number>): Probs {
  const out = Float64Array.from(first);
  const idx = rows ?? Array.from({ length: first.length / 3 }, (_, i) => i);
  for (const i of idx) for (let c = 0; c < 3; c++) out[i * 3 + c] = (first[i * 3 + c] + swappedFlipped[i * 3 + c]) / 2;
  return out;
}

/** The `fraction` least certain rows (by the largest class probability), in ascending row order. */
export function leastCertain(p: Probs, fraction: number): number[] {
  const n = p.length / 3;
  const conf = Array.from({ length: n }, (_, i) => Math.max(p[i * 3], p[i * 3 + 1], p[i * 3 + 2]));
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => conf[a] - conf[b] || a - b);
  return order.slice(0, Math.round(fraction * n)).sort((a, b) => a - b);
}

export const UNIFORM: readonly number[] = [1 / 3, 1 / 3, 1 / 3];
