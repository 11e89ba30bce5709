// Tokenize + truncate one row into model input ids. Owns loading the tokenizer from a weights
// directory, binding a template to it (every special token the template names must be an added token
// of tokenizer.json, found by content) and the exact layout: [begin ids (the family's BOS, or the
// tokenizer's post-processor prefix)] template segments [post-processor suffix, for templates framed
// by the tokenizer], each template segment tokenized on its own, slots cut by src/format/truncate.ts.
// Because segments are tokenized separately, ids can differ from tokenizing the rendered string at
// segment edges only (e.g. a text ending in '\n' before the template's '\n' gives 108,108 where the
// joined string gives 109); decoding always gives back the rendered text. Our trainer uses this same
// function. Tokenizers that mark the start of a text (SentencePiece's prepended '▁': Llama-2, Mistral)
// tokenize only the first segment as a start and every later one as a continuation (`encodeAfter`);
// otherwise each segment would gain a '▁' the joined string does not have.
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
import { getTemplate, TEMPLATE_NAMES, TemplateError, turnCount, turnText, type Conversation, type Segment, type Template, type TokenRole } from './templates';
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
  /** tokenizer.json `added_tokens`: content -> id (where templates find their special tokens). */
  readonly addedTokens: ReadonlyMap<string, number>;
  /** Contents of the role tokens set in tokenizer_config.json (e.g. eos: '<|eot_id|>'). */
  readonly roleTokens: Readonly<Partial<Record<TokenRole, string>>>;
  /** Plain text -> ids, no special tokens added (special-token strings in the text still map to their ids). */
  encode(text: string): number[];
  /**
   * The same for a text that continues other text: no start-of-text marker (SentencePiece's '▁') is
   * prepended. The same function as `encode` for tokenizers that prepend nothing (Gemma, Llama-3, Qwen).
   */
  encodeAfter(text: string): number[];
  /** Ids -> the exact text they encode ('' for none): no clean-up of spaces before punctuation, whatever tokenizer_config says. */
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

/** The content of a tokenizer_config.json token entry (a string or an AddedToken object). */
function configToken(config: Record<string, unknown>, key: string): string | undefined {
  const v = config[key] as string | { content?: string } | null | undefined;
  return (typeof v === 'string' ? v : v?.content) || undefined;
}

function specialId(tok: Tokenizer, config: Record<string, unknown>, key: string): number | null {
  const s = configToken(config, key);
  return s ? (tok.token_to_id(s) ?? null) : null;
}

/**
 * tokenizer.json with the start-of-text marker switched off (Prepend normalizer dropped, Metaspace
 * prepend_scheme 'never', ByteLevel add_prefix_space false), or null when it has none to switch off.
 */
function continuationJson(json: Record<string, unknown>): Record<string, unknown> | null {
  let changed = false;
  type Node = Record<string, unknown> | null;
  const norm = (n: Node): Node => {
    if (!n) return n;
    if (n.type === 'Prepend') {
      changed = true;
      return null;
    }
    if (n.type === 'Sequence') return { ...n, normalizers: (n.normalizers as Node[]).map(norm).filter(Boolean) };
    return n;
  };
  const pre = (n: Node): Node => {
    if (!n) return n;
    if (n.type === 'Metaspace' && (n.prepend_scheme ?? (n.add_prefix_space === false ? 'never' : 'always')) !== 'never') {
      changed = true;
      return { ...n, prepend_scheme: 'never', add_prefix_space: false };
    }
    if (n.type === 'ByteLevel' && n.add_prefix_space) {
      changed = true;
      return { ...n, add_prefix_space: false };
    }
    if (n.type === 'Sequence') return { ...n, pretokenizers: (n.pretokenizers as Node[]).map(pre) };
    return n;
  };
  const out = { ...json, normalizer: norm(json.normalizer as Node), pre_tokenizer: pre(json.pre_tokenizer as Node) };
  return changed ? out : null;
}

function addedTokens(json: object): Map<string, number> {
  const list = (json as { added_tokens?: { id: number; content: string }[] }).added_tokens ?? [];
  return new Map(list.map((t) => [t.content, t.id]));
}

