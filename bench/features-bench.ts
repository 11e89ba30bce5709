// Feature-model benchmark: 5-fold CV log loss of arenakit's GBDT on the 999-row sample, and of XGBoost
// on the same features, folds and hyper-parameters (bench/xgb_baseline.py via the system python3;
// null when python3-xgboost is not installed).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRows } from '../src/data/rows';
import { extractFeatures, FEATURE_NAMES } from '../src/features/extract';
import { GBDT_DEFAULTS } from '../src/features/gbdt';
import { crossValidateFeatures } from '../src/features/model';
import { TASKS } from '../src/task/task';
import { kFolds } from '../src/post/fit';

const SAMPLE = join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');
const FOLDS = 5;
const SEED = 42;

function xgboostCv(X: Float64Array, labels: number[], fold: Int32Array): number | null {
  const py = ['/usr/bin/python3', 'python3'].find((p) => {
    try {
      execFileSync(p, ['-c', 'import xgboost'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  });
  // bench/ when run with tsx, dist/ when bundled into dist/bench.cjs
  const script = [join(__dirname, 'xgb_baseline.py'), join(__dirname, '..', 'bench', 'xgb_baseline.py')].find(
    existsSync,
  );
  if (!py || !script) return null;
  const dir = mkdtempSync(join(tmpdir(), 'arenakit-xgb-'));
  try {
    const d = FEATURE_NAMES.length;
    const lines = [[...FEATURE_NAMES, 'label', 'fold'].join(',')];
    for (let i = 0; i < labels.length; i++)
      lines.push(
        [...X.subarray(i * d, i * d + d)]
          .map((v) => String(v))
          .concat(String(labels[i]), String(fold[i]))
          .join(','),
      );
    writeFileSync(join(dir, 'features.csv'), lines.join('\n') + '\n');
    writeFileSync(join(dir, 'params.json'), JSON.stringify({ ...GBDT_DEFAULTS, seed: SEED }));
    const out = execFileSync(py, [script, join(dir, 'features.csv'), join(dir, 'params.json')], { encoding: 'utf8' });
    return JSON.parse(out.trim().split('\n').pop()!).logloss;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function featuresBench(): Promise<{ ours: number; xgboost: number | null; folds: 5 }> {
  const { rows } = await readRows(SAMPLE, { requireLabels: true });
  const X = extractFeatures(rows);
  const cv = crossValidateFeatures(rows, TASKS.lmsys, FOLDS, SEED, { seed: SEED }, X);
  const xgboost = xgboostCv(
    X,
    rows.map((r) => r.label!),
    kFolds(rows.length, FOLDS, SEED),
  );
  return { ours: cv.gbdt, xgboost, folds: FOLDS };
}

if (process.argv[1]?.endsWith('features-bench.ts')) featuresBench().then((r) => console.log(JSON.stringify(r)));
