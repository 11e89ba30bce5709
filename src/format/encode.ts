// Tokenize + truncate one row into model input ids. Owns loading the tokenizer from a weights
// directory and the exact layout: [tokenizer prefix (BOS)] template segments [tokenizer suffix],
// each template segment tokenized on its own, slots cut by src/format/truncate.ts. Because segments are
// tokenized separately, ids can differ from tokenizing the rendered string at segment edges only
// (e.g. a text ending in '\n' before the template's '\n' gives 108,108 where the joined string gives
// 109); decoding always gives back the rendered text. Our trainer uses this same function.
//
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
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import type { ArenaRow } from '../types';
import { getTemplate, turnCount, turnText, type Conversation, type Segment } from './templates';
import { truncateParts, type Parts } from './truncate';

export class EncodeError extends Error {
  override name = 'EncodeError';
}

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'] as const;

export interface ArenaTokenizer {
  /** The directory the files came from (for messages). */
  readonly dir: string;
  /** Ids the tokenizer's post-processor puts before / after a text (Gemma: [<bos>=2] / []). */
  readonly prefixIds: readonly number[];
  readonly suffixIds: readonly number[];
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  /**
   * Whether the vocabulary has no token across a hard boundary (true for Gemma): then `encode` tokenizes
   * word chunks with a cache (same ids, about 3x faster) and pre-cuts are exact.
   */
  readonly hardBoundaries: boolean;
  /** Plain text -> ids, no special tokens added (special-token strings in the text still map to their ids). */
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
}

function readJson(dir: string, file: string): unknown {
  const p = join(dir, file);
  if (!existsSync(p)) {
    throw new EncodeError(
      `${dir}: missing ${file}; a weights directory needs ${TOKENIZER_FILES.join(' and ')} from the model's Hugging Face repo (copy them beside manifest.json)`,
    );
  }
  try {
    return JSON.parse(readFileSync(p, 'utf8'));
  } catch (e) {
    throw new EncodeError(`${p}: not valid JSON (${(e as Error).message}); re-copy it from the model's Hugging Face repo`);
  }
}

function specialId(tok: Tokenizer, config: Record<string, unknown>, key: string): number | null {
  const v = config[key] as string | { content?: string } | null | undefined;
  const s = typeof v === 'string' ? v : v?.content;
  return s ? (tok.token_to_id(s) ?? null) : null;
}

/** Loads DIR/tokenizer.json + DIR/tokenizer_config.json with @huggingface/tokenizers. */
export function loadTokenizer(dir: string): ArenaTokenizer {
  const json = readJson(dir, 'tokenizer.json') as object;
  const config = readJson(dir, 'tokenizer_config.json') as Record<string, unknown>;
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(json, config);
  } catch (e) {
    throw new EncodeError(`${dir}/tokenizer.json: cannot build the tokenizer (${(e as Error).message})`);
  }
  // What the post-processor adds (BOS per tokenizer_config / TemplateProcessing), found by difference.
  const probe = 'a';
  const bare = tok.encode(probe, { add_special_tokens: false }).ids;
  const full = tok.encode(probe).ids;
  let at = -1;
  for (let k = 0; k + bare.length <= full.length && at < 0; k++) {
    if (bare.every((id, i) => full[k + i] === id)) at = k;
  }
  if (at < 0) throw new EncodeError(`${dir}/tokenizer.json: cannot tell which special tokens the post-processor adds`);
  const plainEncode = (text: string) => tok.encode(text, { add_special_tokens: false }).ids;
  const exact = hardBoundariesHold(tok, plainEncode);
  const cache = new Map<string, number[]>();
  const chunkedEncode = (text: string): number[] => {
    const out: number[] = [];
    let start = 0;
    const take = (end: number) => {
      const w = text.slice(start, end);
      let ids = cache.get(w);
      if (!ids) {
        if (cache.size >= CHUNK_CACHE_MAX) cache.clear();
        cache.set(w, (ids = plainEncode(w)));
      }
      for (const id of ids) out.push(id);
      start = end;
    };
    for (let j = 1; j < text.length; j++) if (isHardBoundary(text, j)) take(j);
    if (start < text.length) take(text.length);
    return out;
  };
  return {
    dir,
    prefixIds: full.slice(0, at),
    suffixIds: full.slice(at + bare.length),
    bosId: specialId(tok, config, 'bos_token'),
    eosId: specialId(tok, config, 'eos_token'),
    padId: specialId(tok, config, 'pad_token'),
    hardBoundaries: exact,
    encode: exact ? chunkedEncode : plainEncode,
    decode: (ids) => tok.decode(Array.from(ids)),
  };
}