/**
 * Loads DIR/tokenizer.json + DIR/tokenizer_config.json with @huggingface/tokenizers. With `template`,
 * also binds it (bindTemplate), so a template the tokenizer cannot run fails here, at load, rather than
 * on every row.
 */
export function loadTokenizer(dir: string, template?: string): ArenaTokenizer {
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
  const contJson = continuationJson(json as Record<string, unknown>);
  const cont = contJson ? new Tokenizer(contJson, config) : null;
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
  const arena: ArenaTokenizer = {
    dir,
    prefixIds: full.slice(0, at),
    suffixIds: full.slice(at + bare.length),
    bosId: specialId(tok, config, 'bos_token'),
    eosId: specialId(tok, config, 'eos_token'),
    padId: specialId(tok, config, 'pad_token'),
    hardBoundaries: exact,
    addedTokens: addedTokens(json),
    roleTokens: Object.fromEntries(
      (['bos', 'eos'] as const).flatMap((r) => {
        const s = configToken(config, `${r}_token`);
        return s ? [[r, s]] : [];
      }),
    ),
    encode: exact ? chunkedEncode : plainEncode,
    encodeAfter: cont ? (text) => cont.encode(text, { add_special_tokens: false }).ids : exact ? chunkedEncode : plainEncode,
    decode: (ids) => (ids.length ? tok.decode(Array.from(ids), { clean_up_tokenization_spaces: false }) : ''),
  };
  if (template !== undefined) bindTemplate(arena, template);
  return arena;
}

/** Chunk cache size bound (entries); cleared when full. Words repeat, so a few 100k entries cover a test set. */
const CHUNK_CACHE_MAX = 500_000;

// 'end.\nNext' catches byte-level vocabularies (Llama-3, Qwen: '.\n' is one token), whose 'Ġ'/'Ċ'
// spelling the vocabulary scan below cannot see.
const HARD_BOUNDARY_PROBES = ['Hello world', 'a  b\n\nc \n d', ' x\ty  \n\n\nz.', '<start_of_turn>user\nHi there <eos> ok', 'end.\nNext'];

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

/** A template checked against one tokenizer: its special tokens resolved to that tokenizer's ids. */
export interface BoundTemplate {
  template: Template;
  /** Ids before the rendered text (the family's BOS, or the tokenizer's post-processor prefix). */
  beginIds: readonly number[];
  /** Ids after it (the post-processor suffix for templates framed by the tokenizer; else none). */
  endIds: readonly number[];
  /** Every special token the template uses (markers and roles), content -> id. */
  specialIds: ReadonlyMap<string, number>;
  /** The template's segments with role tokens spelled as this tokenizer spells them. */
  render(c: Conversation): Segment[];
}

const boundCache = new WeakMap<ArenaTokenizer, Map<string, BoundTemplate>>();

/** Names of the templates `tok` can run (for error messages). */
function usableTemplates(tok: ArenaTokenizer): string[] {
  return TEMPLATE_NAMES.filter((n) => {
    const t = getTemplate(n);
    return t.specials.every((s) => tok.addedTokens.has(s)) && t.roles.every((r) => tok.roleTokens[r] !== undefined);
  });
}

/**
 * `name` bound to `tok`. Throws TemplateError for an unknown name (listing the known ones) and for a
 * special token the tokenizer lacks (naming the token, the template and the templates that would fit),
 * so a Llama-3 marker is never spelt out as ordinary text for a Gemma tokenizer. Cached per tokenizer.
 */
