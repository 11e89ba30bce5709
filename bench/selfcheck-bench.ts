// The self-check's cost (issue 22): its reference pass (the fp32 CPU graph, explicit attention, as
// selfCheck runs it) on the bounded input (CHECK_MAX_ROWS rows x CHECK_MAX_TOKENS tokens), on a
// synthetic model at Gemma-2-2B widths (2 layers, int4 weights like an imported graph), and the
// projection to Gemma-2-9B (42 layers at 3584 / 14336 widths) by multiply-adds per layer.
// Run: npx tsx bench/selfcheck-bench.ts
import * as ort from 'onnxruntime-node';
import { serialise } from '../src/graph/serialise';
import { tinyConfig, tinyWeights } from '../src/model/tiny';
import { buildDecoderGraph } from '../src/model/lower';
import type { ModelConfig } from '../src/types';
import { CHECK_MAX_ROWS, CHECK_MAX_TOKENS } from '../src/infer/selfcheck';

/** Multiply-adds per token of one decoder layer (attention projections + MLP), as tokenCost counts them. */
const layerCost = (h: number, i: number, heads: number, kv: number, hd: number) =>
  h * (heads + kv) * hd * 2 + 3 * h * i;

export async function selfCheckBench(threads = 2): Promise<Record<string, unknown>> {
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
  const g = buildDecoderGraph(cfg, tinyWeights(cfg, 1), {
    linear: { kind: 'nbits', bits: 4, blockSize: 32, symmetric: true },
    activations: 'float32',
    attention: 'explicit',
    maxTokens: 2048,
    maxSeqLen: 2048,
  });
  const s = await ort.InferenceSession.create(serialise(g), { intraOpNumThreads: threads });
  const [B, S] = [CHECK_MAX_ROWS, CHECK_MAX_TOKENS];
  const ids = new ort.Tensor(
    'int64',
    BigInt64Array.from({ length: B * S }, (_, i) => BigInt(1 + (i % 500))),
    [B, S],
  );
  const mask = new ort.Tensor('int64', new BigInt64Array(B * S).fill(1n), [B, S]);
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t = process.hrtime.bigint();
    await s.run({ input_ids: ids, attention_mask: mask });
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e9);
  }
  await s.release();
  const perLayer = best / cfg.numLayers;
  const ratio = layerCost(3584, 14336, 16, 8, 256) / layerCost(2304, 9216, 8, 4, 256);
  const proj9b = perLayer * 42 * ratio;
  return {
    widths:
      'Gemma-2-2B widths (hidden 2304, intermediate 9216, 8 heads / 4 KV, head_dim 256), 2 layers, int4 block 32, fp32 activations, explicit attention',
    input: `${B} rows x ${S} tokens`,
    threads,
    seconds_2_layers: Number(best.toFixed(3)),
    seconds_per_layer: Number(perLayer.toFixed(4)),
    projected_gemma2_2b_26_layers_s: Number((perLayer * 26).toFixed(2)),
    gemma2_9b_layer_cost_ratio: Number(ratio.toFixed(3)),
    projected_gemma2_9b_42_layers_s: Number(proj9b.toFixed(2)),
  };
}

if (process.argv[1] && /selfcheck-bench\.ts$/.test(process.argv[1]))
  selfCheckBench(Number(process.env.THREADS ?? 2)).then((r) => console.log(JSON.stringify(r, null, 2)));
