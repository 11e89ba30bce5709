// One model interface for every kind of weights directory. `openSpec` reads the manifest once and
// validates everything predict needs besides the weights (label order, calibration, tie model), so a
// bad directory fails before any row is scored. `openHandle` then loads the weights (ONNX session +
// tokenizer, or the feature model's trees) and scores rows in a given A/B order. `passProbs` turns a
// pass's raw outputs into probabilities in the task's column order, by label NAME.
import { accessSync, constants, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ArenaRow } from '../types';
import { mapProbs, modelToTask, type Task } from '../task/task';
import { encodeRow, loadTokenizer } from '../format/encode';
import { featureLogits, loadFeatureModel } from '../features/model';
import { checkCalibration, type Calibration } from '../post/calibrate';
import { checkTie, scoreToProbs, TIE_LABELS, type TieCalibration } from '../post/tie';
import { fsReason } from '../util/files';
import { softmaxRows, type Probs } from '../util/probs';
import { graphSha256, readManifest, type Manifest } from '../weights/manifest';
import { openLogitsCache } from './logits-cache';
import { runPass, type PassResult } from './pass';
import {
  createSession,
  graphForEp,
  graphVariants,
  openGraph,
  runLogits,
  type EpChoice,
  type OpenedGraph,
} from './session';
import { textLength } from '../util/text';
import { checkRows, selfCheck, type SelfCheck } from './selfcheck';
import type { AttentionVariant, Ep, RuntimeName } from './runtime';
import type { GpuPrecision } from './gpu-precision';
import { chooseTokenBudget, graphWeightBytes, type TokenBudgetOption } from './gpu-levers';
import { parseModel } from '../graph/serialise';

export class ModelError extends Error {
  override name = 'ModelError';
}

export interface ModelSpec {
  dir: string;
  manifest: Manifest;
  /** The competition the run serves: its columns are the columns of every probability row. */
  task: Task;
  /** For each task column (task.labels order), the index of its logit; null for a single-score head. */
  columns: number[] | null;
  /** The model has outcomes the task lacks (a 3-label LMSYS head on WSDM): drop them and renormalise. */
  renormalise: boolean;
  /** Validated calibration applied to every pass (absent: none stored, or --no-calibration). */
  calibration?: Calibration;
  /** Validated tie model of a single-score head. */
  tie?: TieCalibration;
}

/**
 * For each task column (LMSYS: winner_model_a, winner_model_b, winner_tie; WSDM: model_a, model_b),
 * the index of its logit, matched by label NAME (src/task/task.ts); null for a single-score head.
 * Unknown names are refused; a model with more outcomes than the task (tie) is renormalised over the
 * task's columns.
 */
export function labelColumns(
  labels: string[],
  where: string,
  task: Task,
): { columns: number[] | null; renormalise: boolean } {
  if (Array.isArray(labels) && labels.length === 1) return { columns: null, renormalise: task.labels.length < 3 };
  if (!Array.isArray(labels) || labels.length < task.labels.length || labels.length > 3)
    throw new ModelError(
      `${where}: labels ${JSON.stringify(labels)}: expected ${task.labels.length === 3 ? 'the three outcomes' : 'the outcomes'} ${task.labels.join(', ')}${task.labels.length < 3 ? ' (and optionally the tie)' : ''} in the model's logit order, or one score`,
    );
  const map = modelToTask(task, labels, where);
  return { columns: map.perm, renormalise: map.renormalise };
}

export interface SpecOptions {
  /** The task the rows belong to. */
  task: Task;
  /** Validate and use the stored calibration (predict/validate without --no-calibration). */
  calibrate: boolean;
  /** Single-score heads need a tie model (false while validate --fit-tie is about to fit one). */
  needTie: boolean;
}

export function openSpec(dir: string, opts: SpecOptions): ModelSpec {
  const manifest = readManifest(dir);
  const where = join(dir, 'manifest.json');
  const task = opts.task;
  const { columns, renormalise } = labelColumns(manifest.labels, where, task);
  const spec: ModelSpec = { dir, manifest, task, columns, renormalise };
  if (opts.calibrate && manifest.calibration !== undefined)
    spec.calibration = checkCalibration(manifest.calibration, `${where} (calibration)`, true, task.labels);
  if (columns === null) {
    if (manifest.tie !== undefined) spec.tie = checkTie(manifest.tie, `${where} (tie)`);
    else if (opts.needTie)
      throw new ModelError(
        `${dir}: single-score head (num_labels 1) without a tie model; fit one on labelled data with \`runner.cjs validate --data labelled.csv --weights ${dir} --fit-tie\``,
      );
  }
  if (manifest.kind === 'neural' && manifest.config && manifest.maxTokens > manifest.config.maxPositions)
    process.stderr.write(
      `warning: ${where}: maxTokens ${manifest.maxTokens} exceeds the model's ${manifest.config.maxPositions} positions; rows are cut at ${manifest.maxTokens} tokens, ` +
        `so long rows may fail. Re-import with \`trainer.cjs import --max-tokens ${manifest.config.maxPositions}\`.\n`,
    );
  return spec;
}

