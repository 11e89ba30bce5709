// The feature model as a weights directory: manifest.json (kind 'features') + trees.json holding the
// GBDT and its feature names. Cross-validation of the GBDT against the difference-bucket and
// class-share baselines on seeded folds (the baselines are reported, not stored: predict uses the
// GBDT only), and `featureLogits` for the runner's model handle (src/infer/model.ts).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/files';
import { softmaxRows } from '../util/probs';
import { lengthDifference } from '../util/text';
import { accuracy, logLoss } from '../metrics/metrics';
import { kFolds } from '../post/fit';
import type { Task } from '../task/task';
import type { ArenaRow } from '../types';
import { fileSizes, MANIFEST_FORMAT, MANIFEST_VERSION, readManifest, type Manifest } from '../weights/manifest';
import { fitDiffBuckets, predictDiffBuckets } from './buckets';
import { extractFeatures, FEATURE_NAMES, FEATURES_VERSION } from './extract';
import { predictGbdt, predictGbdtLogits, trainGbdt, type GbdtModel, type GbdtOptions } from './gbdt';

const TREES_FILE = 'trees.json';

export class FeatureModelError extends Error {
  override name = 'FeatureModelError';
}

export interface FeatureModelFile {
  featuresVersion: number;
  featureNames: string[];
  gbdt: GbdtModel;
}

export interface FeatureCv {
  folds: number;
  seed: number;
  gbdt: number;
  buckets: number;
  prior: number;
  /** Out-of-fold accuracy of the GBDT, and of "the longer response wins" (A on equal lengths; no tie). */
  gbdtAccuracy: number;
  longerAccuracy: number;
  /** Out-of-fold GBDT probabilities [n*k] (input for calibrate). */
  oof: Float64Array;
}

/** "The longer response wins" as one-hot rows over the task's columns (A, B first): the length baseline. */
function longerWins(rows: ArenaRow[], k: number): Float64Array {
  const out = new Float64Array(rows.length * k);
  rows.forEach((r, i) => (out[i * k + (lengthDifference(r) >= 0 ? 0 : 1)] = 1));
  return out;
}

function labelsOf(rows: ArenaRow[], what: string): Uint8Array {
  const missing = rows.findIndex((r) => r.label === undefined);
  if (missing >= 0)
    throw new FeatureModelError(
      `${what}: row id ${rows[missing].id} (line ${rows[missing].line}) has no label; training needs a train.csv with the winner columns`,
    );
  return Uint8Array.from(rows, (r) => r.label!);
}

/** The GBDT on the task's classes (a 2-class softmax is the binary logistic objective). */
export function trainFeatureModel(rows: ArenaRow[], task: Task, opts: Partial<GbdtOptions> = {}): FeatureModelFile {
  const y = labelsOf(rows, 'features');
  const X = extractFeatures(rows);
  return {
    featuresVersion: FEATURES_VERSION,
    featureNames: FEATURE_NAMES,
    gbdt: trainGbdt(X, y, task.labels.length, opts),
  };
}

