// The bf16 GPU graph (issue 20 item 2): bf16 weights and activations, norms / residual stream / softmax /
// head in fp32 exactly where the fp16 graph keeps them. ORT's CPU EP has no bf16 MatMul / GroupQueryAttention
// kernels, so (1) running the bf16 graph on the CPU EP is tried and its refusal printed, and (2) its structure
// is proven by running the SAME graph with every bf16 tensor widened to fp32 (bf16 initializers expanded
// exactly, Cast-to-bf16 turned into Cast-to-fp32). Widened, it differs from the fp32 graph of the bf16-rounded
// weights only by its bf16-rounded constants (rotary tables, scales: printed, informative); with those
// constants taken from the fp32 graph (same initializer names) it must equal it within fp32 noise (1e-4):
// the same nodes compute the same function, only the dtypes differ.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { attr, type Graph } from '../src/graph/ir';
import { serialise } from '../src/graph/serialise';
import { ATTENTION_VARIANTS, buildDecoderGraph } from '../src/model/lower';
import type { WeightSource } from '../src/types';
import { roundTo } from '../src/util/fp16';
import { openCheckpoint } from '../src/weights/safetensors';
import { FIXTURES, fixtureConfig, maxAbsDiff, runLogits } from './helpers/fixtures';

const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));
const BF16 = 16; // ONNX TensorProto.BFLOAT16
const F32 = 1;

/** The graph with every bf16 tensor widened to fp32 (exact), every Cast to bf16 a Cast to fp32. */
function widenBf16(g: Graph): Graph {
  for (const i of g.initializers) {
    if (i.dtype !== 'bfloat16') continue;
    const hi = new Uint16Array(i.data!.buffer.slice(i.data!.byteOffset, i.data!.byteOffset + i.data!.byteLength));
    const u = Uint32Array.from(hi, (h) => h << 16);
    i.data = new Uint8Array(u.buffer);
    i.dtype = 'float32';
  }
  for (const v of g.values.values()) if (v.dtype === 'bfloat16') v.dtype = 'float32';
  for (const n of g.nodes)
    if (n.op === 'Cast' && n.attrs.to?.type === 'int' && n.attrs.to.value === BF16) n.attrs.to = attr.int(F32);
  return g;
}

describe('bf16 graph (GPU) structure on the CPU EP', function () {
  this.timeout(120000);
  for (const model of ['gemma2-tiny', 'qwen3-tiny', 'phi3-tiny'])
    for (const attention of ATTENTION_VARIANTS)
      it(`${model} (${attention}): bf16 weights + activations, fp32 norms / residual / head; widened to fp32 it equals the fp32 graph of bf16-rounded weights`, async () => {
        const dir = join(FIXTURES, model);
        const cfg = fixtureConfig(dir);
        const ck = openCheckpoint(dir);
        const g = buildDecoderGraph(cfg, ck.get, { linear: { kind: 'float' }, activations: 'bfloat16', attention });
        const rb: WeightSource = (n) => {
          const t = ck.get(n);
          return { shape: t.shape, data: Float32Array.from(t.data, (v) => roundTo(v, 'bfloat16')) };
        };
        const refGraph = buildDecoderGraph(cfg, rb, { linear: { kind: 'float' }, activations: 'float32', attention });
        const ref = serialise(refGraph);
        ck.close();
        // structure: projections in bf16, every norm and residual add in fp32, logits fp32
        const dt = (name: string) => g.values.get(name)!.dtype;
        const mm = g.nodes.filter((n) => n.op === 'MatMul' && /_proj/.test(n.name));
        assert.ok(mm.length > 0 && mm.every((n) => dt(n.outputs[0]) === 'bfloat16'), 'projections in bf16');
        const norms = g.nodes.filter((n) => /LayerNormalization$/.test(n.op));
        assert.ok(norms.length > 0 && norms.every((n) => dt(n.outputs[0]) === 'float32'), 'norms in fp32');
        assert.ok(
          g.nodes.filter((n) => n.op === 'Softmax').every((n) => dt(n.outputs[0]) === 'float32'),
          'softmax in fp32',
        );
        assert.equal(g.outputs[0].dtype, 'float32');
        const inputs = json(join(dir, 'inputs.json'));
        let native = 'ran';
        try {
          await runLogits(serialise(g), inputs.single);
        } catch (e) {
          native = `refused: ${(e as Error).message.split('\n')[0].slice(0, 160)}`;
        }
        const widened = widenBf16(g);
        const wide = serialise(widened);
        const fp32Init = new Map(refGraph.initializers.map((i) => [i.name, i]));
        let swapped = 0;
        for (const i of widened.initializers) {
          const r = fp32Init.get(i.name);
          if (
            r &&
            r.dtype === 'float32' &&
            i.dtype === 'float32' &&
            r.shape.join() === i.shape.join() &&
            r.data &&
            i.data &&
            !Buffer.from(r.data).equals(Buffer.from(i.data))
          ) {
            i.data = r.data;
            swapped++;
          }
        }
        const same = serialise(widened);
        let d = 0;
        let dConst = 0;
        for (const which of ['padded', 'single']) {
          const want = await runLogits(ref, inputs[which]);
          d = Math.max(d, maxAbsDiff(await runLogits(same, inputs[which]), want));
          dConst = Math.max(dConst, maxAbsDiff(await runLogits(wide, inputs[which]), want));
        }
        console.log(
          `      ${model} ${attention}: bf16 graph on the CPU EP ${native}; widened: ${dConst.toExponential(3)} vs the fp32 graph of bf16 weights (its bf16 constants, informative); ` +
            `with the fp32 graph's ${swapped} differing constants ${d.toExponential(3)} (tolerance 1e-4)`,
        );
        assert.ok(d <= 1e-4, `${d}`);
      });
});
