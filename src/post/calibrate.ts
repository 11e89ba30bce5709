// Calibration as plain JSON: fit one method (or pick one by K-fold cross-validation, falling back to
// identity when nothing helps) on out-of-fold predictions and labels, optionally after blending several
// prediction sets; apply it to new predictions. `applyCalibration` is what the runner calls.
import { logLoss } from '../metrics/metrics';
import { TASKS } from '../task/task';
import { blendProbs, fitBlendWeights } from './blend';
import { kFolds } from './fit';
import {
  applyMethod,
  CalibrationError,
  METHODS,
  fitLengthBins,
  fitMultipliers,
  fitTemperature,
  fitVector,
  type MethodName,
  type MethodParams,
} from './methods';

export { CalibrationError, METHODS, type MethodName, type MethodParams } from './methods';

export interface Calibration {
  method: MethodName;
  params: MethodParams;
  /** The probability columns it was fitted on, when not the LMSYS three (WSDM: model_a, model_b). */
  labels?: string[];
  /** Present when several prediction sets were blended before calibrating: one weight per set, in input order. */
  blend?: { weights: number[]; sources?: string[] };
  fittedOn: {
    rows: number;
    sources?: string[];
    /** The method asked for ('auto' or a name). */
    requested: 'auto' | MethodName;
    folds?: number;
    seed?: number;
    /** Log loss of the (blended) input and after calibration, on the fitting rows. */
    logLossBefore: number;
    logLossAfter: number;
    /** Mean out-of-fold log loss of each candidate (auto only). */
    cv?: Partial<Record<MethodName, number>>;
    /**
     * What the predictions were: 'scored' = each row's probabilities in the A/B order the model saw
     * (no flip); tta 'none' = one pass, not a swap-TTA mean. Predict applies a calibration to each
     * pass in the frame it was scored in, then flips and merges, so it needs exactly this input.
     */
    frame?: 'scored';
    tta?: 'none' | 'swap';
  };
}

/** The input predict's per-pass calibration must have been fitted on (see Calibration.fittedOn.frame). */
export const PASS_INPUT = { frame: 'scored', tta: 'none' } as const;

export interface FitCalibrationOptions {
  method?: 'auto' | MethodName;
  /** Text length per row (prompt + responses, characters); needed by length-bins, optional for auto. */
  lengths?: ArrayLike<number>;
  folds?: number;
  seed?: number;
  /** File names of the prediction sets, recorded in the JSON. */
  sources?: string[];
  /** auto keeps identity unless a method's CV loss is lower by more than this. */
  minGain?: number;
  /** What the prediction sets are (recorded in fittedOn; default: single passes in the scored frame). */
  input?: { frame: 'scored'; tta: 'none' | 'swap' };
  /** The columns of the prediction sets (the task's labels). */
  labels: readonly string[];
}

const LMSYS_LABELS: readonly string[] = TASKS.lmsys.labels;

/** Columns of a calibration: the recorded labels; a stored calibration without them was fitted on the LMSYS three (the file format before WSDM). */
export const calibrationLabels = (cal: Calibration): readonly string[] => cal.labels ?? LMSYS_LABELS;

function fitParams(
  method: MethodName,
  probs: Float64Array,
  labels: ArrayLike<number>,
  lengths: ArrayLike<number> | undefined,
  k: number,
): MethodParams {
  switch (method) {
    case 'identity':
      return {};
    case 'temperature':
      return fitTemperature(probs, labels, k);
    case 'vector':
      return fitVector(probs, labels, k);
    case 'length-bins':
      if (!lengths)
        throw new CalibrationError(
          'length-bins needs text lengths: give a labels CSV with prompt/response_a/response_b columns',
        );
      return fitLengthBins(probs, labels, lengths, k);
    case 'multipliers':
      return fitMultipliers(probs, labels, k);
    default:
      throw new CalibrationError(`Unknown calibration method: ${String(method)}`);
  }
}

function pick<T extends Float64Array | Int32Array | number[]>(
  src: ArrayLike<number>,
  rows: number[],
  width: number,
  make: (n: number) => T,
): T {
  const out = make(rows.length * width);
  rows.forEach((r, j) => {
    for (let c = 0; c < width; c++) out[j * width + c] = src[r * width + c];
  });
  return out;
}

