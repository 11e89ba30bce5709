// The inference stage: encode rows, run length-sorted batches, restore input order, and merge
// swap test-time augmentation. A batch that fails is split and retried so one bad row never
// loses the rest; a row that still fails gets the uniform prediction and a warning naming it.
import type { ArenaRow } from '../types';
import { encodeRow } from '../format/encode';
import { planBatches, padBatch, paddingEfficiency, type Batch } from './batching';
import { runLogits, type OpenedModel } from './session';
import { flipAB, leastCertain, mergeSwap, softmaxRows, type Probs } from './probs';
import { Progress } from '../util/progress';
import type { LogitsCache } from './logits-cache';

export type Tta = { kind: 'none' } | { kind: 'swap' } | { kind: 'swap-uncertain'; fraction: number };

export function parseTta(s: string | undefined): Tta {
  const v = s ?? 'none';
  if (v === 'none' || v === 'swap') return { kind: v };
  const m = /^swap-uncertain:(\d*\.?\d+)$/.exec(v);
  if (m && Number(m[1]) >= 0 && Number(m[1]) <= 1) return { kind: 'swap-uncertain', fraction: Number(m[1]) };
  throw new RangeError(`--tta must be none, swap or swap-uncertain:F with 0 <= F <= 1, got "${v}"`);
}

export interface PassResult {
  /** Raw model outputs [n, numLabels] in input order (NaN rows = failed). */
  logits: Float32Array;
  numLabels: number;
  tokens: number;
  computedTokens: number;
  seconds: number;
  failedRows: number[];
}

export interface PassOptions {
  tokenBudget: number;
  swap: boolean;
  label: string;
  warn: (msg: string) => void;
  /** Resumable runs: logits of rows already scored by this model are taken from here, new ones added. */
  cache?: LogitsCache;
  /** Encoder override (tests); default encodeRow with the manifest's template and max_tokens. */
  encode?: (row: ArenaRow, swap: boolean) => Int32Array;
}

type Tokenizer = Parameters<typeof encodeRow>[0];

/** One pass over `rows` (all of them) with the model. */
export async function runPass(model: OpenedModel, tok: Tokenizer, rows: ArenaRow[], opts: PassOptions): Promise<PassResult> {
  const m = model.manifest;
  const numLabels = m.labels.length;
  const padId = m.config?.padTokenId ?? 0;
  const encode = opts.encode ?? ((row: ArenaRow, swap: boolean) => encodeRow(tok, row, { template: m.template, maxTokens: m.maxTokens, swap }));
  const failed = new Set<number>();
  const ids = rows.map((row, i) => {
    try {
      return encode(row, opts.swap);
    } catch (e) {
      opts.warn(`row id ${row.id} (line ${row.line}): could not be encoded (${(e as Error).message}); it gets the uniform prediction`);
      failed.add(i);
      return Int32Array.of(padId);
    }
  });
  const lengths = ids.map((x) => x.length);
  const vocab = m.config?.vocabSize;
  if (vocab) {
    let maxId = 0;
    for (const x of ids) for (let t = 0; t < x.length; t++) if (x[t] > maxId) maxId = x[t];
    if (maxId >= vocab)
      throw new RangeError(`${model.dir}: the tokenizer produced id ${maxId} but the model's vocabulary has ${vocab} rows; the tokenizer files do not belong to this model (re-import with the checkpoint's own tokenizer: trainer.cjs import --tokenizer DIR)`);
  }
  const logits = new Float32Array(rows.length * numLabels).fill(NaN);
  const todo: number[] = [];
  rows.forEach((_, i) => {
    const hit = failed.has(i) ? undefined : opts.cache?.get(ids[i]);
    if (hit && hit.length === numLabels) logits.set(hit, i * numLabels);
    else todo.push(i);
  });
  if (todo.length < rows.length) process.stderr.write(`${opts.label}: ${rows.length - todo.length} rows taken from the logits cache ${opts.cache!.file}\n`);
  const batches = planBatches(todo.map((i) => lengths[i]), { tokenBudget: opts.tokenBudget }).map((b) => ({ ...b, rows: b.rows.map((k) => todo[k]) }));
  const progress = new Progress(opts.label, todo.length);
  let done = 0;
  const runBatch = async (b: Batch): Promise<void> => {
    const { inputIds, attentionMask } = padBatch(ids, b, padId);
    try {
      const out = await runLogits(model.session, inputIds, attentionMask, b.rows.length, b.seqLen);
      b.rows.forEach((r, k) => logits.set(out.subarray(k * numLabels, (k + 1) * numLabels), r * numLabels));
      opts.cache?.put(b.rows.filter((r) => !failed.has(r)).map((r) => ({ ids: ids[r], logits: logits.slice(r * numLabels, (r + 1) * numLabels) })));
    } catch (e) {
      if (b.rows.length > 1) {
        const half = Math.ceil(b.rows.length / 2);
        opts.warn(`batch of ${b.rows.length} rows x ${b.seqLen} tokens failed (${(e as Error).message.split('\n')[0]}); retrying in halves`);
        for (const part of [b.rows.slice(0, half), b.rows.slice(half)])
          await runBatch({ rows: part, seqLen: Math.max(...part.map((r) => lengths[r])) });
        return;
      }
      const row = rows[b.rows[0]];
      opts.warn(`row id ${row.id} (line ${row.line}): inference failed (${(e as Error).message.split('\n')[0]}); it gets the uniform prediction`);
      failed.add(b.rows[0]);
    }
  };
  for (const b of batches) {
    await runBatch(b);
    done += b.rows.length;
    progress.update(done);
  }
  const seconds = progress.done(done);
  let tokens = 0;
  for (const i of todo) tokens += lengths[i];
  const eff = batches.length ? paddingEfficiency(lengths, batches) : 1;
  return { logits, numLabels, tokens, computedTokens: Math.round(tokens / eff), seconds, failedRows: [...failed].sort((a, b) => a - b) };
}

