// Shared by predict and validate (CLI glue): parse the scoring options (pure), set up the ONNX Runtime
// core the options ask for (prepareRuntime, called by the command), open every weights directory's
// spec (manifest, label order, calibration, tie model: all checked before any row is scored) and run
// the ensemble (src/infer/ensemble.ts) on one process or one worker per device.
import type { ArenaRow } from '../../types';
import {
  ensureCudaEnv,
  parseAttention,
  parseEp,
  parseRuntime,
  processRuntime,
  type EpChoice,
} from '../../infer/session';
import type { AttentionVariant, DriverInfo, RuntimeName } from '../../infer/runtime';
import { openSpec, type ModelSpec } from '../../infer/model';
import { localRunner } from '../../infer/local';
import { shardedRunner } from '../../infer/shards';
import { parseTta, type PassRunner, type Tta } from '../../infer/tta';
import { textLength } from '../../util/text';
import { runEnsemble, type Ensemble, type EnsembleOptions } from '../../infer/ensemble';
import { detectTask } from '../../task/task';
import { parseDuration } from '../../util/duration';
import { num, UsageError, type OptionSpec } from '../args';
import { parseDeviceOption, resolveDevices } from '../../infer/devices';
import { chooseGpuPrecision, resolveGpuPrecision, type GpuPrecision } from '../../infer/gpu-precision';
import { DEFAULT_TOKEN_BUDGET, readGpuFreeMemory, type TokenBudgetOption } from '../../infer/gpu-levers';

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
  'started-at': { type: 'string' },
  'gpu-precision': { type: 'string' },
};

export interface ScoreSettings extends EnsembleOptions {
  weights: string[];
  ep: EpChoice;
  /** --token-budget: a number, or 'auto' (sized from the GPU's free memory on the CUDA EP; src/infer/gpu-levers.ts). */
  tokenBudget: TokenBudgetOption;
  /** Free memory of the smallest GPU the run uses (read once by prepareRuntime when the budget is 'auto'). */
  gpuFreeBytes?: number;
  threads?: number;
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
  /** --gpu-precision (fp16 | bf16) when given; else filled by prepareRuntime from the GPUs' compute capability. */
  gpuPrecision?: GpuPrecision;
}

/** What option parsing needs from outside the options: the --data file's columns (dataColumns) and when the process started (ms, Date.now()'s clock). */
export interface ScoreContext {
  columns: readonly string[];
  startedAt: number;
  /** GPUs nvidia-smi lists (readDriver().gpus), for --devices auto; none: one process. */
  gpus?: readonly string[];
}

/**
 * Time kept back from --time-budget for what follows the passes (blend, writing the submission):
 * 2% of the budget, at most a minute.
 */
const budgetReserveMs = (budgetMs: number) => Math.min(60_000, budgetMs * 0.02);

