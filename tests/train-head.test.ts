// `--train head` (one forward pass for the pooled states, then the head alone fitted by the head-only
// graph) and `--num-labels` relabelling: a multi-layer score.N.* head refits and its loss is the full
// graph's loss with the fitted head; a 2-output WSDM head put on a 3-label LMSYS model starts exactly at
// the runner's 3->2 mapping, improves, imports (labels from the adapter folder) and serves WSDM.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { batchFeeds } from '../src/train/feeds';
import { buildTrainGraph } from '../src/train/graph';
import { planLora, readAdapter } from '../src/train/lora';
import { DEFAULT_TRAIN, runTraining, type TrainOptions } from '../src/train/run';
import { TrainSession } from '../src/train/session';
import { openCheckpoint } from '../src/weights/safetensors';
import { fixtureConfig, maxAbsDiff } from './helpers/fixtures';
import { ensureBuilt, node, ok, ROOT, RUNNER, TRAINER } from './helpers/peaked';
import { fixtureBatch, GEMMA2_TINY } from './helpers/train-fixtures';

const MLPHEAD = join(GEMMA2_TINY, '..', 'gemma2-mlphead');
const WSDM_TRAIN = join(ROOT, '..', 'shared', 'data', 'wsdm-sample-train.parquet');
const DEMO_TRAIN = join(ROOT, 'demo', 'arena-demo-train.csv');

