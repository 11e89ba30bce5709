// Pre-cut of very long texts (why it cannot change the kept tokens): a slot never keeps more than
// `cap` tokens from its head and `cap` from its tail (cap = the row's budget after overhead). Before
// tokenizing a long text we tokenize only a prefix and a suffix, cut at a HARD boundary: a position
// j with text[j] === ' ' and text[j-1] !== ' ', or text[j] === '\n' and text[j-1] !== '\n'. In the
// Gemma vocabulary no token (model or added) holds '▁' after another character, nor '\n' together
// with another character (tests/format.test.ts checks this on the real tokenizer.json), so no
// token of the full text spans j and BPE on each side runs independently: the tokens of the prefix
// are exactly the full text's tokens up to j, and likewise for the suffix. We grow the prefix/suffix
// until each holds >= cap + PRECUT_SLACK tokens, so the kept head and tail are exactly the full
// tokenization's. Only for a text with no hard boundary near the cut (e.g. a long run of CJK text
// without spaces) is the cut inside a run: then the PRECUT_SLACK tokens next to the cut, which are
// never kept, absorb the merge differences there.
import { isHardBoundary, type ArenaTokenizer } from './tokenizer';

/** Tokens kept on each side of a pre-cut beyond what can be kept, to absorb a soft cut's merge effects. */
export const PRECUT_SLACK = 16;
/** A first guess of characters per token for the pre-cut (grown x2 until enough tokens). */
const CHARS_PER_TOKEN_GUESS = 6;
/** How far to look for a hard boundary around a cut, in characters. */
const BOUNDARY_SEARCH = 512;

/** A cut position near `pos` (prefer a hard boundary at or before it; never inside a surrogate pair). */
function headCut(text: string, pos: number): number {
  for (let j = pos; j > pos - BOUNDARY_SEARCH && j > 0; j--) if (isHardBoundary(text, j)) return j;
  const c = text.charCodeAt(pos);
  return c >= 0xdc00 && c <= 0xdfff ? pos - 1 : pos;
}

/** A cut position near `pos` (prefer a hard boundary at or after it). */
function tailCut(text: string, pos: number): number {
  for (let j = pos; j < pos + BOUNDARY_SEARCH && j < text.length; j++) if (isHardBoundary(text, j)) return j;
  const c = text.charCodeAt(pos);
  return c >= 0xdc00 && c <= 0xdfff ? pos + 1 : pos;
}

/**
 * Tokens of `text`, or, when it is far longer than `cap` tokens, its first `cap` tokens followed by its
 * last `cap` tokens (a list that truncates exactly like the full one for any keep <= cap). `first`: the
 * text starts the sequence (tokenized with `encode`, else with `encodeAfter`).
 */
export function encodeCapped(tok: ArenaTokenizer, text: string, cap: number, first = true): number[] {
  const encode = first ? tok.encode : tok.encodeAfter;
  const want = cap + PRECUT_SLACK;
  let chars = want * CHARS_PER_TOKEN_GUESS + BOUNDARY_SEARCH;
  let head: number[] | null = null;
  let tail: number[] | null = null;
  let tailStart = text.length;
  while (head === null || tail === null) {
    // Head and tail pieces would meet: tokenizing the whole text costs no more.
    if (2 * chars + 2 * BOUNDARY_SEARCH >= text.length) return encode(text);
    if (head === null) {
      const cut = headCut(text, chars);
      const ids = encode(text.slice(0, cut));
      if (ids.length >= want) head = ids.slice(0, cap);
    }
    if (tail === null) {
      tailStart = tailCut(text, text.length - chars);
      const ids = tok.encodeAfter(text.slice(tailStart));
      if (ids.length >= want) tail = ids.slice(ids.length - cap);
    }
    chars *= 2;
  }
  return head.concat(tail);
}