/** Probabilities [n * task width] in task column order from a pass's raw outputs; NaN rows (failed) stay NaN. */
export function passProbs(spec: ModelSpec, logits: ArrayLike<number>, n: number): Probs {
  const w = spec.task.labels.length;
  if (spec.columns === null) {
    if (!spec.tie) throw new ModelError(`${spec.dir}: single-score head without a tie model`);
    const p = scoreToProbs(spec.tie, logits);
    // The tie model gives A, B and tie; a task without the tie drops it.
    return spec.renormalise ? mapProbs(p, TIE_LABELS.length, modelToTask(spec.task, TIE_LABELS)) : p;
  }
  const k = spec.manifest.labels.length;
  // Drop the outcomes the task lacks after the softmax over all of the model's outputs.
  if (spec.renormalise) return mapProbs(softmaxRows(logits, n, k), k, { perm: spec.columns, renormalise: true });
  const ordered = new Float64Array(n * w);
  for (let i = 0; i < n; i++) for (let c = 0; c < w; c++) ordered[i * w + c] = logits[i * k + spec.columns[c]];
  return softmaxRows(ordered, n, w);
}

export interface HandleOptions {
  ep: EpChoice;
  threads?: number;
  deviceId?: number;
  /** A number, or 'auto': sized from `gpuFreeBytes` on the CUDA EP (chooseTokenBudget), else the default. */
  tokenBudget: TokenBudgetOption;
  /** Free memory of the GPU(s) the run uses, read once per run (prepareRuntime). */
  gpuFreeBytes?: number;
  /** Folder of logits caches (resumable runs); neural models only. */
  cacheDir?: string;
  /** --attention: force an attention variant (the self-check still applies). */
  attention?: AttentionVariant;
  /** Activations of the CUDA graph (resolved once per run: src/infer/gpu-precision.ts). */
  gpuPrecision?: GpuPrecision;
  /** Rows scored by the self-check (the shortest and the longest of `checkRows`); 0 = off. Default 8. */
  selfCheckRows?: number;
  /** The rows this handle will score, from which the self-check picks. */
  checkRows?: ArenaRow[];
  warn: (m: string) => void;
}

/** How a model ran: for the closing JSON line and the doctor. */
export interface RunInfo {
  ep: Ep;
  runtime?: RuntimeName;
  variant?: AttentionVariant;
  /** Activations of the graph that ran (float32 CPU graph, float16 / bfloat16 CUDA graph). */
  activations?: string;
  selfCheck?: SelfCheck;
  /** Rows x padded length per batch this model's passes took (chooseTokenBudget). */
  tokenBudget?: number;
}

export interface ModelHandle {
  spec: ModelSpec;
  ep: Ep;
  info: RunInfo;
  /** One pass over `rows` shown as given (swap = false) or with A and B exchanged; raw outputs in manifest label order. */
  score(rows: ArenaRow[], swap: boolean, label: string): Promise<PassResult>;
  close(): Promise<void>;
}

const swapRow = (r: ArenaRow): ArenaRow => ({ ...r, responseA: r.responseB, responseB: r.responseA });

function openFeatureHandle(spec: ModelSpec): ModelHandle {
  const model = loadFeatureModel(spec.dir, spec.manifest);
  return {
    spec,
    ep: 'cpu',
    info: { ep: 'cpu' },
    async score(rows, swap) {
      const t0 = Date.now();
      const logits = featureLogits(model, swap ? rows.map(swapRow) : rows);
      return {
        logits,
        numLabels: spec.manifest.labels.length,
        tokens: 0,
        computedTokens: 0,
        seconds: (Date.now() - t0) / 1000,
        failedRows: [],
      };
    },
    async close() {},
  };
}

