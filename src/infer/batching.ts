// Length-sorted dynamic batching: rows sorted by token length (longest first, so an
// out-of-memory batch shows up at the start, not after hours), each batch padded only to its
// own longest row and filled while rows x padded length stays under the token budget.
// Results are restored to input order by the caller through the row indices. On the CPU EP batches hold
// rows of one length only (`exactLength`): padding buys no GEMM efficiency there (a single 128-token row
// already runs near the batch rate; issue 21) but costs the padded tokens and larger attention shares.

export interface Batch {
  /** Row indices into the caller's arrays, in batch order. */
  rows: number[];
  /** Padded length = longest row in the batch. */
  seqLen: number;
}

export interface BatchPlanOptions {
  /** Upper bound on rows x padded length per batch. A single row longer than this still forms its own batch. */
  tokenBudget: number;
  /** Upper bound on rows per batch (default: unlimited). */
  maxRows?: number;
  /** Only rows of one length share a batch: no padding at all (the CPU EP). */
  exactLength?: boolean;
}

export function planBatches(lengths: ArrayLike<number>, opts: BatchPlanOptions): Batch[] {
  if (!(opts.tokenBudget > 0))
    throw new RangeError(`--token-budget must be a positive number, got ${opts.tokenBudget}`);
  const maxRows = opts.maxRows ?? Infinity;
  const order = Array.from({ length: lengths.length }, (_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  const batches: Batch[] = [];
  let cur: number[] = [];
  let curLen = 0;
  for (const i of order) {
    const len = Math.max(1, lengths[i]);
    const seq = Math.max(curLen, len);
    const full = (cur.length + 1) * seq > opts.tokenBudget || cur.length >= maxRows;
    if (cur.length > 0 && (full || (opts.exactLength && len !== curLen))) {
      batches.push({ rows: cur, seqLen: curLen });
      cur = [];
      curLen = 0;
    }
    cur.push(i);
    curLen = Math.max(curLen, len);
  }
  if (cur.length) batches.push({ rows: cur, seqLen: curLen });
  return batches;
}

/** Fixed-size batches in input order (the baseline that sorting is measured against). */
export function planUnsorted(lengths: ArrayLike<number>, sizes: number[]): Batch[] {
  const out: Batch[] = [];
  let start = 0;
  for (const n of sizes) {
    const rows = Array.from({ length: n }, (_, k) => start + k);
    out.push({ rows, seqLen: Math.max(1, ...rows.map((r) => lengths[r])) });
    start += n;
  }
  return out;
}

/** Real tokens / computed tokens (rows x padded length summed over batches). */
export function paddingEfficiency(lengths: ArrayLike<number>, batches: Batch[]): number {
  let real = 0;
  let computed = 0;
  for (const b of batches) {
    for (const r of b.rows) real += lengths[r];
    computed += b.rows.length * b.seqLen;
  }
  return computed === 0 ? 1 : real / computed;
}

/** Right-padded int64 feeds for one batch. */
export function padBatch(
  ids: Int32Array[],
  batch: Batch,
  padId: number,
): { inputIds: BigInt64Array; attentionMask: BigInt64Array } {
  const n = batch.rows.length;
  const L = batch.seqLen;
  const inputIds = new BigInt64Array(n * L).fill(BigInt(padId));
  const attentionMask = new BigInt64Array(n * L);
  batch.rows.forEach((r, b) => {
    const row = ids[r];
    for (let t = 0; t < row.length; t++) {
      inputIds[b * L + t] = BigInt(row[t]);
      attentionMask[b * L + t] = 1n;
    }
  });
  return { inputIds, attentionMask };
}
