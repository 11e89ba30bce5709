// Small numeric fitters shared by the calibration methods: a damped Newton solver for softmax models
// whose logits are linear in the parameters (temperature, vector scaling, Davidson ties), golden-section
// search, Nelder-Mead, seeded shuffles and K-fold splits. Pure functions over typed arrays.

import { uniform } from '../util/rng';
import { softmaxAt } from '../util/probs';

export const PROB_EPS = 1e-15;

/** mulberry32 (src/util/rng.ts): a tiny seeded generator so folds and subsamples are reproducible. */
export const rng = uniform;

/** Fold index per row (0..k-1), balanced, from a seeded shuffle. */
export function kFolds(n: number, k: number, seed: number): Int32Array {
  const r = rng(seed);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const fold = new Int32Array(n);
  order.forEach((row, pos) => (fold[row] = pos % k));
  return fold;
}

export function logProbs(probs: ArrayLike<number>): Float64Array {
  const out = new Float64Array(probs.length);
  for (let i = 0; i < probs.length; i++) out[i] = Math.log(Math.max(probs[i], PROB_EPS));
  return out;
}

/**
 * Minimises sum_i -log softmax(z_i)[y_i] + ridge/2 * |theta - theta0|^2 where z_ic = theta . phi(i, c).
 * The objective is convex, so Newton with backtracking finds the optimum in a few steps.
 * `phi(i, c, out)` writes the d features of class c of row i.
 */
export function fitLinearSoftmax(
  rows: ArrayLike<number>,
  labels: ArrayLike<number>,
  d: number,
  phi: (i: number, c: number, out: Float64Array) => void,
  theta0: number[],
  k: number,
  ridge = 1e-6,
): number[] {
  const theta = Float64Array.from(theta0);
  const f = new Float64Array(k * d);
  const z = new Float64Array(k);
  const p = new Float64Array(k);
  // Row i's features of every class into f and its class scores under th into z.
  const scoreRow = (th: ArrayLike<number>, i: number) => {
    for (let c = 0; c < k; c++) {
      phi(i, c, f.subarray(c * d, c * d + d));
      let v = 0;
      for (let j = 0; j < d; j++) v += th[j] * f[c * d + j];
      z[c] = v;
    }
  };
  const objective = (th: Float64Array): number => {
    let s = 0;
    for (let r = 0; r < rows.length; r++) {
      const i = rows[r];
      scoreRow(th, i);
      let m = -Infinity;
      for (let c = 0; c < k; c++) m = Math.max(m, z[c]);
      let lse = 0;
      for (let c = 0; c < k; c++) lse += Math.exp(z[c] - m);
      s += m + Math.log(lse) - z[labels[i]];
    }
    for (let j = 0; j < d; j++) s += (ridge / 2) * (th[j] - theta0[j]) ** 2;
    return s;
  };
  let cur = objective(theta);
  for (let iter = 0; iter < 50; iter++) {
    const g = new Float64Array(d);
    const H = new Float64Array(d * d);
    const mean = new Float64Array(d);
    for (let r = 0; r < rows.length; r++) {
      const i = rows[r];
      scoreRow(theta, i);
      softmaxAt(z, 0, k, p);
      mean.fill(0);
      for (let c = 0; c < k; c++) for (let j = 0; j < d; j++) mean[j] += p[c] * f[c * d + j];
      const y = labels[i];
      for (let j = 0; j < d; j++) g[j] += mean[j] - f[y * d + j];
      for (let c = 0; c < k; c++)
        for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) H[a * d + b] += p[c] * f[c * d + a] * f[c * d + b];
      for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) H[a * d + b] -= mean[a] * mean[b];
    }
    for (let j = 0; j < d; j++) {
      g[j] += ridge * (theta[j] - theta0[j]);
      H[j * d + j] += ridge + 1e-9 * rows.length;
    }
    const step = solve(H, g, d);
    let t = 1;
    let next = cur;
    const trial = new Float64Array(d);
    for (let ls = 0; ls < 30; ls++) {
      for (let j = 0; j < d; j++) trial[j] = theta[j] - t * step[j];
      next = objective(trial);
      if (next <= cur) break;
      t /= 2;
    }
    if (!(next <= cur)) break;
    theta.set(trial);
    const gain = cur - next;
    cur = next;
    if (gain < 1e-12 * Math.max(1, rows.length)) break;
  }
  return Array.from(theta);
}

/** Gaussian elimination with partial pivoting for a small dense system H x = g. */
function solve(H: Float64Array, g: Float64Array, d: number): Float64Array {
  const A = Float64Array.from(H);
  const b = Float64Array.from(g);
  for (let col = 0; col < d; col++) {
    let piv = col;
    for (let r = col + 1; r < d; r++) if (Math.abs(A[r * d + col]) > Math.abs(A[piv * d + col])) piv = r;
    if (piv !== col) {
      for (let c = 0; c < d; c++) [A[col * d + c], A[piv * d + c]] = [A[piv * d + c], A[col * d + c]];
      [b[col], b[piv]] = [b[piv], b[col]];
    }
    const diag = A[col * d + col] || 1e-12;
    for (let r = col + 1; r < d; r++) {
      const m = A[r * d + col] / diag;
      for (let c = col; c < d; c++) A[r * d + c] -= m * A[col * d + c];
      b[r] -= m * b[col];
    }
  }
  const x = new Float64Array(d);
  for (let r = d - 1; r >= 0; r--) {
    let s = b[r];
    for (let c = r + 1; c < d; c++) s -= A[r * d + c] * x[c];
    x[r] = s / (A[r * d + r] || 1e-12);
  }
  return x;
}

/** Nelder-Mead simplex minimiser for small non-linear fits (Rao-Kupper). */
export function nelderMead(f: (x: number[]) => number, x0: number[], step = 0.5, iters = 400): number[] {
  const d = x0.length;
  let pts = [x0.slice()];
  for (let j = 0; j < d; j++) {
    const p = x0.slice();
    p[j] += step;
    pts.push(p);
  }
  let vals = pts.map(f);
  for (let it = 0; it < iters; it++) {
    const order = vals.map((_, i) => i).sort((a, b) => vals[a] - vals[b]);
    pts = order.map((i) => pts[i]);
    vals = order.map((i) => vals[i]);
    if (Math.abs(vals[d] - vals[0]) < 1e-12 * (1 + Math.abs(vals[0]))) break;
    const cen = new Array(d).fill(0);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) cen[j] += pts[i][j] / d;
    const at = (t: number) => cen.map((c, j) => c + t * (pts[d][j] - c));
    const xr = at(-1);
    const fr = f(xr);
    if (fr < vals[0]) {
      const xe = at(-2);
      const fe = f(xe);
      [pts[d], vals[d]] = fe < fr ? [xe, fe] : [xr, fr];
    } else if (fr < vals[d - 1]) {
      [pts[d], vals[d]] = [xr, fr];
    } else {
      const xc = at(0.5);
      const fc = f(xc);
      if (fc < vals[d]) [pts[d], vals[d]] = [xc, fc];
      else
        for (let i = 1; i <= d; i++) {
          pts[i] = pts[i].map((v, j) => pts[0][j] + 0.5 * (v - pts[0][j]));
          vals[i] = f(pts[i]);
        }
    }
  }
  return pts[vals.indexOf(Math.min(...vals))];
}
