// Swap test-time augmentation and per-pass post-processing, one rule for every model kind:
// each pass is calibrated in the frame it was scored in (the swapped pass with B shown first), the
// swapped pass is then flipped back to A/B order (the task's swapColumns), and the passes are merged.
// Rows for selective TTA (swap-uncertain:F) are chosen over ALL rows after the whole first pass,
// however the passes are run (one process or one worker per device: see PassRunner). A row that
// fails in one pass uses the pass that worked; a row that fails in both gets the uniform prediction
// and counts as failed.
// Every pass runs under a deadline (--time-budget; none is a deadline at infinity: one chunk of every
// row, in row order). Under a finite one the first pass runs in chunks (shortest rows first) and stops
// when the next chunk would not finish in time; the rows it did not reach stay NaN in `probs` and are
// listed in `unreachedRows` (the blend fills them, src/infer/ensemble.ts). The swapped pass then
// takes as many of the least certain rows as the throughput measured on the first pass allows in the
// time left, and is chunked the same way in case that estimate was optimistic.
import type { ArenaRow } from '../types';
import { applyCalibration } from '../post/calibrate';
import { swapColumns } from '../task/task';
import { byCertainty, fillUniform, flipAB, leastCertain, rowOk, uniform, type Probs } from '../util/probs';
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
  /** `msLeft`: the time left on the parent's clock; rows not scored by then come back in `unreached`. */
  pass(model: number, rows: number[], swap: boolean, label: string, msLeft?: number): Promise<PassResult>;
  /** Model k is done: release its weights (one model in memory at a time). */
  release(model: number): Promise<void>;
  /** Execution provider model k ran on. */
  ep(model: number): string;
  /** Runtime, EP, attention variant and self-check of model k (neural models, once opened). */
  info(model: number): RunInfo | undefined;
}

/** A wall-clock limit: passes must end by `deadline` (milliseconds on `now`'s clock; tests inject a fake clock). */
export interface Deadline {
  deadline: number;
  now: () => number;
}

/** No --time-budget. */
const NO_DEADLINE: Deadline = { deadline: Infinity, now: () => Date.now() };

export interface ModelRun {
  spec: ModelSpec;
  ep: string;
  info?: RunInfo;
  /** First pass, uncalibrated, in task column order (NaN rows = failed or unreached): what `calibrate` fits on. */
  raw: Probs;
  /** First pass after the model's calibration (NaN rows = failed or unreached). */
  first: Probs;
  /** Swapped pass after calibration in the frame it was scored in (column 0 = the response shown first, B); NaN where not swapped or failed. */
  swappedRaw: Probs;
  /** swappedRaw flipped back to A/B order (the task's swapColumns): what the merge averages with `first`. */
  swappedFlipped: Probs;
  swappedRows: number[];
  /** Final probabilities (the merge of `first` and `swappedFlipped`): every row valid, except unreached rows (NaN). */
  probs: Probs;
  /** The first pass alone by the same merge rule (failed rows uniform, unreached NaN): what --tta none gives. */
  noTta: Probs;
  /** Rows with no working pass (they got the uniform prediction). */
  failedRows: number[];
  /** Rows the first pass did not reach before the deadline (NaN in `probs`). */
  unreachedRows: number[];
  firstPass: PassResult;
  swapPass?: PassResult;
}

/** The model's calibration applied to one pass (lengths: the pass's rows' text lengths). */
function calibratePass(spec: ModelSpec, p: Probs, lengths: ArrayLike<number>): Probs {
  return spec.calibration ? applyCalibration(spec.calibration, p, lengths) : p;
}

/**
 * Merge rule per row: both passes -> mean; one pass -> that pass; none -> uniform (failed), except
 * rows in `unreached` (never scored, left NaN for the blend to fill).
 */
