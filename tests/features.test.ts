// Feature extraction on real sample rows, the GBDT on problems with known answers, the difference
// buckets against a hand count, and the features CLI -> weights directory -> predictFeatures round trip.
import { TASKS } from '../src/task/task';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRows } from '../src/data/rows';
import { logLoss } from '../src/metrics/metrics';
import { fitDiffBuckets, predictDiffBuckets } from '../src/features/buckets';
import { extractFeatures, FEATURE_NAMES, rowFeatures } from '../src/features/extract';
import { predictGbdt, trainGbdt } from '../src/features/gbdt';
import { crossValidateFeatures, predictFeatures, trainFeatureModel } from '../src/features/model';
import { rng } from '../src/post/fit';
import { readManifest } from '../src/weights/manifest';
import { run as featuresCli } from '../src/cli/commands/features';
import type { ArenaRow } from '../src/types';

const SAMPLE = join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');

describe('feature extraction', () => {
  it('counts markdown structure, refusals and sizes of a hand-made row', () => {
    const row: ArenaRow = {
      id: 'x',
      line: 2,
      prompt: ['What is 2+2?'],
      responseA: ['# Answer\n\n**Four.**\n- one\n- two\n1. first\n```js\nx\n```\nUse `a`.'],
      responseB: ["I'm sorry, I cannot help with that."],
    };
    const f = Object.fromEntries(FEATURE_NAMES.map((n, i) => [n, rowFeatures(row)[i]]));
    assert.equal(f.a_headers, 1);
    assert.equal(f.a_bold, 1);
    assert.equal(f.a_list_items, 2);
    assert.equal(f.a_numbered_items, 1);
    assert.equal(f.a_code_blocks, 1);
    assert.equal(f.a_inline_code, 1);
    assert.equal(f.a_refusal, 0);
    assert.equal(f.b_refusal, 1);
    assert.equal(f.b_chars, row.responseB[0].length);
    assert.equal(f.diff_chars, row.responseA[0].length - row.responseB[0].length);
    assert.equal(f.turns, 1);
    assert.ok(
      Math.abs(f.logratio_chars - Math.log((row.responseA[0].length + 1) / (row.responseB[0].length + 1))) < 1e-12,
    );
  });

  it('gives finite features on the 999 real sample rows, and length difference predicts the winner', async () => {
    const { rows } = await readRows(SAMPLE, { requireLabels: true });
    assert.equal(rows.length, 999);
    const X = extractFeatures(rows);
    const d = FEATURE_NAMES.length;
    assert.equal(X.length, 999 * d);
    assert.ok(X.every(Number.isFinite));
    const j = FEATURE_NAMES.indexOf('diff_chars');
    // Known from the field: the longer response wins more often (verbosity bias).
    let agree = 0;
    let decided = 0;
    rows.forEach((r, i) => {
      if (r.label === 2 || X[i * d + j] === 0) return;
      decided++;
      if (X[i * d + j] > 0 === (r.label === 0)) agree++;
    });
    console.log(
      `    longer response wins in ${agree}/${decided} decided rows (${((100 * agree) / decided).toFixed(1)}%)`,
    );
    assert.ok(agree / decided > 0.55);
  });
});

describe('gradient-boosted trees', () => {
  it('learns a separable 3-class problem almost perfectly and matches on held-out points', () => {
    const r = rng(3);
    const make = (n: number) => {
      const X = new Float64Array(n * 4);
      const y = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        for (let f = 0; f < 4; f++) X[i * 4 + f] = r() * 2 - 1;
        // class by the sign pattern of two features; the other two are noise
        y[i] = X[i * 4] > 0.2 ? 0 : X[i * 4 + 2] > 0 ? 1 : 2;
      }
      return { X, y };
    };
    const train = make(1500);
    const test = make(500);
    const model = trainGbdt(train.X, train.y, 3, { rounds: 100, learningRate: 0.3, maxDepth: 3, minChildWeight: 1 });
    const p = predictGbdt(model, test.X);
    let hit = 0;
    for (let i = 0; i < 500; i++) {
      const k = [0, 1, 2].reduce((a, c) => (p[i * 3 + c] > p[i * 3 + a] ? c : a), 0);
      if (k === test.y[i]) hit++;
    }
    const loss = logLoss(p, test.y, 3);
    console.log(`    held-out accuracy ${hit / 500}, log loss ${loss.toFixed(4)} (tol: accuracy >= 0.98, loss < 0.1)`);
    assert.ok(hit / 500 >= 0.98 && loss < 0.1);
    // The splits use the informative features only (0 and 2).
    const used = new Set(model.trees.flatMap((round) => round.flatMap((t) => t.feature.filter((f) => f >= 0))));
    assert.ok(used.has(0) && used.has(2));
  });

  it('with no signal it stays near the class shares, and is deterministic for a seed', () => {
    const r = rng(5);
    const n = 600;
    const X = Float64Array.from({ length: n * 3 }, () => r());
    const y = Uint8Array.from({ length: n }, (_, i) => i % 3);
    const a = trainGbdt(X, y, 3, { rounds: 20, subsample: 0.7, colsample: 0.7, seed: 9 });
    const b = trainGbdt(X, y, 3, { rounds: 20, subsample: 0.7, colsample: 0.7, seed: 9 });
    assert.deepEqual(a, b);
    const p = predictGbdt(a, X);
    const maxDev = Math.max(...Array.from(p, (v) => Math.abs(v - 1 / 3)));
    console.log(`    max |p - 1/3| on noise ${maxDev.toFixed(4)} (tol 0.15)`);
    assert.ok(maxDev < 0.15);
  });
});

