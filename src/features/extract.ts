// Hand-made features per row for the tree baseline: sizes of prompt and both responses, markdown
// structure, refusals, punctuation and overlap statistics, each response feature also as A-B
// difference and log ratio. Order and names are fixed by FEATURE_NAMES (a model stores them and
// refuses a mismatch).
import type { ArenaRow } from '../types';

export const FEATURES_VERSION = 1;

const REFUSALS = [
  "i'm sorry",
  'i am sorry',
  'i apologize',
  'as an ai',
  'as a language model',
  "i can't",
  'i cannot',
  "i'm not able",
  'i am not able',
  'i am unable',
  "i'm unable",
  "i don't have",
  'not appropriate',
  'i must decline',
];

/** Per-response statistics; each one becomes A, B, A-B and log((A+1)/(B+1)). */
const RESPONSE_STATS = [
  'chars',
  'words',
  'newlines',
  'headers',
  'list_items',
  'numbered_items',
  'code_blocks',
  'inline_code',
  'bold',
  'refusal',
  'questions',
  'exclaims',
  'periods',
  'commas',
  'digits',
  'upper_ratio',
  'unique_word_ratio',
  'mean_word_len',
  'prompt_overlap',
  'empty_turns',
  'paragraphs',
  'tables',
] as const;

export const FEATURE_NAMES: string[] = [
  'prompt_chars',
  'prompt_words',
  'prompt_newlines',
  'turns',
  'ab_jaccard',
  'ab_identical',
  ...RESPONSE_STATS.flatMap((s) => [`a_${s}`, `b_${s}`, `diff_${s}`, `logratio_${s}`]),
];

const WORD = /[\p{L}\p{N}_']+/gu;

function words(text: string): string[] {
  return text.toLowerCase().match(WORD) ?? [];
}

function count(text: string, re: RegExp): number {
  return text.match(re)?.length ?? 0;
}

function responseStats(turns: string[], promptWords: Set<string>): number[] {
  const text = turns.join('\n');
  const lower = text.toLowerCase();
  const w = words(text);
  const letters = count(text, /\p{L}/gu);
  const uniq = new Set(w);
  let overlap = 0;
  for (const pw of promptWords) if (uniq.has(pw)) overlap++;
  const fences = count(text, /^\s*```/gm);
  return [
    text.length,
    w.length,
    count(text, /\n/g),
    count(text, /^\s{0,3}#{1,6}\s/gm),
    count(text, /^\s*[-*+]\s+\S/gm),
    count(text, /^\s*\d+[.)]\s+\S/gm),
    Math.floor(fences / 2),
    count(text.replace(/```[\s\S]*?```/g, ''), /`[^`\n]+`/g),
    count(text, /\*\*[^*\n]+\*\*|__[^_\n]+__/g),
    REFUSALS.some((r) => lower.includes(r)) ? 1 : 0,
    count(text, /\?/g),
    count(text, /!/g),
    count(text, /\./g),
    count(text, /,/g),
    count(text, /\d/g),
    letters ? count(text, /\p{Lu}/gu) / letters : 0,
    w.length ? uniq.size / w.length : 0,
    w.length ? w.reduce((s, x) => s + x.length, 0) / w.length : 0,
    promptWords.size ? overlap / promptWords.size : 0,
    turns.filter((t) => t.trim() === '').length,
    count(text, /\n\s*\n/g) + (text.trim() ? 1 : 0),
    count(text, /^\s*\|.*\|\s*$/gm),
  ];
}

/** Feature vector of one row, in FEATURE_NAMES order; every value finite. */
export function rowFeatures(row: ArenaRow): number[] {
  const prompt = row.prompt.join('\n');
  const pw = new Set(words(prompt));
  const a = responseStats(row.responseA, pw);
  const b = responseStats(row.responseB, pw);
  const aw = new Set(words(row.responseA.join('\n')));
  const bw = new Set(words(row.responseB.join('\n')));
  let inter = 0;
  for (const x of aw) if (bw.has(x)) inter++;
  const union = aw.size + bw.size - inter;
  const out = [
    prompt.length,
    words(prompt).length,
    count(prompt, /\n/g),
    row.prompt.length,
    union ? inter / union : 1,
    row.responseA.join('\n') === row.responseB.join('\n') ? 1 : 0,
  ];
  for (let s = 0; s < RESPONSE_STATS.length; s++) out.push(a[s], b[s], a[s] - b[s], Math.log((a[s] + 1) / (b[s] + 1)));
  return out;
}

/** Row-major matrix [rows.length * FEATURE_NAMES.length]. */
export function extractFeatures(rows: ArenaRow[]): Float64Array {
  const d = FEATURE_NAMES.length;
  const X = new Float64Array(rows.length * d);
  rows.forEach((r, i) => X.set(rowFeatures(r), i * d));
  return X;
}
