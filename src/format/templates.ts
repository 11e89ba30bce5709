// Prompt templates as data. A template is a chat family (the model's own turn markers and the special
// tokens they use) plus a layout (instruction, part labels, turn order, closing question), both plain
// objects below; one interpreter (`render`) turns a conversation into a list of segments: fixed text
// (instructions, markers; reserved from the token budget) and slots (one turn of the prompt or of a
// response; the spans src/format/whole.ts cuts by token position).
//
// A template is also a recipe: how its text becomes ids. 'whole' recipes tokenize the rendered
// string in ONE tokenizer call (as HF `tokenizer(text)` does in training) and truncate by token position:
// right, left, or head+tail per part (src/format/truncate.ts rules, parts found by offsets); 'parts'
// recipes tokenize each labelled part on its own with a fixed token budget per part.
//
// Chat markers are keyed by the MODEL family that owns them (src/model/families.ts names each family's
// default template); adding one is a CHAT entry and its TEMPLATES rows. src/format/bind.ts checks at load
// that the model's tokenizer.json has every special token a template names, so a template never
// silently spells a marker as ordinary text.
export class TemplateError extends Error {
  override name = 'TemplateError';
}

export type Part = 'prompt' | 'responseA' | 'responseB';
export const PARTS: readonly Part[] = ['prompt', 'responseA', 'responseB'];

export type Segment =
  | { kind: 'text'; text: string }
  /**
   * One turn of one part. `lead` is text glued to the front of the turn (e.g. the space after
   * `<prompt>:`); it belongs to the turn's span, so it is cut with the turn.
   */
  | { kind: 'slot'; part: Part; turn: number; lead?: string };

export interface Conversation {
  prompt: string[];
  responseA: string[];
  responseB: string[];
}

/** Special tokens named by what they do; each tokenizer spells them its own way (tokenizer_config.json). */
export type TokenRole = 'bos' | 'eos';

/**
 * How a chat family marks turns. Marker strings hold special tokens inline, written by content (as in
 * the model's Hugging Face chat template); `specials` lists those contents, each of which must be an
 * added token of the model's tokenizer.json.
 */
export interface ChatFamily {
  /**
   * Ids before everything, outside the rendered text: the listed special tokens (the family's BOS), or
   * 'tokenizer' for whatever the tokenizer's post-processor puts around a text (as HF `tokenizer(text)`).
   */
  begin: readonly string[] | 'tokenizer';
  /** Opens the user turn. */
  userOpen: string;
  /** Closes the user turn. */
  userClose: string;
  /** Opens the model's turn; the prompt ends here, so a judge's answer is the next token. */
  modelOpen: string;
  /** Special-token contents used by `begin` and the markers. */
  specials: readonly string[];
  /** Text before a judge's answer word (Mistral answers ' A' after [/INST]); default ''. */
  answerLead?: string;
}

/** What the user turn says: instruction, how the three parts are labelled and ordered, the closing. */
export interface Layout {
  /** Text right after the user-turn opener. */
  instruction: string;
  /**
   * 'interleaved': per turn i, prompt i, A i, B i (labels before every turn, `{n}` = ` i` when there
   * are several turns, '' otherwise); 'blocks': all prompt turns, then all of A, then all of B (labels
   * once per part).
   */
  order: 'interleaved' | 'blocks';
  labels: Readonly<Record<Part, string>>;
  /** Glued to the front of every turn (a slot `lead`). */
  lead?: string;
  /** After each interleaved turn (after B i). */
  turnEnd?: string;
  /** After the conversation, inside the user turn (a judge's question). */
  closing: string;
  /** Role tokens after the closing, part of the rendered text (the public notebook's appended EOS). */
  end?: readonly TokenRole[];
  /** A judge layout's answer words in label order: the model's next token is one of them. */
  answers?: readonly string[];
  /**
   * 'blocks' only: the turns of a part are joined by this separator with no padding (the notebook's
   * `' '.join(turns)`); padded turns stay as empty slots so every turn index still has one slot.
   */
  joinTurns?: string;
}

/** How the ids of a rendered text are cut to the token budget (see the header). */
export type Truncation = 'head-tail' | 'right' | 'left' | 'part-budget';
/** Truncations a whole-string recipe may use; 'part-budget' belongs to the per-part recipes. */
export const WHOLE_TRUNCATIONS: readonly Truncation[] = ['head-tail', 'right', 'left'];

