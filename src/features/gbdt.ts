// Gradient-boosted trees for K-class softmax, histogram style (as XGBoost's `hist`): features cut into
// quantile bins once, depth-limited trees grown level by level on gradient/hessian histograms, L2 on
// leaf weights (lambda), min_child_weight, shrinkage, seeded row/column subsampling. One tree per class
// per round. Models are plain JSON; prediction walks raw feature values (x < threshold goes left).
import { uniform } from '../util/rng';
import { softmaxAt, softmaxRows } from '../util/probs';

export interface GbdtOptions {
  rounds: number;
  learningRate: number;
  maxDepth: number;
  /** L2 penalty on leaf weights. */
  lambda: number;
  /** Minimum hessian sum in a child. */
  minChildWeight: number;
  /** Minimum loss reduction to split. */
  gamma: number;
  maxBins: number;
  subsample: number;
  colsample: number;
  seed: number;
}

export const GBDT_DEFAULTS: GbdtOptions = {
  rounds: 150, // boosting rounds (one tree per class each)
  learningRate: 0.05, // shrinkage
  maxDepth: 3,
  lambda: 1,
  minChildWeight: 5,
  gamma: 0,
  maxBins: 64,
  subsample: 1,
  colsample: 1,
  seed: 42,
};

/** A tree as parallel arrays; node 0 is the root; feature -1 marks a leaf holding `value`. */
export interface Tree {
  feature: number[];
  threshold: number[];
  left: number[];
  right: number[];
  value: number[];
}

export interface GbdtModel {
  numClass: number;
  numFeatures: number;
  /** Starting logits (log class shares of the training rows). */
  baseScore: number[];
  /** trees[round][class]. */
  trees: Tree[][];
  options: GbdtOptions;
}

/** Cut points per feature from quantiles of the distinct values (at most maxBins - 1 cuts). */
function binEdges(X: Float64Array, n: number, d: number, maxBins: number): Float64Array[] {
  const edges: Float64Array[] = [];
  const col = new Float64Array(n);
  for (let f = 0; f < d; f++) {
    for (let i = 0; i < n; i++) col[i] = X[i * d + f];
    const s = Float64Array.from(col).sort();
    const uniq: number[] = [];
    for (let i = 0; i < n; i++) if (i === 0 || s[i] !== s[i - 1]) uniq.push(s[i]);
    const cuts: number[] = [];
    if (uniq.length <= maxBins) for (let j = 1; j < uniq.length; j++) cuts.push((uniq[j - 1] + uniq[j]) / 2);
    else
      for (let q = 1; q < maxBins; q++) {
        const v = s[Math.floor((q * n) / maxBins)];
        // cut just below v so the rows equal to v start the next bin
        const prev = uniq[Math.max(0, lowerBound(uniq, v) - 1)];
        const c = prev < v ? (prev + v) / 2 : v;
        if (c > s[0] && (cuts.length === 0 || c > cuts[cuts.length - 1])) cuts.push(c);
      }
    edges.push(Float64Array.from(cuts));
  }
  return edges;
}

function lowerBound(a: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (a[m] < x) lo = m + 1;
    else hi = m;
  }
  return lo;
}

/** bin = number of cuts <= x, so `bin <= b` is exactly `x < cuts[b]`. */
export function binOf(cuts: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = cuts.length;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (x >= cuts[m]) lo = m + 1;
    else hi = m;
  }
  return lo;
}

export function trainGbdt(
  X: Float64Array,
  labels: ArrayLike<number>,
  numClass: number,
  opts: Partial<GbdtOptions> = {},
): GbdtModel {
  const o: GbdtOptions = { ...GBDT_DEFAULTS, ...opts };
  const n = labels.length;
  const d = X.length / n;
  if (!Number.isInteger(d)) throw new RangeError(`gbdt: ${X.length} feature values is not a multiple of ${n} rows`);
  const edges = binEdges(X, n, d, o.maxBins);
  const bins = new Uint8Array(d * n); // column-major for histogram building
  for (let f = 0; f < d; f++) for (let i = 0; i < n; i++) bins[f * n + i] = binOf(edges[f], X[i * d + f]);
  const counts = new Array(numClass).fill(0);
  for (let i = 0; i < n; i++) counts[labels[i]]++;
  const baseScore = counts.map((c) => Math.log(Math.max(c, 1) / n));
  const F = new Float64Array(n * numClass);
  for (let i = 0; i < n; i++) for (let c = 0; c < numClass; c++) F[i * numClass + c] = baseScore[c];
  const g = new Float64Array(n);
  const h = new Float64Array(n);
  const p = new Float64Array(n * numClass);
  const rand = uniform(o.seed);
  const trees: Tree[][] = [];
  const maxB = o.maxBins + 1;
  const hg = new Float64Array(d * maxB);
  const hh = new Float64Array(d * maxB);
  for (let round = 0; round < o.rounds; round++) {
    for (let i = 0; i < n; i++) softmaxAt(F, i * numClass, numClass, p);
    const rows: number[] = [];
    for (let i = 0; i < n; i++) if (o.subsample >= 1 || rand() < o.subsample) rows.push(i);
    const perRound: Tree[] = [];
    for (let c = 0; c < numClass; c++) {
      for (let i = 0; i < n; i++) {
        const pi = p[i * numClass + c];
        g[i] = pi - (labels[i] === c ? 1 : 0);
        // XGBoost's softmax objective uses 2p(1-p): a safer (halved) Newton step; kept so its
        // lambda / min_child_weight mean the same here.
        h[i] = Math.max(2 * pi * (1 - pi), 1e-16);
      }
      const feats: number[] = [];
      for (let f = 0; f < d; f++) if (o.colsample >= 1 || rand() < o.colsample) feats.push(f);
      if (feats.length === 0) feats.push(Math.floor(rand() * d));
      const tree = growTree(bins, edges, n, g, h, rows, feats, o, hg, hh, maxB);
      perRound.push(tree);
      for (let i = 0; i < n; i++) F[i * numClass + c] += treeValue(tree, X, i * d);
    }
    trees.push(perRound);
  }
  return { numClass, numFeatures: d, baseScore, trees, options: o };
}