/** K-fold CV log loss of the GBDT, the difference buckets and the class-share prior on the same folds. */
export function crossValidateFeatures(
  rows: ArenaRow[],
  task: Task,
  folds = 5,
  seed = 42,
  opts: Partial<GbdtOptions> = {},
  X = extractFeatures(rows),
): FeatureCv {
  const y = labelsOf(rows, 'features');
  const K = task.labels.length;
  const n = rows.length;
  const d = FEATURE_NAMES.length;
  const fold = kFolds(n, folds, seed);
  const diff = rows.map(lengthDifference);
  const oof = new Float64Array(n * K);
  const oofB = new Float64Array(n * K);
  const oofP = new Float64Array(n * K);
  for (let f = 0; f < folds; f++) {
    const tr: number[] = [];
    const te: number[] = [];
    for (let i = 0; i < n; i++) (fold[i] === f ? te : tr).push(i);
    const sub = (idx: number[]) => {
      const out = new Float64Array(idx.length * d);
      idx.forEach((i, j) => out.set(X.subarray(i * d, i * d + d), j * d));
      return out;
    };
    const ytr = Uint8Array.from(tr, (i) => y[i]);
    const pg = predictGbdt(trainGbdt(sub(tr), ytr, K, { ...opts, seed: (opts.seed ?? 42) + f }), sub(te));
    const pb = predictDiffBuckets(
      fitDiffBuckets(
        tr.map((i) => diff[i]),
        ytr,
        K,
      ),
      te.map((i) => diff[i]),
    );
    const share = new Array<number>(K).fill(0);
    for (const c of ytr) share[c] += 1 / ytr.length;
    te.forEach((i, j) => {
      for (let c = 0; c < K; c++) {
        oof[i * K + c] = pg[j * K + c];
        oofB[i * K + c] = pb[j * K + c];
        oofP[i * K + c] = share[c];
      }
    });
  }
  return {
    folds,
    seed,
    gbdt: logLoss(oof, y, K),
    buckets: logLoss(oofB, y, K),
    prior: logLoss(oofP, y, K),
    gbdtAccuracy: accuracy(oof, y, K),
    longerAccuracy: accuracy(longerWins(rows, K), y, K),
    oof,
  };
}

export function writeFeatureModel(
  dir: string,
  model: FeatureModelFile,
  provenance: Record<string, unknown>,
  task: Task,
): Manifest {
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(join(dir, TREES_FILE), JSON.stringify(model));
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    kind: 'features',
    architecture: 'gbdt-softmax',
    labels: [...task.labels],
    template: 'none',
    maxTokens: 0,
    graphs: {},
    files: fileSizes(dir, [TREES_FILE]),
    provenance: {
      ...provenance,
      treesSha256: createHash('sha256')
        .update(readFileSync(join(dir, TREES_FILE)))
        .digest('hex'),
    },
  };
  writeFileAtomic(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}

/** Reads DIR/trees.json of an opened `features` manifest and checks it matches this build's feature set. */
export function loadFeatureModel(dir: string, m: Manifest = readManifest(dir)): FeatureModelFile {
  const rebuild = `rebuild it with \`node dist/trainer.cjs features --data train.csv --out ${dir}\``;
  if (m.kind !== 'features')
    throw new FeatureModelError(`${dir}: manifest kind is ${JSON.stringify(m.kind)}, not "features"; ${rebuild}`);
  const path = join(dir, TREES_FILE);
  if (!existsSync(path)) throw new FeatureModelError(`${path}: missing; ${rebuild}`);
  let model: FeatureModelFile;
  try {
    model = JSON.parse(readFileSync(path, 'utf8')) as FeatureModelFile;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FeatureModelError(
      `${path}: ${code ? `cannot be read (${code})` : `not valid JSON (${(e as Error).message})`}; ${rebuild}`,
    );
  }
  if (model.featuresVersion !== FEATURES_VERSION || model.featureNames?.join(',') !== FEATURE_NAMES.join(','))
    throw new FeatureModelError(
      `${path}: made with feature set v${model.featuresVersion} (${model.featureNames?.length} features), this build computes v${FEATURES_VERSION} (${FEATURE_NAMES.length}); ${rebuild}`,
    );
  return model;
}

/** GBDT logits [n*k] in the manifest's label order for rows as given (swap TTA passes rows with A and B exchanged). */
export function featureLogits(model: FeatureModelFile, rows: ArenaRow[]): Float64Array {
  return predictGbdtLogits(model.gbdt, extractFeatures(rows));
}

/** Probabilities [n*k] in the manifest's label order from a `features` weights directory. */
export function predictFeatures(dir: string, rows: ArenaRow[]): Float64Array {
  const model = loadFeatureModel(dir);
  return softmaxRows(featureLogits(model, rows), rows.length, model.gbdt.numClass);
}
