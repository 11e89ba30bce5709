// Whole-string encoding: the rendered text tokenized in ONE tokenizer call (as HF `tokenizer(text)` in
// training), then cut by token position. 'right' / 'left' keep the first / last tokens (HF's
// truncation_side); 'head-tail' cuts each part by the rules of src/format/truncate.ts, the part of a
// token being the slot its first byte lies in (byte offsets from ArenaTokenizer.starts, or, when a
// normalizer makes the spellings disagree with the text, from tokenizing the text up to each slot edge).
// Tokens outside every slot (template text) are never cut. Untruncated, the ids are exactly
// begin + encode(text) + end.
import type { BoundTemplate } from './bind';
import { turnCount, turnText, type Conversation, type Part, type Truncation } from './templates';
import { EncodeError, type ArenaTokenizer } from './tokenizer';
import { truncateParts, type Parts } from './truncate';

export interface EncodedRow {
  ids: Int32Array;
  /** Whether any turn lost tokens or was dropped. */
  truncated: boolean;
  /** Oldest turns dropped because the template text of all turns did not fit. */
  droppedTurns: number;
}

interface Span {
  part: Part;
  turn: number;
  /** UTF-8 byte offsets of the slot (lead included) in the text. */
  start: number;
  end: number;
  /** The same in UTF-16 code units. */
  charStart: number;
  charEnd: number;
}

/** The rendered string and where each slot sits in it. */
export function renderWhole(
  bound: BoundTemplate,
  c: Conversation,
): { text: string; spans: Span[]; pieces: { text: string; slot: boolean }[] } {
  const pieces: { text: string; slot: boolean }[] = [];
  const spans: Span[] = [];
  let bytes = 0;
  let chars = 0;
  for (const s of bound.render(c)) {
    const t = s.kind === 'text' ? s.text : (s.lead ?? '') + turnText(c, s.part, s.turn);
    const b = Buffer.byteLength(t, 'utf8');
    if (s.kind === 'slot')
      spans.push({
        part: s.part,
        turn: s.turn,
        start: bytes,
        end: bytes + b,
        charStart: chars,
        charEnd: chars + t.length,
      });
    pieces.push({ text: t, slot: s.kind === 'slot' });
    bytes += b;
    chars += t.length;
  }
  return { text: pieces.map((p) => p.text).join(''), spans, pieces };
}

/** For each token, the index of the span that owns it (its first byte lies inside), or -1. */
function owners(tok: ArenaTokenizer, text: string, ids: number[], spans: Span[]): Int32Array {
  const own = new Int32Array(ids.length).fill(-1);
  const starts = tok.starts(text, ids);
  if (starts) {
    let s = 0;
    for (let i = 0; i < ids.length; i++) {
      while (s < spans.length && spans[s].end <= starts[i]) s++;
      if (s < spans.length && spans[s].start <= starts[i] && spans[s].end > spans[s].start) own[i] = s;
    }
    return own;
  }
  // Token index of a character position: the tokens both encodings share up to there.
  const at = (pos: number) => {
    const pre = tok.encode(text.slice(0, pos));
    let k = 0;
    while (k < pre.length && k < ids.length && pre[k] === ids[k]) k++;
    return k;
  };
  spans.forEach((sp, k) => {
    if (sp.charEnd === sp.charStart) return;
    const a = at(sp.charStart);
    const b = sp.charEnd === text.length ? ids.length : at(sp.charEnd);
    for (let i = a; i < b; i++) own[i] = k;
  });
  return own;
}

function dropTurns(c: Conversation, k: number): Conversation {
  return k === 0 ? c : { prompt: c.prompt.slice(k), responseA: c.responseA.slice(k), responseB: c.responseB.slice(k) };
}

export interface WholeOptions {
  maxTokens: number;
  truncation: Truncation;
  headFraction?: number;
  /** Names the row in errors. */
  where: string;
}

/**
 * One row's ids under a whole-string recipe. 'head-tail': when the template text (markers,
 * instruction) of a long multi-turn row would take more than half of maxTokens, its OLDEST turns are
 * dropped until it takes at most half; only a row whose last turn's template text alone exceeds
 * maxTokens is an error.
 */
