// The training run end to end: checkpoint + resume gives the same tensors as an uninterrupted run;
// a PiSSA run's saved (converted) adapter merges into the ORIGINAL base with the logits the training
// graph had; and through the built bundles, `trainer.cjs train` on real arena rows -> `import
// --adapter` -> `runner.cjs validate` reproduces the validation log loss the trainer printed.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDecoderGraph } from '../src/model/lower';
import { batchFeeds } from '../src/train/feeds';
import { buildTrainGraph } from '../src/train/graph';
import { defaultInit, overlay, pissaInit, planLora, readAdapter } from '../src/train/lora';
import { writeAdapter } from '../src/train/adapter';
import { epochOrder, epochSteps, readCsv } from '../src/train/data';
import { runTraining, DEFAULT_TRAIN, type TrainOptions } from '../src/train/run';
import { TrainSession } from '../src/train/session';
import { serialise } from '../src/graph/serialise';
import { checkAdapter, mergedSource, openAdapter } from '../src/weights/peft';
import { chooseHead } from '../src/weights/import';
import { parseHfConfig } from '../src/weights/hfconfig';
import { LABEL_COLUMNS } from '../src/task/task';
import { openCheckpoint, openSafetensors } from '../src/weights/safetensors';
import { writeByteTokenizer } from './helpers/byte-tokenizer';
import { ok as node, ROOT, RUNNER, TRAINER } from './helpers/peaked';
import { fixtureConfig, maxAbsDiff, runLogits } from './helpers/fixtures';
import { fixtureBatch, GEMMA2_TINY } from './helpers/train-fixtures';

const DATA = join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');

/** The fixture batches as a JSON-lines file, repeated `times`. */
function fixtureJsonl(path: string, times: number): void {
  const rows = [...fixtureBatch('padded', [0, 1, 2]), ...fixtureBatch('single', [2])];
  const lines = rows.map((r) => JSON.stringify({ input_ids: Array.from(r.inputIds), label: r.label }));
  writeFileSync(path, Array(times).fill(lines.join('\n')).join('\n') + '\n');
}

