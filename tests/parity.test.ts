// The one decoder against the real Hugging Face forward (shared/fixtures/hf-reference), every family,
// both attention variants, on ORT CPU: base logits, LoRA-merged logits (HF merge_and_unload), judge
// label logits; and proof that each family detail matters (dropping it moves the logits far outside
// the tolerance). Also the fp16 graph of every family on the CPU EP.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { serialise } from '../src/graph/serialise';
import { ATTENTION_VARIANTS, buildDecoderGraph, type AttentionVariant } from '../src/model/lower';
import { ropeInvFreq } from '../src/model/rotary';
import type { ModelConfig, WeightSource } from '../src/types';
import { f32ArrayToF16 } from '../src/util/fp16';
import { mergedSource, openAdapter } from '../src/weights/peft';
import { openCheckpoint, toFloat32 } from '../src/weights/safetensors';
import { FIXTURES, fixtureConfig, maxAbsDiff, runLogits } from './helpers/fixtures';

const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

interface Case {
  model: string;
  tol: number;
  /** expected.json keys of the base and merged outputs */
  base: string;
  merged: string;
  head?: { activation?: 'gelu_tanh'; labelTokens?: string[] };
}
const CASES: Case[] = [
  { model: 'gemma2-tiny', tol: 2e-5, base: 'base_logits', merged: 'merged_logits' },
  // gemma-tiny is HF's own noisiest fixture (no post norms, large hidden states): padded vs single
  // 1.9e-5, merged vs LoRA 4.9e-5 in HF itself; the fixture README suggests 2e-4
  { model: 'gemma-tiny', tol: 2e-4, base: 'base_logits', merged: 'merged_logits' },
  { model: 'llama3-tiny', tol: 2e-5, base: 'base_logits', merged: 'merged_logits' },
  { model: 'qwen2-tiny', tol: 3e-5, base: 'base_logits', merged: 'merged_logits' },
  { model: 'mistral-tiny', tol: 2e-5, base: 'base_logits', merged: 'merged_logits' },
  {
    model: 'gemma2-mlphead',
    tol: 2e-5,
    base: 'base_logits',
    merged: 'merged_logits',
    head: { activation: 'gelu_tanh' },
  },
  {
    model: 'gemma2-judge-tiny',
    tol: 2e-5,
    base: 'label_logits',
    merged: 'merged_label_logits',
    head: { labelTokens: ['65', '66', '67'] },
  },
  {
    model: 'qwen2-judge-tiny',
    tol: 2e-5,
    base: 'label_logits',
    merged: 'merged_label_logits',
    head: { labelTokens: ['65', '66', '67'] },
  },
];

/** Max abs difference to HF over the padded batch and the single row. */
async function vsHf(
  dir: string,
  cfg: ModelConfig,
  weights: WeightSource,
  key: string,
  attention: AttentionVariant,
): Promise<number> {
  const bytes = serialise(
    buildDecoderGraph(cfg, weights, { linear: { kind: 'float' }, activations: 'float32', attention }),
  );
  const inputs = json(join(dir, 'inputs.json'));
  const want = json(join(dir, 'expected.json'))[key];
  let d = 0;
  for (const which of ['padded', 'single'])
    d = Math.max(d, maxAbsDiff(await runLogits(bytes, inputs[which]), (want[which] as number[][]).flat()));
  return d;
}

describe('parity with Hugging Face: every family, both attention variants (fp32, ORT CPU)', function () {
  this.timeout(120000);
  for (const c of CASES)
    for (const attention of ATTENTION_VARIANTS)
      it(`${c.model} (${attention}): base and LoRA-merged logits`, async () => {
        const dir = join(FIXTURES, c.model);
        const cfg = fixtureConfig(dir, c.head);
        const ck = openCheckpoint(dir);
        const ad = openAdapter(join(dir, 'adapter'));
        try {
          const base = await vsHf(dir, cfg, ck.get, c.base, attention);
          const merged = await vsHf(dir, cfg, mergedSource(ck.get, ad), c.merged, attention);
          console.log(
            `      ${c.model} ${attention}: ${c.base} ${base.toExponential(3)}, ${c.merged} ${merged.toExponential(3)} (tolerance ${c.tol})`,
          );
          assert.ok(base <= c.tol, `base ${base} > ${c.tol}`);
          assert.ok(merged <= c.tol, `merged ${merged} > ${c.tol}`);
        } finally {
          ad.close();
          ck.close();
        }
      });

  it('a two-token (A, B) judge is one score: logit(A) - logit(B) of HF, after the final soft-cap', async () => {
    for (const model of ['gemma2-judge-tiny', 'qwen2-judge-tiny']) {
      const dir = join(FIXTURES, model);
      const cfg = fixtureConfig(dir, { labelTokens: ['65', '66'] });
      assert.equal(cfg.numLabels, 1);
      const ck = openCheckpoint(dir);
      const bytes = serialise(buildDecoderGraph(cfg, ck.get, { linear: { kind: 'float' }, activations: 'float32' }));
      ck.close();
      const inputs = json(join(dir, 'inputs.json'));
      const want = json(join(dir, 'expected.json')).label_logits;
      let d = 0;
      for (const which of ['padded', 'single'])
        d = Math.max(
          d,
          maxAbsDiff(
            await runLogits(bytes, inputs[which]),
            (want[which] as number[][]).map((r) => r[0] - r[1]),
          ),
        );
      console.log(
        `      ${model}: A - B score vs HF ${d.toExponential(3)} (tolerance 4e-5: a difference of two 2e-5 logits)`,
      );
      assert.ok(d <= 4e-5);
    }
  });

  it('llama3 rotary frequencies equal HF model.rotary_emb.inv_freq (float32)', () => {
    const dir = join(FIXTURES, 'llama3-tiny');
    const want = json(join(dir, 'expected.json')).rope[
      'inv_freq_llama3 (model.rotary_emb.inv_freq, float32)'
    ] as number[];
    const got = ropeInvFreq(fixtureConfig(dir).rope, 16);
    const d = maxAbsDiff(got, want);
    console.log(`      inv_freq max abs diff ${d.toExponential(3)} (tolerance 0: float32 bit-exact)`);
    assert.equal(d, 0);
  });
});

