// One model interface for every kind of weights directory. `openSpec` reads the manifest once and
// validates everything predict needs besides the weights (label order, calibration, tie model), so a
// bad directory fails before any row is scored. `openHandle` then loads the weights (ONNX session +
// tokenizer, or the feature model's trees) and scores rows in a given A/B order. `passProbs` turns a
// pass's raw outputs into probabilities in the task's column order, by label NAME.
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import type { ArenaRow } from '../types';
import { modelToTask, TASKS } from '../task/task';
import { encodeRow, loadTokenizer } from '../format/encode';
import { featureLogits, loadFeatureModel } from '../features/model';
import { checkCalibration, type Calibration } from '../post/calibrate';
import { checkTie, scoreToProbs, type TieCalibration } from '../post/tie';
import { fsReason } from '../util/files';
import { softmaxRows, type Probs } from '../util/probs';
import { graphSha256, readManifest, type Manifest } from '../weights/manifest';
import { openLogitsCache } from './logits-cache';
import { runPass, type PassResult } from './pass';
import { openGraph, type EpChoice } from './session';

export class ModelError extends Error {
  override name = 'ModelError';
}

export interface ModelSpec {
  dir: string;
  manifest: Manifest;
  /** For each task column (LABEL_COLUMNS order), the index of its logit; null for a single-score head. */
  columns: number[] | null;
  /** Validated calibration applied to every pass (absent: none stored, or --no-calibration). */
  calibration?: Calibration;
  /** Validated tie model of a single-score head. */
  tie?: TieCalibration;
}

/**
 * For each task column (LMSYS: winner_model_a, winner_model_b, winner_tie), the index of its logit,
 * matched by label NAME (src/task/task.ts); null for a single-score head. Unknown names are refused.
 */
export function labelColumns(labels: string[], where: string): number[] | null {
  if (Array.isArray(labels) && labels.length === 1) return null;
  if (!Array.isArray(labels) || labels.length !== TASKS.lmsys.labels.length)
    throw new ModelError(`${where}: labels ${JSON.stringify(labels)}: expected the three outcomes ${TASKS.lmsys.labels.join(', ')} in the model's logit order, or one score`);
  const map = modelToTask(TASKS.lmsys, labels, where);
  return map.perm;
}

export interface SpecOptions {
  /** Validate and use the stored calibration (predict/validate without --no-calibration). */
  calibrate: boolean;
  /** Single-score heads need a tie model (false while validate --fit-tie is about to fit one). */
  needTie: boolean;
}

export function openSpec(dir: string, opts: SpecOptions): ModelSpec {
  const manifest = readManifest(dir);
  const where = join(dir, 'manifest.json');
  const columns = labelColumns(manifest.labels, where);
  const spec: ModelSpec = { dir, manifest, columns };
  if (opts.calibrate && manifest.calibration !== undefined) spec.calibration = checkCalibration(manifest.calibration, `${where} (calibration)`, true);
  if (columns === null) {
    if (manifest.tie !== undefined) spec.tie = checkTie(manifest.tie, `${where} (tie)`);
    else if (opts.needTie)
      throw new ModelError(`${dir}: single-score head (num_labels 1) without a tie model; fit one on labelled data with \`runner.cjs validate --data labelled.csv --weights ${dir} --fit-tie\``);
  }
  if (manifest.kind === 'neural' && manifest.config && manifest.maxTokens > manifest.config.maxPositions)
    process.stderr.write(
      `warning: ${where}: maxTokens ${manifest.maxTokens} exceeds the model's ${manifest.config.maxPositions} positions; rows are cut at ${manifest.maxTokens} tokens, ` +
        `so long rows may fail. Re-import with \`trainer.cjs import --max-tokens ${manifest.config.maxPositions}\`.\n`,
    );
  return spec;
}

/** Probabilities [n*3] in task column order from a pass's raw outputs; NaN rows (failed) stay NaN. */
export function passProbs(spec: ModelSpec, logits: ArrayLike<number>, n: number): Probs {
  if (spec.columns === null) {
    if (!spec.tie) throw new ModelError(`${spec.dir}: single-score head without a tie model`);
    return scoreToProbs(spec.tie, logits);
  }
  const k = spec.manifest.labels.length;
  const ordered = new Float64Array(n * 3);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) ordered[i * 3 + c] = logits[i * k + spec.columns[c]];
  return softmaxRows(ordered, n, 3);
}

export interface HandleOptions {
  ep: EpChoice;
  threads?: number;
  deviceId?: number;
  tokenBudget: number;
  /** Folder of logits caches (resumable runs); neural models only. */
  cacheDir?: string;
  warn: (m: string) => void;
}

export interface ModelHandle {
  spec: ModelSpec;
  ep: 'cpu' | 'cuda';
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
    async score(rows, swap) {
      const t0 = Date.now();
      const logits = featureLogits(model, swap ? rows.map(swapRow) : rows);
      return { logits, numLabels: 3, tokens: 0, computedTokens: 0, seconds: (Date.now() - t0) / 1000, failedRows: [] };
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
      throw new ModelError(`${join(dir, f)}: cannot be read (${fsReason(e)}); the weights directory needs its tokenizer files`);
    }
  }
  const tok = loadTokenizer(dir);
  const g = await openGraph(dir, m, { ep: opts.ep, threads: opts.threads, deviceId: opts.deviceId, warn: opts.warn });
  const numLabels = m.labels.length;
  const cache = opts.cacheDir ? openLogitsCache(opts.cacheDir, ['arenakit-logits-2', graphSha256(dir, g.graph), g.ep, numLabels].join('\n')) : undefined;
  if (cache?.corrupted) opts.warn(`--cache ${cache.file}: ${cache.corrupted} line(s) cut short or corrupted were ignored; those rows are scored again`);
  process.stderr.write(`model ${dir}: ${m.architecture}, ${m.quantization?.kind ?? '?'} weights, template ${m.template}, max_tokens ${m.maxTokens}, EP ${g.ep}\n`);
  return {
    spec,
    ep: g.ep,
    score: (rows, swap, label) =>
      runPass(g.session, rows, {
        tokenBudget: opts.tokenBudget,
        swap,
        label,
        warn: opts.warn,
        numLabels,
        padId: m.config?.padTokenId ?? 0,
        vocabSize: m.config?.vocabSize,
        dir,
        encode: (row, sw) => encodeRow(tok, row, { template: m.template, maxTokens: m.maxTokens, swap: sw }),
        cache,
      }),
    close: () => g.session.release(),
  };
}

export async function openHandle(spec: ModelSpec, opts: HandleOptions): Promise<ModelHandle> {
  if (spec.manifest.kind === 'features') {
    process.stderr.write(`model ${spec.dir}: feature model (${spec.manifest.architecture})\n`);
    return openFeatureHandle(spec);
  }
  if (spec.manifest.kind !== 'neural') throw new ModelError(`${spec.dir}: unknown weights kind ${JSON.stringify(spec.manifest.kind)} (expected neural or features)`);
  return openNeuralHandle(spec, opts);
}
