// One pass of a neural model over rows in a given A/B order: encode, run length-sorted batches,
// restore input order. A batch that fails is split and retried so one bad row never loses the rest;
// a row that still fails, cannot be encoded, or gets non-finite logits is a failed row (NaN logits,
// listed in failedRows, warned). Cache errors are not row failures: they stop the run.
import type { ArenaRow } from '../types';
import { planBatches, padBatch, paddingEfficiency, type Batch } from './batching';
import { runLogits } from './session';
import { Progress } from '../util/progress';
import type { LogitsCache } from './logits-cache';
import type * as ort from 'onnxruntime-node';

export interface PassResult {
  /** Raw model outputs [n, numLabels] in the manifest's label order and input row order (NaN rows = failed). */
  logits: Float32Array | Float64Array;
  numLabels: number;
  tokens: number;
  computedTokens: number;
  seconds: number;
  failedRows: number[];
  /** Rows (indices into the pass's rows) not scored because the time budget ran out first (NaN logits, not failed). */
  unreached?: number[];
}

export interface PassOptions {
  tokenBudget: number;
  /** Batches of one row length only (no padding): the CPU EP (src/infer/batching.ts). */
  exactLength?: boolean;
  swap: boolean;
  label: string;
  warn: (msg: string) => void;
  numLabels: number;
  padId: number;
  /** Vocabulary rows of the graph: an id at or above it means the tokenizer is not the model's. */
  vocabSize?: number;
  dir: string;
  encode: (row: ArenaRow, swap: boolean) => Int32Array;
  /** Resumable runs: logits of rows already scored by this model are taken from here, new ones added. */
  cache?: LogitsCache;
  /** Rescores a batch whose logits are not all finite on a safer graph (explicit attention, then fp32 on the CPU); null when none helps. */
  rescue?: (
    inputIds: BigInt64Array,
    attentionMask: BigInt64Array,
    n: number,
    seqLen: number,
  ) => Promise<{ logits: Float32Array; by: string } | null>;
}

const allFinite = (x: Float32Array): boolean => x.every(Number.isFinite);

export class PassError extends Error {
  override name = 'PassError';
}

/** Warns once per kind of failure: the count, the first row ids and the first reason. */
function warnFailures(
  warn: (m: string) => void,
  what: string,
  rows: ArenaRow[],
  idx: number[],
  reason: string,
  fix: string,
): void {
  if (!idx.length) return;
  const first = idx
    .slice(0, 5)
    .map((i) => `${rows[i].id} (line ${rows[i].line})`)
    .join(', ');
  warn(
    `${idx.length} row(s) ${what} (${reason}); first: ${first}${idx.length > 5 ? ', ...' : ''}. They count as failed rows (uniform prediction unless the other TTA pass works). ${fix}`,
  );
}

