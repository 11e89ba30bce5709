// Shared by predict and validate: parse the scoring options, open every weights directory's spec
// (manifest, label order, calibration, tie model: all checked before any row is scored), run each
// model with the chosen TTA on one process or one worker per device, and blend the models'
// probabilities (given weights, else equal).
import { dataColumns } from '../../data/rows';
import type { ArenaRow } from '../../types';
import { ensureCudaEnv, parseAttention, parseEp, parseRuntime, processRuntime, type EpChoice } from '../../infer/session';
import type { AttentionVariant, RuntimeName } from '../../infer/runtime';
import { openSpec, type ModelSpec } from '../../infer/model';
import { localRunner } from '../../infer/local';
import { shardedRunner } from '../../infer/shards';
import { parseTta, predictModel, type Deadline, type ModelRun, type PassRunner, type Tta } from '../../infer/tta';
import { detectTask, type Task } from '../../task/task';
import { parseDuration } from '../../util/duration';
import type { Probs } from '../../util/probs';
import { textLength } from '../../util/text';
import { num, UsageError, type OptionSpec } from '../args';

export const SCORE_OPTIONS: OptionSpec = {
  data: { type: 'string' },
  weights: { type: 'string', multiple: true },
  ep: { type: 'string', default: 'auto' },
  tta: { type: 'string', default: 'none' },
  'token-budget': { type: 'string' },
  threads: { type: 'string' },
  'blend-weights': { type: 'string' },
  'no-calibration': { type: 'boolean' },
  devices: { type: 'string' },
  cache: { type: 'string' },
  runtime: { type: 'string' },
  attention: { type: 'string' },
  'self-check': { type: 'string', default: '8' },
  task: { type: 'string' },
  'time-budget': { type: 'string' },
};

export interface ScoreSettings {
  weights: string[];
  ep: EpChoice;
  tta: Tta;
  tokenBudget: number;
  threads?: number;
  blend: number[];
  calibrate: boolean;
  /** CUDA device ids (one model copy per GPU, rows split between them); with --ep cpu, that many CPU workers. */
  devices: number[];
  /** Folder of per-model logits caches that make interrupted runs resumable (off when undefined). */
  cacheDir?: string;
  /** --runtime: the ONNX Runtime core (default: from the NVIDIA driver). */
  runtime?: RuntimeName;
  /** --attention: force the fused or explicit attention graph. */
  attention?: AttentionVariant;
  /** Rows the self-check scores on the chosen graph and on the fp32 CPU graph (0 = off). */
  selfCheckRows: number;
  /** The competition of --data (from the file, or --task). */
  task: Task;
  /** --time-budget: the run (from process start) must end by then; milliseconds on Date.now()'s clock. */
  deadline?: number;
}

/**
 * Time kept back from --time-budget for what follows the passes (blend, writing the submission):
 * 2% of the budget, at most a minute.
 */
export const budgetReserveMs = (budgetMs: number) => Math.min(60_000, budgetMs * 0.02);

