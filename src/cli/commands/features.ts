// `features`: train the feature + gradient-boosted-trees baseline on a labelled CSV, print its K-fold
// CV log loss next to the difference-bucket baseline, and write a weights directory (kind 'features').
import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { dataColumns, readRows } from '../../data/rows';
import { assertOutDir, replaceDir, writeFailure } from '../../util/files';
import { writePredictions } from '../../data/submission';
import { detectTask } from '../../task/task';
import { crossValidateFeatures, FeatureModelError, trainFeatureModel, writeFeatureModel } from '../../features/model';
import { GBDT_DEFAULTS, type GbdtOptions } from '../../features/gbdt';

const USAGE = `usage: features --data train.csv|train.parquet --out DIR [--task lmsys|wsdm] [--folds 5] [--seed 42] [--rounds ${GBDT_DEFAULTS.rounds}] [--depth ${GBDT_DEFAULTS.maxDepth}] [--eta ${GBDT_DEFAULTS.learningRate}]
  writes DIR/manifest.json (kind "features"), DIR/trees.json and DIR/oof.csv (out-of-fold predictions, for calibrate)`;

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: 'string' },
      out: { type: 'string' },
      folds: { type: 'string', default: '5' },
      seed: { type: 'string', default: '42' },
      rounds: { type: 'string' },
      depth: { type: 'string' },
      eta: { type: 'string' },
      task: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return void console.log(USAGE);
  if (!values.data || !values.out) throw new FeatureModelError(`features: --data and --out are required\n${USAGE}`);
  assertOutDir({ flag: '--out', path: values.out }, [{ flag: '--data', path: values.data }], 'manifest.json');
  const folds = Number(values.folds);
  const seed = Number(values.seed);
  const opts: Partial<GbdtOptions> = { seed };
  const setting = (flag: string, text: string | undefined, ok: (n: number) => boolean, want: string) => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!ok(n)) throw new FeatureModelError(`features: ${flag} must be ${want}, got "${text}"`);
    return n;
  };
  const intAtLeast1 = (n: number) => Number.isInteger(n) && n >= 1;
  const rounds = setting('--rounds', values.rounds, intAtLeast1, 'an integer >= 1');
  const depth = setting('--depth', values.depth, intAtLeast1, 'an integer >= 1');
  const eta = setting('--eta', values.eta, (n) => n > 0 && n <= 1, 'a number in (0, 1]');
  if (rounds !== undefined) opts.rounds = rounds;
  if (depth !== undefined) opts.maxDepth = depth;
  if (eta !== undefined) opts.learningRate = eta;
  if (!(Number.isInteger(folds) && folds >= 0))
    throw new FeatureModelError(
      `features: --folds must be a whole number (0 or 1: no cross-validation), got "${values.folds}"`,
    );
  // The task sets the classes: LMSYS A/B/tie, WSDM A/B (the binary objective).
  const task = detectTask(values.data, dataColumns(values.data), values.task);
  const { rows, warnings } = await readRows(values.data, { requireLabels: true });
  for (const w of warnings) console.warn(`features: ${w}`);
  const t0 = Date.now();
  const cv = folds > 1 ? crossValidateFeatures(rows, task, folds, seed, opts) : undefined;
  if (cv && task.metric.name === 'accuracy')
    console.log(
      `features: ${folds}-fold CV accuracy on ${rows.length} rows (task ${task.name}): gbdt ${cv.gbdtAccuracy.toFixed(4)}, the longer response wins ${cv.longerAccuracy.toFixed(4)}; ` +
        `log loss (binary): gbdt ${cv.gbdt.toFixed(5)}, difference buckets ${cv.buckets.toFixed(5)}, class shares ${cv.prior.toFixed(5)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
    );
  else if (cv)
    console.log(
      `features: ${folds}-fold CV log loss on ${rows.length} rows: gbdt ${cv.gbdt.toFixed(5)}, difference buckets ${cv.buckets.toFixed(5)}, class shares ${cv.prior.toFixed(5)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
    );
  const model = trainFeatureModel(rows, task, opts);
  const out = resolve(values.out);
  const data = values.data;
  // Built beside --out and swapped in whole: a full or read-only disk leaves the old folder (or none), named.
  const manifest = await replaceDir(out, (dir) => {
    const m = writeFeatureModel(
      dir,
      model,
      {
        command: `features ${argv.join(' ')}`,
        seed,
        data: { file: resolve(data), bytes: statSync(data).size, rows: rows.length },
        options: model.gbdt.options,
        task: task.name,
        cv: cv
          ? {
              folds,
              seed,
              gbdt: cv.gbdt,
              buckets: cv.buckets,
              prior: cv.prior,
              ...(task.metric.name === 'accuracy'
                ? { gbdtAccuracy: cv.gbdtAccuracy, longerAccuracy: cv.longerAccuracy }
                : {}),
            }
          : null,
      },
      task,
    );
    if (cv)
      writePredictions(
        join(dir, 'oof.csv'),
        rows.map((r) => r.id),
        cv.oof,
        task,
      );
    return m;
  }).catch((e) => {
    throw writeFailure(e, out);
  });
  console.log(`features: wrote ${values.out} (${Object.keys(manifest.files).join(', ')}${cv ? ', oof.csv' : ''})`);
}