async function openNeuralHandle(spec: ModelSpec, opts: HandleOptions): Promise<ModelHandle> {
  const { dir, manifest: m } = spec;
  for (const f of m.tokenizer?.files ?? ['tokenizer.json']) {
    try {
      accessSync(join(dir, f), constants.R_OK);
    } catch (e) {
      throw new ModelError(
        `${join(dir, f)}: cannot be read (${fsReason(e)}); the weights directory needs its tokenizer files`,
      );
    }
  }
  const tok = loadTokenizer(dir, m.template);
  const padId = m.config?.padTokenId ?? 0;
  const encode = (row: ArenaRow, sw: boolean) =>
    encodeRow(tok, row, { template: m.template, truncation: m.truncation, maxTokens: m.maxTokens, swap: sw });
  const sessionOpts = {
    ep: opts.ep,
    threads: opts.threads,
    deviceId: opts.deviceId,
    attention: opts.attention,
    gpuPrecision: opts.gpuPrecision,
    warn: opts.warn,
  };
  const opened = await openGraph(dir, m, sessionOpts);
  const checkIds = sampleIds(opts.checkRows ?? [], opts.selfCheckRows ?? 8, encode);
  const { graph: g, check } = await selfCheck(dir, m, opened, checkIds, { ...sessionOpts, padId });
  const numLabels = m.labels.length;
  const cache = opts.cacheDir
    ? openLogitsCache(opts.cacheDir, ['arenakit-logits-2', graphSha256(dir, g.graph), g.ep, numLabels].join('\n'))
    : undefined;
  if (cache?.corrupted)
    opts.warn(
      `--cache ${cache.file}: ${cache.corrupted} line(s) cut short or corrupted were ignored; those rows are scored again`,
    );
  const budget = chooseTokenBudget({
    requested: opts.tokenBudget,
    ep: g.ep,
    gpuFreeBytes: opts.gpuFreeBytes,
    weightBytes:
      opts.tokenBudget === 'auto' && g.ep === 'cuda'
        ? graphWeightBytes(parseModel(readFileSync(join(dir, g.graph.file))))
        : 0,
    config: m.config,
    activations: g.graph.activations,
    variant: g.graph.variant,
    maxTokens: m.maxTokens,
  });
  process.stderr.write(
    `model ${dir}: ${m.architecture}, ${m.quantization?.kind ?? '?'} weights, template ${m.template}, max_tokens ${m.maxTokens}, EP ${g.ep}, ${g.graph.variant} attention (${g.runtime}), ${budget.budget} tokens per batch (${budget.reason})\n`,
  );
  // Non-finite logits in a batch: rescored on the explicit variant of the same graph, then on the fp32 CPU graph (opened on first need).
  const rescuers: { by: string; open: () => Promise<OpenedGraph> }[] = [];
  const own = graphForEp(m, g.ep, opts.gpuPrecision)!;
  if (g.graph.variant !== 'explicit' && graphVariants(own).includes('explicit'))
    rescuers.push({
      by: `the explicit ${g.ep} graph`,
      open: () => createSession(dir, own, 'explicit', g.ep, sessionOpts),
    });
  if (!(g.ep === 'cpu' && g.graph.activations === 'float32') && m.graphs.cpu) {
    const cpu = m.graphs.cpu;
    rescuers.push({
      by: 'the fp32 CPU graph',
      open: () =>
        createSession(dir, cpu, graphVariants(cpu).includes('explicit') ? 'explicit' : 'fused', 'cpu', {
          ...sessionOpts,
          ep: 'cpu',
        }),
    });
  }
  const opened2: (OpenedGraph | null)[] = [];
  const rescue = async (inputIds: BigInt64Array, mask: BigInt64Array, n: number, seqLen: number) => {
    for (let i = 0; i < rescuers.length; i++) {
      opened2[i] ??= await rescuers[i].open().catch(() => null);
      const s2 = opened2[i];
      if (!s2) continue;
      const out = await runLogits(s2.session, inputIds, mask, n, seqLen).catch(() => null);
      if (out && out.every(Number.isFinite)) return { logits: out, by: rescuers[i].by };
    }
    return null;
  };
  return {
    spec,
    ep: g.ep,
    info: {
      ep: g.ep,
      runtime: g.runtime,
      variant: g.graph.variant,
      activations: g.graph.activations,
      selfCheck: check,
      tokenBudget: budget.budget,
    },
    score: (rows, swap, label) =>
      runPass(g.session, rows, {
        tokenBudget: budget.budget,
        exactLength: g.ep === 'cpu',
        swap,
        label,
        warn: opts.warn,
        numLabels,
        padId,
        vocabSize: m.config?.vocabSize,
        dir,
        encode,
        cache,
        rescue: rescuers.length ? rescue : undefined,
      }),
    close: async () => {
      await g.session.release();
      for (const o of opened2) await o?.session.release();
    },
  };
}

/** Token ids of the self-check rows: the shortest and the longest by text length (encoding every row twice would cost minutes). */
function sampleIds(rows: ArenaRow[], k: number, encode: (r: ArenaRow, swap: boolean) => Int32Array): Int32Array[] {
  if (!k || !rows.length) return [];
  const out: Int32Array[] = [];
  for (const i of checkRows(rows.map(textLength), k)) {
    try {
      out.push(encode(rows[i], false));
    } catch {
      // A row that cannot be encoded is the pass's business (counted and warned there).
    }
  }
  return out;
}

export async function openHandle(spec: ModelSpec, opts: HandleOptions): Promise<ModelHandle> {
  if (spec.manifest.kind === 'features') {
    process.stderr.write(`model ${spec.dir}: feature model (${spec.manifest.architecture})\n`);
    return openFeatureHandle(spec);
  }
  if (spec.manifest.kind !== 'neural')
    throw new ModelError(
      `${spec.dir}: unknown weights kind ${JSON.stringify(spec.manifest.kind)} (expected neural or features)`,
    );
  return openNeuralHandle(spec, opts);
}