function mergePasses(
  first: Probs,
  swappedFlipped: Probs,
  k: number,
  unreached: Iterable<number> = [],
): { probs: Probs; failedRows: number[] } {
  const n = first.length / k;
  const probs = new Float64Array(n * k);
  const failedRows: number[] = [];
  const u = uniform(k);
  const skip = new Set(unreached);
  for (let i = 0; i < n; i++) {
    if (skip.has(i)) {
      probs.fill(NaN, i * k, i * k + k);
      continue;
    }
    const a = rowOk(first, i, k);
    const b = rowOk(swappedFlipped, i, k);
    for (let c = 0; c < k; c++)
      probs[i * k + c] =
        a && b
          ? (first[i * k + c] + swappedFlipped[i * k + c]) / 2
          : a
            ? first[i * k + c]
            : b
              ? swappedFlipped[i * k + c]
              : u[c];
    if (!a && !b) failedRows.push(i);
  }
  return { probs, failedRows };
}

/** Rows to score again with A and B exchanged; failed first-pass rows count as least certain. */
function chooseSwapped(first: Probs, tta: Tta, k: number): number[] {
  const n = first.length / k;
  if (tta.kind === 'none') return [];
  if (tta.kind === 'swap') return Array.from({ length: n }, (_, i) => i);
  return leastCertain(fillUniform(first, k), tta.fraction, k);
}

/**
 * Under a deadline: the rows chooseSwapped picks, least certain first, as long as their estimated
 * cost (text length x measured milliseconds per character) fits in `msLeft`; ascending row order.
 * Unreached rows (NaN, no first pass) are never swapped.
 */
function chooseSwappedInTime(
  first: Probs,
  tta: Tta,
  k: number,
  lengths: ArrayLike<number>,
  msPerChar: number,
  msLeft: number,
  unreached: Set<number>,
): number[] {
  const wanted = new Set(chooseSwapped(first, tta, k));
  const out: number[] = [];
  let cost = 0;
  for (const i of byCertainty(fillUniform(first, k), k)) {
    if (!wanted.has(i) || unreached.has(i)) continue;
    cost += rowCost(lengths[i]) * msPerChar;
    if (cost > msLeft) break;
    out.push(i);
  }
  return out.sort((a, b) => a - b);
}

// A row's cost in "characters": its text plus a fixed share for the template and per-row overhead.
const rowCost = (len: number) => len + 256;

/** Rows scored per chunk before the first throughput measurement. */
const FIRST_CHUNK = 16;

/**
 * One pass over `idx` in chunks (shortest rows first) that stops when the next chunk is not expected
 * to end by the deadline. Returns the merged result over `idx` (unreached rows NaN), the rows it
 * did not reach and the measured milliseconds per character.
 */