/** Mean out-of-fold log loss of a method (fit on K-1 folds, scored on the held-out fold, rows weighted equally). */
function crossValidate(
  method: MethodName,
  probs: Float64Array,
  labels: ArrayLike<number>,
  lengths: ArrayLike<number> | undefined,
  folds: number,
  seed: number,
  k: number,
): number {
  const n = labels.length;
  const fold = kFolds(n, folds, seed);
  let total = 0;
  for (let f = 0; f < folds; f++) {
    const tr: number[] = [];
    const te: number[] = [];
    for (let i = 0; i < n; i++) (fold[i] === f ? te : tr).push(i);
    const mk = (m: number) => new Float64Array(m);
    const params = fitParams(
      method,
      pick(probs, tr, k, mk),
      pick(labels, tr, 1, mk),
      lengths && pick(lengths, tr, 1, mk),
      k,
    );
    const out = applyMethod(method, params, pick(probs, te, k, mk), k, lengths && pick(lengths, te, 1, mk));
    total += logLoss(out, pick(labels, te, 1, mk), k) * te.length;
  }
  return total / n;
}

export function fitCalibration(
  sets: Float64Array | Float64Array[],
  labels: ArrayLike<number>,
  opts: FitCalibrationOptions,
): Calibration {
  const list = Array.isArray(sets) ? sets : [sets];
  const n = labels.length;
  const cols = opts.labels;
  const K = cols.length;
  list.forEach((s, k) => {
    if (s.length !== n * K)
      throw new CalibrationError(
        `prediction set ${opts.sources?.[k] ?? k} has ${s.length / K} rows but there are ${n} labels; predictions and labels must cover the same ids`,
      );
  });
  if (opts.lengths && opts.lengths.length !== n)
    throw new CalibrationError(`${opts.lengths.length} lengths for ${n} labelled rows`);
  const requested = opts.method ?? 'auto';
  const folds = opts.folds ?? 5;
  const seed = opts.seed ?? 42;
  const weights = list.length > 1 ? fitBlendWeights(list, labels, K) : undefined;
  const probs = weights ? blendProbs(list, weights) : list[0];
  let method: MethodName;
  let cv: Calibration['fittedOn']['cv'];
  if (requested === 'auto') {
    const candidates: MethodName[] = ['identity', 'temperature', 'vector', 'multipliers'];
    if (opts.lengths) candidates.push('length-bins');
    cv = {};
    for (const m of candidates)
      cv[m] =
        m === 'identity' ? logLoss(probs, labels, K) : crossValidate(m, probs, labels, opts.lengths, folds, seed, K);
    method = 'identity';
    const minGain = opts.minGain ?? 2e-4;
    for (const m of candidates) if (cv[m]! < cv[method]! - (method === 'identity' ? minGain : 0)) method = m;
  } else method = requested;
  const params = fitParams(method, probs, labels, opts.lengths, K);
  const after = applyMethod(method, params, probs, K, opts.lengths);
  return {
    method,
    params,
    ...(cols === LMSYS_LABELS || cols.join() === LMSYS_LABELS.join() ? {} : { labels: [...cols] }),
    ...(weights ? { blend: { weights, ...(opts.sources ? { sources: opts.sources } : {}) } } : {}),
    fittedOn: {
      rows: n,
      ...(opts.sources ? { sources: opts.sources } : {}),
      requested,
      ...(requested === 'auto' ? { folds, seed, cv } : {}),
      logLossBefore: logLoss(probs, labels, K),
      logLossAfter: logLoss(after, labels, K),
      ...(opts.input ?? PASS_INPUT),
    },
  };
}

const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/**
 * Checks a calibration read from a file or manifest before any row is scored: a known method with
 * complete finite parameters; with `forModel` (stored in a weights directory, applied per pass by
 * predict) also no blend and fitted on single passes in the scored frame. Throws naming `where`.
 */
