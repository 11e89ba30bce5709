// Issue 12: the WSDM Cup task end to end. Units: the binary submission writer, a 3-label head mapped
// onto the 2-label task, and --time-budget under an injected clock (fewer swapped rows when the budget
// shrinks; a valid submission when it ends mid-pass). End to end (peaked fixture model, far from
// uniform, 3 labels mapped onto WSDM's 2): predict on the WSDM test parquet writes id,winner for every
// id in input order; validate on the labelled parquet prints accuracy in its closing JSON line; the report has the per-language panel
// and renders in headless Chromium when one is installed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRows } from '../src/data/rows';
import { checkSubmissionText, formatSubmission, SubmissionError } from '../src/data/submission';
import { labelColumns, passProbs, type ModelSpec } from '../src/infer/model';
import { predictModel, type PassRunner } from '../src/infer/tta';
import type { PassResult } from '../src/infer/pass';
import { blendRuns, budgetOrder, shareOfTimeLeft, tokenCost } from '../src/infer/ensemble';
import { renderReport, LANGUAGE_PANEL } from '../src/report/report';
import { accuracy } from '../src/metrics/metrics';
import { TASKS } from '../src/task/task';
import { applyCalibration, checkCalibration, fitCalibration } from '../src/post/calibrate';
import { rng } from '../src/post/fit';
import { softmaxRows } from '../src/util/probs';
import type { ArenaRow } from '../src/types';
import type { Manifest } from '../src/weights/manifest';
import { makePeakedModel, node, ok, RUNNER } from './helpers/peaked';
import { FIXTURES } from './helpers/fixtures';

const DATA = join(FIXTURES, '..', '..', 'data');
const TRAIN = join(DATA, 'wsdm-sample-train.parquet');
const TEST = join(DATA, 'wsdm-sample-test.parquet');
const LMSYS3 = ['winner_model_a', 'winner_model_b', 'winner_tie'];

function wsdmSpec(labels: string[]): ModelSpec {
  return {
    dir: 'm',
    manifest: { kind: 'neural', labels } as unknown as Manifest,
    task: TASKS.wsdm,
    ...labelColumns(labels, 'm', TASKS.wsdm),
  };
}

const rowsOf = (n: number): ArenaRow[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `w${i}`,
    line: i + 2,
    prompt: ['p'],
    responseA: ['a'.repeat(100)],
    responseB: ['b'.repeat(100)],
  }));

function seededLogits(n: number, seed: number): Float64Array {
  let s = seed;
  return Float64Array.from({ length: n * 3 }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 6);
}

/** A PassRunner over fixed 3-label logits whose every row costs `msPerRow` on an injected clock. */
function clockedRunner(logits: Float64Array, clock: { t: number }, msPerRow: number, calls: number[][]): PassRunner {
  return {
    async pass(_m, rows): Promise<PassResult> {
      calls.push(rows);
      clock.t += rows.length * msPerRow;
      const out = new Float64Array(rows.length * 3);
      rows.forEach((r, j) => out.set(logits.subarray(r * 3, r * 3 + 3), j * 3));
      return {
        logits: out,
        numLabels: 3,
        tokens: rows.length,
        computedTokens: rows.length,
        seconds: (rows.length * msPerRow) / 1000,
        failedRows: [],
      };
    },
    release: async () => {},
    ep: () => 'cpu',
    info: () => undefined,
  };
}

