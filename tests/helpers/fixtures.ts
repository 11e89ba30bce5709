// Shared by the tests that run graphs against the Hugging Face fixtures in ../shared/fixtures:
// the fixture's config as ModelConfig, its inputs, a one-shot ORT run, and the max abs difference.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { ModelConfig } from '../../src/types';

export const FIXTURES = join(__dirname, '..', '..', '..', 'shared', 'fixtures', 'hf-reference');

/** Minimal HF config.json -> ModelConfig for the fixtures (the real parser is src/weights/hfconfig.ts). */
export function fixtureConfig(dir: string): ModelConfig {
  const j = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const gemma2 = j.architectures[0] === 'Gemma2ForSequenceClassification';
  return {
    architecture: j.architectures[0],
    vocabSize: j.vocab_size,
    hiddenSize: j.hidden_size,
    intermediateSize: j.intermediate_size,
    numLayers: j.num_hidden_layers,
    numHeads: j.num_attention_heads,
    numKvHeads: j.num_key_value_heads,
    headDim: j.head_dim,
    rmsNormEps: j.rms_norm_eps,
    ropeTheta: j.rope_theta,
    attnScale: (gemma2 ? j.query_pre_attn_scalar : j.head_dim) ** -0.5,
    attnSoftcap: gemma2 ? (j.attn_logit_softcapping ?? null) : null,
    slidingWindow: gemma2 ? (j.sliding_window ?? null) : null,
    sandwichNorms: gemma2,
    numLabels: Object.keys(j.id2label ?? { 0: 0, 1: 1 }).length,
    padTokenId: j.pad_token_id,
    maxPositions: j.max_position_embeddings,
  };
}

export interface Inputs {
  input_ids: number[][];
  attention_mask: number[][];
}

export async function runLogits(model: Uint8Array | string, inp: Inputs, sessionOpts: ort.InferenceSession.SessionOptions = {}): Promise<Float32Array> {
  const s = typeof model === 'string' ? await ort.InferenceSession.create(model, { intraOpNumThreads: 1, ...sessionOpts }) : await ort.InferenceSession.create(model, { intraOpNumThreads: 1, ...sessionOpts });
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
