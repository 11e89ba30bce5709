// `calibrate`: fit a calibration (and blend weights) from out-of-fold prediction files and a labels CSV,
// or apply a saved calibration to a prediction file. file edges only; the fitting lives in src/post.
import { readFileSync } from 'node:fs';
import { formatProbabilities } from '../../data/submission';
import {
  applyCalibration,
  calibrationLabels,
  CalibrationError,
  checkCalibration,
  fitCalibration,
  METHODS,
  PASS_INPUT,
  type MethodName,
} from '../../post/calibrate';
import { alignPredictions, readLabels, readPredictions, readPredictionsMeta, readTextLengths } from '../../post/io';
import { readManifest, updateManifest } from '../../weights/manifest';
import { assertNotInput, assertWritableFile, fsReason, writeFileAtomic } from '../../util/files';
import { parse, UsageError } from '../args';

const USAGE = `usage:
  calibrate --predictions P.csv [--predictions P2.csv ...] --labels L.csv|train.parquet [--method auto|${METHODS.filter((m) => m !== 'identity').join('|')}]
            --out calibration.json [--weights DIR] [--folds 5] [--seed 42]
  calibrate --apply calibration.json --predictions P.csv [--predictions P2.csv ...] [--data test.csv] --out Q.csv
  Fit on single-pass predictions (\`runner.cjs validate --predictions-out P.csv\`): predict applies a stored
  calibration to each TTA pass before the swap merge. --weights stores it in one model's manifest (one --predictions).
  The columns follow the prediction files: id,winner_model_a,winner_model_b,winner_tie (LMSYS) or id,model_a,model_b (WSDM).`;

function int(v: unknown, flag: string, min: number): number {
  const n = Number(v);
  if (typeof v !== 'string' || !/^-?\d+$/.test(v.trim()) || n < min)
    throw new UsageError(`${flag} must be an integer >= ${min}, got "${v}"`);
  return n;
}