describe('WSDM task (issue 12)', () => {
  it('writes id,winner from binary probabilities; an invalid row writes nothing; the checker names bad winners', () => {
    const ids = ['x1', 'x,2', 'x3'];
    const text = formatSubmission(ids, Float64Array.of(0.7, 0.3, 0.2, 0.8, 0.5, 0.5), TASKS.wsdm);
    assert.equal(text, 'id,winner\nx1,model_a\n"x,2",model_b\nx3,model_a\n');
    assert.deepEqual(checkSubmissionText(text, ids, TASKS.wsdm), []);
    assert.match(
      checkSubmissionText(text.replace('model_b', 'tie'), ids, TASKS.wsdm).join(),
      /winner "tie" is not one of model_a, model_b/,
    );
    assert.throws(
      () => formatSubmission(ids, Float64Array.of(0.7, 0.3, NaN, 0.8, 0.5, 0.5), TASKS.wsdm),
      (e: Error) => e instanceof SubmissionError && /row id x,2/.test(e.message),
    );
  });

  it('a 3-label head on WSDM: the tie is dropped and A/B renormalised (= softmax of the A and B logits)', () => {
    const spec = wsdmSpec(['winner_tie', 'winner_model_b', 'winner_model_a']);
    const logits = seededLogits(50, 7);
    const p = passProbs(spec, logits, 50);
    // Reference: softmax over the two logits that name A and B (the tie's share cancels out).
    const ab = Float64Array.from({ length: 100 }, (_, j) => logits[Math.floor(j / 2) * 3 + (j % 2 === 0 ? 2 : 1)]);
    const ref = softmaxRows(ab, 50, 2);
    const md = Math.max(...p.map((x, j) => Math.abs(x - ref[j])));
    console.log(`    3->2 mapping vs softmax(A, B): max diff ${md} (tol 1e-12)`);
    assert.ok(md < 1e-12);
    assert.deepEqual(wsdmSpec(['winner_model_a', 'winner_model_b']).columns, [0, 1]);
    assert.throws(
      () => labelColumns(['winner_model_a', 'winner_model_b'], 'm', TASKS.lmsys),
      /expected the three outcomes/,
    );
  });

  it('calibration on the two WSDM columns: temperature recovers an over-confident model; columns are checked', () => {
    // Labels drawn from sigmoid(z); the model reports sigmoid(2.5 z): over-confident by T = 2.5.
    const r = rng(11);
    const n = 4000;
    const probs = new Float64Array(n * 2);
    const labels = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const z = (r() - 0.5) * 6;
      labels[i] = r() < 1 / (1 + Math.exp(-z)) ? 1 : 0;
      const pb = 1 / (1 + Math.exp(-2.5 * z));
      probs.set([1 - pb, pb], i * 2);
    }
    const cal = fitCalibration(probs, labels, { method: 'auto', labels: TASKS.wsdm.labels });
    console.log(
      `    2-column calibration: ${cal.method}, T = ${(cal.params as { temperature: number }).temperature.toFixed(3)} (true 2.5), log loss ${cal.fittedOn.logLossBefore.toFixed(4)} -> ${cal.fittedOn.logLossAfter.toFixed(4)}`,
    );
    assert.notEqual(cal.method, 'identity');
    const t = fitCalibration(probs, labels, { method: 'temperature', labels: TASKS.wsdm.labels });
    assert.ok(Math.abs((t.params as { temperature: number }).temperature - 2.5) < 0.25);
    assert.deepEqual(t.labels, ['model_a', 'model_b']);
    const out = applyCalibration(t, probs);
    assert.equal(out.length, n * 2);
    const v = fitCalibration(probs, labels, { method: 'vector', labels: TASKS.wsdm.labels });
    assert.equal((v.params as { bias: number[] }).bias.length, 2);
    checkCalibration(JSON.parse(JSON.stringify(v)), 'cal.json', true, TASKS.wsdm.labels);
    assert.throws(
      () => checkCalibration(JSON.parse(JSON.stringify(v)), 'w/manifest.json', true, TASKS.lmsys.labels),
      /w\/manifest\.json: fitted on the columns model_a, model_b, but this run's task has winner_model_a/,
    );
  });

  it('--time-budget: fewer swapped rows when the budget shrinks (injected clock)', async () => {
    const n = 40;
    const rows = rowsOf(n);
    const lengths = rows.map(() => 201);
    const logits = seededLogits(n, 3);
    const swapped: Record<number, number> = {};
    for (const budget of [9000, 6000, 5000, 4200]) {
      const clock = { t: 0 };
      const run = await predictModel(
        0,
        wsdmSpec(LMSYS3),
        rows,
        lengths,
        { kind: 'swap' },
        clockedRunner(logits, clock, 100, []),
        { deadline: budget, now: () => clock.t },
      );
      assert.equal(run.unreachedRows.length, 0);
      assert.ok(clock.t <= budget, `budget ${budget} ms: passes ended at ${clock.t} ms`);
      swapped[budget] = run.swappedRows.length;
      // The swapped rows are the least certain ones.
      const conf = (i: number) => Math.max(run.first[i * 2], run.first[i * 2 + 1]);
      const rest = Array.from({ length: n }, (_, i) => i).filter((i) => !run.swappedRows.includes(i));
      if (rest.length && run.swappedRows.length)
        assert.ok(Math.max(...run.swappedRows.map(conf)) <= Math.min(...rest.map(conf)));
    }
    console.log(`    swapped rows by budget (first pass 4000 ms, 100 ms/row): ${JSON.stringify(swapped)}`);
    // 40 rows x 100 ms = 4 s for the first pass; the rest buys (budget - 4 s) / 100 ms swapped rows.
    assert.deepEqual(swapped, { 9000: 40, 6000: 20, 5000: 10, 4200: 2 });
  });

  it('--time-budget across a blend: cheapest model first, each gets the time left in proportion to its cost per token', () => {
    const neural = (H: number, I: number, L: number, heads: number, kv: number) =>
      ({
        manifest: {
          kind: 'neural',
          config: {
            hiddenSize: H,
            intermediateSize: I,
            numLayers: L,
            numHeads: heads,
            numKvHeads: kv,
            headDim: 256,
            numLabels: 3,
          },
        },
      }) as unknown as ModelSpec;
    const gemma9b = tokenCost(neural(3584, 14336, 42, 16, 8));
    const gemma2b = tokenCost(neural(2304, 9216, 26, 8, 4));
    const features = tokenCost({ manifest: { kind: 'features' } } as unknown as ModelSpec);
    const cost = [gemma9b, features, gemma2b];
    const order = budgetOrder(cost);
    const shares = order.map((_, i) => shareOfTimeLeft(cost, order, i));
    console.log(
      `    cost per token 9B / 2B ${(gemma9b / gemma2b).toFixed(2)}; order ${order.join(',')}; shares of the time left ${shares.map((x) => x.toFixed(3)).join(', ')}`,
    );
    assert.equal(features, 0);
    assert.deepEqual(order, [1, 2, 0]);
    // the feature model may use all the time left (it ends in seconds); the 2B model then takes its share, the 9B the rest
    assert.equal(shares[0], 1);
    assert.ok(Math.abs(shares[1] - gemma2b / (gemma2b + gemma9b)) < 1e-12 && shares[1] > 0.15 && shares[1] < 0.35);
    assert.equal(shares[2], 1);
  });

  it('--time-budget ending mid-pass: unreached rows take the next model, else the prior; the submission is valid', async () => {
    const n = 40;
    const rows = rowsOf(n);
    const lengths = rows.map(() => 201);
    const clock = { t: 0 };
    const calls: number[][] = [];
    const run = await predictModel(
      0,
      wsdmSpec(LMSYS3),
      rows,
      lengths,
      { kind: 'swap' },
      clockedRunner(seededLogits(n, 5), clock, 100, calls),
      { deadline: 2500, now: () => clock.t },
    );
    console.log(
      `    budget 2500 ms, 100 ms/row: ${n - run.unreachedRows.length} rows scored in ${calls.length} chunks, ${run.unreachedRows.length} unreached, ended at ${clock.t} ms`,
    );
    assert.ok(clock.t <= 2500);
    assert.ok(run.unreachedRows.length > 0 && run.unreachedRows.length < n);
    assert.equal(run.swappedRows.length, 0);
    const warnings: string[] = [];
    // Alone: the prior.
    const alone = blendRuns(rows, [run], [1], TASKS.wsdm, (m) => warnings.push(m));
    assert.deepEqual(alone.priorRows, run.unreachedRows);
    for (const i of run.unreachedRows) assert.deepEqual([...alone.probs.subarray(i * 2, i * 2 + 2)], [0.5, 0.5]);
    assert.match(
      warnings.join('\n'),
      new RegExp(`no model reached ${run.unreachedRows.length} of ${n} row\\(s\\) in time \\(ids w`),
    );
    const ids = rows.map((r) => r.id);
    assert.deepEqual(checkSubmissionText(formatSubmission(ids, alone.probs, TASKS.wsdm), ids, TASKS.wsdm), []);
    // With a second model that reached every row: its prediction.
    const clock2 = { t: 0 };
    const other = await predictModel(
      1,
      wsdmSpec(LMSYS3),
      rows,
      lengths,
      { kind: 'none' },
      clockedRunner(seededLogits(n, 9), clock2, 1, []),
      { deadline: 1e9, now: () => clock2.t },
    );
    const both = blendRuns(rows, [run, other], [0.6, 0.4], TASKS.wsdm, () => {});
    assert.equal(both.priorRows.length, 0);
    for (const i of run.unreachedRows)
      for (const c of [0, 1]) assert.ok(Math.abs(both.probs[i * 2 + c] - other.probs[i * 2 + c]) < 1e-12);
    const reached = Array.from({ length: n }, (_, i) => i).find((i) => !run.unreachedRows.includes(i))!;
    assert.ok(
      Math.abs(both.probs[reached * 2] - (0.6 * run.probs[reached * 2] + 0.4 * other.probs[reached * 2])) < 1e-12,
    );
    assert.deepEqual(checkSubmissionText(formatSubmission(ids, both.probs, TASKS.wsdm), ids, TASKS.wsdm), []);
  });

  it('report: accuracy, binary log loss and accuracy per language on the real WSDM rows', async () => {
    const { rows } = await readRows(TRAIN, { requireLabels: true });
    const labels = rows.map((r) => r.label!);
    const probs = new Float64Array(rows.length * 2);
    rows.forEach((r, i) =>
      probs.set(r.responseA.join('').length >= r.responseB.join('').length ? [0.7, 0.3] : [0.3, 0.7], i * 2),
    );
    const html = renderReport({ task: TASKS.wsdm, probs, labels, languages: rows.map((r) => r.language) });
    assert.match(html, new RegExp(`<section class="panel" id="${LANGUAGE_PANEL}">`));
    assert.equal((html.match(/class="cm-cell"/g) ?? []).length, 4);
    const acc = Number(html.match(/id="metric-accuracy" data-value="([^"]+)"/)![1]);
    assert.ok(Math.abs(acc - accuracy(probs, labels, 2)) < 1e-12);
    assert.match(html, /log loss \(binary\)/);
    const langs = [...html.matchAll(/class="language-row" data-language="([^"]+)" data-accuracy="([^"]+)"/g)];
    const en = rows.map((r, i) => [r, i] as const).filter(([r]) => r.language === 'English');
    const enAcc = en.filter(([, i]) => (probs[i * 2 + 1] > probs[i * 2] ? 1 : 0) === labels[i]).length / en.length;
    console.log(
      `    report: accuracy ${acc.toFixed(4)}, ${langs.length} languages, English ${en.length} rows accuracy ${enAcc.toFixed(4)}`,
    );
    assert.deepEqual(langs[0].slice(1), ['English', String(enAcc)]);
    assert.equal(langs.length, new Set(rows.map((r) => r.language)).size);
    // The LMSYS report has no language panel (unchanged).
    assert.doesNotMatch(
      renderReport({ task: TASKS.lmsys, probs: Float64Array.of(0.6, 0.3, 0.1), labels: [0] }),
      new RegExp(LANGUAGE_PANEL),
    );
  });

  describe('end to end with the peaked model (3 labels -> WSDM)', function () {
    this.timeout(600_000);
    let tmp: string;
    let three: string;
    before(() => {
      tmp = mkdtempSync(join(tmpdir(), 'arenakit-wsdm-'));
      three = makePeakedModel(tmp, 'peaked3');
    });
    after(() => rmSync(tmp, { recursive: true, force: true }));

    it('predict on the WSDM test parquet: id,winner for every input id in input order, only model_a/model_b', async () => {
      const { rows } = await readRows(TEST);
      const ids = rows.map((r) => r.id);
      const out3 = join(tmp, 'sub3.csv');
      const r3 = ok(RUNNER, [
        'predict',
        '--data',
        TEST,
        '--weights',
        three,
        '--ep',
        'cpu',
        '--tta',
        'swap',
        '--out',
        out3,
      ]);
      const s3 = JSON.parse(r3.stdout.trim().split('\n').pop()!);
      assert.equal(s3.task, 'wsdm');
      const text = readFileSync(out3, 'utf8');
      assert.deepEqual(checkSubmissionText(text, ids, TASKS.wsdm), []);
      const winners = text
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => l.split(',').pop());
      const nb = winners.filter((w) => w === 'model_b').length;
      console.log(`    ${ids.length} rows: model_a ${ids.length - nb}, model_b ${nb}`);
      assert.ok(nb > 0 && nb < ids.length, 'a peaked model picks both sides');
      // --task lmsys on the same rows writes the LMSYS columns.
      const outL = join(tmp, 'subL.csv');
      ok(RUNNER, ['predict', '--data', TEST, '--task', 'lmsys', '--weights', three, '--ep', 'cpu', '--out', outL]);
      assert.deepEqual(checkSubmissionText(readFileSync(outL, 'utf8'), ids, TASKS.lmsys), []);
      const bad = node(RUNNER, [
        'predict',
        '--data',
        TEST,
        '--task',
        'kaggle',
        '--weights',
        three,
        '--ep',
        'cpu',
        '--out',
        join(tmp, 'no.csv'),
      ]);
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /Unknown task: kaggle/);
      assert.ok(!existsSync(join(tmp, 'no.csv')));
    });

    it('a WSDM-layout CSV (the test parquet saved as CSV, plain-text cells) is the WSDM task without --task: the same id,winner as the parquet', async () => {
      const { rows } = await readRows(TEST);
      const cell = (t: string) => `"${t.replace(/"/g, '""')}"`;
      const csv = join(tmp, 'wsdm-test.csv');
      const take = rows.slice(0, 60);
      writeFileSync(
        csv,
        [
          'id,prompt,response_a,response_b,scored',
          ...take.map((r) =>
            [r.id, cell(r.prompt.join('\n')), cell(r.responseA.join('\n')), cell(r.responseB.join('\n')), 'False'].join(
              ',',
            ),
          ),
        ].join('\n') + '\n',
      );
      const fromCsv = join(tmp, 'from-csv.csv');
      const fromParquet = join(tmp, 'from-parquet.csv');
      const r = ok(RUNNER, [
        'predict',
        '--data',
        csv,
        '--weights',
        three,
        '--ep',
        'cpu',
        '--tta',
        'none',
        '--out',
        fromCsv,
      ]);
      assert.equal(JSON.parse(r.stdout.trim().split('\n').pop()!).task, 'wsdm');
      ok(RUNNER, ['predict', '--data', TEST, '--weights', three, '--ep', 'cpu', '--tta', 'none', '--out', fromParquet]);
      const want = readFileSync(fromParquet, 'utf8')
        .trim()
        .split('\n')
        .slice(0, take.length + 1);
      assert.deepEqual(readFileSync(fromCsv, 'utf8').trim().split('\n'), want);
    });

    it('a true two-label head (num_labels 2, id2label model_a/model_b) gives the same WSDM submission as the 3-label model mapped 3->2', () => {
      const two = makePeakedModel(tmp, 'peaked2', { binary: true });
      assert.deepEqual(JSON.parse(readFileSync(join(two, 'manifest.json'), 'utf8')).labels, ['model_a', 'model_b']);
      const p2 = join(tmp, 'p2.csv');
      const p3 = join(tmp, 'p3.csv');
      // Probabilities (validate --predictions-out, the task's columns) rather than the decided winners: a stronger check.
      ok(RUNNER, [
        'validate',
        '--data',
        join(DATA, 'wsdm-sample-train.parquet'),
        '--weights',
        two,
        '--ep',
        'cpu',
        '--tta',
        'none',
        '--max-rows',
        '200',
        '--predictions-out',
        p2,
      ]);
      ok(RUNNER, [
        'validate',
        '--data',
        join(DATA, 'wsdm-sample-train.parquet'),
        '--weights',
        three,
        '--ep',
        'cpu',
        '--tta',
        'none',
        '--max-rows',
        '200',
        '--predictions-out',
        p3,
      ]);
      const read = (f: string) => readFileSync(f, 'utf8').trim().split('\n');
      const [h2, ...r2] = read(p2);
      const [h3, ...r3] = read(p3);
      assert.equal(h2, 'id,model_a,model_b');
      assert.equal(h3, h2);
      let d = 0;
      r2.forEach((l, i) =>
        l
          .split(',')
          .slice(1)
          .forEach((x, c) => (d = Math.max(d, Math.abs(Number(x) - Number(r3[i].split(',')[c + 1]))))),
      );
      console.log(
        `    two-label head vs three-label head mapped 3->2, 200 rows: max prob diff ${d.toExponential(2)} (tolerance 1e-5)`,
      );
      assert.ok(d < 1e-5);
      // The LMSYS task needs a tie column: a two-label model is refused before any row, naming its labels.
      const bad = node(RUNNER, [
        'predict',
        '--data',
        TEST,
        '--task',
        'lmsys',
        '--weights',
        two,
        '--ep',
        'cpu',
        '--out',
        join(tmp, 'no2.csv'),
      ]);
      assert.notEqual(bad.status, 0);
      assert.match(bad.stderr, /tie/);
    });

    it('--time-budget on the CLI: a budget already spent writes the prior for every row, still a valid submission', async () => {
      const { rows } = await readRows(TEST);
      const out = join(tmp, 'budget.csv');
      const r = ok(RUNNER, [
        'predict',
        '--data',
        TEST,
        '--weights',
        three,
        '--ep',
        'cpu',
        '--tta',
        'swap',
        '--time-budget',
        '0.01s',
        '--out',
        out,
      ]);
      const s = JSON.parse(r.stdout.trim().split('\n').pop()!);
      console.log(
        `    --time-budget 0.01s: swapped ${s.swapped_rows}, unreached ${s.unreached_rows}, prior rows ${s.prior_rows}`,
      );
      assert.equal(s.prior_rows, rows.length);
      assert.match(r.stderr, /--time-budget: no model reached 704 of 704 row\(s\) in time/);
      assert.deepEqual(
        checkSubmissionText(
          readFileSync(out, 'utf8'),
          rows.map((x) => x.id),
          TASKS.wsdm,
        ),
        [],
      );
      const big = JSON.parse(
        ok(RUNNER, [
          'predict',
          '--data',
          TEST,
          '--weights',
          three,
          '--ep',
          'cpu',
          '--tta',
          'swap',
          '--time-budget',
          '1h',
          '--out',
          out,
        ])
          .stdout.trim()
          .split('\n')
          .pop()!,
      );
      assert.equal(big.prior_rows, 0);
      assert.equal(big.swapped_rows, rows.length);
    });

    it('validate on the labelled parquet: accuracy in the closing JSON line; the report renders the language panel', () => {
      const report = join(tmp, 'report.html');
      const r = ok(RUNNER, ['validate', '--data', TRAIN, '--weights', three, '--ep', 'cpu', '--report', report]);
      const fig = JSON.parse(r.stdout.trim().split('\n').pop()!);
      console.log(
        `    validate: accuracy ${fig.accuracy}, binary log loss ${fig.log_loss}, languages ${JSON.stringify(fig.accuracy_by_language)}`,
      );
      assert.equal(fig.task, 'wsdm');
      assert.ok(fig.accuracy > 0 && fig.accuracy < 1);
      assert.ok(Math.abs(fig.uniform_log_loss - Math.log(2)) < 1e-6);
      assert.ok(fig.accuracy_by_language.English >= 0);
      const html = readFileSync(report, 'utf8');
      assert.match(html, new RegExp(`id="${LANGUAGE_PANEL}"`));
      const chrome = ['chromium', 'chromium-browser', 'google-chrome'].find(
        (b) => spawnSync('which', [b]).status === 0,
      );
      if (!chrome) {
        // CI (.ci/run) installs Debian's chromium and sets ARENAKIT_CHROMIUM=required: there a missing browser fails.
        assert.notEqual(process.env.ARENAKIT_CHROMIUM, 'required', 'no Chromium: apt-get install chromium');
        return console.log('    (no Chromium on this machine: the headless render check is skipped)');
      }
      const quiet = [
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-quic',
      ];
      const dom = spawnSync(
        chrome,
        [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          ...quiet,
          `--user-data-dir=${join(tmp, 'chrome-profile')}`,
          '--dump-dom',
          `file://${report}`,
        ],
        { encoding: 'utf8', timeout: 120_000 },
      );
      assert.equal(dom.status, 0, dom.stderr);
      // The rendered DOM holds the panel, its chart and its rows.
      assert.match(dom.stdout, new RegExp(`<section class="panel" id="${LANGUAGE_PANEL}">`));
      assert.match(dom.stdout, /<svg class="chart" id="chart-language"/);
      assert.ok((dom.stdout.match(/class="language-row"/g) ?? []).length >= 2);
      const shot = join(tmp, 'report.png');
      const png = spawnSync(
        chrome,
        [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          ...quiet,
          `--user-data-dir=${join(tmp, 'chrome-profile')}`,
          `--screenshot=${shot}`,
          '--window-size=1400,2400',
          `file://${report}`,
        ],
        { encoding: 'utf8', timeout: 120_000 },
      );
      assert.equal(png.status, 0, png.stderr);
      console.log(
        `    headless ${chrome}: DOM ${dom.stdout.length} chars, screenshot ${readFileSync(shot).length} bytes`,
      );
    });
  });
});
