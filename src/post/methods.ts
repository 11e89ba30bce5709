// The calibration methods over k-class probabilities (the task's column order: LMSYS A/B/tie, WSDM A/B;
// k defaults to 3): how each one is applied
// and how its parameters are fitted to labels. Temperature, vector scaling and per-length-bin
// temperatures act on log-probabilities; the multiplier rule is the seeds' hand-tuned adjustment
// (scale confident winner probabilities, boost ties, renormalise) with its three numbers fitted.
import { logLoss } from '../metrics/metrics';
import { softmaxAt } from '../util/probs';
import { fitLinearSoftmax, logProbs } from './fit';

export const METHODS = ['identity', 'temperature', 'vector', 'length-bins', 'multipliers'] as const;
export type MethodName = (typeof METHODS)[number];

export interface TemperatureParams {
  temperature: number;
}
export interface VectorParams {
  temperature: number;
  /** Added to log-probabilities / temperature, per task column; bias[0] is fixed at 0. */
  bias: number[];
}
export interface LengthBinsParams {
  /** Upper bounds (exclusive) of every bin but the last, in text characters; bins.length = edges.length + 1. */
  edges: number[];
  temperatures: number[];
}
export interface MultiplierParams {
  /** winner_model_a / winner_model_b above this are multiplied by `multiplier`. */
  threshold: number;
  multiplier: number;
  /** winner_tie is always multiplied by this (seeds: 0.75, 1.125, 1.325); 1 on a task without ties. */
  tieMultiplier: number;
}
export type MethodParams =
  Record<string, never> | TemperatureParams | VectorParams | LengthBinsParams | MultiplierParams;

export class CalibrationError extends Error {
  override name = 'CalibrationError';
}

function scaleLogits(
  lp: Float64Array,
  n: number,
  temps: (i: number) => number,
  bias: number[] | undefined,
  k: number,
): Float64Array {
  const z = new Float64Array(n * k);
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    const a = 1 / temps(i);
    for (let c = 0; c < k; c++) z[i * k + c] = lp[i * k + c] * a + (bias ? bias[c] : 0);
    softmaxAt(z, i * k, k, out);
  }
  return out;
}

export function binOf(edges: number[], length: number): number {
  let b = 0;
  while (b < edges.length && length >= edges[b]) b++;
  return b;
}

export function applyMethod(
  method: MethodName,
  params: MethodParams,
  probs: Float64Array,
  k: number,
  lengths?: ArrayLike<number>,
): Float64Array {
  const n = probs.length / k;
  switch (method) {
    case 'identity':
      return Float64Array.from(probs);
    case 'temperature': {
      const { temperature } = params as TemperatureParams;
      return scaleLogits(logProbs(probs), n, () => temperature, undefined, k);
    }
    case 'vector': {
      const { temperature, bias } = params as VectorParams;
      return scaleLogits(logProbs(probs), n, () => temperature, bias, k);
    }
    case 'length-bins': {
      const { edges, temperatures } = params as LengthBinsParams;
      if (!lengths || lengths.length !== n)
        throw new CalibrationError(
          `length-bins calibration needs one text length per row (got ${lengths ? lengths.length : 'none'} for ${n} rows); pass the rows' prompt+response character counts`,
        );
      return scaleLogits(logProbs(probs), n, (i) => temperatures[binOf(edges, lengths[i])], undefined, k);
    }
    case 'multipliers': {
      const { threshold, multiplier, tieMultiplier } = params as MultiplierParams;
      const out = new Float64Array(n * k);
      for (let i = 0; i < n; i++) {
        const a = probs[i * k] > threshold ? probs[i * k] * multiplier : probs[i * k];
        const b = probs[i * k + 1] > threshold ? probs[i * k + 1] * multiplier : probs[i * k + 1];
        if (k === 2) {
          out[i * 2] = a / (a + b);
          out[i * 2 + 1] = b / (a + b);
          continue;
        }
        const t = probs[i * 3 + 2] * tieMultiplier;
        const s = a + b + t;
        out[i * 3] = a / s;
        out[i * 3 + 1] = b / s;
        out[i * 3 + 2] = t / s;
      }
      return out;
    }
    default:
      throw new CalibrationError(
        `Unknown calibration method: ${String(method)} (expected one of ${METHODS.join(', ')})`,
      );
  }
}

