// `runner.cjs validate`: scores a labelled CSV locally: log loss (with and without swap TTA),
// accuracy, swap consistency and position bias; ends with one JSON line of those figures.
import { readRows } from '../../data/rows';
import { parse, need } from '../args';
import { SCORE_OPTIONS, scoreRows, scoreSettings } from './score';
import { accuracy, logLoss, priorLogLoss, swapConsistency } from '../../metrics/metrics';
import { writeSubmission } from '../../data/submission';
import { mergeSwap } from '../../infer/probs';
import { writeFileAtomic } from '../../data/submission';
import { renderReport } from '../../report/report';
import { lengthDifference, textLength } from '../../features/extract';
import { fitTieModel } from '../../post/tie';
import { loadTokenizer } from '../../format/encode';
import { openModel } from '../../infer/session';
import { runPass } from '../../infer/predict';
import { readManifest } from '../../weights/manifest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ArenaRow } from '../../types';
import type { ScoreSettings } from './score';

const USAGE = `usage: node runner.cjs validate --data labelled.csv --weights DIR [--weights DIR2 ...]
  [--ep cpu|cuda|auto] [--tta swap|none] [--token-budget N] [--predictions-out P.csv] [--report report.html]
  [--fit-tie]  (single-score heads: fit the Davidson tie model on these labels and store it in the weights directory)
  (validate always runs the swapped pass too, to measure swap consistency)`;

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
  const { rows, warnings } = await readRows(data, { requireLabels: true });
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  const labels = rows.map((r) => r.label as number);
  if (v['fit-tie']) await fitTies(rows, labels, settings);
  const { runs } = await scoreRows(rows, settings, (m) => process.stderr.write(`warning: ${m}\n`));
  const n = rows.length;
  // Blend first passes and swapped passes separately so both TTA figures and consistency come from one run.
  const first = new Float64Array(n * 3);
  const swF = new Float64Array(n * 3);
  const swR = new Float64Array(n * 3);
  runs.forEach((r, k) => {
    const w = settings.blend[k];
    for (let i = 0; i < n * 3; i++) {
      first[i] += w * r.result.first[i];
      swF[i] += w * r.result.swappedFlipped![i];
      swR[i] += w * r.result.swappedRaw![i];
    }
  });
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
  };
  if (v['predictions-out']) writeSubmission(v['predictions-out'] as string, rows.map((r) => r.id), probs);
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

/** For each single-score model: score the rows (first pass), fit the tie model, store it in manifest.json. */
async function fitTies(rows: ArenaRow[], labels: number[], s: ScoreSettings): Promise<void> {
  for (const dir of s.weights) {
    const manifest = readManifest(dir);
    if (manifest.kind !== 'neural' || manifest.labels.length !== 1) continue;
    const model = await openModel(dir, { ep: s.ep, threads: s.threads });
    const pass = await runPass(model, loadTokenizer(dir), rows, { tokenBudget: s.tokenBudget, swap: false, label: 'fit-tie', warn: (m) => process.stderr.write(`warning: ${m}\n`) });
    await model.session.release();
    const tie = fitTieModel(Float64Array.from(pass.logits), labels);
    const path = join(dir, 'manifest.json');
    const json = JSON.parse(readFileSync(path, 'utf8'));
    json.tie = tie;
    writeFileAtomic(path, JSON.stringify(json, null, 2) + '\n');
    process.stderr.write(`${dir}: fitted ${tie.method} tie model on ${rows.length} rows, stored in manifest.json\n`);
  }
}