export function bindTemplate(tok: ArenaTokenizer, name: string): BoundTemplate {
  let m = boundCache.get(tok);
  if (!m) boundCache.set(tok, (m = new Map()));
  const hit = m.get(name);
  if (hit) return hit;
  const template = getTemplate(name);
  const where = `${tok.dir}/tokenizer.json`;
  const fits = () => `templates this tokenizer has the special tokens for: ${usableTemplates(tok).join(', ') || 'none'}`;
  const specialIds = new Map<string, number>();
  const need = (content: string, what: string) => {
    const id = tok.addedTokens.get(content);
    if (id === undefined)
      throw new TemplateError(`template ${name} needs the special token ${content}${what}, which ${where} does not have among its added_tokens; ${fits()}`);
    // An added token marked `normalized` or `single_word` may not be split out of a text as one id.
    const ids = tok.encode(content);
    if (ids.length !== 1 || ids[0] !== id)
      throw new TemplateError(`template ${name}: ${where} encodes the special token ${content} as [${ids}], not as its added-token id ${id}`);
    specialIds.set(content, id);
  };
  for (const s of template.specials) need(s, '');
  for (const r of template.roles) {
    const content = tok.roleTokens[r];
    if (content === undefined)
      throw new TemplateError(`template ${name} needs the tokenizer's ${r}_token, which ${tok.dir}/tokenizer_config.json does not set; ${fits()}`);
    need(content, ` (its ${r}_token)`);
  }
  const bound: BoundTemplate = {
    template,
    beginIds: template.begin === 'tokenizer' ? tok.prefixIds : template.begin.map((s) => specialIds.get(s)!),
    endIds: template.begin === 'tokenizer' ? tok.suffixIds : [],
    specialIds,
    render: (c) => template.render(c, (r) => tok.roleTokens[r]!),
  };
  m.set(name, bound);
  return bound;
}

/**
 * The token ids of a judge template's answers (A, B, tie) for `tok`, in label order: the lm_head rows
 * a causal-LM judge's head reads when no label tokens are given. Throws TemplateError for a template
 * without answers or an answer that is not exactly one token.
 */
export function judgeAnswerIds(tok: ArenaTokenizer, name: string): number[] {
  const t = bindTemplate(tok, name).template;
  if (!t.answers) throw new TemplateError(`template ${name} is not a causal-LM judge (those are: ${TEMPLATE_NAMES.filter((n) => getTemplate(n).answers).join(', ')})`);
  return t.answers.map((a) => {
    // The answer continues the prompt, so it is tokenized as a continuation.
    const ids = tok.encodeAfter(a);
    if (ids.length !== 1)
      throw new TemplateError(`template ${name}: the answer ${JSON.stringify(a)} is ${ids.length} tokens [${ids}] for ${tok.dir}/tokenizer.json, not one; give the label tokens explicitly`);
    return ids[0];
  });
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

export interface EncodedRow {
  ids: Int32Array;
  /** Whether any turn lost tokens or was dropped. */
  truncated: boolean;
  /** Oldest turns dropped because the template text of all turns did not fit. */
  droppedTurns: number;
}

const literalCache = new WeakMap<ArenaTokenizer, Map<string, number[]>>();

function encodeLiteral(tok: ArenaTokenizer, text: string, first: boolean): number[] {
  let m = literalCache.get(tok);
  if (!m) literalCache.set(tok, (m = new Map()));
  const key = (first ? '1' : '0') + text;
  let ids = m.get(key);
  if (!ids) m.set(key, (ids = first ? tok.encode(text) : tok.encodeAfter(text)));
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
  const bound = bindTemplate(tok, opts.template);
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
    segs = bound.render(conv);
    overhead = bound.beginIds.length + bound.endIds.length;
    segs.forEach((s, k) => {
      if (s.kind === 'text') overhead += encodeLiteral(tok, s.text, k === 0).length;
    });
    budget = opts.maxTokens - overhead;
    if (2 * overhead <= opts.maxTokens || (dropped === n - 1 && budget >= 0)) break;
  }
  if (budget < 0) {
    throw new EncodeError(
      `row ${row.id} (line ${row.line}): maxTokens ${opts.maxTokens} is below the ${overhead} tokens of template ` +
        `${opts.template} for even the last turn alone; raise maxTokens`,
    );
  }
  const parts: Parts<number> = { prompt: [], responseA: [], responseB: [] };
  segs.forEach((s, k) => {
    if (s.kind === 'slot') parts[s.part][s.turn] = encodeCapped(tok, (s.lead ?? '') + turnText(conv, s.part, s.turn), budget, k === 0);
  });
  const cut = truncateParts(parts, budget, { headFraction: opts.headFraction });
  const out: number[] = [...bound.beginIds];
  segs.forEach((s, k) => {
    if (s.kind === 'text') out.push(...encodeLiteral(tok, s.text, k === 0));
    else for (const id of cut.parts[s.part][s.turn]) out.push(id);
  });
  out.push(...bound.endIds);
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