/** The options as settings; pure (the task from --task or the data's columns given in `ctx`). */
export function scoreSettings(v: Record<string, unknown>, ctx: ScoreContext): ScoreSettings {
  const budget =
    v['time-budget'] === undefined ? undefined : usage(() => parseDuration(String(v['time-budget']), '--time-budget'));
  if (budget !== undefined && !(budget > 0))
    throw new UsageError(`--time-budget must be a positive duration, got "${v['time-budget']}"`);
  const weights = (v.weights as string[] | undefined) ?? [];
  if (!weights.length)
    throw new UsageError('missing required option --weights DIR (repeat it to blend several models)');
  const blend = v['blend-weights']
    ? String(v['blend-weights']).split(',').map(Number)
    : weights.map(() => 1 / weights.length);
  if (
    blend.length !== weights.length ||
    !blend.every((w) => Number.isFinite(w) && w >= 0) ||
    !(blend.reduce((a, b) => a + b, 0) > 0)
  )
    throw new UsageError(
      `--blend-weights needs ${weights.length} non-negative numbers separated by commas, got "${v['blend-weights']}"`,
    );
  const s = blend.reduce((a, b) => a + b, 0);
  let tta: Tta;
  try {
    tta = parseTta(v.tta as string);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const tokenBudget = parseTokenBudget(v['token-budget'] as string | undefined);
  return {
    weights,
    ep: usage(() => parseEp(v.ep as string)),
    tta,
    tokenBudget,
    threads: v.threads ? num(v.threads, '--threads', 0) : undefined,
    blend: blend.map((w) => w / s),
    calibrate: !v['no-calibration'],
    devices: usage(
      () =>
        resolveDevices(parseDeviceOption(v.devices as string | undefined), ctx.gpus ?? [], String(v.ep ?? 'auto')).ids,
    ),
    cacheDir: v.cache as string | undefined,
    runtime: usage(() => parseRuntime(v.runtime as string | undefined)),
    attention: usage(() => parseAttention(v.attention as string | undefined)),
    selfCheckRows: num(v['self-check'] === 'off' ? '0' : v['self-check'], '--self-check', 8),
    gpuPrecision:
      v['gpu-precision'] === undefined
        ? undefined
        : usage(() => chooseGpuPrecision([], String(v['gpu-precision'])).precision),
    task: usage(() => detectTask(String(v.data ?? ''), ctx.columns, v.task as string | undefined)),
    // The budget counts from process start: reading the data and opening models spend it too.
    deadline: budget === undefined ? Infinity : ctx.startedAt + budget * 1000 - budgetReserveMs(budget * 1000),
  };
}

/**
 * Loads the ONNX Runtime core the settings ask for (may re-execute the process with the CUDA library path set)
 * and settles the CUDA graph's precision once for the run (workers are handed it).
 */
export function prepareRuntime(s: ScoreSettings, driver?: DriverInfo): void {
  // --ep cpu asks nothing of the NVIDIA driver: a wedged nvidia-smi cannot stall a CPU run.
  processRuntime(
    s.runtime,
    s.ep === 'cpu' ? { found: false, gpus: [], note: '--ep cpu: the NVIDIA driver is not asked' } : driver,
  );
  ensureCudaEnv(s.ep, s.runtime);
  const p = resolveGpuPrecision(s.ep, s.gpuPrecision);
  if (p) {
    s.gpuPrecision = p.precision;
    process.stderr.write(`gpu precision: ${p.precision} (${p.reason})\n`);
  }
  if (s.tokenBudget === 'auto' && s.ep !== 'cpu' && s.ep !== 'webgpu') {
    const m = readGpuFreeMemory(s.devices);
    s.gpuFreeBytes = m.bytes;
    if (m.note)
      process.stderr.write(`token budget: ${m.note}; the CUDA EP keeps ${DEFAULT_TOKEN_BUDGET} tokens per batch\n`);
  }
}

/** `--token-budget N|auto` (default auto). */
export function parseTokenBudget(v: string | undefined): TokenBudgetOption {
  if (v === undefined || v === 'auto') return 'auto';
  const n = Number(v);
  if (!(n > 0) || !Number.isFinite(n))
    throw new UsageError(`--token-budget must be a positive number of tokens or auto, got "${v}"`);
  return n;
}

/** Parser errors of options become usage errors (exit 2, no stack). */
function usage<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * Ctrl-C / SIGTERM: say what was kept and exit 130. process.exit runs the 'exit' handlers, which
 * kill --devices workers and remove their temporary files (src/infer/shards.ts).
 */
export function exitOnSignals(what: string, cacheDir?: string): void {
  const onSignal = (sig: string) => {
    process.stderr.write(
      `\n${sig}: stopped; ${what}${cacheDir ? ` Rows scored so far are kept in ${cacheDir}: run the same command again to resume.` : ' Add --cache DIR to make a long run resumable.'}\n`,
    );
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
export function makeRunner(
  specs: ModelSpec[],
  rows: ArenaRow[],
  s: ScoreSettings,
  warn: (m: string) => void,
): PassRunner & { close(): void } {
  const opts = {
    ep: s.ep,
    threads: s.threads,
    deviceId: s.devices[0],
    tokenBudget: s.tokenBudget,
    gpuFreeBytes: s.gpuFreeBytes,
    cacheDir: s.cacheDir,
    attention: s.attention,
    gpuPrecision: s.gpuPrecision,
    selfCheckRows: s.selfCheckRows,
    checkRows: rows,
    warn,
  };
  if (s.devices.length > 1)
    return shardedRunner(s.weights, rows, rows.map(textLength), s.devices, { ...opts, task: s.task.name });
  return { ...localRunner(specs, rows, opts), close() {} };
}

/** Every model over the rows with the pass runner these settings choose (closed afterwards). */
export async function scoreRows(
  rows: ArenaRow[],
  specs: ModelSpec[],
  s: ScoreSettings,
  warn: (m: string) => void,
  clock: () => number = Date.now,
): Promise<Ensemble> {
  const runner = makeRunner(specs, rows, s, warn);
  try {
    return await runEnsemble(rows, specs, s, runner, warn, clock);
  } finally {
    runner.close();
  }
}