describe('train: --train head and relabelled heads', function () {
  this.timeout(300_000);
  let tmp: string;
  before(() => {
    ensureBuilt();
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-train-head-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('--train head fits a multi-layer score.N.* head; its loss is the full graph loss with the fitted head', async () => {
    const rows = [...fixtureBatch('padded', [0, 1, 2]), ...fixtureBatch('single', [2])];
    writeFileSync(
      join(tmp, 'rows.jsonl'),
      rows.map((r) => JSON.stringify({ input_ids: Array.from(r.inputIds), label: r.label })).join('\n') + '\n',
    );
    const out = join(tmp, 'mlp-head');
    const lines: string[] = [];
    const o: TrainOptions = {
      ...DEFAULT_TRAIN,
      base: MLPHEAD,
      adapter: join(MLPHEAD, 'adapter'),
      headActivation: 'gelu_tanh',
      tokenized: join(tmp, 'rows.jsonl'),
      out,
      train: 'head',
      lr: 5e-4,
      maxSteps: 10,
      schedule: 'constant',
      log: (l) => lines.push(l),
    };
    await runTraining(o);
    const [start, end] = /training log loss ([\d.]+) -> ([\d.]+)/.exec(lines.join('\n'))!.slice(1).map(Number);
    const ad = readAdapter(out);
    const before = readAdapter(join(MLPHEAD, 'adapter')).params;
    for (const k of ['score.0.weight', 'score.2.weight', 'score.4.weight'])
      assert.ok(
        maxAbsDiff(before.get(`base_model.model.${k}`)!, ad.params.get(`base_model.model.${k}`)!) > 1e-4,
        `${k} moved`,
      );
    const lora = [...ad.params.keys()].filter((k) => k.includes('lora_'));
    assert.ok(
      lora.length > 0 && lora.every((k) => maxAbsDiff(before.get(k)!, ad.params.get(k)!) === 0),
      'the LoRA tensors are kept as they were',
    );
    const c = fixtureConfig(MLPHEAD, { activation: 'gelu_tanh' });
    const ck = openCheckpoint(MLPHEAD);
    const s = await TrainSession.create(buildTrainGraph(c, ck.get, planLora(c, ad.settings), { forwardOnly: true }));
    const full = (await s.run(batchFeeds(c, rows), ad.params, 0)).loss;
    await s.release();
    ck.close();
    console.log(
      `      gemma2-mlphead, 3-layer gelu_tanh head: head-only training log loss ${start} -> ${end}; full graph with the fitted head ${full.toFixed(6)} (tolerance 1e-4)`,
    );
    assert.ok(end < start - 0.3 && end > 0.01, 'the loss falls');
    assert.ok(Math.abs(full - end) < 1e-4);
  });

  it('--num-labels 2 on a 3-label model: starts at the 3->2 mapping, improves on WSDM rows, imports with its labels and serves WSDM only', () => {
    const hf = join(tmp, 'tiny-hf');
    ok(TRAINER, ['tiny', '--hf', '--out', hf]);
    // a 3-label LMSYS model first (as the demo trains it), so the head is far from uniform
    ok(TRAINER, [
      'train',
      '--base',
      hf,
      '--data',
      DEMO_TRAIN,
      '--out',
      join(tmp, 'lmsys'),
      '--epochs',
      '2',
      '--lr',
      '1e-3',
      '--batch-size',
      '8',
      '--lora-r',
      '8',
      '--lora-alpha',
      '16',
    ]);
    // the trainer's default token budget (512), so both see the same truncated rows
    ok(TRAINER, [
      'import',
      '--base',
      hf,
      '--adapter',
      join(tmp, 'lmsys'),
      '--quant',
      'fp32',
      '--max-tokens',
      '512',
      '--out',
      join(tmp, 'lmsys-w'),
    ]);
    const mapped = JSON.parse(
      ok(RUNNER, ['validate', '--data', WSDM_TRAIN, '--weights', join(tmp, 'lmsys-w'), '--ep', 'cpu', '--tta', 'none'])
        .stdout.trim()
        .split('\n')
        .at(-1)!,
    );

    const r = ok(TRAINER, [
      'train',
      '--base',
      hf,
      '--adapter',
      join(tmp, 'lmsys'),
      '--train',
      'head',
      '--num-labels',
      '2',
      '--data',
      WSDM_TRAIN,
      '--max-steps',
      '300',
      '--out',
      join(tmp, 'wsdm'),
    ]);
    assert.match(r.stderr, /relabelled from 3 to 2 outputs \(model_a, model_b\), starting from the base rows/);
    const [start, end] = /training log loss ([\d.]+) -> ([\d.]+)/.exec(r.stderr)!.slice(1).map(Number);
    assert.deepEqual(JSON.parse(readFileSync(join(tmp, 'wsdm', 'arenakit_labels.json'), 'utf8')).id2label, {
      0: 'model_a',
      1: 'model_b',
    });

    ok(TRAINER, [
      'import',
      '--base',
      hf,
      '--adapter',
      join(tmp, 'wsdm'),
      '--quant',
      'fp32',
      '--max-tokens',
      '512',
      '--out',
      join(tmp, 'wsdm-w'),
    ]);
    const manifest = JSON.parse(readFileSync(join(tmp, 'wsdm-w', 'manifest.json'), 'utf8'));
    const fitted = JSON.parse(
      ok(RUNNER, ['validate', '--data', WSDM_TRAIN, '--weights', join(tmp, 'wsdm-w'), '--ep', 'cpu', '--tta', 'none'])
        .stdout.trim()
        .split('\n')
        .at(-1)!,
    );
    const ll = (j: Record<string, number>) => j.log_loss_no_tta ?? j.log_loss;
    console.log(
      `      WSDM sample train rows (${fitted.rows}): 3-label model mapped 3->2 log loss ${ll(mapped).toFixed(6)} vs the relabelled head's starting loss ${start} ` +
        `(tolerance 1e-4); fitted ${end} (trainer) / ${ll(fitted).toFixed(6)} (runner, imported; tolerance 1e-4); accuracy ${mapped.accuracy} -> ${fitted.accuracy}`,
    );
    assert.deepEqual(manifest.labels, ['model_a', 'model_b']);
    assert.ok(Math.abs(ll(mapped) - start) < 1e-4, 'the 2-output head starts as the runner maps the 3-label model');
    assert.ok(end < start - 0.01, 'fitting improves on the mapping');
    assert.ok(Math.abs(ll(fitted) - end) < 1e-4, 'the imported head scores what the trainer measured');
    const lmsys = node(RUNNER, [
      'predict',
      '--data',
      DEMO_TRAIN,
      '--weights',
      join(tmp, 'wsdm-w'),
      '--out',
      join(tmp, 'x.csv'),
      '--ep',
      'cpu',
    ]);
    assert.notEqual(lmsys.status, 0);
    assert.match(lmsys.stderr, /winner_tie/);
  });
});
