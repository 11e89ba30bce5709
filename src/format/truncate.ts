// Head+tail truncation of already-tokenized parts to a token budget (pure; no tokenizer here).
//
// Rules (the contract other stages and the trainer rely on):
// 1. Across parts: prompt, response A and response B share the budget by water-filling. Each part gets
//    min(length, level) for the largest level that fits, so a short part hands its unused share to the
//    others. Leftover tokens (fewer than the parts still cut) go to the prompt first, then to a response
//    only when the other response does not need one as well: when both responses are cut, they always get
//    the same count, so at most ONE budget token may go unused. This is what makes truncating
//    (P, B, A) give exactly the swapped parts of truncating (P, A, B).
// 2. Within a part: the part's budget is water-filled across its turns the same way (every turn gets a
//    fair share, short turns hand theirs on); leftover tokens go to the LATEST turns first, because
//    the final exchange is what the two responses differ on most.
// 3. Within a turn: keep the first floor(keep * headFraction) tokens and the last (keep - head) tokens
//    (default headFraction 0.5, so the tail gets the odd token). Keeping the tail as well as the head
//    was one of the largest single gains on Kaggle: conclusions and final answers sit at the end.
// Template overhead (instructions, markers, BOS/EOS) is reserved by the caller: `budget` is what is
// left for the parts.
import type { Part } from './templates';

export interface Parts<T> {
  prompt: T[][];
  responseA: T[][];
  responseB: T[][];
}

export interface TruncateOptions {
  /** Share of a cut turn's tokens kept from its head; the rest come from its tail. Default 0.5. */
  headFraction?: number;
}

export interface Truncated<T> {
  parts: Parts<T>;
  /** Whether any turn lost tokens. */
  truncated: boolean;
  /** Tokens kept over all parts (<= budget). */
  kept: number;
  /** Tokens before truncation. */
  total: number;
}

export class TruncateError extends Error {
  override name = 'TruncateError';
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/** Largest level with sum(min(len, level)) <= budget (lengths not all fitting). */
function waterLevel(lengths: readonly number[], budget: number): number {
  const sorted = [...lengths].sort((a, b) => a - b);
  let used = 0;
  for (let i = 0; i < sorted.length; i++) {
    const rest = sorted.length - i;
    // Raising every remaining part to sorted[i] would cost this much more:
    if (used + sorted[i] * rest > budget) return Math.floor((budget - used) / rest);
    used += sorted[i];
  }
  return sorted.length ? sorted[sorted.length - 1] : 0;
}

function checkBudget(budget: number): void {
  if (!Number.isInteger(budget) || budget < 0) throw new TruncateError(`budget must be an integer >= 0, got ${budget}`);
}

/**
 * Token counts kept for [prompt, responseA, responseB] (rule 1). Symmetric: swapping the two
 * response lengths swaps the result.
 */
export function fairShares(lengths: readonly [number, number, number], budget: number): [number, number, number] {
  checkBudget(budget);
  if (sum(lengths) <= budget) return [lengths[0], lengths[1], lengths[2]];
  const level = waterLevel(lengths, budget);
  const out = lengths.map((l) => Math.min(l, level)) as [number, number, number];
  let left = budget - sum(out);
  if (left > 0 && lengths[0] > level) {
    out[0]++;
    left--;
  }
  const aWants = lengths[1] > level;
  const bWants = lengths[2] > level;
  if (aWants && bWants) {
    if (left >= 2) {
      out[1]++;
      out[2]++;
    }
  } else if (left > 0 && aWants) out[1]++;
  else if (left > 0 && bWants) out[2]++;
  return out;
}

/** Token counts kept per turn of one part (rule 2). */
export function splitAcrossTurns(lengths: readonly number[], budget: number): number[] {
  checkBudget(budget);
  if (sum(lengths) <= budget) return [...lengths];
  const level = waterLevel(lengths, budget);
  const out = lengths.map((l) => Math.min(l, level));
  let left = budget - sum(out);
  for (let i = lengths.length - 1; i >= 0 && left > 0; i--) {
    if (lengths[i] > level) {
      out[i]++;
      left--;
    }
  }
  return out;
}

/** The first floor(keep*headFraction) and the last keep-head items (rule 3). */
export function keepHeadTail<T>(tokens: readonly T[], keep: number, headFraction = 0.5): T[] {
  if (keep >= tokens.length) return tokens.slice();
  if (keep <= 0) return [];
  const head = Math.floor(keep * headFraction);
  const tail = keep - head;
  return tokens.slice(0, head).concat(tokens.slice(tokens.length - tail));
}

/** Truncates the three parts to `budget` tokens in total (rules 1-3). */
export function truncateParts<T>(parts: Parts<T>, budget: number, opts: TruncateOptions = {}): Truncated<T> {
  const headFraction = opts.headFraction ?? 0.5;
  if (!(headFraction >= 0 && headFraction <= 1))
    throw new TruncateError(`headFraction must be in [0, 1], got ${headFraction}`);
  const names: Part[] = ['prompt', 'responseA', 'responseB'];
  const turnLens = names.map((p) => parts[p].map((t) => t.length));
  const partLens = turnLens.map(sum) as [number, number, number];
  const total = sum(partLens);
  const shares = fairShares(partLens, budget);
  let truncated = false;
  const out = {} as Parts<T>;
  names.forEach((p, k) => {
    const perTurn = splitAcrossTurns(turnLens[k], shares[k]);
    out[p] = parts[p].map((turn, i) => {
      if (perTurn[i] < turn.length) truncated = true;
      return keepHeadTail(turn, perTurn[i], headFraction);
    });
  });
  return { parts: out, truncated, kept: sum(shares), total };
}