export interface Template {
  name: string;
  description: string;
  /** Chat-marker family: a model family key of src/model/families.ts, or 'none'. */
  family: string;
  layout: string;
  /** 'whole': one tokenizer call on the rendered text; 'parts': each labelled part tokenized alone. */
  tokenize: 'whole' | 'parts';
  /** The truncation used unless the manifest says otherwise. */
  truncation: Truncation;
  /** Ids before the rendered text; see ChatFamily.begin. */
  begin: readonly string[] | 'tokenizer';
  /** Special-token contents the template needs (family markers). */
  specials: readonly string[];
  /** Role tokens the template needs (resolved through the tokenizer's config). */
  roles: readonly TokenRole[];
  /**
   * A causal-LM judge's answers in label order (A, B, tie), spelt as the text the model writes next
   * (family answerLead included): each must be one token, whose lm_head row scores that label.
   */
  answers?: readonly string[];
  /**
   * The segments for a conversation; every turn of every part appears exactly once as a slot. `role`
   * spells a role token (default: `<bos>` / `<eos>` until a tokenizer is chosen).
   */
  render(c: Conversation, role?: (r: TokenRole) => string): Segment[];
}

const GEMMA: ChatFamily = {
  begin: ['<bos>'],
  userOpen: '<start_of_turn>user\n',
  userClose: '<end_of_turn>\n',
  modelOpen: '<start_of_turn>model\n',
  specials: ['<bos>', '<start_of_turn>', '<end_of_turn>'],
};

/** No chat markers: the text as it is, framed the way the tokenizer frames any text. */
const NONE: ChatFamily = { begin: 'tokenizer', userOpen: '', userClose: '', modelOpen: '', specials: [] };

/** Chat markers by model family (src/model/families.ts keys; Gemma and Gemma-2 share one format). */
export const CHAT: Readonly<Record<string, ChatFamily>> = {
  gemma: GEMMA,
  gemma2: GEMMA,
  // Llama-3.x header turns.
  llama: {
    begin: ['<|begin_of_text|>'],
    userOpen: '<|start_header_id|>user<|end_header_id|>\n\n',
    userClose: '<|eot_id|>',
    modelOpen: '<|start_header_id|>assistant<|end_header_id|>\n\n',
    specials: ['<|begin_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'],
  },
  // Qwen2/2.5: no BOS (its tokenizer_config has bos_token null and add_bos_token false).
  qwen2: {
    begin: [],
    userOpen: '<|im_start|>user\n',
    userClose: '<|im_end|>\n',
    modelOpen: '<|im_start|>assistant\n',
    specials: ['<|im_start|>', '<|im_end|>'],
  },
  // [INST] / [/INST] are plain text in the v0.1/v0.2 tokenizers (control tokens only from v0.3, where the
  // tokenizer maps the same text to them), so only <s> is required.
  mistral: {
    begin: ['<s>'],
    userOpen: '[INST] ',
    userClose: ' [/INST]',
    modelOpen: '',
    specials: ['<s>'],
    answerLead: ' ',
  },
};

const CHAT_INSTRUCTION =
  'Two AI assistants, A and B, answered the same user. Read the conversation and both responses, ' +
  'then judge which response a person would prefer: A, B, or a tie.\n';

const JUDGE_INSTRUCTION =
  'Please act as an impartial judge and evaluate the responses of two AI assistants to the user ' +
  'below. Do not let the order, the length or the names of the assistants influence you. ' +
  'Answer A, B or tie.\n';

const JUDGE_LABELS = { prompt: '\n### User\n', responseA: '\n\n### Assistant A\n', responseB: '\n\n### Assistant B\n' };