export function checkCalibration(
  cal: unknown,
  where: string,
  forModel: boolean,
  columns?: readonly string[],
): Calibration {
  const bad = (why: string, fix = 'fit it again with `runner.cjs calibrate`'): never => {
    throw new CalibrationError(`${where}: ${why}; ${fix}`);
  };
  if (!cal || typeof cal !== 'object') bad('the calibration is not a JSON object');
  const c = cal as Calibration;
  if (!(METHODS as readonly string[]).includes(c.method))
    bad(`unknown calibration method ${JSON.stringify(c.method)} (expected one of ${METHODS.join(', ')})`);
  const p = c.params as unknown as Record<string, unknown> | undefined;
  if (!p || typeof p !== 'object') bad(`calibration ${c.method} has no parameters ("params")`);
  const need = (keys: string[]) => {
    const missing = keys.filter((k) => !finite(p![k]));
    if (missing.length) bad(`calibration ${c.method} lacks finite parameter(s) ${missing.join(', ')}`);
  };
  const list = (k: string, n?: number) => {
    const v = p![k];
    if (!Array.isArray(v) || !v.every(finite) || (n !== undefined && v.length !== n))
      bad(`calibration ${c.method}: params.${k} must be ${n ?? 'a list of'} finite numbers`);
  };
  if (c.labels !== undefined && (!Array.isArray(c.labels) || !c.labels.every((l) => typeof l === 'string')))
    bad('labels must be a list of column names');
  const cols = calibrationLabels(c);
  if (columns && cols.join() !== columns.join())
    bad(
      `fitted on the columns ${cols.join(', ')}, but this run's task has ${columns.join(', ')}`,
      'fit a calibration on predictions of this task (validate --predictions-out on its labelled data, then calibrate)',
    );
  // Values a fit never produces: a temperature <= 0 inverts or flattens every prediction.
  const positive = (k: string) => {
    const v = p![k];
    if (!((Array.isArray(v) ? v : [v]) as number[]).every((x) => x > 0))
      bad(`calibration ${c.method}: params.${k} must be > 0, got ${JSON.stringify(v)}`);
  };
  if (c.method === 'temperature') (need(['temperature']), positive('temperature'));
  else if (c.method === 'vector') (need(['temperature']), positive('temperature'), list('bias', cols.length));
  else if (c.method === 'multipliers')
    (need(['threshold', 'multiplier', 'tieMultiplier']), positive('multiplier'), positive('tieMultiplier'));
  else if (c.method === 'length-bins') {
    list('edges');
    list('temperatures', (p!.edges as number[]).length + 1);
    positive('temperatures');
    const e = p!.edges as number[];
    if (e.some((x, i) => i > 0 && x < e[i - 1]))
      bad(`calibration length-bins: params.edges must be increasing, got ${JSON.stringify(e)}`);
  }
  if (c.blend) {
    if (!Array.isArray(c.blend.weights) || !c.blend.weights.every(finite)) bad('blend.weights must be finite numbers');
    if (forModel)
      bad(
        `holds a ${c.blend.weights.length}-way blend; a weights directory's calibration belongs to that one model`,
        'calibrate each model on its own predictions (`calibrate --predictions P --labels L --weights DIR`) and give predict the blend with --blend-weights',
      );
  }
  if (forModel && (c.fittedOn?.frame !== PASS_INPUT.frame || c.fittedOn?.tta !== PASS_INPUT.tta))
    bad(
      `fitted on ${c.fittedOn?.tta === 'swap' ? 'swap-TTA merged' : 'unrecorded (made before fittedOn.frame/tta were recorded)'} predictions, but predict calibrates each pass before the swap merge`,
      'refit it on single-pass predictions: `runner.cjs validate --data L.csv --weights DIR --predictions-out P.csv` then `runner.cjs calibrate --predictions P.csv --labels L.csv --weights DIR`',
    );
  return c;
}

/** Applies a fitted calibration; pass one prediction set per blend weight when the calibration has a blend. */
export function applyCalibration(
  cal: Calibration,
  probs: Float64Array | Float64Array[],
  lengths?: ArrayLike<number>,
): Float64Array {
  const list = Array.isArray(probs) ? probs : [probs];
  const k = cal.blend?.weights.length ?? 1;
  if (list.length !== k)
    throw new CalibrationError(
      `calibration expects ${k} prediction set(s)${cal.blend?.sources ? ` (${cal.blend.sources.join(', ')})` : ''}, got ${list.length}; pass them in the order they were fitted`,
    );
  const K = calibrationLabels(cal).length;
  const p = cal.blend ? blendProbs(list, cal.blend.weights) : list[0];
  return applyMethod(cal.method, cal.params, p, K, lengths);
}