describe('train: run, checkpoints, adapters', function () {
  this.timeout(600_000);
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-train-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const opts = (out: string, extra: Partial<TrainOptions> = {}): TrainOptions => ({
    ...DEFAULT_TRAIN,
    base: GEMMA2_TINY,
    tokenized: join(tmp, 'rows.jsonl'),
    out,
    lora: { ...DEFAULT_TRAIN.lora, r: 4, lora_alpha: 8, lora_dropout: 0.1 },
    batchSize: 2,
    gradAccum: 2,
    lr: 1e-3,
    warmupSteps: 2,
    weightDecay: 0.01,
    log: () => {},
    ...extra,
  });

  it('resuming from a step-4 checkpoint ends with the same tensors as an uninterrupted run', async () => {
    fixtureJsonl(join(tmp, 'rows.jsonl'), 3); // 12 rows: 3 steps per epoch
    const full = await runTraining(opts(join(tmp, 'full'), { epochs: 2 }));
    assert.equal(full.steps, 6);
    await runTraining(opts(join(tmp, 'resumed'), { epochs: 2, checkpointEvery: 4 }));
    // Pretend the run stopped after the checkpoint: the final adapter and log go, the checkpoint stays.
    rmSync(join(tmp, 'resumed', 'adapter_model.safetensors'));
    const resumed = await runTraining(opts(join(tmp, 'resumed'), { epochs: 2, resume: true }));
    assert.deepEqual(
      resumed.log.map((s) => s.step),
      [5, 6],
    );
    const a = openSafetensors(join(tmp, 'full', 'adapter_model.safetensors'));
    const b = openSafetensors(join(tmp, 'resumed', 'adapter_model.safetensors'));
    let worst = 0;
    for (const k of a.tensors.keys()) worst = Math.max(worst, maxAbsDiff(a.read(k).data, b.read(k).data));
    console.log(
      `      losses ${full.log.map((s) => s.loss.toFixed(4)).join(' ')}; resumed vs uninterrupted max diff ${worst}`,
    );
    assert.equal(worst, 0);
  });

  it('a PiSSA run saves a plain LoRA that merges into the original base with the training graph logits', async () => {
    const out = join(tmp, 'pissa');
    await runTraining(
      opts(out, {
        init: 'pissa',
        maxSteps: 3,
        lora: {
          ...DEFAULT_TRAIN.lora,
          r: 4,
          lora_alpha: 8,
          lora_dropout: 0,
          target_modules: ['q_proj', 'v_proj'],
          layers_to_transform: [1, 2],
        },
      }),
    );
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.r, 8, 'PiSSA saved converted: rank doubled');
    assert.equal(cfg.lora_alpha, 16);
    assert.equal(cfg.init_lora_weights, true);
    const c = fixtureConfig(GEMMA2_TINY);
    const ck = openCheckpoint(GEMMA2_TINY);
    // The training view: residual base + trained A/B (re-derive the residual; PiSSA init is deterministic).
    const ad = readAdapter(out);
    const spec = planLora(c, {
      ...DEFAULT_TRAIN.lora,
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0,
      target_modules: ['q_proj', 'v_proj'],
      layers_to_transform: [1, 2],
    });
    const { residual } = pissaInit(spec, ck.get);
    const trained = new Map([...ad.params].map(([k, v]) => [k, k.includes('lora_') ? v.subarray(0, v.length / 2) : v]));
    // lora_B halves are interleaved per row ([B, -B0]): take the first r columns of each row.
    for (const m of spec.lora.values()) {
      const B2 = ad.params.get(m.bKey)!;
      trained.set(
        m.bKey,
        Float32Array.from(
          { length: m.outFeatures * m.rank },
          (_, i) => B2[Math.floor(i / m.rank) * 2 * m.rank + (i % m.rank)],
        ),
      );
    }
    const s = await TrainSession.create(buildTrainGraph(c, overlay(ck.get, residual), spec, { forwardOnly: true }));
    const mine = (await s.run(batchFeeds(c, fixtureBatch('padded', [0, 1, 2])), trained, 0)).logits;
    await s.release();
    // The import view: original base + the saved adapter, merged by src/weights/peft.ts.
    const adapter = openAdapter(out);
    checkAdapter(adapter, { names: ck.names, shape: (n) => ck.info(n).shape });
    const g = buildDecoderGraph(c, mergedSource(ck.get, adapter), {
      linear: { kind: 'float' },
      activations: 'float32',
      maxSeqLen: 64,
    });
    const inp = JSON.parse(readFileSync(join(GEMMA2_TINY, 'inputs.json'), 'utf8')).padded;
    const merged = await runLogits(serialise(g), inp);
    adapter.close();
    ck.close();
    const d = maxAbsDiff(mine, merged);
    console.log(
      `      training graph (residual base) vs merged converted adapter (original base): max logit diff ${d.toExponential(2)} (tolerance 1e-4)`,
    );
    assert.ok(d < 1e-4);
  });

  // gelu_tanh is the fixture's own head; exact gelu and relu go through the Erf / Relu rules in training and
  // through ONNX Gelu / Relu in the imported graph, so the merge check also compares the two lowerings.
  for (const act of ['gelu_tanh', 'gelu', 'relu'] as const)
    it(`a multi-layer ${act} score head (modules_to_save) trains, and the saved adapter merges to the training graph logits`, async () => {
      const dir = join(GEMMA2_TINY, '..', 'gemma2-mlphead');
      fixtureJsonl(join(tmp, 'rows.jsonl'), 1);
      const out = join(tmp, `mlphead-${act}`);
      const r = await runTraining(
        opts(out, {
          base: dir,
          adapter: join(dir, 'adapter'),
          headActivation: act,
          maxSteps: 3,
          lora: { ...DEFAULT_TRAIN.lora, lora_dropout: 0 },
        }),
      );
      assert.equal(r.steps, 3);
      const c = fixtureConfig(dir, { activation: act });
      const ck = openCheckpoint(dir);
      const ad = readAdapter(out);
      for (const k of ['score.0.weight', 'score.0.bias', 'score.2.weight', 'score.4.bias'])
        assert.ok(ad.params.has(`base_model.model.${k}`), k);
      const before = readAdapter(join(dir, 'adapter')).params.get('base_model.model.score.4.weight')!;
      assert.ok(maxAbsDiff(before, ad.params.get('base_model.model.score.4.weight')!) > 1e-4, 'the head moved');
      const s = await TrainSession.create(buildTrainGraph(c, ck.get, planLora(c, ad.settings), { forwardOnly: true }));
      const mine = (await s.run(batchFeeds(c, fixtureBatch('padded', [0, 1, 2])), ad.params, 0)).logits;
      await s.release();
      const adapter = openAdapter(out);
      const g = buildDecoderGraph(c, mergedSource(ck.get, adapter), {
        linear: { kind: 'float' },
        activations: 'float32',
        maxSeqLen: 64,
      });
      const merged = await runLogits(serialise(g), JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')).padded);
      adapter.close();
      ck.close();
      const d = maxAbsDiff(mine, merged);
      console.log(
        `      gemma2-mlphead (${act} head) after 3 steps: losses ${r.log.map((s) => s.loss.toFixed(4)).join(' ')}; training graph vs merged adapter (import) max logit diff ${d.toExponential(2)} (tolerance 1e-4)`,
      );
      assert.ok(d < 1e-4);
    });

  it('a causal-LM base gets a new score head (--num-labels); import merges the adapter onto that base with the same logits', async () => {
    const dir = join(GEMMA2_TINY, '..', 'gemma2-judge-tiny');
    fixtureJsonl(join(tmp, 'rows.jsonl'), 1);
    const out = join(tmp, 'judge');
    await runTraining(
      opts(out, {
        base: dir,
        numLabels: 3,
        maxSteps: 3,
        lora: { ...DEFAULT_TRAIN.lora, r: 4, lora_alpha: 8, lora_dropout: 0 },
      }),
    );
    const ck = openCheckpoint(dir);
    const file = join(dir, 'config.json');
    const json = JSON.parse(readFileSync(file, 'utf8'));
    // The import view: head from the adapter's modules_to_save (src/weights/import.ts chooseHead), merged by peft.ts.
    const adapter = openAdapter(out);
    const head = chooseHead(ck, adapter, { tokenizerDir: dir, configFile: file })!;
    const c = parseHfConfig(json, file, { head });
    assert.equal(c.numLabels, 3);
    const g = buildDecoderGraph(c, mergedSource(ck.get, adapter), {
      linear: { kind: 'float' },
      activations: 'float32',
      maxSeqLen: 64,
    });
    const merged = await runLogits(serialise(g), JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')).padded);
    adapter.close();
    // The training view: the same base, the trained tensors.
    const ad = readAdapter(out);
    const s = await TrainSession.create(
      buildTrainGraph(
        c,
        (n) =>
          n === 'score.weight' ? { shape: [3, 64], data: ad.params.get('base_model.model.score.weight')! } : ck.get(n),
        planLora(c, ad.settings),
        { forwardOnly: true },
      ),
    );
    const mine = (await s.run(batchFeeds(c, fixtureBatch('padded', [0, 1, 2])), ad.params, 0)).logits;
    await s.release();
    ck.close();
    const d = maxAbsDiff(mine, merged);
    console.log(
      `      gemma2-judge-tiny + new 3-label head, 3 steps: training graph vs import merge max logit diff ${d.toExponential(2)} (tolerance 1e-4)`,
    );
    assert.ok(d < 1e-4);
    // and it continues: the head now comes from the adapter (the Kaggle layout: causal-LM base + adapter with "score")
    const more = await runTraining(opts(join(tmp, 'judge-more'), { base: dir, adapter: out, maxSteps: 1 }));
    assert.equal(more.steps, 1);
  });

  it('--train head: fits only the head on pooled features; the full graph agrees with the head-only loss of the fitted head', async () => {
    fixtureJsonl(join(tmp, 'rows.jsonl'), 2);
    const out = join(tmp, 'head');
    const lines: string[] = [];
    await runTraining(opts(out, { train: 'head', lr: 1e-2, maxSteps: 200, weightDecay: 0, log: (l) => lines.push(l) }));
    const m = /training log loss ([\d.]+) -> ([\d.]+)/.exec(lines.join('\n'))!;
    const [start, end] = [Number(m[1]), Number(m[2])];
    const f = openSafetensors(join(out, 'adapter_model.safetensors'));
    assert.deepEqual([...f.tensors.keys()], ['base_model.model.score.weight'], 'no LoRA tensors without --adapter');
    const head = f.read('base_model.model.score.weight').data;
    f.close();
    // The fitted head put back into the model: the graph's mean CE over the same rows.
    const c = fixtureConfig(GEMMA2_TINY);
    const ck = openCheckpoint(GEMMA2_TINY);
    const spec = { ...planLora(c, { ...DEFAULT_TRAIN.lora }), lora: new Map() };
    const s = await TrainSession.create(buildTrainGraph(c, ck.get, spec, { forwardOnly: true }));
    const rows = [...fixtureBatch('padded', [0, 1, 2]), ...fixtureBatch('single', [2])];
    const graphLoss = (await s.run(batchFeeds(c, rows), new Map([[spec.head[0].key, head]]), 0)).loss;
    await s.release();
    ck.close();
    console.log(
      `      head fit: training log loss ${start} -> ${end}; graph loss with the fitted head ${graphLoss.toFixed(6)}`,
    );
    assert.ok(end < start - 0.1);
    assert.ok(Math.abs(graphLoss - end) < 1e-4);
  });

  it('PEFT settings: rsLoRA scale, layers_to_transform; a saved adapter reads back as the same plan (continue training)', () => {
    const c = fixtureConfig(GEMMA2_TINY);
    const ck = openCheckpoint(GEMMA2_TINY);
    const settings = {
      ...DEFAULT_TRAIN.lora,
      r: 4,
      lora_alpha: 8,
      use_rslora: true,
      target_modules: ['q_proj', 'down_proj'],
      layers_to_transform: [0, 3],
    };
    const spec = planLora(c, settings);
    assert.deepEqual(
      [...spec.lora.keys()],
      [
        'model.layers.0.self_attn.q_proj',
        'model.layers.0.mlp.down_proj',
        'model.layers.3.self_attn.q_proj',
        'model.layers.3.mlp.down_proj',
      ],
    );
    assert.equal(spec.lora.get('model.layers.0.self_attn.q_proj')!.scale, 8 / Math.sqrt(4));
    const out = join(tmp, 'roundtrip');
    writeAdapter(out, {
      spec,
      params: defaultInit(spec, ck.get, 3),
      config: c,
      pissaStart: null,
      baseModelNameOrPath: GEMMA2_TINY,
      labels: [...LABEL_COLUMNS],
    });
    const back = readAdapter(out);
    assert.deepEqual([...planLora(c, back.settings).lora.keys()], [...spec.lora.keys()]);
    assert.equal(planLora(c, back.settings).lora.get('model.layers.3.mlp.down_proj')!.scale, 4);
    // import's reader agrees: target_modules + layers_to_transform (PEFT's rule) name exactly these modules
    const a = openAdapter(out);
    assert.deepEqual([...a.lora.values()].map((p) => p.module).sort(), [...spec.lora.keys()].sort());
    a.close();
    ck.close();
  });

  it('data: file order without shuffling, a seeded permutation with it; swap augmentation swaps responses and A/B labels', async () => {
    assert.deepEqual(epochOrder(5, false, 1, 0), [0, 1, 2, 3, 4]);
    const p = epochOrder(50, true, 1, 0);
    assert.deepEqual(
      [...p].sort((a, b) => a - b),
      [...Array(50).keys()],
    );
    assert.deepEqual(epochOrder(50, true, 1, 0), p, 'same seed and epoch, same order');
    assert.notDeepEqual(epochOrder(50, true, 1, 1), p, 'a new order each epoch');
    const rows = Array.from({ length: 7 }, (_, i) => ({ inputIds: [i + 1], label: 0 }));
    assert.deepEqual(
      epochSteps([...Array(7).keys()], rows, 2, 2).map((st) => st.map((mb) => mb.length)),
      [
        [2, 2],
        [2, 1],
      ],
    );
    const csv = join(tmp, 'three.csv');
    writeFileSync(
      csv,
      'id,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie\n' +
        '1,"[""hi""]","[""aaa""]","[""bbbbbb""]",1,0,0\n2,"[""yo""]","[""c""]","[""d""]",0,1,0\n3,"[""q""]","[""e""]","[""f""]",0,0,1\n',
    );
    const tok = join(tmp, 'tok');
    writeByteTokenizer(tok);
    const plain = await readCsv(csv, {
      tokenizerDir: tok,
      template: 'gemma-chat',
      maxTokens: 256,
      swapAugment: false,
      labelIndex: [0, 1, 2],
    });
    const aug = await readCsv(csv, {
      tokenizerDir: tok,
      template: 'gemma-chat',
      maxTokens: 256,
      swapAugment: true,
      labelIndex: [0, 1, 2],
    });
    assert.deepEqual(
      plain.rows.map((r) => r.label),
      [0, 1, 2],
    );
    assert.deepEqual(
      aug.rows.map((r) => r.label),
      [0, 1, 1, 0, 2, 2],
    );
    assert.deepEqual(aug.rows[0].inputIds, plain.rows[0].inputIds);
    assert.notDeepEqual(aug.rows[1].inputIds, aug.rows[0].inputIds, 'the swapped row reads B first');
    assert.equal(aug.rows[1].inputIds.length, aug.rows[0].inputIds.length);
  });

  it('bad rows in --tokenized are skipped with a warning naming the line; the rest train', async () => {
    const path = join(tmp, 'rows.jsonl');
    fixtureJsonl(path, 1);
    writeFileSync(path, readFileSync(path, 'utf8') + '{"input_ids": [1, 2], "label": 7}\nnot json\n');
    const lines: string[] = [];
    const r = await runTraining(opts(join(tmp, 'bad'), { maxSteps: 1, log: (l) => lines.push(l) }));
    assert.equal(r.steps, 1);
    assert.ok(lines.some((l) => /rows\.jsonl:5: "label" must be an integer in 0\.\.2/.test(l)));
    assert.ok(lines.some((l) => /rows\.jsonl:6: not JSON/.test(l)));
  });
});

describe('train -> import -> validate (built bundles, arena sample rows)', function () {
  this.timeout(900_000);
  let tmp: string;
  before(function () {
    if (!existsSync(DATA)) this.skip();
    if (!existsSync(TRAINER) || !existsSync(RUNNER))
      execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-train-e2e-'));
    writeByteTokenizer(join(tmp, 'tok'));
  });
  after(() => tmp && rmSync(tmp, { recursive: true, force: true }));

  it('the imported adapter scores the rows with the log loss the trainer measured', () => {
    const adapter = join(tmp, 'adapter');
    const weights = join(tmp, 'weights');
    const t = node(TRAINER, [
      'train',
      '--base',
      GEMMA2_TINY,
      '--tokenizer',
      join(tmp, 'tok'),
      '--data',
      DATA,
      '--valid',
      DATA,
      '--max-tokens',
      '256',
      '--max-steps',
      '8',
      '--batch-size',
      '8',
      '--lr',
      '2e-3',
      '--lora-r',
      '4',
      '--lora-alpha',
      '8',
      '--lora-dropout',
      '0',
      '--out',
      adapter,
    ]);
    assert.match(t.stderr, /train: step 8\/8 .* loss [\d.]+ lr [\d.e+-]+ .* ETA/);
    const summary = JSON.parse(t.stdout.trim().split('\n').at(-1)!);
    const trainerLoss = summary.valid[0].logLoss;
    node(TRAINER, [
      'import',
      '--base',
      GEMMA2_TINY,
      '--adapter',
      adapter,
      '--tokenizer',
      join(tmp, 'tok'),
      '--quant',
      'fp32',
      '--max-tokens',
      '256',
      '--labels',
      'winner_model_a,winner_model_b,winner_tie',
      '--out',
      weights,
    ]);
    const v = node(RUNNER, ['validate', '--data', DATA, '--weights', weights, '--ep', 'cpu']);
    const res = JSON.parse(v.stdout.trim().split('\n').at(-1)!);
    const runnerLoss = res.log_loss_no_tta;
    console.log(
      `      trainer validation log loss ${trainerLoss.toFixed(6)}, runner validate of the imported adapter (no TTA) ${runnerLoss}; |diff| ${Math.abs(trainerLoss - runnerLoss).toExponential(2)} (tolerance 1e-4)`,
    );
    assert.ok(Math.abs(trainerLoss - runnerLoss) < 1e-4, JSON.stringify(res));
  });
});
