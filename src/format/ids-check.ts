// Compares the ids the kit feeds a model with ids a user's training code wrote (`runner.cjs tokens
// --check`): rows matched by id, the first differing position of each row, and a message naming the
// first difference with both tokens decoded. Pure: the caller reads the files and decodes.

export interface IdsRow {
  id: string;
  inputIds: readonly number[] | null;
}

export interface RowDifference {
  id: string;
  /** First position where the two lists differ (the shorter length when one is a prefix of the other). */
  position: number;
  ours: number | null;
  theirs: number | null;
  oursLength: number;
  theirsLength: number;
}

export interface IdsComparison {
  rows: number;
  /** Rows whose ids differ (in our order). */
  differing: RowDifference[];
  /** Our row ids the reference does not have. */
  missing: string[];
}

export function compareIds(ours: readonly IdsRow[], reference: ReadonlyMap<string, readonly number[]>): IdsComparison {
  const out: IdsComparison = { rows: ours.length, differing: [], missing: [] };
  for (const r of ours) {
    const ref = reference.get(r.id);
    if (!ref) {
      out.missing.push(r.id);
      continue;
    }
    const a = r.inputIds ?? [];
    const n = Math.min(a.length, ref.length);
    let k = 0;
    while (k < n && a[k] === ref[k]) k++;
    if (k === a.length && k === ref.length) continue;
    out.differing.push({
      id: r.id,
      position: k,
      ours: a[k] ?? null,
      theirs: ref[k] ?? null,
      oursLength: a.length,
      theirsLength: ref.length,
    });
  }
  return out;
}

/** One line naming a difference: row id, position, both tokens (ids and decoded text). */
export function describeDifference(d: RowDifference, decode: (id: number) => string): string {
  const tokenText = (id: number | null) => (id === null ? '(end of ids)' : `${id} ${JSON.stringify(decode(id))}`);
  return `row ${d.id}: first difference at position ${d.position}: ours ${tokenText(d.ours)}, reference ${tokenText(d.theirs)} (lengths ${d.oursLength} / ${d.theirsLength})`;
}