async function passUntil(
  runner: PassRunner,
  k: number,
  idx: number[],
  swap: boolean,
  label: string,
  lengths: ArrayLike<number>,
  limit: Deadline,
  /** Outputs per row (the model's label count): the width of the result when no chunk ran. */
  width: number,
  known: number | null = null,
): Promise<{ result: PassResult; unreached: number[]; msPerChar: number | null }> {
  const order = idx.map((r, j) => j).sort((a, b) => lengths[idx[a]] - lengths[idx[b]] || a - b);
  const parts: { at: number[]; r: PassResult }[] = [];
  const late: number[] = [];
  let numLabels = width;
  let done = 0;
  let msSpent = 0;
  let chars = 0;
  // A rate measured before (the first pass, for the swapped one) sizes the first chunk too.
  let msPerChar: number | null = known;
  while (done < order.length) {
    const left = limit.deadline - limit.now();
    let take = FIRST_CHUNK;
    if (msPerChar !== null) {
      // Chunks of about an eighth of the time left (bounded), never more than is expected to fit.
      const target = Math.min(Math.max(left / 8, 1000), 120_000);
      take = 0;
      for (let c = 0, j = done; j < order.length; j++) {
        c += rowCost(lengths[idx[order[j]]]) * msPerChar;
        if (c > Math.min(target, left)) break;
        take++;
      }
    }
    // No deadline: every row in one chunk, in row order (as the runner would batch them anyway).
    if (left === Infinity) take = order.length - done;
    if (left <= 0 || take === 0) break;
    const at = left === Infinity ? order.slice(done).sort((a, b) => a - b) : order.slice(done, done + take);
    const t0 = limit.now();
    const r = await runner.pass(
      k,
      at.map((j) => idx[j]),
      swap,
      label,
      left,
    );
    const ms = limit.now() - t0;
    parts.push({ at, r });
    numLabels = r.numLabels || numLabels;
    done += at.length;
    if (r.unreached?.length) {
      // the time budget ran out inside this chunk (the parent's clock): the rest is unreached
      late.push(...r.unreached.map((m) => at[m]));
      break;
    }
    // The first chunk also opens the model: measure from the later chunks once there are some.
    const c = at.reduce((s, j) => s + rowCost(lengths[idx[j]]), 0);
    if (parts.length === 2 && known === null) ((msSpent = 0), (chars = 0));
    msSpent += ms;
    chars += c;
    msPerChar = msSpent / Math.max(chars, 1);
  }
  const logits = new Float64Array(idx.length * numLabels).fill(NaN);
  const failedRows: number[] = [];
  let tokens = 0,
    computedTokens = 0,
    seconds = 0;
  for (const { at, r } of parts) {
    if (!r.numLabels) continue;
    at.forEach((j, m) => logits.set(r.logits.subarray(m * numLabels, (m + 1) * numLabels), j * numLabels));
    for (const m of r.failedRows) failedRows.push(at[m]);
    tokens += r.tokens;
    computedTokens += r.computedTokens;
    seconds += r.seconds;
  }
  const unreached = [...order.slice(done), ...late].sort((a, b) => a - b);
  return {
    result: { logits, numLabels, tokens, computedTokens, seconds, failedRows: failedRows.sort((a, b) => a - b) },
    unreached,
    msPerChar,
  };
}

export async function predictModel(
  k: number,
  spec: ModelSpec,
  rows: ArenaRow[],
  lengths: ArrayLike<number>,
  tta: Tta,
  runner: PassRunner,
  limit: Deadline = NO_DEADLINE,
): Promise<ModelRun> {
  const n = rows.length;
  const w = spec.task.labels.length;
  const all = Array.from({ length: n }, (_, i) => i);
  const {
    result: firstPass,
    unreached: unreachedRows,
    msPerChar,
  } = await passUntil(runner, k, all, false, 'predict', lengths, limit, spec.manifest.labels.length);
  const raw = passProbs(spec, firstPass.logits, n);
  const first = calibratePass(spec, raw, lengths);
  let swappedRows =
    msPerChar === null
      ? []
      : chooseSwappedInTime(first, tta, w, lengths, msPerChar, limit.deadline - limit.now(), new Set(unreachedRows));
  const swappedRaw = new Float64Array(n * w).fill(NaN);
  let swapPass: PassResult | undefined;
  if (swappedRows.length) {
    const r = await passUntil(
      runner,
      k,
      swappedRows,
      true,
      'predict (swapped)',
      lengths,
      limit,
      spec.manifest.labels.length,
      msPerChar,
    );
    swapPass = r.result;
    const cut = new Set(r.unreached);
    const sub = calibratePass(
      spec,
      passProbs(spec, swapPass.logits, swappedRows.length),
      swappedRows.map((i) => lengths[i]),
    );
    swappedRows.forEach((r, j) => swappedRaw.set(sub.subarray(j * w, j * w + w), r * w));
    // Rows the swapped pass did not reach in time keep their first pass only.
    if (cut.size) swappedRows = swappedRows.filter((_, j) => !cut.has(j));
  }
  await runner.release(k);
  const swappedFlipped = flipAB(swappedRaw, swapColumns(spec.task));
  const { probs, failedRows } = mergePasses(first, swappedFlipped, w, unreachedRows);
  const noTta = mergePasses(first, new Float64Array(n * w).fill(NaN), w, unreachedRows).probs;
  return {
    spec,
    ep: runner.ep(k),
    info: runner.info(k),
    raw,
    first,
    swappedRaw,
    swappedFlipped,
    swappedRows,
    probs,
    noTta,
    failedRows,
    unreachedRows,
    firstPass,
    swapPass,
  };
}
