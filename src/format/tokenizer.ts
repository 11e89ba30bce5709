// The tokenizer of a weights directory: tokenizer.json + tokenizer_config.json loaded with
// @huggingface/tokenizers, the ids its post-processor adds around a text, role and added tokens, and
// where each token of a text starts (`starts`: byte offsets, from the tokens' spellings; what
// truncation by token position needs, since the JS tokenizer returns no offsets).
//
// Tokenizers that mark the start of a text (SentencePiece's prepended '▁': Llama-2, Mistral) also get
// `encodeAfter`, the encoding of a text that continues other text. Vocabularies with HARD boundaries (a
// position j with text[j] === ' ' and text[j-1] !== ' ', or text[j] === '\n' and text[j-1] !== '\n', that
// no token spans: Gemma's) are encoded in cached word chunks, with the same ids as one call.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import type { TokenRole } from './templates';

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
  /**
   * Byte offset (UTF-8) in `text` where each of `ids` (= encode(text)) starts, plus the end as a last
   * entry; null when the tokens' spellings do not add up to the text (a normalizer that changes it).
   */
  starts(text: string, ids: readonly number[]): number[] | null;
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
    throw new EncodeError(
      `${p}: not valid JSON (${(e as Error).message}); re-copy it from the model's Hugging Face repo`,
    );
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
    if (
      n.type === 'Metaspace' &&
      (n.prepend_scheme ?? (n.add_prefix_space === false ? 'never' : 'always')) !== 'never'
    ) {
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
 * Loads DIR/tokenizer.json + DIR/tokenizer_config.json with @huggingface/tokenizers (encode.ts's
 * loadTokenizer also binds a template).
 */
export function readTokenizer(dir: string): ArenaTokenizer {
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
    encodeAfter: cont
      ? (text) => cont.encode(text, { add_special_tokens: false }).ids
      : exact
        ? chunkedEncode
        : plainEncode,
    decode: (ids) => (ids.length ? tok.decode(Array.from(ids), { clean_up_tokenization_spaces: false }) : ''),
    starts: tokenStarts(tok, json as Record<string, unknown>),
  };
  return arena;
}

/** Chunk cache size bound (entries); cleared when full. Words repeat, so a few 100k entries cover a test set. */
const CHUNK_CACHE_MAX = 500_000;

// 'end.\nNext' catches byte-level vocabularies (Llama-3, Qwen: '.\n' is one token), whose 'Ġ'/'Ċ'
// spelling the vocabulary scan below cannot see.
const HARD_BOUNDARY_PROBES = [
  'Hello world',
  'a  b\n\nc \n d',
  ' x\ty  \n\n\nz.',
  '<start_of_turn>user\nHi there <eos> ok',
  'end.\nNext',
];

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

const utf8 = (s: string) => Buffer.byteLength(s, 'utf8');

/**
 * Byte length of every vocabulary id's spelling in the original text: byte-level BPE (Llama-3, Qwen)
 * spells one byte per character (added tokens: their content); SentencePiece-style BPE (Gemma, Llama-2)
 * spells ' ' as '▁' (Gemma's whitespace-run added tokens too) and byte-fallback pieces as <0xNN>.
 * Checked per text by the total.
 */
function tokenStarts(tok: Tokenizer, json: Record<string, unknown>): ArenaTokenizer['starts'] {
  const byteLevel = JSON.stringify([json.pre_tokenizer ?? null, json.decoder ?? null]).includes('"ByteLevel"');
  const added = new Set(((json.added_tokens as { id: number }[] | undefined) ?? []).map((t) => t.id));
  // Built on first use (only truncation by parts needs it; a 256k vocabulary takes a moment).
  let lengths: Map<number, number> | null = null;
  const build = () => {
    const m = new Map<number, number>();
    for (const [t, id] of tok.get_vocab(true)) {
      let n: number;
      if (byteLevel) n = added.has(id) ? utf8(t) : t.length;
      else if (/^<0x[0-9A-Fa-f]{2}>$/.test(t)) n = 1;
      else n = utf8(t.replace(/\u2581/g, ' '));
      m.set(id, n);
    }
    return m;
  };
  return (text, ids) => {
    lengths ??= build();
    const out = new Array<number>(ids.length + 1);
    let at = 0;
    for (let i = 0; i < ids.length; i++) {
      out[i] = at;
      at += lengths.get(ids[i]) ?? NaN;
    }
    out[ids.length] = at;
    const total = utf8(text);
    if (at === total) return out;
    // A start-of-text '▁' (Prepend normalizer) that the text does not have: it belongs to the first token.
    if (
      at === total + 1 &&
      !byteLevel &&
      ids.length &&
      tok.id_to_token(ids[0])?.startsWith('\u2581') &&
      !text.startsWith(' ')
    ) {
      for (let i = 1; i <= ids.length; i++) out[i]--;
      return out;
    }
    return null;
  };
}

export function isHardBoundary(text: string, j: number): boolean {
  const c = text.charCodeAt(j);
  const p = text.charCodeAt(j - 1);
  return (c === 32 && p !== 32) || (c === 10 && p !== 10);
}