/** Turns a pass's logits into probabilities [n, 3]; `scoreToProbs` handles single-score heads. */
export function passProbs(pass: PassResult, scoreToProbs?: (scores: Float64Array) => Probs): Probs {
  const n = pass.logits.length / pass.numLabels;
  let probs: Probs;
  if (pass.numLabels === 3) probs = softmaxRows(pass.logits, n, 3);
  else if (pass.numLabels === 1) {
    if (!scoreToProbs)
      throw new RangeError('this model has a single-score head (num_labels 1): fit a tie model with `runner.cjs calibrate` and store it in the weights directory');
    probs = scoreToProbs(Float64Array.from(pass.logits));
  } else throw new RangeError(`model has ${pass.numLabels} labels; arenakit reads 3 (A, B, tie) or 1 (score)`);
  for (const i of pass.failedRows) probs.set([1 / 3, 1 / 3, 1 / 3], i * 3);
  for (let i = 0; i < n; i++) if (!Number.isFinite(probs[i * 3])) probs.set([1 / 3, 1 / 3, 1 / 3], i * 3);
  return probs;
}

export interface PredictResult {
  probs: Probs;
  first: Probs;
  /** Swapped pass, A/B columns flipped back to the original order; only rows in `swappedRows` are meaningful. */
  swappedFlipped?: Probs;
  /** Swapped pass as the model saw it (first position = B). */
  swappedRaw?: Probs;
  swappedRows: number[];
  firstPass: PassResult;
  swapPass?: PassResult;
}

export async function predictRows(
  model: OpenedModel,
  tok: Tokenizer,
  rows: ArenaRow[],
  opts: { tta: Tta; tokenBudget: number; warn: (m: string) => void; scoreToProbs?: (s: Float64Array) => Probs; cache?: LogitsCache },
): Promise<PredictResult> {
  const firstPass = await runPass(model, tok, rows, { tokenBudget: opts.tokenBudget, swap: false, label: 'predict', warn: opts.warn, cache: opts.cache });
  const first = passProbs(firstPass, opts.scoreToProbs);
  if (opts.tta.kind === 'none') return { probs: first, first, swappedRows: [], firstPass };
  const swappedRows = opts.tta.kind === 'swap' ? rows.map((_, i) => i) : leastCertain(first, opts.tta.fraction);
  const sub = swappedRows.map((i) => rows[i]);
  const swapPass = await runPass(model, tok, sub, { tokenBudget: opts.tokenBudget, swap: true, label: 'predict (swapped)', warn: opts.warn, cache: opts.cache });
  const subRaw = passProbs(swapPass, opts.scoreToProbs);
  const swappedRaw = new Float64Array(first.length).fill(NaN);
  swappedRows.forEach((r, k) => swappedRaw.set(subRaw.subarray(k * 3, k * 3 + 3), r * 3));
  const swappedFlipped = flipAB(swappedRaw);
  const failedSub = new Set(swapPass.failedRows);
  const ok = swappedRows.filter((_, k) => !failedSub.has(k));
  return { probs: mergeSwap(first, swappedFlipped, ok), first, swappedFlipped, swappedRaw, swappedRows, firstPass, swapPass };
}
