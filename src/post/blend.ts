// Weighted blends of several prediction sets (e.g. a 9B and a 2B model at 0.65 / 0.35), the one blend
// of the kit (calibrate, predict, validate): a linear mixture of probabilities with weights on the
// simplex, fitted by exponentiated gradient (the loss is convex in the weights, so this reaches the optimum).
import { logLoss } from '../metrics/metrics';
import { PROB_EPS } from './fit';

export function blendProbs(sets: Float64Array[], weights: number[]): Float64Array {
  if (sets.length !== weights.length)
    throw new RangeError(`blend: ${sets.length} prediction sets but ${weights.length} weights`);
  const out = new Float64Array(sets[0].length);
  sets.forEach((s, k) => {
    if (s.length !== out.length)
      throw new RangeError(`blend: prediction set ${k} has ${s.length} values, set 0 has ${out.length}`);
    for (let j = 0; j < out.length; j++) out[j] += weights[k] * s[j];
  });
  return out;
}

/**
 * blendProbs where set m lacks the rows in absent[m] (a model that did not reach them in time): such a
 * row takes the other sets' blend, weights renormalised over them; `empty` lists the rows no set has
 * (ascending; left NaN for the caller to fill).
 */
export function blendPartial(
  sets: Float64Array[],
  weights: number[],
  width: number,
  absent: readonly (readonly number[])[],
): { probs: Float64Array; empty: number[] } {
  const probs = blendProbs(sets, weights);
  const empty: number[] = [];
  if (!absent.some((a) => a.length)) return { probs, empty };
  const missing = absent.map((a) => new Set(a));
  for (const i of new Set(absent.flat())) {
    let w = 0;
    probs.fill(0, i * width, i * width + width);
    sets.forEach((s, m) => {
      if (missing[m].has(i)) return;
      w += weights[m];
      for (let c = 0; c < width; c++) probs[i * width + c] += weights[m] * s[i * width + c];
    });
    if (w > 0) for (let c = 0; c < width; c++) probs[i * width + c] /= w;
    else {
      probs.fill(NaN, i * width, i * width + width);
      empty.push(i);
    }
  }
  return { probs, empty: empty.sort((a, b) => a - b) };
}

const blendLoss = (sets: Float64Array[], labels: ArrayLike<number>, w: number[], width: number): number =>
  logLoss(blendProbs(sets, w), labels, width);

/** Blend weights of K prediction sets of `width` columns (the task's labels) minimising log loss. */
export function fitBlendWeights(
  sets: Float64Array[],
  labels: ArrayLike<number>,
  width: number,
  iters = 2000,
): number[] {
  const K = sets.length;
  let w = new Array(K).fill(1 / K);
  if (K === 1) return w;
  let loss = blendLoss(sets, labels, w, width);
  let eta = 1;
  for (let it = 0; it < iters && eta > 1e-8; it++) {
    const g = new Array(K).fill(0);
    for (let i = 0; i < labels.length; i++) {
      let p = 0;
      for (let k = 0; k < K; k++) p += w[k] * sets[k][i * width + labels[i]];
      p = Math.max(p, PROB_EPS);
      for (let k = 0; k < K; k++) g[k] -= sets[k][i * width + labels[i]] / p / labels.length;
    }
    const next = w.map((v, k) => v * Math.exp(-eta * g[k]));
    const z = next.reduce((a, b) => a + b, 0);
    const cand = next.map((v) => v / z);
    const l = blendLoss(sets, labels, cand, width);
    if (l <= loss) {
      const gain = loss - l;
      [w, loss] = [cand, l];
      eta *= 1.5;
      if (gain < 1e-13) break;
    } else eta /= 2;
  }
  return w;
}