export async function run(argv: string[]): Promise<void> {
  const values = parse(
    argv,
    {
      predictions: { type: 'string', multiple: true },
      labels: { type: 'string' },
      method: { type: 'string', default: 'auto' },
      out: { type: 'string' },
      weights: { type: 'string' },
      apply: { type: 'string' },
      data: { type: 'string' },
      folds: { type: 'string', default: '5' },
      seed: { type: 'string', default: '42' },
    },
    USAGE,
  ) as {
    predictions?: string[];
    labels?: string;
    method: string;
    out?: string;
    weights?: string;
    apply?: string;
    data?: string;
    folds: string;
    seed: string;
  };
  const preds = values.predictions ?? [];
  if (!preds.length || !values.out) throw new UsageError(`calibrate: --predictions and --out are required\n${USAGE}`);
  assertNotInput({ flag: '--out', path: values.out }, [
    ...preds.map((p) => ({ flag: '--predictions', path: p })),
    { flag: '--labels', path: values.labels },
    { flag: '--apply', path: values.apply },
    { flag: '--data', path: values.data },
    { flag: '--weights', path: values.weights },
  ]);
  assertWritableFile(values.out, '--out');

  if (values.apply) {
    let text: string;
    try {
      text = readFileSync(values.apply, 'utf8');
    } catch (e) {
      throw new CalibrationError(`--apply ${values.apply}: cannot be read (${fsReason(e)})`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new CalibrationError(`--apply ${values.apply}: not valid JSON (${(e as Error).message})`);
    }
    const cal = checkCalibration(json, values.apply, false);
    const first = await readPredictions(preds[0]);
    const sets = [first.probs];
    for (const p of preds.slice(1))
      sets.push(alignPredictions(sameColumns(await readPredictions(p), first.columns, p), first.ids, p));
    if (calibrationLabels(cal).join() !== first.columns.join())
      throw new CalibrationError(
        `${values.apply}: fitted on the columns ${calibrationLabels(cal).join(', ')}, but ${preds[0]} has ${first.columns.join(', ')}`,
      );
    let lengths: Float64Array | undefined;
    if (cal.method === 'length-bins') {
      const src = values.data ?? values.labels;
      if (!src)
        throw new CalibrationError(
          `${values.apply}: length-bins calibration needs the texts; add --data test.csv (the CSV the predictions were made from)`,
        );
      const byId = await readTextLengths(src);
      lengths = Float64Array.from(first.ids, (id) => {
        const l = byId.get(id);
        if (l === undefined) throw new CalibrationError(`${src}: no row with id ${id} (from ${preds[0]})`);
        return l;
      });
    }
    const out = applyCalibration(cal, sets, lengths);
    writeFileAtomic(values.out, formatProbabilities(first.ids, out, first.columns));
    console.log(
      `calibrate: applied ${cal.method}${cal.blend ? ` after a ${sets.length}-way blend` : ''} to ${first.ids.length} rows -> ${values.out}`,
    );
    return;
  }

  if (!values.labels) throw new UsageError(`calibrate: --labels is required to fit\n${USAGE}`);
  const method = values.method as 'auto' | MethodName;
  if (method !== 'auto' && !(METHODS as readonly string[]).includes(method))
    throw new UsageError(`calibrate: unknown --method ${method}; expected auto or one of ${METHODS.join(', ')}`);
  const folds = int(values.folds, '--folds', 2);
  const seed = int(values.seed, '--seed', 0);
  // Decided before any fitting: what the prediction files are, and whether the result may go into a model.
  const metas = preds.map((p) => readPredictionsMeta(p));
  for (const [k, m] of metas.entries())
    if (m?.calibrated)
      throw new CalibrationError(
        `${preds[k]}: already calibrated (${preds[k]}.meta.json); fit on uncalibrated predictions (validate --predictions-out, or predict/validate --no-calibration)`,
      );
  // Files without a .meta.json (made elsewhere) are taken as what validate --predictions-out writes.
  const tta = metas.some((m) => m?.tta === 'swap') ? 'swap' : 'none';
  metas.forEach((m, k) => {
    if (!m)
      process.stderr.write(
        `note: ${preds[k]} has no .meta.json; taken as single-pass predictions in the A/B order of the file (what validate --predictions-out writes)\n`,
      );
  });
  if (values.weights) {
    readManifest(values.weights);
    if (preds.length > 1)
      throw new CalibrationError(
        `--weights ${values.weights}: a calibration fitted on a ${preds.length}-way blend cannot be stored in one model's manifest (predict calibrates each model, then blends). ` +
          `Run without --weights to fit the blend weights (printed) and pass them to predict --blend-weights; calibrate each model on its own predictions with --weights.`,
      );
    if (tta === 'swap')
      throw new CalibrationError(
        `${preds[0]}: swap-TTA merged predictions; predict calibrates each pass before the merge. Write single-pass predictions with \`runner.cjs validate --predictions-out\``,
      );
    const w = metas[0]?.weights;
    if (w && w.length !== 1)
      throw new CalibrationError(
        `${preds[0]}: predictions of a blend of ${w.join(', ')} (see its .meta.json); validate each model alone with --predictions-out`,
      );
  }
  const lab = await readLabels(values.labels);
  const sets: Float64Array[] = [];
  let columns: readonly string[] | undefined;
  for (const p of preds) {
    const pr = await readPredictions(p);
    columns ??= pr.columns;
    sets.push(alignPredictions(sameColumns(pr, columns, p), lab.ids, p));
  }
  if (columns!.length === 2 && lab.labels.some((y) => y > 1))
    throw new CalibrationError(
      `${values.labels}: has tie labels, but the predictions have only the columns ${columns!.join(', ')}; give the labels of the same task`,
    );
  if (method === 'length-bins' && !lab.lengths)
    throw new CalibrationError(
      `${values.labels}: length-bins needs prompt, response_a and response_b columns in the labels CSV`,
    );
  const cal = fitCalibration(sets, lab.labels, {
    method,
    lengths: lab.lengths,
    folds,
    seed,
    sources: preds,
    input: { frame: PASS_INPUT.frame, tta },
    labels: columns!,
  });
  writeFileAtomic(values.out, JSON.stringify(cal, null, 2) + '\n');
  if (values.weights) updateManifest(values.weights, { calibration: cal });
  const cv = cal.fittedOn.cv
    ? ' cv: ' +
      Object.entries(cal.fittedOn.cv)
        .map(([k, v]) => `${k}=${v!.toFixed(5)}`)
        .join(' ')
    : '';
  console.log(
    `calibrate: ${cal.method} on ${lab.ids.length} rows: log loss ${cal.fittedOn.logLossBefore.toFixed(5)} -> ${cal.fittedOn.logLossAfter.toFixed(5)}` +
      `${cal.blend ? ` blend weights [${cal.blend.weights.map((w) => w.toFixed(3)).join(', ')}]` : ''}${cv} -> ${values.out}${values.weights ? ` and ${values.weights}/manifest.json` : ''}`,
  );
}

/** Prediction files of one run must share their columns (one task). */
function sameColumns<T extends { columns: readonly string[] }>(p: T, columns: readonly string[], path: string): T {
  if (p.columns.join() !== columns.join())
    throw new CalibrationError(
      `${path}: columns ${p.columns.join(', ')} differ from the first prediction file's ${columns.join(', ')}`,
    );
  return p;
}