const LAYOUTS: Readonly<Record<string, Layout>> = {
  /** A classifier reads the conversation; turns interleaved so each exchange stays together. */
  chat: {
    instruction: CHAT_INSTRUCTION,
    order: 'interleaved',
    labels: { prompt: '\n<prompt{n}>\n', responseA: '\n<response_a{n}>\n', responseB: '\n<response_b{n}>\n' },
    closing: '',
  },
  /**
   * The public Kaggle notebook's format: `<prompt>: ` + turns joined by ' ', then `\n\n<response_a>: `,
   * `\n\n<response_b>: `, then EOS (the notebook appended eos_token_id). Turns are not interleaved.
   */
  plain: {
    instruction: '',
    order: 'blocks',
    labels: { prompt: '<prompt>:', responseA: '\n\n<response_a>:', responseB: '\n\n<response_b>:' },
    lead: ' ',
    closing: '',
    end: ['eos'],
  },
  /**
   * The public Gemma-2 notebooks' text (training and inference): each part's turns joined by one space,
   * `<prompt>: ` + prompt + `\n\n<response_a>: ` + A + `\n\n<response_b>: ` + B; no EOS.
   */
  notebook: {
    instruction: '',
    order: 'blocks',
    labels: { prompt: '<prompt>: ', responseA: '\n\n<response_a>: ', responseB: '\n\n<response_b>: ' },
    joinTurns: ' ',
    closing: '',
  },
  /** Judge text without chat markers: ends at a `### Verdict` heading. */
  verdict: {
    instruction: JUDGE_INSTRUCTION,
    order: 'interleaved',
    labels: JUDGE_LABELS,
    turnEnd: '\n',
    closing: '\n### Verdict\n',
  },
  /** A causal-LM judge: the question closes the user turn, and the model's first token is the answer. */
  judge: {
    instruction: JUDGE_INSTRUCTION,
    order: 'interleaved',
    labels: JUDGE_LABELS,
    turnEnd: '\n',
    closing: '\nWhich response is better? Answer with one word: A, B or tie.',
    answers: ['A', 'B', 'tie'],
  },
};

type Entry = {
  name: string;
  family: string;
  layout: string;
  tokenize?: 'whole' | 'parts';
  truncation?: Truncation;
  description: string;
};

/** The registry: every template is one chat family and one layout (+ how it tokenizes and truncates). */
const TEMPLATES: readonly Entry[] = [
  {
    name: 'gemma-chat',
    family: 'gemma',
    layout: 'chat',
    description: 'Gemma chat turns with a judging instruction; turns interleaved (prompt i, A i, B i)',
  },
  {
    name: 'plain',
    family: 'none',
    layout: 'plain',
    description: "public-notebook format: <prompt>: ... <response_a>: ... <response_b>: ... then the tokenizer's EOS",
  },
  {
    name: 'judge',
    family: 'none',
    layout: 'verdict',
    description: 'judge style: instruction, then per turn ### User / ### Assistant A / ### Assistant B',
  },
  {
    name: 'llama3-chat',
    family: 'llama',
    layout: 'chat',
    description: 'Llama-3 header turns, the gemma-chat text inside',
  },
  {
    name: 'chatml-chat',
    family: 'qwen2',
    layout: 'chat',
    description: 'ChatML (Qwen2/2.5) turns, the gemma-chat text inside',
  },
  {
    name: 'mistral-chat',
    family: 'mistral',
    layout: 'chat',
    description: 'Mistral [INST] ... [/INST], the gemma-chat text inside',
  },
  {
    name: 'gemma-judge',
    family: 'gemma',
    layout: 'judge',
    description: 'Gemma causal-LM judge: the model turn opens, the next token is A, B or tie',
  },
  {
    name: 'llama3-judge',
    family: 'llama',
    layout: 'judge',
    description: 'Llama-3 causal-LM judge: the assistant header ends the prompt, next token A, B or tie',
  },
  {
    name: 'chatml-judge',
    family: 'qwen2',
    layout: 'judge',
    description: 'ChatML (Qwen) causal-LM judge: <|im_start|>assistant ends the prompt, next token A, B or tie',
  },
  {
    name: 'mistral-judge',
    family: 'mistral',
    layout: 'judge',
    description: "Mistral causal-LM judge: [/INST] ends the prompt, next token ' A', ' B' or ' tie'",
  },
  {
    name: 'notebook',
    family: 'none',
    layout: 'notebook',
    truncation: 'right',
    description:
      'the public Gemma-2 notebooks: "<prompt>: " + prompt + "\\n\\n<response_a>: " + a + "\\n\\n<response_b>: " + b, one tokenizer call, right truncation',
  },
  {
    name: 'notebook-parts',
    family: 'none',
    layout: 'notebook',
    tokenize: 'parts',
    truncation: 'part-budget',
    description:
      "the notebook text, each labelled part tokenized alone: the prompt's part gets N/4 tokens, each response half of the rest",
  },
];

export const TEMPLATE_NAMES: readonly string[] = TEMPLATES.map((t) => t.name);

