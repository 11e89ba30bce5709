// The run: every model over the rows, cheapest first, each with its share of the time left; the
// models' probabilities blended (post/blend.ts, the one blend) in the task's columns; rows no model
// reached in time get the task's prior. Pure over its inputs: the pass runner (one process or one
// worker per device) and the clock come from the command (src/cli/commands/score.ts).
import type { ArenaRow } from '../types';
import { blendPartial } from '../post/blend';
import type { Task } from '../task/task';
import type { Probs } from '../util/probs';
import { textLength } from '../util/text';
import type { ModelSpec } from './model';
import { predictModel, type ModelRun, type PassRunner, type Tta } from './tta';

export interface EnsembleOptions {
  tta: Tta;
  /** One weight per model, summing to 1. */
  blend: number[];
  task: Task;
  /** Every pass ends by then (milliseconds on the run's clock); Infinity: no --time-budget. */
  deadline: number;
}

export interface Ensemble {
  /** The blended probabilities, every row valid: what predict submits. */
  probs: Probs;
  runs: ModelRun[];
  /** Rows no model reached within --time-budget: they got the task prior. */
  priorRows: number[];
}

export async function runEnsemble(
  rows: ArenaRow[],
  specs: ModelSpec[],
  opts: EnsembleOptions,
  runner: PassRunner,
  warn: (m: string) => void,
  clock: () => number = Date.now,
): Promise<Ensemble> {
  const lengths = rows.map(textLength);
  const runs: ModelRun[] = [];
  // The cheapest models run first and each model gets a share of the time left in proportion to its
  // cost per token: a feature model beside a 9B model leaves it nearly all the time.
  const cost = specs.map(tokenCost);
  const order = budgetOrder(cost);
  for (const [i, k] of order.entries()) {
    const deadline = clock() + (opts.deadline - clock()) * shareOfTimeLeft(cost, order, i);
    runs[k] = await predictModel(k, specs[k], rows, lengths, opts.tta, runner, { deadline, now: clock });
  }
  return blendRuns(rows, runs, opts.blend, opts.task, warn);
}

/**
 * Relative cost of one token through a model: the multiply-adds of its decoder layers (attention
 * projections + MLP) and head; a feature model costs nothing next to a network (0).
 */
export function tokenCost(spec: ModelSpec): number {
  const c = spec.manifest.config;
  if (spec.manifest.kind !== 'neural' || !c) return 0;
  const attn = c.hiddenSize * (c.numHeads + c.numKvHeads) * c.headDim * 2;
  return c.numLayers * (attn + 3 * c.hiddenSize * c.intermediateSize) + c.hiddenSize * Math.max(1, c.numLabels);
}

/** Model indices cheapest first (ties keep the command-line order): what a cheap model leaves, the others use. */
export const budgetOrder = (cost: number[]): number[] =>
  cost.map((_, k) => k).sort((a, b) => cost[a] - cost[b] || a - b);

/**
 * The fraction of the time left that the i-th model of `order` may use: its cost over the cost of the
 * models not yet run. A model of cost 0 (features) may use all of it: it ends in seconds and leaves the rest.
 */
export function shareOfTimeLeft(cost: number[], order: number[], i: number): number {
  const k = order[i];
  const left = order.slice(i).reduce((a, j) => a + cost[j], 0);
  return cost[k] === 0 || left === 0 ? 1 : cost[k] / left;
}

/**
 * The weighted blend of one figure of each run (default: its final probabilities). A row a model did
 * not reach in time takes the other models' blend (weights renormalised over the models that have
 * it), else the task prior; both are warned about with their ids.
 */
export function blendRuns(
  rows: ArenaRow[],
  runs: ModelRun[],
  blend: number[],
  task: Task,
  warn: (m: string) => void,
  figure: (r: ModelRun) => Probs = (r) => r.probs,
): Ensemble {
  const k = task.labels.length;
  const { probs, empty: priorRows } = blendPartial(
    runs.map(figure),
    blend,
    k,
    runs.map((r) => r.unreachedRows),
  );
  for (const i of priorRows) probs.set(task.prior, i * k);
  const ids = (idx: number[]) =>
    idx
      .slice(0, 5)
      .map((i) => rows[i].id)
      .join(', ') + (idx.length > 5 ? `, ... (${idx.length - 5} more)` : '');
  const prior = new Set(priorRows);
  runs.forEach((r) => {
    const byOthers = r.unreachedRows.filter((i) => !prior.has(i));
    if (byOthers.length)
      warn(
        `--time-budget: ${r.spec.dir} did not reach ${byOthers.length} row(s) in time (ids ${ids(byOthers)}); they take the other models' blend`,
      );
  });
  if (priorRows.length)
    warn(
      `--time-budget: no model reached ${priorRows.length} of ${rows.length} row(s) in time (ids ${ids(priorRows)}); they get the ${task.name} prior [${task.prior.join(', ')}]`,
    );
  return { probs, runs, priorRows };
}