describe('each family detail is needed (dropping it breaks parity)', function () {
  this.timeout(120000);
  const probes: {
    model: string;
    what: string;
    key: string;
    head?: Case['head'];
    edit: (c: ModelConfig) => ModelConfig;
  }[] = [
    {
      model: 'llama3-tiny',
      what: 'no llama3 rope scaling',
      key: 'base_logits',
      edit: (c) => ({ ...c, rope: { ...c.rope, scaling: null } }),
    },
    { model: 'qwen2-tiny', what: 'no q/k/v biases', key: 'base_logits', edit: (c) => ({ ...c, qkvBias: false }) },
    {
      model: 'mistral-tiny',
      what: 'window on even layers only',
      key: 'base_logits',
      edit: (c) => ({ ...c, slidingLayers: 'even' }),
    },
    { model: 'mistral-tiny', what: 'no window', key: 'base_logits', edit: (c) => ({ ...c, slidingWindow: null }) },
    {
      model: 'gemma2-tiny',
      what: 'window on every layer',
      key: 'base_logits',
      edit: (c) => ({ ...c, slidingLayers: 'all' }),
    },
    { model: 'gemma2-tiny', what: 'window 7', key: 'base_logits', edit: (c) => ({ ...c, slidingWindow: 7 }) },
    { model: 'gemma2-tiny', what: 'window 9', key: 'base_logits', edit: (c) => ({ ...c, slidingWindow: 9 }) },
    {
      model: 'gemma2-tiny',
      what: 'no attention soft-cap',
      key: 'base_logits',
      edit: (c) => ({ ...c, attnSoftcap: null }),
    },
    {
      model: 'gemma2-tiny',
      what: 'RMSNorm by w instead of 1 + w',
      key: 'base_logits',
      edit: (c) => ({ ...c, normPlusOne: false }),
    },
    {
      model: 'gemma2-judge-tiny',
      what: 'no final soft-cap',
      key: 'label_logits',
      head: { labelTokens: ['65', '66', '67'] },
      edit: (c) => ({ ...c, head: c.head.kind === 'label-tokens' ? { ...c.head, finalSoftcap: null } : c.head }),
    },
  ];
  for (const p of probes)
    it(`${p.model}: ${p.what} misses HF by far more than the tolerance, in both attention variants`, async () => {
      const dir = join(FIXTURES, p.model);
      const ck = openCheckpoint(dir);
      try {
        for (const attention of ATTENTION_VARIANTS) {
          const d = await vsHf(dir, p.edit(fixtureConfig(dir, p.head)), ck.get, p.key, attention);
          console.log(`      ${attention}: ${p.what}: max abs diff ${d.toExponential(3)} (must be > 1e-2)`);
          assert.ok(d > 1e-2, `${p.what} is not detected (${d})`);
        }
      } finally {
        ck.close();
      }
    });
});

describe('fp16 graph of every family on the CPU EP', function () {
  this.timeout(120000);
  // fp16 weights + activations; norms, residual stream and head in fp32. Reference: the fp32 graph of
  // the same weights rounded to fp16, which isolates activation precision. (gemma-tiny has no post norms
  // and is very sensitive: fp16-rounding its weights alone moves the HF logits by 0.064.)
  for (const c of CASES)
    for (const attention of ATTENTION_VARIANTS) {
      const tol = c.model === 'gemma-tiny' ? 5e-2 : 2e-2;
      it(`${c.model} (${attention}): fp16 graph matches the fp32 graph of fp16-rounded weights within ${tol}`, async () => {
        const dir = join(FIXTURES, c.model);
        const cfg = fixtureConfig(dir, c.head);
        const ck = openCheckpoint(dir);
        const g = buildDecoderGraph(cfg, ck.get, { linear: { kind: 'float' }, activations: 'float16', attention });
        const r16: WeightSource = (n) => {
          const t = ck.get(n);
          return { shape: t.shape, data: toFloat32(Buffer.from(f32ArrayToF16(t.data).buffer), 'F16', n) };
        };
        const ref = serialise(
          buildDecoderGraph(cfg, r16, { linear: { kind: 'float' }, activations: 'float32', attention }),
        );
        ck.close();
        const attn = g.nodes.filter((n) => n.op === 'GroupQueryAttention');
        assert.ok(
          attn.every((n) => n.inputs.length < 11 || n.inputs[10] === ''),
          'CUDA rejects attention_bias',
        );
        assert.ok(attn.every((n) => g.values.get(n.inputs[0])!.dtype === 'float16'));
        if (attention === 'explicit') assert.equal(attn.length, 0);
        const inputs = json(join(dir, 'inputs.json'));
        for (const which of ['padded', 'single']) {
          const got = await runLogits(serialise(g), inputs[which]);
          assert.ok(got.every(Number.isFinite), 'non-finite fp16 logits');
          const d = maxAbsDiff(got, await runLogits(ref, inputs[which]));
          console.log(
            `      ${c.model} ${attention} ${which} fp16: ${d.toExponential(3)} vs fp32 graph of fp16 weights (tolerance ${tol})`,
          );
          assert.ok(d <= tol, `${which}: ${d} > ${tol}`);
        }
      });
    }
});
