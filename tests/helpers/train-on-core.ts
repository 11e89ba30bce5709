// Run in its own process (the two cores share a soname): npx tsx tests/helpers/train-on-core.ts onnxruntime-node-cu12
// One batch of the gemma2-tiny training graph on the given ONNX Runtime core's CPU EP, against HF's gradients.
import type * as Ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildTrainGraph } from '../../src/train/graph';
import { planLora, readAdapter } from '../../src/train/lora';
import { batchFeeds } from '../../src/train/feeds';
import { serialise } from '../../src/graph/serialise';
import { openCheckpoint, openSafetensors } from '../../src/weights/safetensors';
import { parseHfConfig } from '../../src/weights/hfconfig';
const DIR = join(__dirname, '..', '..', '..', 'shared', 'fixtures', 'hf-reference', 'gemma2-tiny');
(async () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ort: typeof Ort = require(process.argv[2]);
  const c = parseHfConfig(JSON.parse(readFileSync(join(DIR, 'config.json'), 'utf8')), 'config.json');
  const ck = openCheckpoint(DIR);
  const ad = readAdapter(join(DIR, 'adapter'));
  const tg = buildTrainGraph(c, ck.get, planLora(c, { ...ad.settings, lora_dropout: 0 }));
  const inp = JSON.parse(readFileSync(join(DIR, 'inputs.json'), 'utf8')).padded;
  const rows = inp.input_ids.map((ids: number[], i: number) => ({
    inputIds: ids.slice(
      0,
      inp.attention_mask[i].reduce((a: number, v: number) => a + v, 0),
    ),
    label: i,
  }));
  const feeds = batchFeeds(c, rows);
  const inputs: Record<string, Ort.Tensor> = {};
  for (const [k, t] of Object.entries(feeds)) inputs[k] = new ort.Tensor(t.dtype, t.data, t.dims);
  const shapes = new Map(tg.graph.inputs.map((v) => [v.name, v.shape as number[]]));
  for (const k of tg.params) inputs[k] = new ort.Tensor('float32', ad.params.get(k)!, shapes.get(k)!);
  inputs.loss_grad = new ort.Tensor('float32', Float32Array.of(1), []);
  const s = await ort.InferenceSession.create(serialise(tg.graph, 'x'), {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'basic',
  });
  const o = await s.run(inputs);
  const exp = JSON.parse(readFileSync(join(DIR, 'expected.json'), 'utf8'));
  const g = openSafetensors(join(DIR, 'grads.safetensors'));
  const keyMap: Record<string, string> = exp.grads.key_to_adapter_file_key;
  let worst = 0;
  for (const k of g.tensors.keys()) {
    const a = o[`grad.${keyMap[k]}`].data as Float32Array;
    const b = g.read(k).data;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  }
  await s.release();
  ck.close();
  g.close();
  console.log(
    JSON.stringify({
      core: process.argv[2],
      grad_max_abs_diff: worst,
      loss_diff: Math.abs((o.loss.data as Float32Array)[0] - exp.loss.value),
    }),
  );
})();
