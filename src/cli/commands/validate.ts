// `runner.cjs validate`: scores a labelled CSV locally: log loss (with and without swap TTA),
// accuracy, swap consistency and position bias; ends with one JSON line of those figures.
// --predictions-out writes what `calibrate` fits on: the uncalibrated first pass (one pass, no TTA
// merge, A/B as in the file), with a `.meta.json` beside it saying so.
import { dataColumns, readRows } from '../../data/rows';
import { writePredictions } from '../../data/submission';
import { accuracy, accuracyByGroup, logLoss, priorLogLoss, swapConsistency } from '../../metrics/metrics';
import { renderReport } from '../../report/report';
import { fitTieModel } from '../../post/tie';
import { PASS_INPUT } from '../../post/calibrate';
import { predictionsMeta } from '../../post/io';
import { updateManifest } from '../../weights/manifest';
import { assertNotInput, assertWritableFile, writeFileAtomic } from '../../util/files';
import { fillUniform } from '../../util/probs';
import { blendProbs } from '../../post/blend';
import { blendRuns } from '../../infer/ensemble';
import { lengthDifference, textLength } from '../../util/text';
import type { ArenaRow } from '../../types';
import type { ModelSpec } from '../../infer/model';
import { num, parse, need, UsageError } from '../args';
import {
  exitOnSignals,
  makeRunner,
  openSpecs,
  prepareRuntime,
  SCORE_OPTIONS,
  scoreRows,
  scoreSettings,
  type ScoreSettings,
} from './score';

const USAGE = `usage: node runner.cjs validate --data labelled.csv|train.parquet --weights DIR [--weights DIR2 ...] [--task lmsys|wsdm]
  [--ep cpu|cuda|auto] [--gpu-precision fp16|bf16] [--tta swap|none] [--token-budget N|auto] [--predictions-out P.csv] [--report report.html]
  [--fit-tie]  (single-score heads: fit the Davidson tie model on these labels and store it in the weights directory)
  (validate always runs the swapped pass too, to measure swap consistency)
  --predictions-out: the uncalibrated first pass, the input \`runner.cjs calibrate\` fits a calibration on
  --max-rows N: validate on the file's first N rows only (a quick check)`;

const warn = (m: string) => process.stderr.write(`warning: ${m}\n`);

