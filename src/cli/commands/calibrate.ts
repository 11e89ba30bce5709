// `calibrate`: fit a calibration (and blend weights) from out-of-fold prediction files and a labels CSV,
// or apply a saved calibration to a prediction file. I/O only; the fitting lives in src/post.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { writeFileAtomic, writeSubmission } from '../../data/submission';
import { applyCalibration, CalibrationError, fitCalibration, METHODS, type Calibration, type MethodName } from '../../post/calibrate';
import { alignPredictions, readLabels, readPredictions, readTextLengths } from '../../post/io';

const USAGE = `usage:
  calibrate --predictions P.csv [--predictions P2.csv ...] --labels L.csv [--method auto|${METHODS.filter((m) => m !== 'identity').join('|')}]
            --out calibration.json [--weights DIR] [--folds 5] [--seed 42]
  calibrate --apply calibration.json --predictions P.csv [--predictions P2.csv ...] [--data test.csv] --out Q.csv`;

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      predictions: { type: 'string', multiple: true },
      labels: { type: 'string' },
      method: { type: 'string', default: 'auto' },
      out: { type: 'string' },
      weights: { type: 'string' },
      apply: { type: 'string' },
      data: { type: 'string' },
      folds: { type: 'string', default: '5' },
      seed: { type: 'string', default: '42' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return void console.log(USAGE);
  const preds = values.predictions ?? [];
  if (!preds.length || !values.out) throw new CalibrationError(`calibrate: --predictions and --out are required\n${USAGE}`);

  if (values.apply) {
    const cal = JSON.parse(readFileSync(values.apply, 'utf8')) as Calibration;
    const first = await readPredictions(preds[0]);
    const sets = [first.probs];
    for (const p of preds.slice(1)) sets.push(alignPredictions(await readPredictions(p), first.ids, p));
    let lengths: Float64Array | undefined;
    if (cal.method === 'length-bins') {
      const src = values.data ?? values.labels;
      if (!src) throw new CalibrationError(`${values.apply}: length-bins calibration needs the texts; add --data test.csv (the CSV the predictions were made from)`);
      const byId = await readTextLengths(src);
      lengths = Float64Array.from(first.ids, (id) => {
        const l = byId.get(id);
        if (l === undefined) throw new CalibrationError(`${src}: no row with id ${id} (from ${preds[0]})`);
        return l;
      });
    }
    const out = applyCalibration(cal, sets, lengths);
    writeSubmission(values.out, first.ids, out);
    console.log(`calibrate: applied ${cal.method}${cal.blend ? ` after a ${sets.length}-way blend` : ''} to ${first.ids.length} rows -> ${values.out}`);
    return;
  }

  if (!values.labels) throw new CalibrationError(`calibrate: --labels is required to fit\n${USAGE}`);
  const method = values.method as 'auto' | MethodName;
  if (method !== 'auto' && !(METHODS as readonly string[]).includes(method))
    throw new CalibrationError(`calibrate: unknown --method ${method}; expected auto or one of ${METHODS.join(', ')}`);
  const lab = await readLabels(values.labels);
  const sets: Float64Array[] = [];
  for (const p of preds) sets.push(alignPredictions(await readPredictions(p), lab.ids, p));
  if (method === 'length-bins' && !lab.lengths)
    throw new CalibrationError(`${values.labels}: length-bins needs prompt, response_a and response_b columns in the labels CSV`);
  const cal = fitCalibration(sets, lab.labels, {
    method,
    lengths: lab.lengths,
    folds: Number(values.folds),
    seed: Number(values.seed),
    sources: preds,
  });
  writeFileAtomic(values.out, JSON.stringify(cal, null, 2) + '\n');
  if (values.weights) {
    const mpath = join(values.weights, 'manifest.json');
    if (!existsSync(mpath)) throw new CalibrationError(`${mpath}: no manifest.json; --weights must be a weights directory`);
    const manifest = JSON.parse(readFileSync(mpath, 'utf8'));
    manifest.calibration = cal;
    writeFileAtomic(mpath, JSON.stringify(manifest, null, 2) + '\n');
  }
  const cv = cal.fittedOn.cv ? ' cv: ' + Object.entries(cal.fittedOn.cv).map(([k, v]) => `${k}=${v!.toFixed(5)}`).join(' ') : '';
  console.log(
    `calibrate: ${cal.method} on ${lab.ids.length} rows: log loss ${cal.fittedOn.logLossBefore.toFixed(5)} -> ${cal.fittedOn.logLossAfter.toFixed(5)}` +
      `${cal.blend ? ` blend weights [${cal.blend.weights.map((w) => w.toFixed(3)).join(', ')}]` : ''}${cv} -> ${values.out}`,
  );
}
