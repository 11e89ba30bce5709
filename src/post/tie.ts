// Single-score heads (num_labels 1): a score s (A better when s > 0) becomes the three Kaggle
// probabilities through a fitted tie model. Davidson: logits (d/2, -d/2, log nu) with d = scale*s + bias,
// a softmax linear in (scale, bias, log nu), so it is fitted exactly by Newton. Rao-Kupper:
// P(A) = sigmoid(d - eta), P(B) = sigmoid(-d - eta), tie = rest, eta = exp(logEta) > 0, fitted by Nelder-Mead.
import { logLoss } from '../metrics/metrics';
import { fitLinearSoftmax, nelderMead } from './fit';
import { softmaxAt } from '../util/probs';

/** A tie model's outcomes, in its output order (its own frame; src/infer/model.ts maps them onto the task). */
export const TIE_LABELS: readonly string[] = ['a', 'b', 'tie'];
const TIE_OUTCOMES = TIE_LABELS.length;

export type TieModel = 'davidson' | 'rao-kupper';
export interface DavidsonParams {
  scale: number;
  bias: number;
  logNu: number;
}
export interface RaoKupperParams {
  scale: number;
  bias: number;
  logEta: number;
}
export interface TieCalibration {
  method: TieModel;
  params: DavidsonParams | RaoKupperParams;
  fittedOn?: Record<string, unknown>;
}

function tieProbs(model: TieModel, params: DavidsonParams | RaoKupperParams, scores: ArrayLike<number>): Float64Array {
  const n = scores.length;
  const out = new Float64Array(n * 3);
  const row = new Float64Array(3);
  for (let i = 0; i < n; i++) {
    const d = params.scale * scores[i] + params.bias;
    if (model === 'davidson') {
      softmaxAt([d / 2, -d / 2, (params as DavidsonParams).logNu], 0, 3, row);
      out.set(row, i * 3);
    } else if (model === 'rao-kupper') {
      const eta = Math.exp((params as RaoKupperParams).logEta);
      const pa = 1 / (1 + Math.exp(-(d - eta)));
      const pb = 1 / (1 + Math.exp(-(-d - eta)));
      out[i * 3] = pa;
      out[i * 3 + 1] = pb;
      out[i * 3 + 2] = Math.max(1 - pa - pb, 0);
    } else throw new RangeError(`Unknown tie model: ${String(model)} (expected davidson or rao-kupper)`);
  }
  return out;
}

export function tieLoss(
  model: TieModel,
  params: DavidsonParams | RaoKupperParams,
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
): number {
  return logLoss(tieProbs(model, params, scores), labels, TIE_OUTCOMES);
}

export class TieError extends Error {
  override name = 'TieError';
}

/** Fewest rows with a finite score a tie model is fitted on. */
const MIN_TIE_ROWS = 10;

/** Fits on finite scores only (a failed row's NaN would stall the fit at its starting point). */
export function fitTieModel(
  allScores: ArrayLike<number>,
  allLabels: ArrayLike<number>,
  model: TieModel = 'davidson',
): TieCalibration {
  if (allScores.length !== allLabels.length)
    throw new TieError(`tie model: ${allScores.length} scores for ${allLabels.length} labels`);
  const keep = Array.from({ length: allScores.length }, (_, i) => i).filter((i) => Number.isFinite(allScores[i]));
  if (keep.length < MIN_TIE_ROWS)
    throw new TieError(
      `tie model: only ${keep.length} of ${allScores.length} rows have a finite score (need ${MIN_TIE_ROWS}); see the warnings about failed rows`,
    );
  const scores = Float64Array.from(keep, (i) => allScores[i]);
  const labels = Uint8Array.from(keep, (i) => allLabels[i]);
  const n = labels.length;
  const rows = Int32Array.from({ length: n }, (_, i) => i);
  const [scale, bias, logNu] = fitLinearSoftmax(
    rows,
    labels,
    3,
    (i, c, f) => {
      const sgn = c === 0 ? 0.5 : c === 1 ? -0.5 : 0;
      f[0] = sgn * scores[i];
      f[1] = sgn;
      f[2] = c === 2 ? 1 : 0;
    },
    [1, 0, 0],
    TIE_OUTCOMES,
  );
  const dav: DavidsonParams = { scale, bias, logNu };
  const fittedOn = (p: DavidsonParams | RaoKupperParams) => ({ rows: n, logLoss: tieLoss(model, p, scores, labels) });
  if (model === 'davidson') return { method: 'davidson', params: dav, fittedOn: fittedOn(dav) };
  // Start Rao-Kupper from the Davidson fit: comparable slope, and a tie threshold from the tie share.
  const f = (x: number[]) => tieLoss('rao-kupper', { scale: x[0], bias: x[1], logEta: x[2] }, scores, labels);
  let x = nelderMead(f, [scale / 2, bias / 2, Math.log(0.5)], 0.3);
  x = nelderMead(f, x, 0.05);
  const rk: RaoKupperParams = { scale: x[0], bias: x[1], logEta: x[2] };
  return { method: 'rao-kupper', params: rk, fittedOn: fittedOn(rk) };
}

/** Checks a stored tie model before any row is scored; throws naming `where`. */
export function checkTie(tie: unknown, where: string): TieCalibration {
  const t = tie as TieCalibration;
  const fix = 'fit it again with `runner.cjs validate --data labelled.csv --weights DIR --fit-tie`';
  if (!t || typeof t !== 'object' || (t.method !== 'davidson' && t.method !== 'rao-kupper'))
    throw new TieError(`${where}: tie model method ${JSON.stringify(t?.method)} is not davidson or rao-kupper; ${fix}`);
  const keys = ['scale', 'bias', t.method === 'davidson' ? 'logNu' : 'logEta'];
  const p = (t.params ?? {}) as unknown as Record<string, unknown>;
  const missing = keys.filter((k) => typeof p[k] !== 'number' || !Number.isFinite(p[k] as number));
  if (missing.length)
    throw new TieError(`${where}: tie model ${t.method} lacks finite parameter(s) ${missing.join(', ')}; ${fix}`);
  return t;
}

/** scoreToProbs(cal, scores): the runner's entry for single-score heads. */
export function scoreToProbs(cal: TieCalibration, scores: ArrayLike<number>): Float64Array {
  return tieProbs(cal.method, cal.params, scores);
}
