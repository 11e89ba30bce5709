// One row -> model input ids under a recipe (src/format/templates.ts: a template + a truncation):
// [begin ids (the family's BOS, or the tokenizer's post-processor prefix)] ids of the rendered text
// [post-processor suffix, for templates framed by the tokenizer]. Whole-string recipes tokenize the
// rendered text in one call and cut by token position (src/format/whole.ts), so untruncated ids equal
// HF `tokenizer(text)`; per-part recipes tokenize each labelled part alone. The runner, `runner.cjs
// tokens` and the trainer all encode through `encodeRowInfo`, so a model sees at inference exactly the
// ids it was trained on. The tokenizer (./tokenizer), template binding (./bind) and the pre-cut of very
// long texts (./precut) are re-exported here.
import type { ArenaRow } from '../types';
import { bindTemplate } from './bind';
import { getRecipe, type Conversation } from './templates';
import { EncodeError, readTokenizer, type ArenaTokenizer } from './tokenizer';
import { encodeParts, encodeWhole, type EncodedRow } from './whole';

export { bindTemplate, judgeAnswerIds, type BoundTemplate } from './bind';
export { encodeCapped, PRECUT_SLACK } from './precut';
export { EncodeError, TOKENIZER_FILES, type ArenaTokenizer } from './tokenizer';
export type { EncodedRow } from './whole';

/**
 * Loads DIR/tokenizer.json + DIR/tokenizer_config.json. With `template`, also binds it (bindTemplate),
 * so a template the tokenizer cannot run fails here, at load, rather than on every row.
 */
export function loadTokenizer(dir: string, template?: string): ArenaTokenizer {
  const tok = readTokenizer(dir);
  if (template !== undefined) bindTemplate(tok, template);
  return tok;
}

export interface EncodeOptions {
  /** Template name (src/format/templates.ts). */
  template: string;
  /** Hard cap on the returned length, BOS/EOS and template text included. */
  maxTokens: number;
  /** Encode (prompt, B, A) instead of (prompt, A, B): the swap pass of test-time augmentation. */
  swap: boolean;
  /** Truncation rule (default: the template's own; see getRecipe). */
  truncation?: string;
  /** Share of a cut turn kept from its head (see truncate.ts). Default 0.5. */
  headFraction?: number;
}

/** encodeRow plus whether the row was truncated (and how many oldest turns a head+tail recipe dropped). */
export function encodeRowInfo(tok: ArenaTokenizer, row: ArenaRow, opts: EncodeOptions): EncodedRow {
  const recipe = getRecipe(opts.template, opts.truncation);
  const bound = bindTemplate(tok, opts.template);
  if (!Number.isInteger(opts.maxTokens) || opts.maxTokens <= 0) {
    throw new EncodeError(`maxTokens must be a positive integer, got ${opts.maxTokens}`);
  }
  const c: Conversation = opts.swap
    ? { prompt: row.prompt, responseA: row.responseB, responseB: row.responseA }
    : { prompt: row.prompt, responseA: row.responseA, responseB: row.responseB };
  const o = {
    maxTokens: opts.maxTokens,
    truncation: recipe.truncation,
    headFraction: opts.headFraction,
    where: `row ${row.id} (line ${row.line})`,
  };
  return recipe.template.tokenize === 'parts' ? encodeParts(tok, bound, c, o) : encodeWhole(tok, bound, c, o);
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
