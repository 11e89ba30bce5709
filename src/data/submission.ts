// The submission writer: `id,winner_model_a,winner_model_b,winner_tie`, one row per input id in
// input order, each row finite and summing to 1 within 1e-6. Written atomically (a temporary file
// in the same directory, then rename), so a submission is either complete and valid or absent.
import { LABEL_COLUMNS } from '../types';
import { writeFileAtomic } from '../util/files';
import type { Probs } from '../util/probs';

export class SubmissionError extends Error {
  override name = 'SubmissionError';
}

/** Normalised rows as CSV text; throws naming the row id when a row cannot be made valid. */
export function formatSubmission(ids: string[], probs: Probs): string {
  if (probs.length !== ids.length * 3) throw new SubmissionError(`internal: ${ids.length} ids but ${probs.length / 3} probability rows`);
  const lines = [`id,${LABEL_COLUMNS.join(',')}`];
  for (let i = 0; i < ids.length; i++) {
    const row = [probs[i * 3], probs[i * 3 + 1], probs[i * 3 + 2]];
    const s = row[0] + row[1] + row[2];
    if (!row.every((x) => Number.isFinite(x) && x >= 0) || !(s > 0))
      throw new SubmissionError(`row id ${ids[i]}: probabilities [${row.join(', ')}] are not valid; nothing was written`);
    const norm = row.map((x) => x / s);
    lines.push(`${csvField(ids[i])},${norm.map((x) => String(Number(x.toPrecision(10)))).join(',')}`);
  }
  return lines.join('\n') + '\n';
}

function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function writeSubmission(path: string, ids: string[], probs: Probs): void {
  writeFileAtomic(path, formatSubmission(ids, probs));
}

/** Re-reads a submission's text and checks it against the expected ids (used by tests and the CLI's final check). */
export function checkSubmissionText(text: string, ids: string[]): string[] {
  const problems: string[] = [];
  const lines = text.trimEnd().split('\n');
  if (lines[0] !== `id,${LABEL_COLUMNS.join(',')}`) problems.push(`header is "${lines[0]}"`);
  if (lines.length - 1 !== ids.length) problems.push(`${lines.length - 1} rows, expected ${ids.length}`);
  for (let i = 1; i < lines.length && i <= ids.length; i++) {
    const cells = lines[i].split(',');
    const vals = cells.slice(-3).map(Number);
    const id = cells.slice(0, -3).join(',').replace(/^"|"$/g, '').replace(/""/g, '"');
    if (id !== ids[i - 1]) problems.push(`row ${i}: id ${id}, expected ${ids[i - 1]}`);
    const s = vals.reduce((a, b) => a + b, 0);
    if (!vals.every(Number.isFinite) || Math.abs(s - 1) > 1e-6) problems.push(`row ${i} (id ${id}): sums to ${s}`);
    if (problems.length > 10) break;
  }
  return problems;
}