const all = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

export function fitTemperature(
  probs: Float64Array,
  labels: ArrayLike<number>,
  k: number,
  rows: ArrayLike<number> = all(labels.length),
): TemperatureParams {
  const lp = logProbs(probs);
  const [a] = fitLinearSoftmax(rows, labels, 1, (i, c, f) => (f[0] = lp[i * k + c]), [1], k);
  return { temperature: 1 / Math.max(a, 1e-3) };
}

/** One temperature and a bias per column but the first (fixed at 0). */
export function fitVector(probs: Float64Array, labels: ArrayLike<number>, k: number): VectorParams {
  const lp = logProbs(probs);
  const [a, ...b] = fitLinearSoftmax(
    all(labels.length),
    labels,
    k,
    (i, c, f) => {
      f[0] = lp[i * k + c];
      for (let j = 1; j < k; j++) f[j] = c === j ? 1 : 0;
    },
    [1, ...new Array<number>(k - 1).fill(0)],
    k,
  );
  return { temperature: 1 / Math.max(a, 1e-3), bias: [0, ...b] };
}

/**
 * One temperature per quantile bin of text length. Each bin's inverse temperature is pulled towards
 * the global one (ridge = `shrink` pseudo-rows), so a thin bin cannot drift far on noise.
 */
export function fitLengthBins(
  probs: Float64Array,
  labels: ArrayLike<number>,
  lengths: ArrayLike<number>,
  k: number,
  bins = 4,
  shrink = 20,
): LengthBinsParams {
  const n = labels.length;
  if (lengths.length !== n) throw new CalibrationError(`length-bins: ${lengths.length} lengths for ${n} rows`);
  const sorted = Float64Array.from(lengths).sort();
  const edges: number[] = [];
  for (let b = 1; b < bins; b++) {
    const e = sorted[Math.floor((b * n) / bins)];
    if (edges.length === 0 || e > edges[edges.length - 1]) edges.push(e);
  }
  const lp = logProbs(probs);
  const global = 1 / fitTemperature(probs, labels, k).temperature;
  const members: number[][] = Array.from({ length: edges.length + 1 }, () => []);
  for (let i = 0; i < n; i++) members[binOf(edges, lengths[i])].push(i);
  const temperatures = members.map((rows) => {
    if (rows.length === 0) return 1 / global;
    const [a] = fitLinearSoftmax(rows, labels, 1, (i, c, f) => (f[0] = lp[i * k + c]), [global], k, shrink);
    return 1 / Math.max(a, 1e-3);
  });
  return { edges, temperatures };
}

function range(lo: number, hi: number, step: number): number[] {
  const out: number[] = [];
  for (let v = lo; v <= hi + 1e-9; v += step) out.push(Math.round(v * 1e6) / 1e6);
  return out;
}

/** Grid search (coarse, then fine around the best); the grids contain multiplier 1, i.e. identity. */
export function fitMultipliers(probs: Float64Array, labels: ArrayLike<number>, k: number): MultiplierParams {
  const score = (p: MultiplierParams) => logLoss(applyMethod('multipliers', p, probs, k), labels, k);
  // Without a tie column the tie multiplier stays 1.
  const ties = (r: number[]) => (k === 3 ? r : [1]);
  let best: MultiplierParams = { threshold: 0.75, multiplier: 1, tieMultiplier: 1 };
  let bestLoss = score(best);
  const search = (ts: number[], ms: number[], tms: number[]) => {
    for (const threshold of ts)
      for (const multiplier of ms)
        for (const tieMultiplier of tms) {
          const p = { threshold, multiplier, tieMultiplier };
          const l = score(p);
          if (l < bestLoss - 1e-12) [best, bestLoss] = [p, l];
        }
  };
  search(range(0.4, 0.95, 0.05), range(0.7, 1.6, 0.1), ties(range(0.6, 2.0, 0.1)));
  const c = best;
  search(
    range(Math.max(0.34, c.threshold - 0.04), Math.min(0.99, c.threshold + 0.04), 0.01),
    range(c.multiplier - 0.075, c.multiplier + 0.075, 0.025),
    ties(range(c.tieMultiplier - 0.075, c.tieMultiplier + 0.075, 0.025)),
  );
  return best;
}
