// A template bound to one tokenizer: every special token the template names must be an added token of
// tokenizer.json (found by content) that encodes as that one id, and every role token it uses must be
// set in tokenizer_config.json; so a Llama-3 marker is never spelt out as ordinary text for a Gemma
// tokenizer. Also the causal-LM judges' answer ids.
import {
  getTemplate,
  TEMPLATE_NAMES,
  TemplateError,
  type Conversation,
  type Segment,
  type Template,
} from './templates';
import type { ArenaTokenizer } from './tokenizer';

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
  const fits = () =>
    `templates this tokenizer has the special tokens for: ${usableTemplates(tok).join(', ') || 'none'}`;
  const specialIds = new Map<string, number>();
  const need = (content: string, what: string) => {
    const id = tok.addedTokens.get(content);
    if (id === undefined)
      throw new TemplateError(
        `template ${name} needs the special token ${content}${what}, which ${where} does not have among its added_tokens; ${fits()}`,
      );
    // An added token marked `normalized` or `single_word` may not be split out of a text as one id.
    const ids = tok.encode(content);
    if (ids.length !== 1 || ids[0] !== id)
      throw new TemplateError(
        `template ${name}: ${where} encodes the special token ${content} as [${ids}], not as its added-token id ${id}`,
      );
    specialIds.set(content, id);
  };
  for (const s of template.specials) need(s, '');
  for (const r of template.roles) {
    const content = tok.roleTokens[r];
    if (content === undefined)
      throw new TemplateError(
        `template ${name} needs the tokenizer's ${r}_token, which ${tok.dir}/tokenizer_config.json does not set; ${fits()}`,
      );
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
  if (!t.answers)
    throw new TemplateError(
      `template ${name} is not a causal-LM judge (those are: ${TEMPLATE_NAMES.filter((n) => getTemplate(n).answers).join(', ')})`,
    );
  return t.answers.map((a) => {
    // The answer continues the prompt, so it is tokenized as a continuation.
    const ids = tok.encodeAfter(a);
    if (ids.length !== 1)
      throw new TemplateError(
        `template ${name}: the answer ${JSON.stringify(a)} is ${ids.length} tokens [${ids}] for ${tok.dir}/tokenizer.json, not one; give the label tokens explicitly`,
      );
    return ids[0];
  });
}