/** Turns per part after padding: all three lists are read up to the longest one; a missing item is ''. */
export function turnCount(c: Conversation): number {
  return Math.max(1, c.prompt.length, c.responseA.length, c.responseB.length);
}

/** The text of one turn: padded turns are ''. */
export function turnText(c: Conversation, part: Part, turn: number): string {
  return c[part][turn] ?? '';
}

/** How a role token reads before a tokenizer is chosen (Gemma spells them this way too). */
const GENERIC_ROLE = (r: TokenRole) => `<${r}>`;

/** The one interpreter of family + layout data. */
function render(f: ChatFamily, l: Layout, c: Conversation, role: (r: TokenRole) => string): Segment[] {
  const n = turnCount(c);
  const segs: Segment[] = [];
  // Each piece of text is its own segment (tokenized on its own); gemma-chat's ids depend on this split.
  const text = (t: string) => {
    if (t) segs.push({ kind: 'text', text: t });
  };
  const slot = (part: Part, turn: number) =>
    segs.push(l.lead === undefined ? { kind: 'slot', part, turn } : { kind: 'slot', part, turn, lead: l.lead });
  const label = (part: Part, turn: number | null) =>
    text(l.labels[part].replace('{n}', turn !== null && n > 1 ? ` ${turn + 1}` : ''));
  text(f.userOpen + l.instruction);
  if (l.order === 'interleaved') {
    for (let i = 0; i < n; i++) {
      for (const p of PARTS) {
        label(p, i);
        slot(p, i);
      }
      text(l.turnEnd ?? '');
    }
  } else {
    for (const p of PARTS) {
      label(p, null);
      for (let i = 0; i < n; i++) {
        // joinTurns: the separator only between turns the list has (padded turns add nothing).
        if (l.joinTurns !== undefined)
          segs.push(
            i > 0 && i < c[p].length
              ? { kind: 'slot', part: p, turn: i, lead: l.joinTurns }
              : { kind: 'slot', part: p, turn: i },
          );
        else slot(p, i);
      }
    }
  }
  text(l.closing + f.userClose + f.modelOpen);
  text((l.end ?? []).map(role).join(''));
  return segs;
}

function build(entry: Entry): Template {
  const f = entry.family === 'none' ? NONE : CHAT[entry.family];
  const l = LAYOUTS[entry.layout];
  return {
    ...entry,
    tokenize: entry.tokenize ?? 'whole',
    truncation: entry.truncation ?? 'head-tail',
    begin: f.begin,
    specials: f.specials,
    roles: l.end ?? [],
    ...(l.answers ? { answers: l.answers.map((a) => (f.answerLead ?? '') + a) } : {}),
    render: (c, role = GENERIC_ROLE) => render(f, l, c, role),
  };
}

const BY_NAME = new Map(TEMPLATES.map((t) => [t.name, build(t)]));

/** The template called `name`; throws TemplateError for any other name. */
export function getTemplate(name: string): Template {
  const t = BY_NAME.get(name);
  if (!t) throw new TemplateError(`Unknown template: ${name} (known: ${TEMPLATE_NAMES.join(', ')})`);
  return t;
}

/** The whole prompt as one string (no truncation, no `begin` tokens): for inspection, logs and tests. */
export function renderText(template: Template, c: Conversation, role?: (r: TokenRole) => string): string {
  return template
    .render(c, role)
    .map((s) => (s.kind === 'text' ? s.text : (s.lead ?? '') + turnText(c, s.part, s.turn)))
    .join('');
}

/** The truncation rules `template` can use: its own default first. */
export function truncationsOf(t: Template): readonly Truncation[] {
  return t.tokenize === 'parts'
    ? ['part-budget']
    : [t.truncation, ...WHOLE_TRUNCATIONS.filter((x) => x !== t.truncation)];
}

/**
 * The recipe `template` + `truncation` (default: the template's own), checked: an unknown template or a
 * truncation the template cannot use throws TemplateError listing the valid names.
 */
export function getRecipe(template: string, truncation?: string): { template: Template; truncation: Truncation } {
  const t = getTemplate(template);
  if (truncation === undefined) return { template: t, truncation: t.truncation };
  const ok = truncationsOf(t);
  if (!(ok as readonly string[]).includes(truncation))
    throw new TemplateError(`Unknown truncation for template ${template}: ${truncation} (valid: ${ok.join(', ')})`);
  return { template: t, truncation: truncation as Truncation };
}
