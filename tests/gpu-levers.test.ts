// Issue 21, GPU levers built without a GPU: the fpA_intB eligibility of the kit's fp16 MatMulNBits nodes and the
// session config that turns the kernel on (the CPU EP computes the same logits with it), and the token budget
// sized from GPU memory.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { join } from 'node:path';
import { parseModel, serialise } from '../src/graph/serialise';
import {
  activationBytesPerToken,
  fpaIntbConfig,
  fpaIntbEligible,
  gpuMemoryBytes,
  memoryTokenBudget,
} from '../src/infer/gpu-levers';
import { planBatches } from '../src/infer/batching';
import { buildDecoderGraph } from '../src/model/lower';
import { linearModules } from '../src/model/lora';
import { tinyConfig, tinyWeights } from '../src/model/tiny';
import { FIXTURES, gemma2bConfig, maxAbsDiff, runLogits } from './helpers/fixtures';

const gemma2b = gemma2bConfig;

describe('GPU levers (issue 21), checked on the CPU', function () {
  this.timeout(60000);

  it('fpA_intB: the projections of Gemma-2-2B / 9B widths (packed qkv too) are eligible at fp16 int4 / int8 block 32; fp32 and odd N are not', () => {
    for (const c of [
      gemma2b(),
      { ...gemma2b(), hiddenSize: 3584, intermediateSize: 14336, numHeads: 16, numKvHeads: 8 },
    ]) {
      const mods = linearModules(c).filter((m) => m.module.startsWith('model.layers.0.'));
      const q = c.numHeads * c.headDim;
      const kv = c.numKvHeads * c.headDim;
      const shapes = [...mods.map((m) => [m.outF, m.inF]), [q + 2 * kv, c.hiddenSize]];
      assert.ok(shapes.length >= 8);
      for (const bits of [4, 8])
        for (const [N, K] of shapes)
          assert.ok(fpaIntbEligible({ N, K, bits, blockSize: 32, activations: 'float16' }), `${bits} bits ${N} x ${K}`);
    }
    // the nodes the lowering writes carry exactly these attributes and no zero points (symmetric)
    const t = tinyConfig({ vocabSize: 256 });
    const g = buildDecoderGraph(t, tinyWeights(t, 1), {
      linear: { kind: 'nbits', bits: 4, blockSize: 32, symmetric: true },
      activations: 'float16',
    });
    const nodes = g.nodes.filter((n) => n.op === 'MatMulNBits');
    assert.ok(nodes.length >= 5 * t.numLayers);
    for (const n of nodes) {
      assert.deepEqual(Object.keys(n.attrs).sort(), ['K', 'N', 'bits', 'block_size']);
      assert.ok(!n.inputs[3], `${n.name} has zero points`);
    }
    assert.equal(fpaIntbEligible({ N: 2304, K: 2304, bits: 4, blockSize: 32, activations: 'float32' }), false);
    assert.equal(fpaIntbEligible({ N: 2336, K: 2304, bits: 4, blockSize: 32, activations: 'float16' }), false);
    assert.equal(fpaIntbEligible({ N: 2336, K: 2304, bits: 8, blockSize: 32, activations: 'float16' }), true);
    assert.equal(fpaIntbEligible({ N: 2304, K: 2300, bits: 4, blockSize: 32, activations: 'float16' }), false);
  });

  it('fpA_intB config: only on cu13 and only when ARENAKIT_FPA_INTB=1; the CPU EP computes the same logits with it', async () => {
    assert.deepEqual(fpaIntbConfig('cu13', { ARENAKIT_FPA_INTB: '1' }), { 'ep.cuda.fpa_intb_gemm': '1' });
    assert.deepEqual(fpaIntbConfig('cu12', { ARENAKIT_FPA_INTB: '1' }), {});
    assert.deepEqual(fpaIntbConfig('cu13', {}), {});
    const c = tinyConfig({ vocabSize: 512 });
    const bytes = serialise(
      buildDecoderGraph(c, tinyWeights(c, 2), {
        linear: { kind: 'nbits', bits: 4, blockSize: 32, symmetric: true },
        activations: 'float16',
      }),
    );
    const inp = JSON.parse(readFileSync(join(FIXTURES, 'gemma2-tiny', 'inputs.json'), 'utf8')).padded;
    const plain = await runLogits(bytes, inp);
    const withCfg = await runLogits(bytes, inp, {
      extra: fpaIntbConfig('cu13', { ARENAKIT_FPA_INTB: '1' }),
    } as ort.InferenceSession.SessionOptions);
    const d = maxAbsDiff(plain, withCfg);
    console.log(`      fp16 int4 graph on the CPU EP with ep.cuda.fpa_intb_gemm=1: max abs diff ${d} (tolerance 0)`);
    assert.equal(d, 0);
    assert.ok(parseModel(bytes).graph!.node!.some((n) => n.opType === 'MatMulNBits'));
  });

  it('memory-sized token budget: T4 16 GB, Gemma-2-2B int4 fp16; batches planned under it fit the memory left', () => {
    const c = gemma2b();
    const mem = gpuMemoryBytes('Tesla T4, 15360 MiB')!;
    assert.equal(mem, 15360 * 2 ** 20);
    assert.equal(gpuMemoryBytes('Tesla T4'), null);
    const weightBytes = 2.3e9;
    for (const [S, explicit] of [
      [512, false],
      [2048, false],
      [2048, true],
    ] as const) {
      const per = activationBytesPerToken(c, 2, explicit ? S : 0);
      const budget = memoryTokenBudget({ memoryBytes: mem, weightBytes, perTokenBytes: per, maxTokens: S });
      console.log(
        `      S ${S} ${explicit ? 'explicit' : 'fused'}: ${(per / 1024).toFixed(1)} KiB/token -> token budget ${budget}`,
      );
      assert.ok(budget >= S && budget % 256 === 0);
      const lengths = Array.from({ length: 200 }, (_, i) => 1 + ((i * 7919) % S));
      for (const b of planBatches(lengths, { tokenBudget: budget }))
        assert.ok(b.rows.length * b.seqLen * per + weightBytes < mem * 0.9, 'a planned batch exceeds the memory');
    }
    assert.ok(
      memoryTokenBudget({ memoryBytes: 2 * mem, weightBytes, perTokenBytes: 1e5, maxTokens: 512 }) >
        memoryTokenBudget({ memoryBytes: mem, weightBytes, perTokenBytes: 1e5, maxTokens: 512 }),
    );
    assert.equal(memoryTokenBudget({ memoryBytes: 1e9, weightBytes: 2e9, perTokenBytes: 1e5, maxTokens: 512 }), 512);
  });
});
