import { swapColumns, TASKS } from '../src/task/task';
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { softmaxRows, flipAB, mergeSwap, leastCertain } from '../src/util/probs';
import { logLoss, accuracy, priorLogLoss } from '../src/metrics/metrics';
import { writeSubmission, checkSubmissionText, SubmissionError } from '../src/data/submission';

describe('probabilities, metrics and the submission writer', () => {
  it('log loss: uniform is ln 3, and matches sklearn log_loss on a worked example', () => {
    assert.ok(Math.abs(logLoss(new Float64Array(9).fill(1 / 3), [0, 1, 2], 3) - Math.log(3)) < 1e-12);
    // sklearn.metrics.log_loss([0, 2], [[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]]) = 0.5249110622493236
    const ll = logLoss(Float64Array.of(0.7, 0.2, 0.1, 0.2, 0.3, 0.5), [0, 2], 3);
    console.log(
      `      log loss ${ll}, sklearn 0.5249110622493236, diff ${Math.abs(ll - 0.5249110622493236)} (tol 1e-12)`,
    );
    assert.ok(Math.abs(ll - 0.5249110622493236) < 1e-12);
    // A zero probability is clipped at 1e-15, not infinite.
    assert.ok(Number.isFinite(logLoss(Float64Array.of(1, 0, 0), [1], 3)));
    assert.equal(accuracy(Float64Array.of(0.7, 0.2, 0.1, 0.2, 0.3, 0.5), [0, 1], 3), 0.5);
    assert.ok(Math.abs(priorLogLoss([0, 0, 1, 2], 3) - -(0.5 * Math.log(0.5) + 0.5 * Math.log(0.25))) < 1e-12);
  });

  it('softmax rows sum to 1 and are stable for large logits', () => {
    const p = softmaxRows([1000, 0, -1000, 1, 2, 3], 2, 3);
    assert.ok(Math.abs(p[0] - 1) < 1e-12);
    const e = [Math.exp(1), Math.exp(2), Math.exp(3)];
    const z = e[0] + e[1] + e[2];
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(p[3 + c] - e[c] / z) < 1e-15);
  });

  it('swap TTA flips A/B of the swapped pass and averages; selective TTA picks the least certain rows', () => {
    const first = Float64Array.of(0.6, 0.3, 0.1, 0.34, 0.33, 0.33);
    const swapped = flipAB(Float64Array.of(0.2, 0.7, 0.1, 0.3, 0.3, 0.4), swapColumns(TASKS.lmsys));
    assert.deepEqual([...swapped], [0.7, 0.2, 0.1, 0.3, 0.3, 0.4]);
    const m = mergeSwap(first, swapped, 3);
    assert.ok(Math.abs(m[0] - 0.65) < 1e-12 && Math.abs(m[5] - 0.365) < 1e-12);
    assert.deepEqual(leastCertain(first, 0.5, 3), [1]);
    const sel = mergeSwap(first, swapped, 3, [1]);
    assert.deepEqual([...sel.subarray(0, 3)], [0.6, 0.3, 0.1]);
  });

  it('writes a valid submission atomically, and writes nothing when a row is invalid', () => {
    const dir = mkdtempSync(join(tmpdir(), 'arenakit-sub-'));
    const out = join(dir, 'sub', 'submission.csv');
    writeSubmission(out, ['1', 'b,2'], Float64Array.of(2, 1, 1, 0.2, 0.3, 0.5), TASKS.lmsys);
    const text = readFileSync(out, 'utf8');
    assert.deepEqual(checkSubmissionText(text, ['1', 'b,2'], TASKS.lmsys), []);
    assert.ok(text.startsWith('id,winner_model_a,winner_model_b,winner_tie\n1,0.5,0.25,0.25'));
    const bad = join(dir, 'bad.csv');
    assert.throws(
      () => writeSubmission(bad, ['x', 'y'], Float64Array.of(1, 0, 0, NaN, 0, 0), TASKS.lmsys),
      (e: Error) => e instanceof SubmissionError && /row id y/.test(e.message),
    );
    assert.ok(!existsSync(bad));
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.endsWith('.tmp')),
      [],
    );
  });
});
