// Logits -> probabilities and the swap-TTA merge. Probabilities are flat Float64Array [n * 3] in
// Kaggle column order (winner_model_a, winner_model_b, winner_tie).
export type Probs = Float64Array;

export function softmaxRows(logits: ArrayLike<number>, n: number, k: number): Probs {
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let c = 0; c < k; c++) m = Math.max(m, logits[i * k + c]);
    let z = 0;
    for (let c = 0; c < k; c++) z += out[i * k + c] = Math.exp(logits[i * k + c] - m);
    for (let c = 0; c < k; c++) out[i * k + c] /= z;
  }
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

/** Rows ordered from least to most certain (by the largest class probability). */
export function leastCertain(p: Probs, fraction: number): number[] {
  const n = p.length / 3;
  const conf = Array.from({ length: n }, (_, i) => Math.max(p[i * 3], p[i * 3 + 1], p[i * 3 + 2]));
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => conf[a] - conf[b] || a - b);
  return order.slice(0, Math.round(fraction * n)).sort((a, b) => a - b);
}

/** Every row finite, non-negative, summing to 1 (renormalised in float64); throws naming the row otherwise. */
export function checkProbs(p: Probs, ids: string[]): void {
  for (let i = 0; i < ids.length; i++) {
    const a = p[i * 3], b = p[i * 3 + 1], c = p[i * 3 + 2];
    const s = a + b + c;
    if (![a, b, c].every((x) => Number.isFinite(x) && x >= 0) || !(s > 0))
      throw new RangeError(`row id ${ids[i]}: invalid probabilities [${a}, ${b}, ${c}]`);
  }
}
