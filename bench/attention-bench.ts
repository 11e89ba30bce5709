// Fused (GroupQueryAttention) vs explicit (standard ops) attention on the CPU EP at Gemma-2-2B widths:
// seeded random weights (src/model/tiny.ts generator), 2 layers, int4 linears, 512-row vocabulary (the
// embedding does not matter here), window 4096 dropped as the issue-10 rule allows (inputs <= 2048).
// Reports tokens/s per variant for a batch of 4 x 512 tokens and 1 x 2048 tokens (best of 2 runs).
import * as ort from 'onnxruntime-node';
import { serialise } from '../src/graph/serialise';
import { tinyConfig, tinyWeights } from '../src/model/tiny';
import { buildDecoderGraph, type AttentionVariant } from '../src/model/lower';
import type { ModelConfig } from '../src/types';

export async function attentionBench(): Promise<Record<string, unknown>> {
  const base = tinyConfig({ vocabSize: 512 });
  const cfg: ModelConfig = {
    ...base,
    hiddenSize: 2304,
    intermediateSize: 9216,
    numLayers: 2,
    numHeads: 8,
    numKvHeads: 4,
    headDim: 256,
    attnScale: 256 ** -0.5,
    slidingWindow: 4096,
    head: {
      kind: 'classifier',
      layers: [{ weight: 'score.weight', bias: null, inFeatures: 2304, outFeatures: 3 }],
      activation: null,
    },
  };
  const weights = tinyWeights(cfg, 1);
  const out: Record<string, unknown> = {
    widths: 'hidden 2304, intermediate 9216, 8 heads / 4 KV, head_dim 256, 2 layers, int4 block 32',
  };
  for (const attention of ['fused', 'explicit'] as AttentionVariant[]) {
    const g = buildDecoderGraph(cfg, weights, {
      linear: { kind: 'nbits', bits: 4, blockSize: 32, symmetric: true },
      activations: 'float32',
      attention,
      maxTokens: 2048,
      maxSeqLen: 2048,
    });
    const s = await ort.InferenceSession.create(serialise(g), { intraOpNumThreads: 2 });
    for (const [B, S] of [
      [4, 512],
      [1, 2048],
    ]) {
      const ids = new ort.Tensor(
        'int64',
        BigInt64Array.from({ length: B * S }, (_, i) => BigInt(1 + (i % 500))),
        [B, S],
      );
      const mask = new ort.Tensor('int64', new BigInt64Array(B * S).fill(1n), [B, S]);
      let best = Infinity;
      for (let r = 0; r < 2; r++) {
        const t = process.hrtime.bigint();
        await s.run({ input_ids: ids, attention_mask: mask });
        best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e9);
      }
      out[`${attention}_tokens_per_s_${B}x${S}`] = Math.round((B * S) / best);
    }
    await s.release();
  }
  return out;
}

// Run directly with tsx only: in the dist/bench.cjs bundle `require.main === module` holds for every module.
if (process.argv[1] && /attention-bench\.ts$/.test(process.argv[1]))
  attentionBench().then((r) => console.log(JSON.stringify(r, null, 2)));
