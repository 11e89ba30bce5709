// Probabilities as flat Float64Array [n * k] in a task's column order (LMSYS: winner_model_a,
// winner_model_b, winner_tie; WSDM: model_a, model_b): the one softmax of the project, the A/B flip of
// a swapped pass and the swap-TTA merge. The width k is the task's label count (src/task/task.ts);
// every function takes it (no default). Neutral module: data/, metrics/, post/ and infer/ all use it and
// it imports nothing.
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

/**
 * A swapped pass predicts "B wins" where the original frame says "A wins": column c of the result is
 * column swap[c] of the input (swap = swapColumns(task); its length is the row width).
 */
export function flipAB(p: Probs, swap: readonly number[]): Probs {
  const k = swap.length;
  const out = new Float64Array(p.length);
  for (let i = 0; i < p.length; i += k) for (let c = 0; c < k; c++) out[i + c] = p[i + swap[c]];
  return out;
}

/** Mean of the first pass and the flipped swapped pass, only on `rows` when given (selective TTA). */
export function mergeSwap(first: Probs, swappedFlipped: Probs, k: number, rows?: Iterable<number>): Probs {
  const out = Float64Array.from(first);
  const idx = rows ?? Array.from({ length: first.length / k }, (_, i) => i);
  for (const i of idx) for (let c = 0; c < k; c++) out[i * k + c] = (first[i * k + c] + swappedFlipped[i * k + c]) / 2;
  return out;
}

/** Row i's largest class probability (how certain the model is about it). */
function rowConfidence(p: Probs, i: number, k: number): number {
  let m = -Infinity;
  for (let c = 0; c < k; c++) m = Math.max(m, p[i * k + c]);
  return m;
}

/** Row indices from least to most certain (by the largest class probability; ties by row order). */
export function byCertainty(p: Probs, k: number): number[] {
  const n = p.length / k;
  const conf = Array.from({ length: n }, (_, i) => rowConfidence(p, i, k));
  return Array.from({ length: n }, (_, i) => i).sort((a, b) => conf[a] - conf[b] || a - b);
}

/** The `fraction` least certain rows (by the largest class probability), in ascending row order. */
export function leastCertain(p: Probs, fraction: number, k: number): number[] {
  const n = p.length / k;
  return byCertainty(p, k)
    .slice(0, Math.round(fraction * n))
    .sort((a, b) => a - b);
}

/** Whether row i of a [n * k] set is a prediction (a failed or unreached row is NaN). */
export function rowOk(p: Probs, i: number, k: number): boolean {
  for (let c = 0; c < k; c++) if (!Number.isFinite(p[i * k + c])) return false;
  return true;
}

/** A copy with failed (non-finite) rows as the uniform prediction. */
export function fillUniform(p: Probs, k: number): Probs {
  const out = Float64Array.from(p);
  const u = uniform(k);
  for (let i = 0; i < p.length / k; i++) if (!rowOk(p, i, k)) out.set(u, i * k);
  return out;
}

/** The uniform prediction over k columns. */
export const uniform = (k: number): number[] => new Array<number>(k).fill(1 / k);
