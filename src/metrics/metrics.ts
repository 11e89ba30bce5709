// Scores of probabilities against labels: multi-class log loss (Kaggle's clipping), accuracy,
// and swap consistency (does the model give the same verdict when A and B trade places?).
import type { Probs } from '../util/probs';

/** Kaggle (sklearn) clips probabilities to [eps, 1 - eps] and renormalises each row. */
export const LOGLOSS_EPS = 1e-15;

const clip = (p: number) => Math.min(Math.max(p, LOGLOSS_EPS), 1 - LOGLOSS_EPS);

/** -log of row i's (clipped, renormalised) probability of class y: the one log loss of the kit. */
export function rowLogLoss(probs: ArrayLike<number>, i: number, y: number, k = 3): number {
  let z = 0;
  for (let c = 0; c < k; c++) z += clip(probs[i * k + c]);
  return -Math.log(clip(probs[i * k + y]) / z);
}

export function logLoss(probs: ArrayLike<number>, labels: ArrayLike<number>, k = 3): number {
  let s = 0;
  for (let i = 0; i < labels.length; i++) s += rowLogLoss(probs, i, labels[i], k);
  return s / labels.length;
}

export function argmaxRow(probs: Probs, i: number, k = 3): number {
  let best = 0;
  for (let c = 1; c < k; c++) if (probs[i * k + c] > probs[i * k + best]) best = c;
  return best;
}

export function accuracy(probs: Probs, labels: ArrayLike<number>, k = 3): number {
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

/** `swappedFlipped` is the swapped pass with its A/B columns already exchanged back. */
export function swapConsistency(probs: Probs, swappedFlipped: Probs, swappedRaw: Probs, n: number): SwapConsistency {
  let agree = 0;
  let diff = 0;
  let bias = 0;
  for (let i = 0; i < n; i++) {
    if (argmaxRow(probs, i) === argmaxRow(swappedFlipped, i)) agree++;
    diff += Math.abs(probs[i * 3] - swappedFlipped[i * 3]);
    bias += (probs[i * 3] - probs[i * 3 + 1] + swappedRaw[i * 3] - swappedRaw[i * 3 + 1]) / 2;
  }
  return { agreement: agree / n, meanAbsDiffA: diff / n, positionBias: bias / n };
}

/** Log loss of always predicting the given class shares (the "predict the prior" baseline). */
export function priorLogLoss(labels: ArrayLike<number>): number {
  const counts = [0, 0, 0];
  for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
  let s = 0;
  for (const c of counts) if (c > 0) s -= c * Math.log(c / labels.length);
  return s / labels.length;
}
