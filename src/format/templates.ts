// Prompt templates by name. A template turns a conversation into a list of segments: fixed text
// (instructions, markers; reserved from the token budget) and slots (one turn of the prompt or of a
// response; truncated by src/format/truncate.ts). Encoding tokenizes each segment on its own, so
// truncation never has to re-tokenize, and the layout is the same whatever gets cut.
export class TemplateError extends Error {
  override name = 'TemplateError';
}

export type Part = 'prompt' | 'responseA' | 'responseB';
export const PARTS: readonly Part[] = ['prompt', 'responseA', 'responseB'];

export type Segment =
  | { kind: 'text'; text: string }
  /**
   * One turn of one part. `lead` is text glued to the front of the turn before tokenizing (e.g. the
   * space after `<prompt>:`), so the tokens match tokenizing the joined string; it is cut with the turn.
   */
  | { kind: 'slot'; part: Part; turn: number; lead?: string };

export interface Conversation {
  prompt: string[];
  responseA: string[];
  responseB: string[];
}

export interface Template {
  name: string;
  description: string;
  /** The segments for a conversation; every turn of every part appears exactly once as a slot. */
  render(c: Conversation): Segment[];
}

export const DEFAULT_TEMPLATE = 'gemma-chat';

/** Turns per part after padding: all three lists are read up to the longest one; a missing item is ''. */
export function turnCount(c: Conversation): number {
  return Math.max(1, c.prompt.length, c.responseA.length, c.responseB.length);
}

const text = (t: string): Segment => ({ kind: 'text', text: t });
const slot = (part: Part, turn: number, lead?: string): Segment =>
  lead === undefined ? { kind: 'slot', part, turn } : { kind: 'slot', part, turn, lead };

const GEMMA_INSTRUCTION =
  'Two AI assistants, A and B, answered the same user. Read the conversation and both responses, ' +
  'then judge which response a person would prefer: A, B, or a tie.\n';

/** Gemma chat turns; the conversation is interleaved turn by turn (prompt 1, A 1, B 1, prompt 2, ...). */
const gemmaChat: Template = {
  name: 'gemma-chat',
  description: 'Gemma chat turns with a judging instruction; turns interleaved (prompt i, A i, B i)',
  render(c) {
    const n = turnCount(c);
    const segs: Segment[] = [text('<start_of_turn>user\n' + GEMMA_INSTRUCTION)];
    for (let i = 0; i < n; i++) {
      const turn = n > 1 ? ` ${i + 1}` : '';
      segs.push(text(`\n<prompt${turn}>\n`), slot('prompt', i));
      segs.push(text(`\n<response_a${turn}>\n`), slot('responseA', i));
      segs.push(text(`\n<response_b${turn}>\n`), slot('responseB', i));
    }
    segs.push(text('<end_of_turn>\n<start_of_turn>model\n'));
    return segs;
  },
};

/**
 * The public Kaggle notebook's format: `<prompt>: ` + turns joined by ' ', then `\n\n<response_a>: `,
 * `\n\n<response_b>: `, then EOS (the notebook appended eos_token_id). Turns are not interleaved.
 */
const plain: Template = {
  name: 'plain',
  description: 'public-notebook format: <prompt>: ... <response_a>: ... <response_b>: ... <eos>',
  render(c) {
    const n = turnCount(c);
    const segs: Segment[] = [];
    const block = (label: string, part: Part) => {
      segs.push(text(label));
      for (let i = 0; i < n; i++) segs.push(slot(part, i, ' '));
    };
    block('<prompt>:', 'prompt');
    block('\n\n<response_a>:', 'responseA');
    block('\n\n<response_b>:', 'responseB');
    segs.push(text('<eos>'));
    return segs;
  },
};

/** Judge style: an instruction, then per turn `### User` / `### Assistant A` / `### Assistant B` blocks. */
const judge: Template = {
  name: 'judge',
  description: 'judge style: instruction, then per turn ### User / ### Assistant A / ### Assistant B',
  render(c) {
    const n = turnCount(c);
    const segs: Segment[] = [
      text(
        'Please act as an impartial judge and evaluate the responses of two AI assistants to the user ' +
          'below. Do not let the order, the length or the names of the assistants influence you. ' +
          'Answer A, B or tie.\n',
      ),
    ];
    for (let i = 0; i < n; i++) {
      segs.push(text('\n### User\n'), slot('prompt', i));
      segs.push(text('\n\n### Assistant A\n'), slot('responseA', i));
      segs.push(text('\n\n### Assistant B\n'), slot('responseB', i));
      segs.push(text('\n'));
    }
    segs.push(text('\n### Verdict\n'));
    return segs;
  },
};

const TEMPLATES: Record<string, Template> = { [gemmaChat.name]: gemmaChat, [plain.name]: plain, [judge.name]: judge };

export const TEMPLATE_NAMES: readonly string[] = Object.keys(TEMPLATES);

/** The template called `name`; throws TemplateError for any other name. */
export function getTemplate(name: string): Template {
  const t = TEMPLATES[name];
  if (!t) throw new TemplateError(`Unknown template: ${name} (known: ${TEMPLATE_NAMES.join(', ')})`);
  return t;
}

/** The text of one turn: padded turns are ''. */
export function turnText(c: Conversation, part: Part, turn: number): string {
  return c[part][turn] ?? '';
}

/** The whole prompt as one string (no truncation, no BOS): for inspection, logs and tests. */
export function renderText(template: Template, c: Conversation): string {
  return template
    .render(c)
    .map((s) => (s.kind === 'text' ? s.text : (s.lead ?? '') + turnText(c, s.part, s.turn)))
    .join('');
}
