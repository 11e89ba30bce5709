// `runner.cjs validate`: scores a labelled CSV locally: log loss (with and without swap TTA),
// accuracy, swap consistency and position bias; ends with one JSON line of those figures.
// --predictions-out writes what `calibrate` fits on: the uncalibrated first pass (one pass, no TTA
// merge, A/B as in the file), with a `.meta.json` beside it saying so.
import { readRows } from '../../data/rows';
import { writeSubmission } from '../../data/submission';
import { accuracy, logLoss, priorLogLoss, swapConsistency } from '../../metrics/metrics';
import { renderReport } from '../../report/report';
import { fitTieModel } from '../../post/tie';
import { PASS_INPUT } from '../../post/calibrate';
import { predictionsMeta } from '../../post/io';
import { updateManifest } from '../../weights/manifest';
import { assertWritableFile, writeFileAtomic } from '../../util/files';
import { flipAB, mergeSwap, UNIFORM, type Probs } from '../../util/probs';
import { lengthDifference, textLength } from '../../util/text';
import type { ArenaRow } from '../../types';
import type { ModelSpec } from '../../infer/model';
import { parse, need } from '../args';
import { exitOnSignals, makeRunner, openSpecs, SCORE_OPTIONS, scoreRows, scoreSettings, type ScoreSettings } from './score';

const USAGE = `usage: node runner.cjs validate --data labelled.csv --weights DIR [--weights DIR2 ...]
  [--ep cpu|cuda|auto] [--tta swap|none] [--token-budget N] [--predictions-out P.csv] [--report report.html]
  [--fit-tie]  (single-score heads: fit the Davidson tie model on these labels and store it in the weights directory)
  (validate always runs the swapped pass too, to measure swap consistency)
  --predictions-out: the uncalibrated first pass, the input \`runner.cjs calibrate\` fits a calibration on`;

const warn = (m: string) => process.stderr.write(`warning: ${m}\n`);

/** Failed rows (NaN) as the uniform prediction, for metrics over every row. */
function filled(p: Probs): Probs {
  const out = Float64Array.from(p);
  for (let i = 0; i < out.length; i += 3) if (![0, 1, 2].every((c) => Number.isFinite(out[i + c]))) out.set(UNIFORM, i);
  return out;
}

export async function run(argv: string[]): Promise<void> {
  const v = parse(argv, {
      ...SCORE_OPTIONS,
      tta: { type: 'string', default: 'swap' },
      'predictions-out': { type: 'string' },
      report: { type: 'string' },
      'fit-tie': { type: 'boolean' },
    }, USAGE);
  const data = need(v.data, '--data', USAGE);
  const settings = { ...scoreSettings(v), tta: { kind: 'swap' as const } };
  const useTta = (v.tta as string) !== 'none';
  for (const [flag, path] of [['--predictions-out', v['predictions-out']], ['--report', v.report]] as const)
    if (typeof path === 'string') assertWritableFile(path, flag);
  const specs = openSpecs(settings, !v['fit-tie']);
  const { rows, warnings } = await readRows(data, { requireLabels: true });
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  const labels = rows.map((r) => r.label as number);
  exitOnSignals('nothing written.', settings.cacheDir);
  if (v['fit-tie']) await fitTies(specs, rows, labels, settings);
  const { runs } = await scoreRows(rows, specs, settings, warn);
  const n = rows.length;
  // Blend first passes and swapped passes separately so both TTA figures and consistency come from one run.
  const first = new Float64Array(n * 3);
  const swR = new Float64Array(n * 3);
  const raw = new Float64Array(n * 3);
  runs.forEach((r, k) => {
    const w = settings.blend[k];
    const [f, s, u] = [filled(r.first), filled(r.swappedRaw), filled(r.raw)];
    for (let i = 0; i < n * 3; i++) {
      first[i] += w * f[i];
      swR[i] += w * s[i];
      raw[i] += w * u[i];
    }
  });
  const swF = flipAB(swR);
  const merged = mergeSwap(first, swF);
  const probs = useTta ? merged : first;
  const cons = swapConsistency(first, swF, swR, n);
  const figures = {
    rows: n,
    log_loss: round(logLoss(probs, labels)),
    accuracy: round(accuracy(probs, labels)),
    tta: useTta ? 'swap' : 'none',
    log_loss_no_tta: round(logLoss(first, labels)),
    log_loss_swap_tta: round(logLoss(merged, labels)),
    swap_agreement: round(cons.agreement),
    swap_mean_abs_diff_a: round(cons.meanAbsDiffA),
    position_bias: round(cons.positionBias),
    prior_log_loss: round(priorLogLoss(labels)),
    uniform_log_loss: round(Math.log(3)),
    failed_rows: runs.reduce((a, r) => a + r.failedRows.length, 0),
  };
  const pout = v['predictions-out'] as string | undefined;
  if (pout) {
    writeSubmission(pout, rows.map((r) => r.id), raw);
    writeFileAtomic(predictionsMeta(pout), JSON.stringify({ ...PASS_INPUT, calibrated: false, weights: settings.weights, blend: settings.blend, data }, null, 2) + '\n');
    process.stderr.write(`predictions (uncalibrated first pass, for calibrate) written to ${pout}\n`);
  }
  if (v.report) {
    const html = renderReport({ probs, labels, swappedProbs: swR, lengths: rows.map(textLength), lengthDiff: rows.map(lengthDifference), title: `arenakit validation: ${data}` });
    writeFileAtomic(v.report as string, html);
    process.stderr.write(`report written to ${v.report}\n`);
  }
  const lines = [
    `validation on ${data} (${n} rows, models: ${settings.weights.join(', ')})`,
    `  log loss        ${figures.log_loss.toFixed(5)}  (${figures.tta} TTA; no TTA ${figures.log_loss_no_tta.toFixed(5)}, swap TTA ${figures.log_loss_swap_tta.toFixed(5)})`,
    `  accuracy        ${figures.accuracy.toFixed(4)}`,
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
      const pass = await runner.pass(k, rows.map((_, i) => i), false, 'fit-tie');
      await runner.release(k);
      const tie = fitTieModel(pass.logits, labels);
      updateManifest(spec.dir, { tie });
      spec.tie = tie;
      process.stderr.write(`${spec.dir}: fitted ${tie.method} tie model on ${(tie.fittedOn as { rows: number }).rows} of ${rows.length} rows (failed rows left out), stored in manifest.json\n`);
    }
  } finally {
    runner.close();
  }
}