export function encodeWhole(
  tok: ArenaTokenizer,
  bound: BoundTemplate,
  full: Conversation,
  o: WholeOptions,
): EncodedRow {
  const fixed = bound.beginIds.length + bound.endIds.length;
  const wrap = (ids: ArrayLike<number>, truncated: boolean, droppedTurns = 0): EncodedRow => {
    const out = new Int32Array(fixed + ids.length);
    out.set(bound.beginIds, 0);
    out.set(ids, bound.beginIds.length);
    out.set(bound.endIds, bound.beginIds.length + ids.length);
    return { ids: out, truncated, droppedTurns };
  };
  const tooSmall = (overhead: number) =>
    new EncodeError(
      `${o.where}: maxTokens ${o.maxTokens} is below the ${overhead} tokens of template ${bound.template.name} for even the last turn alone; raise maxTokens`,
    );
  if (o.truncation !== 'head-tail') {
    const ids = tok.encode(renderWhole(bound, full).text);
    const room = o.maxTokens - fixed;
    if (room < 0) throw tooSmall(fixed);
    if (ids.length <= room) return wrap(ids, false);
    return wrap(o.truncation === 'left' ? ids.slice(ids.length - room) : ids.slice(0, room), true);
  }
  const n = turnCount(full);
  let overhead = fixed;
  for (let dropped = 0; dropped < n; dropped++) {
    const conv = dropTurns(full, dropped);
    const r = renderWhole(bound, conv);
    const ids = tok.encode(r.text);
    if (fixed + ids.length <= o.maxTokens) return wrap(ids, dropped > 0, dropped);
    const own = owners(tok, r.text, ids, r.spans);
    overhead = fixed;
    for (const k of own) if (k < 0) overhead++;
    const budget = o.maxTokens - overhead;
    if (!(2 * overhead <= o.maxTokens || (dropped === n - 1 && budget >= 0))) continue;
    if (budget < 0) throw tooSmall(overhead);
    // Token positions of every slot, cut by the head+tail rules; template tokens always stay.
    const parts: Parts<number> = { prompt: [], responseA: [], responseB: [] };
    r.spans.forEach((sp) => (parts[sp.part][sp.turn] = []));
    own.forEach((k, i) => {
      if (k >= 0) parts[r.spans[k].part][r.spans[k].turn].push(i);
    });
    const cut = truncateParts(parts, budget, { headFraction: o.headFraction });
    const keep = new Uint8Array(ids.length);
    own.forEach((k, i) => (keep[i] = k < 0 ? 1 : 0));
    for (const p of Object.values(cut.parts)) for (const turn of p) for (const i of turn) keep[i] = 1;
    return wrap(
      ids.filter((_, i) => keep[i]),
      true,
      dropped,
    );
  }
  throw tooSmall(overhead);
}

/**
 * One row's ids under a per-part recipe ('part-budget'): each labelled part (its label and turns) is
 * tokenized on its own and right-truncated, the prompt's part to floor(room / 4) tokens and each
 * response's to floor((room - prompt budget) / 2), room = maxTokens minus the tokenizer's own tokens.
 */
export function encodeParts(tok: ArenaTokenizer, bound: BoundTemplate, c: Conversation, o: WholeOptions): EncodedRow {
  const fixed = bound.beginIds.length + bound.endIds.length;
  const room = o.maxTokens - fixed;
  if (room < 3)
    throw new EncodeError(
      `${o.where}: maxTokens ${o.maxTokens} leaves no tokens for the parts of template ${bound.template.name}; raise maxTokens`,
    );
  const groups: string[] = [];
  for (const p of renderWhole(bound, c).pieces) {
    if (!p.slot || !groups.length) groups.push(p.text);
    else groups[groups.length - 1] += p.text;
  }
  const promptBudget = Math.floor(room / 4);
  const responseBudget = Math.floor((room - promptBudget) / 2);
  let truncated = false;
  const ids: number[] = [...bound.beginIds];
  groups.forEach((g, k) => {
    const budget = k === 0 ? promptBudget : responseBudget;
    const t = tok.encode(g);
    if (t.length > budget) truncated = true;
    for (const id of t.slice(0, budget)) ids.push(id);
  });
  ids.push(...bound.endIds);
  return { ids: Int32Array.from(ids), truncated, droppedTurns: 0 };
}
