// A tiny Gemma-style Hugging Face tokenizer for the hf-reference fixture models (vocab 512): same
// layout as Gemma's tokenizer.json (Replace ' ' -> '▁' normalizer, BPE with byte_fallback,
// TemplateProcessing that prepends <bos>, <start_of_turn>/<end_of_turn> as special added tokens),
// but every id < 512 so the fixtures' 512-row embedding can run real text. Gemma's own tokenizer
// would emit ids up to 256k. The vocabulary keeps Gemma's hard-boundary property (no token holds '▁'
// after another character, nor '\n' with another character), which src/format/encode.ts relies on.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const BYTE_TOKENIZER_VOCAB = 512;

const SPECIAL = ['<pad>', '<eos>', '<bos>', '<unk>'];
const TURN = ['<start_of_turn>', '<end_of_turn>'];
const BIGRAMS = (
  'th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co me de hi ri ro ic ne ea ra ce ' +
  'li ch ll be ma si om ur ca el ta la ns ge ly ei os no pe do su pa ec ac il ho wh'
).split(' ');

export interface ByteTokenizerFiles {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  /** Highest id in the vocabulary (< BYTE_TOKENIZER_VOCAB). */
  maxId: number;
}

/** The two JSON documents (pure; see writeByteTokenizer for the files). */
export function byteTokenizerFiles(): ByteTokenizerFiles {
  const vocab: Record<string, number> = {};
  const add = (t: string) => {
    if (!(t in vocab)) vocab[t] = Object.keys(vocab).length;
    return vocab[t];
  };
  for (const t of SPECIAL) add(t);
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  for (const t of TURN) add(t);
  add('\u2581');
  add('\n');
  for (let c = 33; c < 127; c++) add(String.fromCharCode(c));
  const merges: [string, string][] = [];
  const merge = (a: string, b: string) => {
    merges.push([a, b]);
    add(a + b);
  };
  merge('\n', '\n');
  merge('\u2581', '\u2581');
  for (const c of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ') merge('\u2581', c);
  for (const bg of BIGRAMS) merge(bg[0], bg[1]);
  for (const w of ['the', 'and', 'ing']) merge(w.slice(0, 2), w.slice(2));
  merge('\u2581t', 'he');
  merge('\u2581a', 'nd');
  const maxId = Object.keys(vocab).length - 1;
  if (maxId >= BYTE_TOKENIZER_VOCAB)
    throw new Error(`byte tokenizer has ${maxId + 1} ids, more than ${BYTE_TOKENIZER_VOCAB}`);

  const added = [...SPECIAL, ...TURN].map((content) => ({
    id: vocab[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' },
    pre_tokenizer: { type: 'Split', pattern: { String: ' ' }, behavior: 'MergedWithPrevious', invert: false },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<bos>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<bos>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<bos>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<bos>': { id: '<bos>', ids: [vocab['<bos>']], tokens: ['<bos>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const tokenizerConfig = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: Object.fromEntries(added.map(({ id, ...rest }) => [String(id), rest])),
    bos_token: '<bos>',
    eos_token: '<eos>',
    pad_token: '<pad>',
    unk_token: '<unk>',
    clean_up_tokenization_spaces: false,
    model_max_length: 8192,
    spaces_between_special_tokens: false,
    tokenizer_class: 'GemmaTokenizer',
  };
  return { tokenizerJson, tokenizerConfig, maxId };
}

/** Writes DIR/tokenizer.json and DIR/tokenizer_config.json; returns the highest id. */
export function writeByteTokenizer(dir: string): number {
  mkdirSync(dir, { recursive: true });
  const f = byteTokenizerFiles();
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(f.tokenizerJson));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(f.tokenizerConfig));
  return f.maxId;
}
