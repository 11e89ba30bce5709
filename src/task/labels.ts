// Labels as the competition files write them, and the prediction files' columns: the one place that
// reads a label cell. A row's label is an outcome index (OUTCOMES order: A, B, tie) whatever the task;
// a task's probability columns map onto outcomes by name (task.ts).
import { LABEL_COLUMNS, TASKS, type Outcome, type Task } from './task';

/** A row's label: the index of its outcome in OUTCOMES. */
export type RowLabel = 0 | 1 | 2;

/** The outcomes a row label indexes (LMSYS one-hot column order; WSDM winner values model_a, model_b, tie). */
export const OUTCOMES: readonly Outcome[] = ['a', 'b', 'tie'];

/** One output index of a model per outcome (OUTCOMES order); -1 where the model has no such output (a 2-label head's tie). */
export type OutcomeIndex = readonly number[];

/** WSDM Cup train files carry one `winner` column (`model_a` | `model_b`) instead of the one-hot columns. */
export const WSDM_LABEL_COLUMN = 'winner';

const WINNERS: Record<string, RowLabel> = { model_a: 0, model_b: 1, tie: 2 };

/** A WSDM `winner` cell: its label, null when empty (a test row), undefined when it names no outcome. */
export function winnerLabel(cell: string): RowLabel | null | undefined {
  if (cell === '') return null;
  return WINNERS[cell];
}

/** The LMSYS one-hot cells (LABEL_COLUMNS order): the label, null when all empty, undefined unless exactly one 1 and two 0s. */
export function oneHotLabel(cells: readonly string[]): RowLabel | null | undefined {
  if (cells.every((c) => c === '')) return null;
  const vals = cells.map((c) => Number(c || NaN));
  if (vals.filter((v) => v === 1).length !== 1 || vals.filter((v) => v === 0).length !== LABEL_COLUMNS.length - 1)
    return undefined;
  return vals.indexOf(1) as RowLabel;
}

/** The task whose probability columns a prediction file's header holds (LMSYS first: its names are unambiguous). */
export function taskOfColumns(headers: readonly string[]): Task | undefined {
  return [TASKS.lmsys, TASKS.wsdm].find((t) => t.labels.every((c) => headers.includes(c)));
}