/** Chunk cache size bound (entries); cleared when full. Words repeat, so a few 100k entries cover a test set. */
const CHUNK_CACHE_MAX = 500_000;

const HARD_BOUNDARY_PROBES = ['Hello world', 'a  b\n\nc \n d', ' x\ty  \n\n\nz.', '<start_of_turn>user\nHi there <eos> ok'];

/**
 * Whether no token in the vocabulary (model or added) can span a hard boundary (see the header), and
 * tokenizing at those boundaries matches tokenizing the whole text on a few probes (this rules out
 * normalizers that prepend a '▁' to every piece).
 */
function hardBoundariesHold(tok: Tokenizer, plainEncode: (t: string) => number[]): boolean {
  for (const t of tok.get_vocab(true).keys()) {
    if (/[^\u2581 ][\u2581 ]/.test(t)) return false;
    if (t.includes('\n') && /[^\n]/.test(t)) return false;
  }
  for (const p of HARD_BOUNDARY_PROBES) {
    const pieces: number[] = [];
    let start = 0;
    for (let j = 1; j <= p.length; j++) {
      if (j === p.length || isHardBoundary(p, j)) {
        pieces.push(...plainEncode(p.slice(start, j)));
        start = j;
      }
    }
    if (pieces.join() !== plainEncode(p).join()) return false;
  }
  return true;
}

export interface EncodeOptions {
  /** Template name (src/format/templates.ts). */
  template: string;
  /** Hard cap on the returned length, BOS/EOS and template text included. */
  maxTokens: number;
  /** Encode (prompt, B, A) instead of (prompt, A, B): the swap pass of test-time augmentation. */
  swap: boolean;
  /** Share of a cut turn kept from its head (see truncate.ts). Default 0.5. */
  headFraction?: number;
}

/** Tokens kept on each side of a pre-cut beyond what can be kept, to absorb a soft cut's merge effects. */
export const PRECUT_SLACK = 16;
/** A first guess of characters per token for the pre-cut (grown x2 until enough tokens). */
const CHARS_PER_TOKEN_GUESS = 6;
/** How far to look for a hard boundary around a cut, in characters. */
const BOUNDARY_SEARCH = 512;

function isHardBoundary(text: string, j: number): boolean {
  const c = text.charCodeAt(j);
  const p = text.charCodeAt(j - 1);
  return (c === 32 && p !== 32) || (c === 10 && p !== 10);
}

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
 * last `cap` tokens (a list that truncates exactly like the full one for any keep <= cap).
 */
export function encodeCapped(tok: ArenaTokenizer, text: string, cap: number): number[] {
  const want = cap + PRECUT_SLACK;
  let chars = want * CHARS_PER_TOKEN_GUESS + BOUNDARY_SEARCH;
  let head: number[] | null = null;
  let tail: number[] | null = null;
  let tailStart = text.length;
  while (head === null || tail === null) {
    // Head and tail pieces would meet: tokenizing the whole text costs no more.
    if (2 * chars + 2 * BOUNDARY_SEARCH >= text.length) return tok.encode(text);
    if (head === null) {
      const cut = headCut(text, chars);
      const ids = tok.encode(text.slice(0, cut));
      if (ids.length >= want) head = ids.slice(0, cap);
    }
    if (tail === null) {
      tailStart = tailCut(text, text.length - chars);
      const ids = tok.encode(text.slice(tailStart));
      if (ids.length >= want) tail = ids.slice(ids.length - cap);
    }
    chars *= 2;
  }
  return head.concat(tail);
}

export interface EncodedRow {
  ids: Int32Array;
  /** Whether any turn lost tokens or was dropped. */
  truncated: boolean;
  /** Oldest turns dropped because the template text of all turns did not fit. */
  droppedTurns: number;
}

const literalCache = new WeakMap<ArenaTokenizer, Map<string, number[]>>();

