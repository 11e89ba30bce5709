// The submission writer, one row per input id in input order, in the task's format (src/task/task.ts):
// LMSYS `id,winner_model_a,winner_model_b,winner_tie` (each row finite and summing to 1 within 1e-6),
// WSDM `id,winner` (model_a | model_b, decided from the probabilities). Written atomically (a
// temporary file in the same directory, then rename), so a submission is either complete and valid
// or absent. Prediction files for `calibrate` keep the probabilities: `formatProbabilities`.
import type { Task } from '../task/task';
import { writeFileAtomic } from '../util/files';
import type { Probs } from '../util/probs';

export class SubmissionError extends Error {
  override name = 'SubmissionError';
}

/** Row i normalised; throws naming the row id when it cannot be made valid. */
function validRow(ids: string[], probs: Probs, i: number, k: number): number[] {
  const row = Array.from(probs.subarray(i * k, i * k + k));
  const s = row.reduce((a, b) => a + b, 0);
  if (!row.every((x) => Number.isFinite(x) && x >= 0) || !(s > 0))
    throw new SubmissionError(`row id ${ids[i]}: probabilities [${row.join(', ')}] are not valid; nothing was written`);
  return row.map((x) => x / s);
}

function checkShape(ids: string[], probs: Probs, k: number): void {
  if (probs.length !== ids.length * k)
    throw new SubmissionError(`internal: ${ids.length} ids but ${probs.length / k} probability rows of ${k}`);
}

/** `id,<columns>` with normalised probability rows (LMSYS submissions, prediction files of any task). */
export function formatProbabilities(ids: string[], probs: Probs, columns: readonly string[]): string {
  const k = columns.length;
  checkShape(ids, probs, k);
  const lines = [`id,${columns.join(',')}`];
  for (let i = 0; i < ids.length; i++)
    lines.push(
      `${csvField(ids[i])},${validRow(ids, probs, i, k)
        .map((x) => String(Number(x.toPrecision(10))))
        .join(',')}`,
    );
  return lines.join('\n') + '\n';
}

/** The task's submission as CSV text; throws naming the row id when a row cannot be made valid. */
export function formatSubmission(ids: string[], probs: Probs, task: Task): string {
  const k = task.labels.length;
  checkShape(ids, probs, k);
  const lines = [task.header.join(',')];
  for (let i = 0; i < ids.length; i++)
    lines.push([csvField(ids[i]), ...task.cells(validRow(ids, probs, i, k))].join(','));
  return lines.join('\n') + '\n';
}

function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function writeSubmission(path: string, ids: string[], probs: Probs, task: Task): void {
  writeFileAtomic(path, formatSubmission(ids, probs, task));
}

/** Probabilities for `calibrate` (validate --predictions-out, features oof.csv), in the task's label columns. */
export function writePredictions(path: string, ids: string[], probs: Probs, task: Task): void {
  writeFileAtomic(path, formatProbabilities(ids, probs, task.labels));
}

/** Splits one CSV line whose cells after the id hold no commas or quotes (a submission row). */
function splitRow(line: string, cellsAfterId: number): { id: string; cells: string[] } {
  const cells = line.split(',');
  return {
    id: cells.slice(0, -cellsAfterId).join(',').replace(/^"|"$/g, '').replace(/""/g, '"'),
    cells: cells.slice(-cellsAfterId),
  };
}

/** Re-reads a submission's text and checks it against the expected ids (used by tests and the CLI's final check). */
export function checkSubmissionText(text: string, ids: string[], task: Task): string[] {
  const problems: string[] = [];
  const lines = text.trimEnd().split('\n');
  if (lines[0] !== task.header.join(',')) problems.push(`header is "${lines[0]}"`);
  if (lines.length - 1 !== ids.length) problems.push(`${lines.length - 1} rows, expected ${ids.length}`);
  const width = task.header.length - 1;
  const decisions = new Set(task.labels);
  for (let i = 1; i < lines.length && i <= ids.length; i++) {
    const { id, cells } = splitRow(lines[i], width);
    if (id !== ids[i - 1]) problems.push(`row ${i}: id ${id}, expected ${ids[i - 1]}`);
    if (task.metric.name === 'accuracy') {
      if (!decisions.has(cells[0]))
        problems.push(`row ${i} (id ${id}): winner "${cells[0]}" is not one of ${task.labels.join(', ')}`);
    } else {
      const vals = cells.map(Number);
      const s = vals.reduce((a, b) => a + b, 0);
      if (!vals.every(Number.isFinite) || Math.abs(s - 1) > 1e-6) problems.push(`row ${i} (id ${id}): sums to ${s}`);
    }
    if (problems.length > 10) break;
  }
  return problems;
}