export async function run(argv: string[]): Promise<void> {
  const v = parse(
    argv,
    {
      ...SCORE_OPTIONS,
      tta: { type: 'string', default: 'swap' },
      'predictions-out': { type: 'string' },
      report: { type: 'string' },
      'fit-tie': { type: 'boolean' },
      'max-rows': { type: 'string' },
    },
    USAGE,
  );
  const data = need(v.data, '--data', USAGE);
  // Validation scores every row with both passes: a --time-budget does not apply here.
  const settings: ScoreSettings = {
    ...scoreSettings(v, { columns: dataColumns(data), startedAt: performance.timeOrigin }),
    tta: { kind: 'swap' },
    deadline: Infinity,
  };
  prepareRuntime(settings);
  const task = settings.task;
  const K = task.labels.length;
  const useTta = (v.tta as string) !== 'none';
  const inputs = [{ flag: '--data', path: data }, ...settings.weights.map((w) => ({ flag: '--weights', path: w }))];
  if (settings.cacheDir) inputs.push({ flag: '--cache', path: settings.cacheDir });
  for (const [flag, path] of [
    ['--predictions-out', v['predictions-out']],
    ['--report', v.report],
  ] as const)
    if (typeof path === 'string') {
      assertNotInput({ flag, path }, inputs);
      assertWritableFile(path, flag);
    }
  if (typeof v['predictions-out'] === 'string' && typeof v.report === 'string')
    assertNotInput({ flag: '--report', path: v.report }, [{ flag: '--predictions-out', path: v['predictions-out'] }]);
  const specs = openSpecs(settings, !v['fit-tie']);
  const maxRows = v['max-rows'] === undefined ? Infinity : num(v['max-rows'], '--max-rows', 0);
  if (!(maxRows >= 1)) throw new UsageError(`--max-rows must be a positive number of rows, got "${v['max-rows']}"`);
  const read = await readRows(data, { requireLabels: true });
  const { warnings } = read;
  // A quick look (a Kaggle notebook that is merely saved): the file's first rows.
  // A label the task has no column for (a WSDM 'tie'): scored, it would give a NaN or wrong figure.
  const outside = read.rows.filter((r) => (r.label as number) >= task.outcomes.length);
  if (outside.length)
    warnings.push(
      `${data}: ${outside.length} rows labelled ${[...new Set(outside.map((r) => (task.name === 'wsdm' ? 'tie' : String(r.label))))].join(', ')} ` +
        `excluded: the ${task.name} task has only the outcomes ${task.outcomes.join(', ')} (ids ${outside
          .slice(0, 5)
          .map((r) => r.id)
          .join(', ')}${outside.length > 5 ? ', ...' : ''})`,
    );
  const kept = outside.length ? read.rows.filter((r) => (r.label as number) < task.outcomes.length) : read.rows;
  if (!kept.length)
    throw new UsageError(`${data}: no row has a label of the ${task.name} task (${task.outcomes.join(', ')})`);
  const rows = kept.length > maxRows ? kept.slice(0, maxRows) : kept;
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  const labels = rows.map((r) => r.label as number);
  exitOnSignals('nothing written.', settings.cacheDir);
  if (v['fit-tie']) await fitTies(specs, rows, labels, settings);
  // One run with both passes (validate always swaps): the swap-TTA figure is the very blend predict
  // --tta swap submits, the no-TTA figure the blend of each model's first pass by the same merge rule.
  const { probs: merged, runs } = await scoreRows(rows, specs, settings, warn);
  const n = rows.length;
  const first = blendRuns(rows, runs, settings.blend, task, warn, (r) => r.noTta).probs;
  // Swap consistency and --predictions-out: failed rows as uniform.
  const blendFilled = (pick: (r: (typeof runs)[number]) => Float64Array) =>
    blendProbs(
      runs.map((r) => fillUniform(pick(r), K)),
      settings.blend,
    );
  const swR = blendFilled((r) => r.swappedRaw);
  const swF = blendFilled((r) => r.swappedFlipped);
  const raw = blendFilled((r) => r.raw);
  const probs = useTta ? merged : first;
  const cons = swapConsistency(first, swF, swR, n, K);
  const binary = task.metric.name === 'accuracy';
  const languages = rows.map((r) => r.language ?? '');
  const figures = {
    ...(binary ? { task: task.name } : {}),
    rows: n,
    log_loss: round(logLoss(probs, labels, K)),
    accuracy: round(accuracy(probs, labels, K)),
    tta: useTta ? 'swap' : 'none',
    log_loss_no_tta: round(logLoss(first, labels, K)),
    log_loss_swap_tta: round(logLoss(merged, labels, K)),
    ...(binary
      ? { accuracy_no_tta: round(accuracy(first, labels, K)), accuracy_swap_tta: round(accuracy(merged, labels, K)) }
      : {}),
    swap_agreement: round(cons.agreement),
    swap_mean_abs_diff_a: round(cons.meanAbsDiffA),
    position_bias: round(cons.positionBias),
    prior_log_loss: round(priorLogLoss(labels, K)),
    uniform_log_loss: round(Math.log(K)),
    failed_rows: runs.reduce((a, r) => a + r.failedRows.length, 0),
    ...(binary && languages.some((l) => l)
      ? {
          accuracy_by_language: Object.fromEntries(
            accuracyByGroup(
              probs,
              labels,
              languages.map((l) => l || '(none)'),
              K,
            ).map((g) => [g.group, round(g.accuracy)]),
          ),
        }
      : {}),
  };
  const pout = v['predictions-out'] as string | undefined;
  if (pout) {
    writePredictions(
      pout,
      rows.map((r) => r.id),
      raw,
      task,
    );
    writeFileAtomic(
      predictionsMeta(pout),
      JSON.stringify(
        { ...PASS_INPUT, calibrated: false, weights: settings.weights, blend: settings.blend, data },
        null,
        2,
      ) + '\n',
    );
    process.stderr.write(`predictions (uncalibrated first pass, for calibrate) written to ${pout}\n`);
  }
  if (v.report) {
    const html = renderReport({
      task,
      probs,
      labels,
      swappedProbs: swR,
      lengths: rows.map(textLength),
      lengthDiff: rows.map(lengthDifference),
      languages,
      title: `arenakit validation: ${data}`,
    });
    writeFileAtomic(v.report as string, html);
    process.stderr.write(`report written to ${v.report}\n`);
  }
  const lossLine = `  log loss        ${figures.log_loss.toFixed(5)}  (${figures.tta} TTA; no TTA ${figures.log_loss_no_tta.toFixed(5)}, swap TTA ${figures.log_loss_swap_tta.toFixed(5)})${binary ? ' (binary)' : ''}`;
  const accLine = `  accuracy        ${figures.accuracy.toFixed(4)}${binary ? `  (the ${task.name} metric; no TTA ${figures.accuracy_no_tta!.toFixed(4)}, swap TTA ${figures.accuracy_swap_tta!.toFixed(4)})` : ''}`;
  const lines = [
    `validation on ${data} (${n} rows, task ${task.name}, models: ${settings.weights.join(', ')})`,
    ...(binary ? [accLine, lossLine] : [lossLine, accLine]),
    `  swap agreement  ${figures.swap_agreement.toFixed(4)}  (same verdict after swapping A and B)`,
    `  position bias   ${figures.position_bias.toFixed(4)}  (mean P(first) - P(second); 0 = none)`,
    `  baselines       prior ${figures.prior_log_loss.toFixed(5)}, uniform ${figures.uniform_log_loss.toFixed(5)}`,
  ];
  process.stderr.write(lines.join('\n') + '\n');
  process.stdout.write(JSON.stringify(figures) + '\n');
}

const round = (x: number) => Number(x.toFixed(6));

/** For each single-score model: score the rows (first pass), fit the tie model on the rows that worked, store it. */
async function fitTies(specs: ModelSpec[], rows: ArenaRow[], labels: number[], s: ScoreSettings): Promise<void> {
  const runner = makeRunner(specs, rows, s, warn);
  try {
    for (let k = 0; k < specs.length; k++) {
      const spec = specs[k];
      if (spec.columns !== null) continue;
      const pass = await runner.pass(
        k,
        rows.map((_, i) => i),
        false,
        'fit-tie',
      );
      await runner.release(k);
      const tie = fitTieModel(pass.logits, labels);
      updateManifest(spec.dir, { tie });
      spec.tie = tie;
      process.stderr.write(
        `${spec.dir}: fitted ${tie.method} tie model on ${(tie.fittedOn as { rows: number }).rows} of ${rows.length} rows (failed rows left out), stored in manifest.json\n`,
      );
    }
  } finally {
    runner.close();
  }
}