function encodeLiteral(tok: ArenaTokenizer, text: string): number[] {
  let m = literalCache.get(tok);
  if (!m) literalCache.set(tok, (m = new Map()));
  let ids = m.get(text);
  if (!ids) m.set(text, (ids = tok.encode(text)));
  return ids;
}

function dropTurns(c: Conversation, k: number): Conversation {
  return k === 0 ? c : { prompt: c.prompt.slice(k), responseA: c.responseA.slice(k), responseB: c.responseB.slice(k) };
}

/**
 * encodeRow plus whether the row was truncated. When the template text (markers, instruction) of a
 * long multi-turn row would take more than half of maxTokens, its OLDEST turns are dropped (whole
 * turns: the final exchange matters most) until it takes at most half, so the texts keep at least
 * half the budget; only a row whose last turn's template text alone exceeds maxTokens is an error.
 */
export function encodeRowInfo(tok: ArenaTokenizer, row: ArenaRow, opts: EncodeOptions): EncodedRow {
  const template = getTemplate(opts.template);
  if (!Number.isInteger(opts.maxTokens) || opts.maxTokens <= 0) {
    throw new EncodeError(`maxTokens must be a positive integer, got ${opts.maxTokens}`);
  }
  const full: Conversation = opts.swap
    ? { prompt: row.prompt, responseA: row.responseB, responseB: row.responseA }
    : { prompt: row.prompt, responseA: row.responseA, responseB: row.responseB };
  const n = turnCount(full);
  let conv = full;
  let segs: Segment[] = [];
  let budget = -1;
  let overhead = 0;
  let dropped = 0;
  for (; dropped < n; dropped++) {
    conv = dropTurns(full, dropped);
    segs = template.render(conv);
    overhead = tok.prefixIds.length + tok.suffixIds.length;
    for (const s of segs) if (s.kind === 'text') overhead += encodeLiteral(tok, s.text).length;
    budget = opts.maxTokens - overhead;
    if (2 * overhead <= opts.maxTokens || (dropped === n - 1 && budget >= 0)) break;
  }
  if (budget < 0) {
    throw new EncodeError(
      `row ${row.id} (line ${row.line}): maxTokens ${opts.maxTokens} is below the ${overhead} tokens of template ` +
        `${template.name} for even the last turn alone; raise maxTokens`,
    );
  }
  const parts: Parts<number> = { prompt: [], responseA: [], responseB: [] };
  for (const s of segs) {
    if (s.kind !== 'slot') continue;
    parts[s.part][s.turn] = encodeCapped(tok, (s.lead ?? '') + turnText(conv, s.part, s.turn), budget);
  }
  const cut = truncateParts(parts, budget, { headFraction: opts.headFraction });
  const out: number[] = [...tok.prefixIds];
  for (const s of segs) {
    if (s.kind === 'text') out.push(...encodeLiteral(tok, s.text));
    else for (const id of cut.parts[s.part][s.turn]) out.push(id);
  }
  out.push(...tok.suffixIds);
  return { ids: Int32Array.from(out), truncated: cut.truncated || dropped > 0, droppedTurns: dropped };
}

/** Final input ids for one row (tokenizer prefix/suffix included, never longer than maxTokens). */
export function encodeRow(tok: ArenaTokenizer, row: ArenaRow, opts: EncodeOptions): Int32Array {
  return encodeRowInfo(tok, row, opts).ids;
}

export interface EncodeStats {
  rows: number;
  /** Rows where some text was cut. */
  truncated: number;
  /** Total ids over all rows. */
  tokens: number;
  maxLength: number;
}

/** encodeRow over many rows, with counts for logs. */
export function encodeRows(
  tok: ArenaTokenizer,
  rows: readonly ArenaRow[],
  opts: EncodeOptions,
): { ids: Int32Array[]; stats: EncodeStats } {
  const ids: Int32Array[] = [];
  const stats: EncodeStats = { rows: rows.length, truncated: 0, tokens: 0, maxLength: 0 };
  for (const row of rows) {
    const r = encodeRowInfo(tok, row, opts);
    ids.push(r.ids);
    if (r.truncated) stats.truncated++;
    stats.tokens += r.ids.length;
    if (r.ids.length > stats.maxLength) stats.maxLength = r.ids.length;
  }
  return { ids, stats };
}
