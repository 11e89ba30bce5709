// Shared by predict and validate: open each weights directory, run it over the rows with the
// chosen TTA, and blend the models' probabilities (given weights, else equal).
import type { ArenaRow } from '../../types';
import { loadTokenizer } from '../../format/encode';
import { openModel, parseEp, type EpChoice } from '../../infer/session';
import { predictRows, parseTta, type PredictResult, type Tta } from '../../infer/predict';
import type { Probs } from '../../infer/probs';
import { num, UsageError, type OptionSpec } from '../args';

export const SCORE_OPTIONS: OptionSpec = {
  data: { type: 'string' },
  weights: { type: 'string', multiple: true },
  ep: { type: 'string', default: 'auto' },
  tta: { type: 'string', default: 'none' },
  'token-budget': { type: 'string' },
  threads: { type: 'string' },
  'blend-weights': { type: 'string' },
};

export interface ScoreSettings {
  weights: string[];
  ep: EpChoice;
  tta: Tta;
  tokenBudget: number;
  threads?: number;
  blend: number[];
}

export function scoreSettings(v: Record<string, unknown>): ScoreSettings {
  const weights = (v.weights as string[] | undefined) ?? [];
  if (!weights.length) throw new UsageError('missing required option --weights DIR (repeat it to blend several models)');
  const blend = v['blend-weights'] ? String(v['blend-weights']).split(',').map(Number) : weights.map(() => 1 / weights.length);
  if (blend.length !== weights.length || !blend.every((w) => Number.isFinite(w) && w >= 0) || !(blend.reduce((a, b) => a + b, 0) > 0))
    throw new UsageError(`--blend-weights needs ${weights.length} non-negative numbers separated by commas, got "${v['blend-weights']}"`);
  const s = blend.reduce((a, b) => a + b, 0);
  return {
    weights,
    ep: parseEp(v.ep as string),
    tta: parseTta(v.tta as string),
    tokenBudget: num(v['token-budget'], '--token-budget', 16384),
    threads: v.threads ? num(v.threads, '--threads', 0) : undefined,
    blend: blend.map((w) => w / s),
  };
}

export interface ModelRun {
  dir: string;
  ep: string;
  result: PredictResult;
}

export async function scoreRows(rows: ArenaRow[], s: ScoreSettings, warn: (m: string) => void): Promise<{ probs: Probs; runs: ModelRun[] }> {
  const runs: ModelRun[] = [];
  for (const dir of s.weights) {
    const model = await openModel(dir, { ep: s.ep, threads: s.threads, warn });
    process.stderr.write(`model ${dir}: ${model.manifest.architecture}, ${model.manifest.quantization?.kind ?? '?'} weights, template ${model.manifest.template}, max_tokens ${model.manifest.maxTokens}, EP ${model.ep}\n`);
    const tok = loadTokenizer(dir);
    const result = await predictRows(model, tok, rows, { tta: s.tta, tokenBudget: s.tokenBudget, warn });
    await model.session.release();
    runs.push({ dir, ep: model.ep, result });
  }
  const probs = new Float64Array(rows.length * 3);
  runs.forEach((r, k) => r.result.probs.forEach((p, i) => (probs[i] += s.blend[k] * p)));
  return { probs, runs };
}