export async function runPass(session: ort.InferenceSession, rows: ArenaRow[], opts: PassOptions): Promise<PassResult> {
  const { numLabels, padId } = opts;
  const failed = new Set<number>();
  const unencodable: number[] = [];
  let encodeReason = '';
  const ids = rows.map((row, i) => {
    try {
      return opts.encode(row, opts.swap);
    } catch (e) {
      unencodable.push(i);
      encodeReason ||= (e as Error).message;
      failed.add(i);
      return Int32Array.of(padId);
    }
  });
  warnFailures(
    opts.warn,
    'could not be encoded',
    rows,
    unencodable,
    encodeReason,
    `The weights directory's maxTokens is fixed at import: re-import with \`trainer.cjs import --max-tokens N\` if it is too small.`,
  );
  const lengths = ids.map((x) => x.length);
  if (opts.vocabSize) {
    let maxId = 0;
    for (const x of ids) for (let t = 0; t < x.length; t++) if (x[t] > maxId) maxId = x[t];
    if (maxId >= opts.vocabSize)
      throw new PassError(
        `${opts.dir}: the tokenizer produced id ${maxId} but the model's vocabulary has ${opts.vocabSize} rows; the tokenizer files do not belong to this model (re-import with the checkpoint's own tokenizer: trainer.cjs import --tokenizer DIR)`,
      );
  }
  const logits = new Float32Array(rows.length * numLabels).fill(NaN);
  const live: number[] = [];
  const hits = new Set<number>();
  rows.forEach((_, i) => {
    if (failed.has(i)) return;
    live.push(i);
    const hit = opts.cache?.get(ids[i]);
    if (hit && hit.length === numLabels) {
      logits.set(hit, i * numLabels);
      hits.add(i);
    }
  });
  // Batches are planned over every live row, cached or not, and a batch runs unless all its rows are cached:
  // a resumed run then scores exactly the batches the uninterrupted run would (the cache is written per
  // batch), so its logits are bit-identical even where a kernel's result depends on the batch's rows (ORT's
  // M-dependent MatMulNBits paths: int8 activations, the last layer on last tokens).
  const batches = planBatches(
    live.map((i) => lengths[i]),
    { tokenBudget: opts.tokenBudget, exactLength: opts.exactLength },
  )
    .map((b) => ({ ...b, rows: b.rows.map((k) => live[k]) }))
    .filter((b) => !b.rows.every((r) => hits.has(r)));
  const todo = batches.reduce((a, b) => a + b.rows.length, 0);
  const cached = live.length - todo;
  if (cached > 0)
    process.stderr.write(`${opts.label}: ${cached} rows taken from the logits cache ${opts.cache!.file}\n`);
  const progress = new Progress(opts.label, todo);
  let done = 0;
  const inferenceFailed: number[] = [];
  let inferReason = '';
  const rescued: number[] = [];
  let rescuedBy = '';
  const runBatch = async (b: Batch): Promise<void> => {
    const { inputIds, attentionMask } = padBatch(ids, b, padId);
    let out: Float32Array;
    try {
      out = await runLogits(session, inputIds, attentionMask, b.rows.length, b.seqLen);
    } catch (e) {
      const msg = (e as Error).message.split('\n')[0];
      if (b.rows.length > 1) {
        const half = Math.ceil(b.rows.length / 2);
        opts.warn(`batch of ${b.rows.length} rows x ${b.seqLen} tokens failed (${msg}); retrying in halves`);
        for (const part of [b.rows.slice(0, half), b.rows.slice(half)])
          await runBatch({ rows: part, seqLen: Math.max(...part.map((r) => lengths[r])) });
        return;
      }
      inferenceFailed.push(b.rows[0]);
      inferReason ||= msg;
      failed.add(b.rows[0]);
      return;
    }
    if (opts.rescue && !allFinite(out)) {
      const r = await opts.rescue(inputIds, attentionMask, b.rows.length, b.seqLen);
      if (r && allFinite(r.logits)) {
        out = r.logits;
        rescued.push(...b.rows);
        rescuedBy = r.by;
      }
    }
    b.rows.forEach((r, k) => logits.set(out.subarray(k * numLabels, (k + 1) * numLabels), r * numLabels));
    // Outside the try: a cache write failure must stop the run, never turn computed rows into failures.
    opts.cache?.put(b.rows.map((r) => ({ ids: ids[r], logits: logits.slice(r * numLabels, (r + 1) * numLabels) })));
  };
  for (const b of batches) {
    await runBatch(b);
    done += b.rows.length;
    progress.update(done);
  }
  const seconds = progress.done(done);
  warnFailures(opts.warn, 'failed in inference', rows, inferenceFailed, inferReason, '');
  if (rescued.length)
    opts.warn(
      `${rescued.length} row(s) got non-finite logits on the chosen graph and were rescored with ${rescuedBy} (first: ${rescued
        .slice(0, 5)
        .map((i) => rows[i].id)
        .join(', ')})`,
    );
  const nonFinite: number[] = [];
  for (let i = 0; i < rows.length; i++) {
    if (failed.has(i)) continue;
    for (let c = 0; c < numLabels; c++)
      if (!Number.isFinite(logits[i * numLabels + c])) {
        nonFinite.push(i);
        failed.add(i);
        logits.fill(NaN, i * numLabels, (i + 1) * numLabels);
        break;
      }
  }
  warnFailures(
    opts.warn,
    'got non-finite logits (NaN/Inf)',
    rows,
    nonFinite,
    'the weights or the graph produce NaN/Inf for them',
    'Check the weights (non-finite tensors) and the graph precision.',
  );
  let tokens = 0;
  for (const b of batches) for (const i of b.rows) tokens += lengths[i];
  const eff = batches.length ? paddingEfficiency(lengths, batches) : 1;
  return {
    logits,
    numLabels,
    tokens,
    computedTokens: Math.round(tokens / eff),
    seconds,
    failedRows: [...failed].sort((a, b) => a - b),
  };
}
