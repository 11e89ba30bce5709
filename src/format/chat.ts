// Chat markers by model family: how each family marks turns (the special tokens written inline by content),
// what precedes the text, and no markers at all (NONE). src/format/templates.ts pairs them with layouts.

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

const GEMMA: ChatFamily = {
  begin: ['<bos>'],
  userOpen: '<start_of_turn>user\n',
  userClose: '<end_of_turn>\n',
  modelOpen: '<start_of_turn>model\n',
  specials: ['<bos>', '<start_of_turn>', '<end_of_turn>'],
};

/** No chat markers: the text as it is, framed the way the tokenizer frames any text. */
export const NONE: ChatFamily = { begin: 'tokenizer', userOpen: '', userClose: '', modelOpen: '', specials: [] };

/** ChatML (Qwen2 / Qwen2.5 / Qwen3). */
const CHATML: ChatFamily = {
  begin: [],
  userOpen: '<|im_start|>user\n',
  userClose: '<|im_end|>\n',
  modelOpen: '<|im_start|>assistant\n',
  specials: ['<|im_start|>', '<|im_end|>'],
};

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
  qwen2: CHATML,
  // Qwen3 keeps Qwen2's ChatML markers (its template's empty <think> block with thinking off is not added).
  qwen3: CHATML,
  // Phi-4: derived from the chat_template text of microsoft/phi-4's tokenizer_config.json (no tokenizer package
  // here to check against): '<|im_start|>' + role + '<|im_sep|>' + content + '<|im_end|>', no newline between
  // turns, generation prompt '<|im_start|>assistant<|im_sep|>', no BOS (add_bos_token false).
  phi3: {
    begin: [],
    userOpen: '<|im_start|>user<|im_sep|>',
    userClose: '<|im_end|>',
    modelOpen: '<|im_start|>assistant<|im_sep|>',
    specials: ['<|im_start|>', '<|im_sep|>', '<|im_end|>'],
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