describe('difference buckets', () => {
  it('bucket frequencies equal a hand count with the prior smoothing', () => {
    const diff = [-5, -5, -3, -1, 0, 0, 2, 4, 4, 9];
    const y = [1, 1, 2, 1, 2, 0, 0, 0, 2, 0];
    const m = fitDiffBuckets(diff, y, 3, 2, 2);
    // Median cut: rows < 0 form bucket 0 (labels 1,1,2,1), the rest bucket 1 (2,0,0,0,2,0).
    assert.deepEqual(m.edges, [0]);
    const prior = [0.4, 0.3, 0.3];
    const want0 = [0 + 2 * prior[0], 3 + 2 * prior[1], 1 + 2 * prior[2]].map((v) => v / 6);
    const p = predictDiffBuckets(m, [-100, 100]);
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(p[c] - want0[c]) < 1e-12);
    assert.ok(Math.abs(p[3] - (4 + 0.8) / 8) < 1e-12);
  });
});

describe('features CLI and predictFeatures', () => {
  it('writes a features weights directory whose predictions match the in-process model; CV beats the prior', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'arenakit-features-'));
    const logs: string[] = [];
    const orig = console.log;
    console.log = (...a: unknown[]) => void logs.push(a.join(' '));
    try {
      await featuresCli(['--data', SAMPLE, '--out', dir, '--folds', '3', '--rounds', '60']);
    } finally {
      console.log = orig;
    }
    console.log('    ' + logs.join('\n    '));
    const m = readManifest(dir);
    assert.equal(m.kind, 'features');
    assert.deepEqual(m.labels, ['winner_model_a', 'winner_model_b', 'winner_tie']);
    assert.deepEqual(m.graphs, {});
    const cv = m.provenance.cv as { gbdt: number; prior: number };
    assert.ok(cv.gbdt < cv.prior, `gbdt CV ${cv.gbdt} should beat the class shares ${cv.prior}`);
    const { rows } = await readRows(SAMPLE, { requireLabels: true });
    const p = predictFeatures(dir, rows.slice(0, 50));
    assert.equal(p.length, 150);
    for (let i = 0; i < 50; i++) assert.ok(Math.abs(p[i * 3] + p[i * 3 + 1] + p[i * 3 + 2] - 1) < 1e-12);
    const ref = predictGbdt(
      trainFeatureModel(rows, TASKS.lmsys, { rounds: 60, seed: 42 }).gbdt,
      extractFeatures(rows.slice(0, 50)),
    );
    const maxDiff = Math.max(...Array.from(p, (v, j) => Math.abs(v - ref[j])));
    console.log(`    predictFeatures vs in-process model: max diff ${maxDiff} (tol 1e-12)`);
    assert.ok(maxDiff < 1e-12);
    const oof = readFileSync(join(dir, 'oof.csv'), 'utf8').trim().split('\n');
    assert.equal(oof.length, 1000);
    // Fewer rows than the 999: CV still runs (3 folds) and the prior loss is the class-share entropy.
    const small = crossValidateFeatures(rows.slice(0, 300), TASKS.lmsys, 3, 1, { rounds: 10 });
    assert.ok(Number.isFinite(small.gbdt) && small.prior > 1.0 && small.prior < 1.1);
  });
});
