// Swap test-time augmentation and per-pass post-processing, one rule for every model kind:
// each pass is calibrated in the frame it was scored in (the swapped pass with B shown first), the
// swapped pass is then flipped back to A/B order, and the passes are merged. Rows for selective TTA
// (swap-uncertain:F) are chosen over ALL rows after the whole first pass, however the passes are
// run (one process or one worker per device: see PassRunner). A row that fails in one pass uses the
// pass that worked; a row that fails in both gets the uniform prediction and counts as failed.
import type { ArenaRow } from '../types';
import { applyCalibration } from '../post/calibrate';
import { flipAB, leastCertain, UNIFORM, type Probs } from '../util/probs';
import { passProbs, type ModelSpec, type RunInfo } from './model';
import type { PassResult } from './pass';

export type Tta = { kind: 'none' } | { kind: 'swap' } | { kind: 'swap-uncertain'; fraction: number };

export function parseTta(s: string | undefined): Tta {
  const v = s ?? 'none';
  if (v === 'none' || v === 'swap') return { kind: v };
  const m = /^swap-uncertain:(\d*\.?\d+)$/.exec(v);
  if (m && Number(m[1]) >= 0 && Number(m[1]) <= 1) return { kind: 'swap-uncertain', fraction: Number(m[1]) };
  throw new RangeError(`--tta must be none, swap or swap-uncertain:F with 0 <= F <= 1, got "${v}"`);
}

/** Runs passes of model k over rows (indices into the full row list); in one process or sharded over devices. */
export interface PassRunner {
  pass(model: number, rows: number[], swap: boolean, label: string): Promise<PassResult>;
  /** Model k is done: release its weights (one model in memory at a time). */
  release(model: number): Promise<void>;
  /** Execution provider model k ran on. */
  ep(model: number): string;
  /** Runtime, EP, attention variant and self-check of model k (neural models, once opened). */
  info(model: number): RunInfo | undefined;
}

export interface ModelRun {
  spec: ModelSpec;
  ep: string;
  info?: RunInfo;
  /** First pass, uncalibrated, in task column order (NaN rows = failed): what `calibrate` fits on. */
  raw: Probs;
  /** First pass after the model's calibration (NaN rows = failed). */
  first: Probs;
  /** Swapped pass after calibration in the frame it was scored in (column 0 = the response shown first, B); NaN where not swapped or failed. */
  swappedRaw: Probs;
  swappedRows: number[];
  /** Final probabilities: every row valid. */
  probs: Probs;
  /** Rows with no working pass (they got the uniform prediction). */
  failedRows: number[];
  firstPass: PassResult;
  swapPass?: PassResult;
}

const rowOk = (p: Probs, i: number) => Number.isFinite(p[i * 3]) && Number.isFinite(p[i * 3 + 1]) && Number.isFinite(p[i * 3 + 2]);

/** The model's calibration applied to one pass (lengths: the pass's rows' text lengths). */
export function calibratePass(spec: ModelSpec, p: Probs, lengths: ArrayLike<number>): Probs {
  return spec.calibration ? applyCalibration(spec.calibration, p, lengths) : p;
}

/** Merge rule per row: both passes -> mean; one pass -> that pass; none -> uniform (failed). */
export function mergePasses(first: Probs, swappedFlipped: Probs): { probs: Probs; failedRows: number[] } {
  const n = first.length / 3;
  const probs = new Float64Array(n * 3);
  const failedRows: number[] = [];
  for (let i = 0; i < n; i++) {
    const a = rowOk(first, i);
    const b = rowOk(swappedFlipped, i);
    for (let c = 0; c < 3; c++)
      probs[i * 3 + c] = a && b ? (first[i * 3 + c] + swappedFlipped[i * 3 + c]) / 2 : a ? first[i * 3 + c] : b ? swappedFlipped[i * 3 + c] : UNIFORM[c];
    if (!a && !b) failedRows.push(i);
  }
  return { probs, failedRows };
}

/** Rows to score again with A and B exchanged; failed first-pass rows count as least certain. */
export function chooseSwapped(first: Probs, tta: Tta): number[] {
  const n = first.length / 3;
  if (tta.kind === 'none') return [];
  if (tta.kind === 'swap') return Array.from({ length: n }, (_, i) => i);
  const filled = Float64Array.from(first);
  for (let i = 0; i < n; i++) if (!rowOk(first, i)) filled.set(UNIFORM, i * 3);
  return leastCertain(filled, tta.fraction);
}

export async function predictModel(k: number, spec: ModelSpec, rows: ArenaRow[], lengths: ArrayLike<number>, tta: Tta, runner: PassRunner): Promise<ModelRun> {
  const n = rows.length;
  const firstPass = await runner.pass(k, Array.from({ length: n }, (_, i) => i), false, 'predict');
  const raw = passProbs(spec, firstPass.logits, n);
  const first = calibratePass(spec, raw, lengths);
  const swappedRows = chooseSwapped(first, tta);
  const swappedRaw = new Float64Array(n * 3).fill(NaN);
  let swapPass: PassResult | undefined;
  if (swappedRows.length) {
    swapPass = await runner.pass(k, swappedRows, true, 'predict (swapped)');
    const sub = calibratePass(spec, passProbs(spec, swapPass.logits, swappedRows.length), swappedRows.map((i) => lengths[i]));
    swappedRows.forEach((r, j) => swappedRaw.set(sub.subarray(j * 3, j * 3 + 3), r * 3));
  }
  await runner.release(k);
  const { probs, failedRows } = mergePasses(first, flipAB(swappedRaw));
  return { spec, ep: runner.ep(k), info: runner.info(k), raw, first, swappedRaw, swappedRows, probs, failedRows, firstPass, swapPass };
}
