// The difference-bucket baseline: quantile buckets of (characters of A - characters of B), each with
// its class frequencies smoothed towards the overall shares (a Dirichlet prior of `alpha` rows).
import { binOf } from './gbdt';
export interface DiffBuckets {
  /** Bucket upper bounds (exclusive), ascending; buckets = edges.length + 1. */
  edges: number[];
  /** Flat [buckets * k] probabilities in the task's column order. */
  probs: number[];
  /** Columns per bucket (the task's label count; absent in files written before it was stored). */
  k?: number;
}

// A row's bucket: the number of edges <= its difference.
const bucketOf = binOf;

export function fitDiffBuckets(
  diff: ArrayLike<number>,
  labels: ArrayLike<number>,
  k: number,
  quantiles = 250,
  alpha = 10,
): DiffBuckets {
  const n = labels.length;
  const sorted = Float64Array.from(diff).sort();
  const edges: number[] = [];
  for (let q = 1; q < quantiles; q++) {
    const e = sorted[Math.floor((q * n) / quantiles)];
    if (e > sorted[0] && (edges.length === 0 || e > edges[edges.length - 1])) edges.push(e);
  }
  const prior = new Array<number>(k).fill(0);
  for (let i = 0; i < n; i++) prior[labels[i]] += 1 / n;
  const counts = new Float64Array((edges.length + 1) * k);
  for (let i = 0; i < n; i++) counts[bucketOf(edges, diff[i]) * k + labels[i]]++;
  const probs: number[] = [];
  for (let b = 0; b <= edges.length; b++) {
    let tot = 0;
    for (let c = 0; c < k; c++) tot += counts[b * k + c];
    tot += alpha;
    for (let c = 0; c < k; c++) probs.push((counts[b * k + c] + alpha * prior[c]) / tot);
  }
  return k === 3 ? { edges, probs } : { edges, probs, k };
}

export function predictDiffBuckets(model: DiffBuckets, diff: ArrayLike<number>): Float64Array {
  // Files written before `k` was stored: the width from the table itself.
  const k = model.k ?? model.probs.length / (model.edges.length + 1);
  const out = new Float64Array(diff.length * k);
  for (let i = 0; i < diff.length; i++) {
    const b = bucketOf(model.edges, diff[i]);
    for (let c = 0; c < k; c++) out[i * k + c] = model.probs[b * k + c];
  }
  return out;
}
