// Shared by predict and validate: open each weights directory (neural ONNX classifier or feature
// model), run it over the rows with the chosen TTA, apply the directory's fitted calibration (or tie
// model for single-score heads), and blend the models' probabilities (given weights, else equal).
import type { ArenaRow } from '../../types';
import { loadTokenizer } from '../../format/encode';
import { ensureCudaEnv, openModel, parseEp, type EpChoice } from '../../infer/session';
import { predictRows, parseTta, type PredictResult, type Tta } from '../../infer/predict';
import { flipAB, leastCertain, mergeSwap, type Probs } from '../../infer/probs';
import { readManifest, type GraphEntry, type Manifest } from '../../weights/manifest';
import { openLogitsCache } from '../../infer/logits-cache';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { predictFeatures } from '../../features/model';
import { textLength } from '../../features/extract';
import { applyCalibration, type Calibration } from '../../post/calibrate';
import { scoreToProbs, type TieCalibration } from '../../post/tie';
import { num, UsageError, type OptionSpec } from '../args';
import { scoreSharded } from './shards';

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
}

export function scoreSettings(v: Record<string, unknown>): ScoreSettings {
  const weights = (v.weights as string[] | undefined) ?? [];
  if (!weights.length) throw new UsageError('missing required option --weights DIR (repeat it to blend several models)');
  const blend = v['blend-weights'] ? String(v['blend-weights']).split(',').map(Number) : weights.map(() => 1 / weights.length);
  if (blend.length !== weights.length || !blend.every((w) => Number.isFinite(w) && w >= 0) || !(blend.reduce((a, b) => a + b, 0) > 0))
    throw new UsageError(`--blend-weights needs ${weights.length} non-negative numbers separated by commas, got "${v['blend-weights']}"`);
  const s = blend.reduce((a, b) => a + b, 0);
  const settings = {
    weights,
    ep: parseEp(v.ep as string),
    tta: parseTta(v.tta as string),
    tokenBudget: num(v['token-budget'], '--token-budget', 16384),
    threads: v.threads ? num(v.threads, '--threads', 0) : undefined,
    blend: blend.map((w) => w / s),
    calibrate: !v['no-calibration'],
    devices: parseDevices(v.devices as string | undefined),
    cacheDir: v.cache as string | undefined,
  };
  ensureCudaEnv(settings.ep);
  return settings;
}

function parseDevices(s: string | undefined): number[] {
  if (s === undefined) return [0];
  const ids = s.split(',').map((x) => Number(x.trim()));
  if (!ids.length || !ids.every((d) => Number.isInteger(d) && d >= 0) || new Set(ids).size !== ids.length)
    throw new UsageError(`--devices needs distinct GPU ids separated by commas (e.g. 0,1), got "${s}"`);
  return ids;
}

export interface ModelRun {
  dir: string;
  ep: string;
  manifest: Manifest;
  result: PredictResult;
}

/** A fitted calibration, applied to every pass so TTA merges calibrated probabilities. */
function postProcess(m: Manifest, rows: ArenaRow[], enabled: boolean): (p: Probs) => Probs {
  if (!enabled || !m.calibration) return (p) => p;
  const lengths = rows.map(textLength);
  const cal = m.calibration as Calibration;
  return (p) => applyCalibration(cal, p, lengths);
}

async function runOne(dir: string, rows: ArenaRow[], s: ScoreSettings, warn: (m: string) => void): Promise<ModelRun> {
  const manifest = readManifest(dir);
  const post = postProcess(manifest, rows, s.calibrate);
  if (manifest.kind === 'features') {
    process.stderr.write(`model ${dir}: feature model (${manifest.architecture})\n`);
    const first = post(predictFeatures(dir, rows));
    // Swap TTA for the feature model: the same trees on rows with A and B exchanged, flipped back.
    const swappedRaw = post(predictFeatures(dir, rows.map((r) => ({ ...r, responseA: r.responseB, responseB: r.responseA }))));
    const swappedFlipped = flipAB(swappedRaw);
    const swappedRows = s.tta.kind === 'none' ? [] : s.tta.kind === 'swap' ? rows.map((_, i) => i) : leastCertain(first, s.tta.fraction);
    const fake = { logits: new Float32Array(0), numLabels: 3, tokens: 0, computedTokens: 0, seconds: 0, failedRows: [] };
    const probs = mergeSwap(first, swappedFlipped, swappedRows);
    return { dir, ep: 'cpu', manifest, result: { probs, first, swappedFlipped, swappedRaw, swappedRows, firstPass: fake } };
  }
  const model = await openModel(dir, { ep: s.ep, threads: s.threads, deviceId: s.devices[0], warn });
  process.stderr.write(`model ${dir}: ${manifest.architecture}, ${manifest.quantization?.kind ?? '?'} weights, template ${manifest.template}, max_tokens ${manifest.maxTokens}, EP ${model.ep}\n`);
  let tie: ((scores: Float64Array) => Probs) | undefined;
  if (manifest.labels.length === 1) {
    if (!manifest.tie)
      throw new UsageError(`${dir}: single-score head (num_labels 1) without a tie model; fit one on labelled data with \`runner.cjs validate --data labelled.csv --weights ${dir} --fit-tie\``);
    tie = (sc) => scoreToProbs(manifest.tie as TieCalibration, sc);
  }
  const tok = loadTokenizer(dir);
  const cache = s.cacheDir ? openLogitsCache(s.cacheDir, modelIdentity(dir, model.graph, model.ep)) : undefined;
  const raw = await predictRows(model, tok, rows, { tta: s.tta, tokenBudget: s.tokenBudget, warn, scoreToProbs: tie, cache });
  await model.session.release();
  const result: PredictResult = {
    ...raw,
    probs: post(raw.probs),
    first: post(raw.first),
    ...(raw.swappedRaw ? { swappedRaw: post(raw.swappedRaw), swappedFlipped: post(raw.swappedFlipped!) } : {}),
  };
  if (raw.swappedRaw && s.calibrate && manifest.calibration) {
    // TTA averages the calibrated passes.
    result.probs = mergeSwap(result.first, result.swappedFlipped!, raw.swappedRows);
  }
  return { dir, ep: model.ep, manifest, result };
}

/** What makes two runs' logits interchangeable: the manifest, the graph files as written, and the EP. */
function modelIdentity(dir: string, graph: GraphEntry, ep: string): string {
  const files = [graph.file, ...graph.externalData].map((f) => {
    const st = statSync(join(dir, f));
    return `${f}:${st.size}:${st.mtimeMs}`;
  });
  return [readFileSync(join(dir, 'manifest.json'), 'utf8'), ...files, ep].join('\n');
}

export async function scoreRows(rows: ArenaRow[], s: ScoreSettings, warn: (m: string) => void): Promise<{ probs: Probs; runs: ModelRun[] }> {
  const runs: ModelRun[] = [];
  if (s.devices.length > 1) runs.push(...(await scoreSharded(rows, s)));
  else for (const dir of s.weights) runs.push(await runOne(dir, rows, s, warn));
  const probs = new Float64Array(rows.length * 3);
  runs.forEach((r, k) => r.result.probs.forEach((p, i) => (probs[i] += s.blend[k] * p)));
  return { probs, runs };
}