export function scoreSettings(v: Record<string, unknown>): ScoreSettings {
  const budget = v['time-budget'] === undefined ? undefined : usage(() => parseDuration(String(v['time-budget']), '--time-budget'));
  if (budget !== undefined && !(budget > 0)) throw new UsageError(`--time-budget must be a positive duration, got "${v['time-budget']}"`);
  const weights = (v.weights as string[] | undefined) ?? [];
  if (!weights.length) throw new UsageError('missing required option --weights DIR (repeat it to blend several models)');
  const blend = v['blend-weights'] ? String(v['blend-weights']).split(',').map(Number) : weights.map(() => 1 / weights.length);
  if (blend.length !== weights.length || !blend.every((w) => Number.isFinite(w) && w >= 0) || !(blend.reduce((a, b) => a + b, 0) > 0))
    throw new UsageError(`--blend-weights needs ${weights.length} non-negative numbers separated by commas, got "${v['blend-weights']}"`);
  const s = blend.reduce((a, b) => a + b, 0);
  let tta: Tta;
  try {
    tta = parseTta(v.tta as string);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const tokenBudget = num(v['token-budget'], '--token-budget', 16384);
  if (!(tokenBudget > 0)) throw new UsageError(`--token-budget must be a positive number, got ${tokenBudget}`);
  const settings = {
    weights,
    ep: usage(() => parseEp(v.ep as string)),
    tta,
    tokenBudget,
    threads: v.threads ? num(v.threads, '--threads', 0) : undefined,
    blend: blend.map((w) => w / s),
    calibrate: !v['no-calibration'],
    devices: parseDevices(v.devices as string | undefined),
    cacheDir: v.cache as string | undefined,
    runtime: usage(() => parseRuntime(v.runtime as string | undefined)),
    attention: usage(() => parseAttention(v.attention as string | undefined)),
    selfCheckRows: num(v['self-check'] === 'off' ? '0' : v['self-check'], '--self-check', 8),
    task: usage(() => detectTask(String(v.data ?? ''), dataColumns(String(v.data ?? '')), v.task as string | undefined)),
    // The budget counts from process start: reading the data and opening models spend it too.
    deadline: budget === undefined ? undefined : performance.timeOrigin + budget * 1000 - budgetReserveMs(budget * 1000),
  };
  processRuntime(settings.runtime);
  ensureCudaEnv(settings.ep, settings.runtime);
  return settings;
}

/** Parser errors of options become usage errors (exit 2, no stack). */
function usage<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function parseDevices(s: string | undefined): number[] {
  if (s === undefined) return [0];
  const ids = s.split(',').map((x) => Number(x.trim()));
  if (!ids.length || !ids.every((d) => Number.isInteger(d) && d >= 0) || new Set(ids).size !== ids.length)
    throw new UsageError(`--devices needs distinct GPU ids separated by commas (e.g. 0,1), got "${s}"`);
  return ids;
}

/**
 * Ctrl-C / SIGTERM: say what was kept and exit 130. process.exit runs the 'exit' handlers, which
 * kill --devices workers and remove their temporary files (src/infer/shards.ts).
 */
export function exitOnSignals(what: string, cacheDir?: string): void {
  const onSignal = (sig: string) => {
    process.stderr.write(`\n${sig}: stopped; ${what}${cacheDir ? ` Rows scored so far are kept in ${cacheDir}: run the same command again to resume.` : ' Add --cache DIR to make a long run resumable.'}\n`);
    process.exit(130);
  };
  process.once('SIGINT', () => onSignal('SIGINT'));
  process.once('SIGTERM', () => onSignal('SIGTERM'));
}

/** Opens every model's spec up front, so a bad calibration or label list fails before inference. */
export function openSpecs(s: ScoreSettings, needTie = true): ModelSpec[] {
  return s.weights.map((dir) => openSpec(dir, { calibrate: s.calibrate, needTie, task: s.task }));
}

/** The pass runner for these settings: one process, or one worker per device. */
export function makeRunner(specs: ModelSpec[], rows: ArenaRow[], s: ScoreSettings, warn: (m: string) => void): PassRunner & { close(): void } {
  const opts = { ep: s.ep, threads: s.threads, deviceId: s.devices[0], tokenBudget: s.tokenBudget, cacheDir: s.cacheDir, attention: s.attention, selfCheckRows: s.selfCheckRows, checkRows: rows, warn };
  if (s.devices.length > 1) return shardedRunner(s.weights, rows, rows.map(textLength), s.devices, { ...opts, task: s.task.name });
  return { ...localRunner(specs, rows, opts), close() {} };
}

export interface Scored {
  probs: Probs;
  runs: ModelRun[];
  /** Rows no model reached within --time-budget: they got the task prior. */
  priorRows: number[];
}

export async function scoreRows(rows: ArenaRow[], specs: ModelSpec[], s: ScoreSettings, warn: (m: string) => void, clock: () => number = Date.now): Promise<Scored> {
  const lengths = rows.map(textLength);
  const runner = makeRunner(specs, rows, s, warn);
  const runs: ModelRun[] = [];
  try {
    // Under --time-budget the cheapest models run first and each model gets a share of the time left in
    // proportion to its cost per token: a feature model beside a 9B model leaves it nearly all the time.
    const cost = specs.map(tokenCost);
    const order = budgetOrder(cost);
    for (const [i, k] of order.entries()) {
      const limit: Deadline | undefined = s.deadline === undefined ? undefined : { deadline: clock() + (s.deadline - clock()) * shareOfTimeLeft(cost, order, i), now: clock };
      runs[k] = await predictModel(k, specs[k], rows, lengths, s.tta, runner, limit);
    }
  } finally {
    runner.close();
  }
  return blendRuns(rows, runs, s.blend, s.task, warn);
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
export const budgetOrder = (cost: number[]): number[] => cost.map((_, k) => k).sort((a, b) => cost[a] - cost[b] || a - b);

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
 * The weighted blend of the models' probabilities. A row a model did not reach in time (--time-budget)
 * takes the other models' blend (weights renormalised over the models that have it), else the task prior.
 */
export function blendRuns(rows: ArenaRow[], runs: ModelRun[], blend: number[], task: Task, warn: (m: string) => void): Scored {
  const k = task.labels.length;
  const probs = new Float64Array(rows.length * k);
  runs.forEach((r, m) => r.probs.forEach((p, i) => (probs[i] += blend[m] * p)));
  const priorRows: number[] = [];
  if (!runs.some((r) => r.unreachedRows.length)) return { probs, runs, priorRows };
  const missing = runs.map((r) => new Set(r.unreachedRows));
  for (const i of new Set(runs.flatMap((r) => r.unreachedRows))) {
    let w = 0;
    probs.fill(0, i * k, i * k + k);
    runs.forEach((r, m) => {
      if (missing[m].has(i)) return;
      w += blend[m];
      for (let c = 0; c < k; c++) probs[i * k + c] += blend[m] * r.probs[i * k + c];
    });
    if (w > 0) for (let c = 0; c < k; c++) probs[i * k + c] /= w;
    else {
      probs.set(task.prior, i * k);
      priorRows.push(i);
    }
  }
  const ids = (idx: number[]) => idx.slice(0, 5).map((i) => rows[i].id).join(', ') + (idx.length > 5 ? `, ... (${idx.length - 5} more)` : '');
  runs.forEach((r, m) => {
    const byOthers = r.unreachedRows.filter((i) => !priorRows.includes(i));
    if (byOthers.length) warn(`--time-budget: ${r.spec.dir} did not reach ${byOthers.length} row(s) in time (ids ${ids(byOthers)}); they take the other models' blend`);
  });
  if (priorRows.length) warn(`--time-budget: no model reached ${priorRows.length} of ${rows.length} row(s) in time (ids ${ids(priorRows.sort((a, b) => a - b))}); they get the ${task.name} prior [${task.prior.join(', ')}]`);
  return { probs, runs, priorRows };
}
