// Scores of probabilities against labels: multi-class log loss (Kaggle's clipping), accuracy,
// and swap consistency (does the model give the same verdict when A and B trade places?).
import type { Probs } from '../util/probs';

/** Kaggle (sklearn) clips probabilities to [eps, 1 - eps] and renormalises each row. */
const LOGLOSS_EPS = 1e-15;

const clip = (p: number) => Math.min(Math.max(p, LOGLOSS_EPS), 1 - LOGLOSS_EPS);

/** -log of row i's (clipped, renormalised) probability of class y: the one log loss of the kit. */
export function rowLogLoss(probs: ArrayLike<number>, i: number, y: number, k: number): number {
  let z = 0;
  for (let c = 0; c < k; c++) z += clip(probs[i * k + c]);
  return -Math.log(clip(probs[i * k + y]) / z);
}

export function logLoss(probs: ArrayLike<number>, labels: ArrayLike<number>, k: number): number {
  let s = 0;
  for (let i = 0; i < labels.length; i++) s += rowLogLoss(probs, i, labels[i], k);
  return s / labels.length;
}

export function argmaxRow(probs: Probs, i: number, k: number): number {
  let best = 0;
  for (let c = 1; c < k; c++) if (probs[i * k + c] > probs[i * k + best]) best = c;
  return best;
}

export function accuracy(probs: Probs, labels: ArrayLike<number>, k: number): number {
  let hit = 0;
  for (let i = 0; i < labels.length; i++) if (argmaxRow(probs, i, k) === labels[i]) hit++;
  return hit / labels.length;
}

export interface SwapConsistency {
  /** Share of rows whose verdict (argmax) is the same after swapping A and B (swapped columns flipped back). */
  agreement: number;
  /** Mean |P(A wins) - P'(A wins)| where P' comes from the swapped pass, flipped back. */
  meanAbsDiffA: number;
  /** Mean P(first position wins) - P(second position wins) over both passes: > 0 means the first position is favoured. */
  positionBias: number;
}

/** `swappedFlipped` is the swapped pass with its A/B columns already exchanged back; columns 0 and 1 are A and B. */
export function swapConsistency(
  probs: Probs,
  swappedFlipped: Probs,
  swappedRaw: Probs,
  n: number,
  k: number,
): SwapConsistency {
  let agree = 0;
  let diff = 0;
  let bias = 0;
  for (let i = 0; i < n; i++) {
    if (argmaxRow(probs, i, k) === argmaxRow(swappedFlipped, i, k)) agree++;
    diff += Math.abs(probs[i * k] - swappedFlipped[i * k]);
    bias += (probs[i * k] - probs[i * k + 1] + swappedRaw[i * k] - swappedRaw[i * k + 1]) / 2;
  }
  return { agreement: agree / n, meanAbsDiffA: diff / n, positionBias: bias / n };
}

/** Accuracy per group (e.g. the WSDM `language` column), largest group first. */
export function accuracyByGroup(
  probs: Probs,
  labels: ArrayLike<number>,
  groups: readonly string[],
  k: number,
): { group: string; rows: number; accuracy: number }[] {
  const hit = new Map<string, [number, number]>();
  for (let i = 0; i < labels.length; i++) {
    const g = hit.get(groups[i]) ?? [0, 0];
    g[0]++;
    if (argmaxRow(probs, i, k) === labels[i]) g[1]++;
    hit.set(groups[i], g);
  }
  return [...hit]
    .map(([group, [rows, h]]) => ({ group, rows, accuracy: h / rows }))
    .sort((a, b) => b.rows - a.rows || a.group.localeCompare(b.group));
}

/** Log loss of always predicting the given class shares (the "predict the prior" baseline). */
export function priorLogLoss(labels: ArrayLike<number>, k: number): number {
  const counts = new Array<number>(k).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
  let s = 0;
  for (const c of counts) if (c > 0) s -= c * Math.log(c / labels.length);
  return s / labels.length;
}
