// The training run end to end: checkpoint + resume gives the same tensors as an uninterrupted run;
// a PiSSA run's saved (converted) adapter merges into the ORIGINAL base with the logits the training
// graph had; and through the built bundles, `trainer.cjs train` on real arena rows -> `import
// --adapter` -> `runner.cjs validate` reproduces the validation log loss the trainer printed.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGemmaGraph } from '../src/model/gemma';
import { batchFeeds } from '../src/train/feeds';
import { buildTrainGraph } from '../src/train/graph';
import { overlay, pissaInit, planLora, readAdapter } from '../src/train/lora';
import { runTraining, DEFAULT_TRAIN, type TrainOptions } from '../src/train/run';
import { TrainSession } from '../src/train/session';
import { serialise } from '../src/graph/serialise';
import { checkAdapter, mergedSource, openAdapter } from '../src/weights/peft';
import { openCheckpoint, openSafetensors } from '../src/weights/safetensors';
import { writeByteTokenizer } from './helpers/byte-tokenizer';
import { fixtureConfig, maxAbsDiff, runLogits } from './helpers/fixtures';
import { fixtureBatch, GEMMA2_TINY } from './helpers/train-fixtures';

const ROOT = join(__dirname, '..');
const DATA = join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');
const TRAINER = join(ROOT, 'dist', 'trainer.cjs');
const RUNNER = join(ROOT, 'dist', 'runner.cjs');

function node(script: string, args: string[]): { stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [script, ...args], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `node ${script} ${args.join(' ')} exited ${r.status}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

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
    assert.deepEqual(resumed.log.map((s) => s.step), [5, 6]);
    const a = openSafetensors(join(tmp, 'full', 'adapter_model.safetensors'));
    const b = openSafetensors(join(tmp, 'resumed', 'adapter_model.safetensors'));
    let worst = 0;
    for (const k of a.tensors.keys()) worst = Math.max(worst, maxAbsDiff(a.read(k).data, b.read(k).data));
    console.log(`      losses ${full.log.map((s) => s.loss.toFixed(4)).join(' ')}; resumed vs uninterrupted max diff ${worst}`);
    assert.equal(worst, 0);
  });

  it('a PiSSA run saves a plain LoRA that merges into the original base with the training graph logits', async () => {
    const out = join(tmp, 'pissa');
    await runTraining(opts(out, { init: 'pissa', maxSteps: 3, lora: { ...DEFAULT_TRAIN.lora, r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ['q_proj', 'v_proj'], layers_to_transform: [1, 2] } }));
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.r, 8, 'PiSSA saved converted: rank doubled');
    assert.equal(cfg.lora_alpha, 16);
    assert.equal(cfg.init_lora_weights, true);
    const c = fixtureConfig(GEMMA2_TINY);
    const ck = openCheckpoint(GEMMA2_TINY);
    // The training view: residual base + trained A/B (re-derive the residual; PiSSA init is deterministic).
    const ad = readAdapter(out);
    const spec = planLora(c, { ...DEFAULT_TRAIN.lora, r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ['q_proj', 'v_proj'], layers_to_transform: [1, 2] });
    const { residual } = pissaInit(spec, ck.get);
    const trained = new Map([...ad.params].map(([k, v]) => [k, k.includes('lora_') ? v.subarray(0, v.length / 2) : v]));
    // lora_B halves are interleaved per row ([B, -B0]): take the first r columns of each row.
    for (const m of spec.lora.values()) {
      const B2 = ad.params.get(m.bKey)!;
      trained.set(m.bKey, Float32Array.from({ length: m.outFeatures * m.rank }, (_, i) => B2[Math.floor(i / m.rank) * 2 * m.rank + (i % m.rank)]));
    }
    const s = await TrainSession.create(buildTrainGraph(c, overlay(ck.get, residual), spec, { forwardOnly: true }));
    const mine = (await s.run(batchFeeds(c, fixtureBatch('padded', [0, 1, 2])), trained, 0)).logits;
    await s.release();
    // The import view: original base + the saved adapter, merged by src/weights/peft.ts.
    const adapter = openAdapter(out);
    checkAdapter(adapter, { names: ck.names, shape: (n) => ck.info(n).shape });
    const g = buildGemmaGraph(c, mergedSource(ck.get, adapter), { linear: { kind: 'float' }, activations: 'float32', maxSeqLen: 64 });
    const inp = JSON.parse(readFileSync(join(GEMMA2_TINY, 'inputs.json'), 'utf8')).padded;
    const merged = await runLogits(serialise(g), inp);
    adapter.close();
    ck.close();
    const d = maxAbsDiff(mine, merged);
    console.log(`      training graph (residual base) vs merged converted adapter (original base): max logit diff ${d.toExponential(2)} (tolerance 1e-4)`);
    assert.ok(d < 1e-4);
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
    if (!existsSync(TRAINER) || !existsSync(RUNNER)) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-train-e2e-'));
    writeByteTokenizer(join(tmp, 'tok'));
  });
  after(() => tmp && rmSync(tmp, { recursive: true, force: true }));

  it('the imported adapter scores the rows with the log loss the trainer measured', () => {
    const adapter = join(tmp, 'adapter');
    const weights = join(tmp, 'weights');
    const t = node(TRAINER, [
      'train', '--base', GEMMA2_TINY, '--tokenizer', join(tmp, 'tok'), '--data', DATA, '--valid', DATA, '--max-tokens', '256',
      '--max-steps', '8', '--batch-size', '8', '--lr', '2e-3', '--lora-r', '4', '--lora-alpha', '8', '--lora-dropout', '0', '--out', adapter,
    ]);
    assert.match(t.stderr, /train: step 8\/8 .* loss [\d.]+ lr [\d.e+-]+ .* ETA/);
    const summary = JSON.parse(t.stdout.trim().split('\n').at(-1)!);
    const trainerLoss = summary.valid[0].logLoss;
    node(TRAINER, ['import', '--base', GEMMA2_TINY, '--adapter', adapter, '--tokenizer', join(tmp, 'tok'), '--quant', 'fp32', '--max-tokens', '256', '--out', weights]);
    const v = node(RUNNER, ['validate', '--data', DATA, '--weights', weights, '--ep', 'cpu']);
    const res = JSON.parse(v.stdout.trim().split('\n').at(-1)!);
    const runnerLoss = res.log_loss_no_tta;
    console.log(`      trainer validation log loss ${trainerLoss.toFixed(6)}, runner validate of the imported adapter (no TTA) ${runnerLoss}; |diff| ${Math.abs(trainerLoss - runnerLoss).toExponential(2)} (tolerance 1e-4)`);
    assert.ok(Math.abs(trainerLoss - runnerLoss) < 1e-4, JSON.stringify(res));
  });
});
