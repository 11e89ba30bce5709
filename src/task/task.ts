// The competition a run serves, as one object: its probability columns, how a swapped pass maps back,
// how a model's outputs map onto its columns, its metric and decision rule, and its submission format.
// Tasks live in a small registry; every function over probabilities, labels or submission cells takes
// the task (or its width) explicitly, none defaults to LMSYS. Label cells: labels.ts.
//   lmsys: LMSYS Chatbot Arena (2024): test.csv -> id,winner_model_a,winner_model_b,winner_tie; log loss
//   wsdm:  WSDM Cup Multilingual Chatbot Arena (2024-25): test.parquet -> id,winner (model_a|model_b); accuracy

export type TaskName = 'lmsys' | 'wsdm';

/** What a probability column means, whatever a model or file calls it. */
export type Outcome = 'a' | 'b' | 'tie';

export class TaskError extends Error {
  override name = 'TaskError';
}

export interface Task {
  name: TaskName;
  /** Probability columns in the task's order (the LMSYS submission columns; the WSDM winner values). */
  labels: readonly string[];
  outcomes: readonly Outcome[];
  /** The competition metric, lower or higher is better. */
  metric: { name: 'log_loss' | 'accuracy'; better: 'lower' | 'higher' };
  /** Submission header. */
  header: readonly string[];
  /** One submission row's cells after the id (probabilities, or the decided winner), from a normalised row. */
  cells(p: ArrayLike<number>): string[];
  /**
   * The prediction of a row no model could reach within --time-budget: the class shares of the
   * competition's train set (LMSYS: about 35% A / 34% B / 31% tie; WSDM: balanced).
   */
  prior: readonly number[];
}

/** The LMSYS one-hot label columns (train.csv) = its submission's probability columns, in Kaggle's order. */
export const LABEL_COLUMNS = ['winner_model_a', 'winner_model_b', 'winner_tie'] as const;

// Ten significant digits: what the LMSYS submission writer has always written.
const fmt = (x: number) => String(Number(x.toPrecision(10)));

export const TASKS: Record<TaskName, Task> = {
  lmsys: {
    name: 'lmsys',
    labels: LABEL_COLUMNS,
    outcomes: ['a', 'b', 'tie'],
    metric: { name: 'log_loss', better: 'lower' },
    header: ['id', ...LABEL_COLUMNS],
    cells: (p) => [fmt(p[0]), fmt(p[1]), fmt(p[2])],
    prior: [0.35, 0.34, 0.31],
  },
  wsdm: {
    name: 'wsdm',
    labels: ['model_a', 'model_b'],
    outcomes: ['a', 'b'],
    metric: { name: 'accuracy', better: 'higher' },
    header: ['id', 'winner'],
    // Decision rule: the more probable side; an exact tie goes to model_a (the first position), deterministically.
    cells: (p) => [p[1] > p[0] ? 'model_b' : 'model_a'],
    prior: [0.5, 0.5],
  },
};

export function getTask(name: string): Task {
  const t = (TASKS as Record<string, Task>)[name];
  if (!t) throw new TaskError(`Unknown task: ${name} (known: ${Object.keys(TASKS).join(', ')})`);
  return t;
}

/** Names models and files use for each outcome (HF id2label of LMSYS heads, WSDM winner values, judge tokens). */
const OUTCOME_NAMES: Record<string, Outcome> = {
  winner_model_a: 'a',
  winner_model_b: 'b',
  winner_tie: 'tie',
  model_a: 'a',
  model_b: 'b',
  tie: 'tie',
  a: 'a',
  b: 'b',
};

export function outcomeOf(label: string): Outcome | undefined {
  return OUTCOME_NAMES[label.trim().toLowerCase()];
}

/**
 * Column j of the task taken from column perm[j] of a model's probabilities (labels in the model's
 * logit order), plus whether the row must be renormalised (a 3-outcome model on a 2-outcome task
 * drops the tie). Refuses a model that cannot give every outcome of the task.
 */
export function modelToTask(
  task: Task,
  modelLabels: readonly string[],
  where = 'model',
): { perm: number[]; renormalise: boolean } {
  const outcomes = modelLabels.map(outcomeOf);
  const unknown = modelLabels.filter((_, i) => !outcomes[i]);
  if (unknown.length)
    throw new TaskError(
      `${where}: labels ${JSON.stringify(modelLabels)} include ${unknown.map((u) => JSON.stringify(u)).join(', ')}, which names no outcome (winner_model_a / winner_model_b / winner_tie, or model_a / model_b); fix id2label in config.json and re-import`,
    );
  if (new Set(outcomes).size !== outcomes.length)
    throw new TaskError(`${where}: labels ${JSON.stringify(modelLabels)} name one outcome twice`);
  const perm = task.outcomes.map((o) => outcomes.indexOf(o));
  const missing = task.outcomes.filter((_, j) => perm[j] < 0);
  if (missing.length)
    throw new TaskError(
      `${where}: its labels ${JSON.stringify(modelLabels)} cannot give the ${task.name} task's ${missing.join(', ')} column; a ${outcomes.length}-label model cannot serve a task with ${task.outcomes.length} outcomes`,
    );
  return { perm, renormalise: outcomes.length > task.outcomes.length };
}

/** Applies modelToTask's mapping to flat rows [n * modelLabels.length] -> [n * task.labels.length]. */
export function mapProbs(
  p: ArrayLike<number>,
  width: number,
  map: { perm: number[]; renormalise: boolean },
): Float64Array {
  const n = p.length / width;
  const k = map.perm.length;
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += out[i * k + j] = p[i * width + map.perm[j]];
    if (map.renormalise) for (let j = 0; j < k; j++) out[i * k + j] /= s;
  }
  return out;
}

/** Column permutation that turns a swapped pass (A and B exchanged) back into the original frame. */
export function swapColumns(task: Task): number[] {
  return task.outcomes.map((o) => task.outcomes.indexOf(o === 'a' ? 'b' : o === 'b' ? 'a' : o));
}

/**
 * The task a data file belongs to: `--task` when given, else from its columns (`winner` or `scored`:
 * wsdm; winner_model_*: lmsys), else from its format (parquet: wsdm, csv: lmsys).
 */
export function detectTask(file: string, columns: readonly string[], forced?: string): Task {
  if (forced) return getTask(forced);
  if (columns.includes('winner') || columns.includes('scored')) return TASKS.wsdm;
  if (columns.some((c) => TASKS.lmsys.labels.includes(c))) return TASKS.lmsys;
  return /\.parquet$/i.test(file) ? TASKS.wsdm : TASKS.lmsys;
}