function growTree(
  bins: Uint8Array,
  edges: Float64Array[],
  n: number,
  g: Float64Array,
  h: Float64Array,
  rootRows: number[],
  feats: number[],
  o: GbdtOptions,
  hg: Float64Array,
  hh: Float64Array,
  maxB: number,
): Tree {
  const tree: Tree = { feature: [], threshold: [], left: [], right: [], value: [] };
  const addLeaf = (G: number, H: number) => {
    tree.feature.push(-1);
    tree.threshold.push(0);
    tree.left.push(-1);
    tree.right.push(-1);
    tree.value.push((-G / (H + o.lambda)) * o.learningRate);
    return tree.feature.length - 1;
  };
  const sum = (rows: number[]) => {
    let G = 0;
    let H = 0;
    for (const i of rows) {
      G += g[i];
      H += h[i];
    }
    return [G, H];
  };
  let level: { node: number; rows: number[]; G: number; H: number }[] = [];
  const [G0, H0] = sum(rootRows);
  level.push({ node: addLeaf(G0, H0), rows: rootRows, G: G0, H: H0 });
  for (let depth = 0; depth < o.maxDepth && level.length; depth++) {
    const next: typeof level = [];
    for (const { node, rows, G, H } of level) {
      if (H < 2 * o.minChildWeight) continue;
      for (const f of feats) {
        const nb = edges[f].length + 1;
        hg.fill(0, f * maxB, f * maxB + nb);
        hh.fill(0, f * maxB, f * maxB + nb);
      }
      for (const f of feats) {
        const off = f * n;
        const ho = f * maxB;
        for (const i of rows) {
          const b = bins[off + i];
          hg[ho + b] += g[i];
          hh[ho + b] += h[i];
        }
      }
      const parent = (G * G) / (H + o.lambda);
      let best = { gain: 0, f: -1, b: -1, GL: 0, HL: 0 };
      for (const f of feats) {
        const nb = edges[f].length + 1;
        let GL = 0;
        let HL = 0;
        for (let b = 0; b < nb - 1; b++) {
          GL += hg[f * maxB + b];
          HL += hh[f * maxB + b];
          const HR = H - HL;
          if (HL < o.minChildWeight) continue;
          if (HR < o.minChildWeight) break;
          const GR = G - GL;
          const gain = 0.5 * ((GL * GL) / (HL + o.lambda) + (GR * GR) / (HR + o.lambda) - parent) - o.gamma;
          if (gain > best.gain + 1e-12) best = { gain, f, b, GL, HL };
        }
      }
      if (best.f < 0) continue;
      const L: number[] = [];
      const R: number[] = [];
      const off = best.f * n;
      for (const i of rows) (bins[off + i] <= best.b ? L : R).push(i);
      const GR = G - best.GL;
      const HR = H - best.HL;
      tree.feature[node] = best.f;
      tree.threshold[node] = edges[best.f][best.b];
      tree.value[node] = 0;
      tree.left[node] = addLeaf(best.GL, best.HL);
      tree.right[node] = addLeaf(GR, HR);
      next.push(
        { node: tree.left[node], rows: L, G: best.GL, H: best.HL },
        { node: tree.right[node], rows: R, G: GR, H: HR },
      );
    }
    level = next;
  }
  return tree;
}

function treeValue(t: Tree, X: ArrayLike<number>, off: number): number {
  let k = 0;
  while (t.feature[k] >= 0) k = X[off + t.feature[k]] < t.threshold[k] ? t.left[k] : t.right[k];
  return t.value[k];
}

/** Raw logits [n * numClass]. */
export function predictGbdtLogits(model: GbdtModel, X: Float64Array): Float64Array {
  const d = model.numFeatures;
  const n = X.length / d;
  const K = model.numClass;
  const F = new Float64Array(n * K);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < K; c++) F[i * K + c] = model.baseScore[c];
    for (const round of model.trees) for (let c = 0; c < K; c++) F[i * K + c] += treeValue(round[c], X, i * d);
  }
  return F;
}

/** Probabilities [n * numClass]. */
export function predictGbdt(model: GbdtModel, X: Float64Array): Float64Array {
  const K = model.numClass;
  const F = predictGbdtLogits(model, X);
  return softmaxRows(F, F.length / K, K);
}
