// The recipe a weights directory records (template, truncation, token budget N) and where each comes
// from at import: the command line, else the settings the kit's trainer wrote beside the adapter
// (training.json: the template and N the adapter was trained with), else the model family's default
// template (src/model/families.ts) and DEFAULT_MAX_TOKENS. Unknown names are refused listing the valid
// ones, and the template is bound to the model's tokenizer before any long work.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bindTemplate } from './bind';
import { getRecipe, TemplateError, type Truncation } from './templates';
import { readTokenizer } from './tokenizer';

export const DEFAULT_MAX_TOKENS = 2048;

/** The file the trainer writes beside its adapter (src/train/run.ts). */
export const TRAINING_FILE = 'training.json';

export interface Recipe {
  template: string;
  truncation: Truncation;
  maxTokens: number;
  /** Where each value came from, for the log and the manifest's provenance. */
  source: { template: string; truncation: string; maxTokens: string };
}

export interface TrainedSettings {
  file: string;
  template?: string;
  truncation?: string;
  maxTokens?: number;
}

/** The template / truncation / N an adapter was trained with (its training.json), or null. */
export function readTrainedSettings(adapterDir: string): TrainedSettings | null {
  const file = join(adapterDir, TRAINING_FILE);
  if (!existsSync(file)) return null;
  let j: { options?: Record<string, unknown> };
  try {
    j = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new TemplateError(`${file}: not valid JSON (${(e as Error).message}); remove it or re-run the training`);
  }
  const o = j.options ?? {};
  // Rows given as --tokenized ids say nothing about how their text was made.
  if (o.tokenized && !o.data) return { file };
  return {
    file,
    ...(typeof o.template === 'string' ? { template: o.template } : {}),
    ...(typeof o.truncation === 'string' ? { truncation: o.truncation } : {}),
    ...(typeof o.maxTokens === 'number' ? { maxTokens: o.maxTokens } : {}),
  };
}

/**
 * The recipe to record: each value from `given`, else `trained`, else the defaults; checked
 * (getRecipe) and, with `tokenizerDir`, bound to that tokenizer (bindTemplate), so an unknown name or a
 * template whose special tokens the tokenizer lacks fails at import, naming the valid ones.
 */
export function chooseRecipe(o: {
  given: { template?: string; truncation?: string; maxTokens?: number };
  trained: TrainedSettings | null;
  defaultTemplate: string;
  tokenizerDir?: string;
}): Recipe {
  const t = o.trained;
  const from = (flag: string, g: unknown, tr: unknown) =>
    g !== undefined ? flag : tr !== undefined ? t!.file : 'default';
  const template = o.given.template ?? t?.template ?? o.defaultTemplate;
  // A trained truncation only applies with the trained template.
  const trainedTruncation = template === t?.template ? t?.truncation : undefined;
  const recipe = getRecipe(template, o.given.truncation ?? trainedTruncation);
  const maxTokens = o.given.maxTokens ?? t?.maxTokens ?? DEFAULT_MAX_TOKENS;
  if (o.tokenizerDir) bindTemplate(readTokenizer(o.tokenizerDir), template);
  return {
    template,
    truncation: recipe.truncation,
    maxTokens,
    source: {
      template: from('--template', o.given.template, t?.template),
      truncation:
        o.given.truncation !== undefined
          ? '--truncation'
          : trainedTruncation !== undefined
            ? t!.file
            : `template ${template}`,
      maxTokens: from('--max-tokens', o.given.maxTokens, t?.maxTokens),
    },
  };
}
