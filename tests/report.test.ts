// The HTML report's structure: every panel present with its stable id, metrics that agree with the
// shared metrics module, no scripts or network references, and "not available" notes for missing inputs.
import { TASKS } from '../src/task/task';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readRows } from '../src/data/rows';
import { accuracy, logLoss } from '../src/metrics/metrics';
import { lengthDifference, textLength } from '../src/util/text';
import { renderReport, REPORT_PANELS } from '../src/report/report';
import { rng } from '../src/post/fit';

const SAMPLE = join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');

describe('HTML report', () => {
  it('renders every panel with stable ids and the right metrics on the real sample rows', async () => {
    const { rows } = await readRows(SAMPLE, { requireLabels: true });
    const n = rows.length;
    const r = rng(1);
    const probs = new Float64Array(n * 3);
    const swapped = new Float64Array(n * 3);
    for (let i = 0; i < n; i++) {
      const e = [r() + 0.2, r() + 0.2, r() + 0.2];
      const s = e[0] + e[1] + e[2];
      for (let c = 0; c < 3; c++) probs[i * 3 + c] = e[c] / s;
      swapped.set([probs[i * 3 + 1], probs[i * 3], probs[i * 3 + 2]], i * 3);
    }
    const labels = rows.map((x) => x.label!);
    const html = renderReport({
      task: TASKS.lmsys,
      probs,
      labels,
      swappedProbs: swapped,
      lengths: rows.map(textLength),
      lengthDiff: rows.map(lengthDifference),
      title: 'sample <999>',
    });
    for (const id of REPORT_PANELS) assert.match(html, new RegExp(`<section class="panel" id="${id}">`), id);
    for (const id of ['chart-reliability', 'chart-length', 'chart-position', 'chart-verbosity'])
      assert.match(html, new RegExp(`<svg class="chart" id="${id}"`), id);
    assert.equal((html.match(/class="cm-cell"/g) ?? []).length, 9);
    const cmTotal = [...html.matchAll(/class="cm-cell"[^>]*>(\d+)</g)].reduce((s, m) => s + Number(m[1]), 0);
    assert.equal(cmTotal, n);
    const ll = Number(html.match(/id="metric-logloss" data-value="([^"]+)"/)![1]);
    const acc = Number(html.match(/id="metric-accuracy" data-value="([^"]+)"/)![1]);
    console.log(
      `    report log loss ${ll} vs metrics ${logLoss(probs, labels, 3)} (diff ${Math.abs(ll - logLoss(probs, labels, 3))}, tol 1e-12); html ${html.length} bytes`,
    );
    assert.ok(Math.abs(ll - logLoss(probs, labels, 3)) < 1e-12);
    assert.ok(Math.abs(acc - accuracy(probs, labels, 3)) < 1e-12);
    // A perfectly swap-consistent model agrees on every verdict.
    assert.match(html, /id="metric-swap-agreement">1\.0000</);
    assert.ok(
      !/<script|https?:\/\/(?!www\.w3\.org\/2000\/svg)|<link /.test(html),
      'self-contained: no scripts, links or network URLs',
    );
    assert.match(html, /<title>sample &#60;999&#62;<\/title>/);
    assert.doesNotMatch(html, /NaN/);
  });

  it('marks panels whose inputs are missing instead of dropping them', () => {
    const html = renderReport({
      task: TASKS.lmsys,
      probs: Float64Array.of(0.6, 0.3, 0.1, 0.2, 0.5, 0.3),
      labels: [0, 2],
    });
    for (const id of REPORT_PANELS) assert.match(html, new RegExp(`id="${id}"`));
    assert.equal((html.match(/class="missing"/g) ?? []).length, 3);
    assert.throws(
      () => renderReport({ task: TASKS.lmsys, probs: new Float64Array(3), labels: [0, 1] }),
      /1 probability rows for 2 labels/,
    );
  });
});
