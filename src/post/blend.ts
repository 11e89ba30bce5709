// Weighted blends of several prediction sets (e.g. Gemma 0.65 / Llama 0.35): a linear mixture of
// probabilities with weights on the simplex, fitted by exponentiated gradient (the loss is convex in
// the weights, so this reaches the optimum).
import { logLoss } from '../metrics/metrics';
import { PROB_EPS } from './fit';

export function blendProbs(sets: Float64Array[], weights: number[]): Float64Array {
  if (sets.length !== weights.length) throw new RangeError(`blend: ${sets.length} prediction sets but ${weights.length} weights`);
  const out = new Float64Array(sets[0].length);
  sets.forEach((s, k) => {
    if (s.length !== out.length) throw new RangeError(`blend: prediction set ${k} has ${s.length} values, set 0 has ${out.length}`);
    for (let j = 0; j < out.length; j++) out[j] += weights[k] * s[j];
  });
  return out;
}

const blendLoss = (sets: Float64Array[], labels: ArrayLike<number>, w: number[], width: number): number => logLoss(blendProbs(sets, w), labels, width);

/** Blend weights of K prediction sets of `width` columns (the task's labels) minimising log loss. */
export function fitBlendWeights(sets: Float64Array[], labels: ArrayLike<number>, iters = 2000, width = 3): number[] {
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
