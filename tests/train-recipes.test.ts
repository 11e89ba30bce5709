// The three training recipes of issue 13, reproduced on tiny models through the BUILT bundles as a
// user runs them (`trainer.cjs train` -> `trainer.cjs import --adapter` -> `runner.cjs validate`):
//  1. LoRA r 64 / alpha 64 / dropout 0.05, PiSSA init, multi-layer score head (gemma2-mlphead fixture)
//  2. LoRA with the first layers frozen (layers_to_transform), AdamW + linear warmup, head+tail truncation
//  3. r 16 / alpha 32 on q,k,v,o with the score head saved (modules_to_save)
// For each: adapter_config.json says what the recipe asked, only the intended tensors are in the adapter
// (and moved), the training loss falls, truncation really cut rows, and the imported adapter's validation
// log loss through the runner equals the trainer's own measurement on the same rows (1e-4).
// README "Training recipes" shows the same commands at full size.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRows } from '../src/data/rows';
import { encodeRows, loadTokenizer, type ArenaTokenizer } from '../src/format/encode';
import { openCheckpoint, openSafetensors } from '../src/weights/safetensors';
import { openAdapter } from '../src/weights/peft';
import { writeAdapter } from '../src/train/adapter';
import { DEFAULT_LORA, pissaInit, pissaSettings, planLora, readAdapter } from '../src/train/lora';
import { LABEL_COLUMNS } from '../src/task/task';
import { writeByteTokenizer } from './helpers/byte-tokenizer';
import { fixtureConfig, FIXTURES, maxAbsDiff } from './helpers/fixtures';
import { ensureBuilt, ok, ROOT, RUNNER, TRAINER } from './helpers/peaked';

const MLPHEAD = join(FIXTURES, 'gemma2-mlphead');
const TRAIN = join(ROOT, 'demo', 'arena-demo-train.csv');
// Validation on the training rows themselves: there the trained models are far from uniform, so a
// label-order or merge mistake in import would show in the runner's log loss.
const VALID = TRAIN;
const PREFIX = 'base_model.model.';
const QKVO = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];

interface Tensor {
  shape: number[];
  data: Float32Array;
}

function readAdapterFiles(dir: string): { cfg: Record<string, any>; tensors: Map<string, Tensor> } {
  const cfg = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
  const f = openSafetensors(join(dir, 'adapter_model.safetensors'));
  const tensors = new Map<string, Tensor>();
  for (const k of f.tensors.keys()) tensors.set(k, f.read(k));
  f.close();
  return { cfg, tensors };
}

/** LoRA modules of an adapter: "layer.proj" names, e.g. "2.q_proj". */
function loraModules(tensors: Map<string, Tensor>): string[] {
  return [...tensors.keys()]
    .map((k) => /layers\.(\d+)\.\w+\.(\w+)\.lora_A\.weight$/.exec(k))
    .filter((m) => m !== null)
    .map((m) => `${m![1]}.${m![2]}`)
    .sort();
}

const tokenizers = new Map<string, ArenaTokenizer>(); // Gemma's takes seconds to load

/** Rows of `file` longer than `maxTokens` before truncation, and the longest row after it (same encoder as trainer and runner). */
async function truncation(
  file: string,
  tokDir: string,
  maxTokens: number,
): Promise<{ rows: number; cut: number; longestFull: number; longestKept: number }> {
  const r = await readRows(file, { requireLabels: true });
  const tok = tokenizers.get(tokDir) ?? tokenizers.set(tokDir, loadTokenizer(tokDir)).get(tokDir)!;
  const full = encodeRows(tok, r.rows, { template: 'gemma-chat', maxTokens: 1 << 20, swap: false });
  const kept = encodeRows(tok, r.rows, { template: 'gemma-chat', maxTokens, swap: false });
  return {
    rows: r.rows.length,
    cut: full.ids.filter((x) => x.length > maxTokens).length,
    longestFull: full.stats.maxLength,
    longestKept: kept.stats.maxLength,
  };
}

interface Run {
  summary: { steps: number; final_loss: number; valid: { epoch: number; logLoss: number }[] };
  steps: { step: number; epoch: number; loss: number; lr: number }[];
  stderr: string;
}

function train(args: string[]): Run {
  const r = ok(TRAINER, ['train', ...args]);
  const out = args[args.indexOf('--out') + 1];
  const lines = readFileSync(join(out, 'train_log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  return {
    summary: JSON.parse(r.stdout.trim().split('\n').at(-1)!),
    steps: lines.filter((l) => 'step' in l),
    stderr: r.stderr,
  };
}

/** The trainer's count of rows it cut to --max-tokens in `file`. */
function trainerCut(run: Run, file: string): number {
  const line = run.stderr.split('\n').find((l) => l.startsWith(`train: ${file}: `));
  const m = /(\d+) of \d+ rows cut/.exec(line ?? '');
  assert.ok(m, `no truncation count for ${file} in the trainer's log`);
  return Number(m[1]);
}

/** Mean training loss of the first and of the last epoch. */
function epochLosses(run: Run): [number, number] {
  const mean = (e: number) => {
    const l = run.steps.filter((s) => s.epoch === e).map((s) => s.loss);
    return l.reduce((a, b) => a + b, 0) / l.length;
  };
  return [mean(1), mean(run.steps.at(-1)!.epoch)];
}

/** import --adapter (fp32, the trainer's token budget) then runner validate without TTA: the log loss. */
function importAndValidate(
  base: string,
  adapter: string,
  weights: string,
  maxTokens: number,
  extra: string[] = [],
): number {
  ok(TRAINER, [
    'import',
    '--base',
    base,
    '--adapter',
    adapter,
    '--quant',
    'fp32',
    '--max-tokens',
    String(maxTokens),
    '--out',
    weights,
    ...extra,
  ]);
  const v = ok(RUNNER, ['validate', '--data', VALID, '--weights', weights, '--ep', 'cpu', '--tta', 'none']);
  return JSON.parse(v.stdout.trim().split('\n').at(-1)!).log_loss;
}

function moved(before: Float32Array, after: Float32Array): number {
  return maxAbsDiff(before, after);
}

describe('training recipes (issue 13) through the built CLI on tiny models', function () {
  this.timeout(300_000);
  let tmp: string;
  let tiny: string;
  let tok: string;
  before(() => {
    ensureBuilt();
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-recipes-'));
    tiny = join(tmp, 'tiny-hf');
    ok(TRAINER, ['tiny', '--hf', '--out', tiny]);
    tok = join(tmp, 'byte-tok');
    writeByteTokenizer(tok);
  });
  after(() => tmp && rmSync(tmp, { recursive: true, force: true }));

  it('PiSSA with r above a weight rank: rank min(r, k) at the scale of r (peft 0.13.2), saved so import and the trainer read the same scales', () => {
    const c = fixtureConfig(MLPHEAD, { activation: 'gelu_tanh' });
    const ck = openCheckpoint(MLPHEAD);
    for (const use_rslora of [false, true]) {
      const asked = { ...DEFAULT_LORA, r: 64, lora_alpha: 128, use_rslora };
      const nominal = use_rslora ? 128 / 8 : 2;
      const { settings, clamped } = pissaSettings(c, asked);
      assert.deepEqual(clamped, ['k_proj', 'v_proj']);
      const spec = planLora(c, settings);
      const ranks = [...spec.lora.values()].map((m) => `${m.module.split('.').at(-1)}:${m.rank}`);
      assert.deepEqual([...new Set(ranks)], ['q_proj:64', 'k_proj:32', 'v_proj:32', 'o_proj:64']);
      for (const m of spec.lora.values())
        assert.ok(Math.abs(m.scale - nominal) < 1e-12, `${m.module} scale ${m.scale}`);
      const { params } = pissaInit(spec, ck.get);
      const out = join(tmp, `pattern-${use_rslora}`);
      writeAdapter(out, {
        spec,
        params,
        config: c,
        pissaStart: params,
        baseModelNameOrPath: MLPHEAD,
        labels: [...LABEL_COLUMNS],
      });
      const a = openAdapter(out); // import's reader: converted, so every rank doubles and the scale stays
      for (const m of spec.lora.values()) {
        const p = a.lora.get(`${m.module}.weight`)!;
        assert.equal(p.rank, 2 * m.rank);
        assert.ok(Math.abs(p.scale - nominal) < 1e-12, `import reads ${m.module} at scale ${p.scale}`);
      }
      a.close();
      const back = planLora(c, readAdapter(out).settings); // continue training
      for (const m of spec.lora.values())
        assert.ok(
          back.lora.get(m.module)!.rank === 2 * m.rank && Math.abs(back.lora.get(m.module)!.scale - nominal) < 1e-12,
        );
    }
    ck.close();
  });

  it('recipe 1: PiSSA r 64 / alpha 64 / dropout 0.05 with a multi-layer score head', async () => {
    const out = join(tmp, 'r1');
    const maxTokens = 256;
    const cut = await truncation(TRAIN, tok, maxTokens);
    const run = train([
      '--base',
      MLPHEAD,
      '--tokenizer',
      tok,
      '--head-activation',
      'gelu_tanh',
      '--data',
      TRAIN,
      '--valid',
      VALID,
      '--max-tokens',
      String(maxTokens),
      '--init',
      'pissa',
      '--lora-r',
      '64',
      '--lora-alpha',
      '64',
      '--lora-dropout',
      '0.05',
      '--lora-targets',
      QKVO.join(','),
      '--epochs',
      '2',
      '--batch-size',
      '8',
      '--lr',
      '1e-3',
      '--out',
      out,
    ]);
    const { cfg, tensors } = readAdapterFiles(out);
    // PiSSA is saved converted (A' = [A; A0], B' = [B, -B0]): r and alpha doubled, plain LoRA init.
    assert.equal(cfg.r, 128);
    assert.equal(cfg.lora_alpha, 128);
    assert.equal(cfg.lora_dropout, 0.05);
    assert.equal(cfg.init_lora_weights, true);
    assert.deepEqual(cfg.target_modules, QKVO);
    assert.ok(cfg.modules_to_save.includes('score'));
    // k_proj / v_proj are [32, 64]: peft 0.13.2's pissa_init slices the SVD to rank 32 there with the scale of r 64
    assert.deepEqual(cfg.rank_pattern, { k_proj: 64, v_proj: 64 });
    assert.deepEqual(cfg.alpha_pattern, { k_proj: 64, v_proj: 64 });
    assert.deepEqual(loraModules(tensors), [0, 1, 2, 3].flatMap((l) => QKVO.map((p) => `${l}.${p}`)).sort());
    assert.deepEqual(tensors.get(`${PREFIX}model.layers.0.self_attn.q_proj.lora_A.weight`)!.shape, [128, 64]);
    assert.deepEqual(tensors.get(`${PREFIX}model.layers.0.self_attn.k_proj.lora_A.weight`)!.shape, [64, 64]);
    assert.deepEqual(tensors.get(`${PREFIX}model.layers.0.self_attn.k_proj.lora_B.weight`)!.shape, [32, 64]);
    // The whole score.N.* stack is saved and trained; no MLP projection has LoRA.
    const base = openCheckpoint(MLPHEAD);
    const headKeys = [...tensors.keys()]
      .filter((k) => k.startsWith(`${PREFIX}score.`))
      .map((k) => k.slice(PREFIX.length))
      .sort();
    assert.deepEqual(headKeys, [
      'score.0.bias',
      'score.0.weight',
      'score.2.bias',
      'score.2.weight',
      'score.4.bias',
      'score.4.weight',
    ]);
    const headMoved = Math.min(...headKeys.map((k) => moved(base.get(k).data, tensors.get(PREFIX + k)!.data)));
    // k_proj keeps all of W in its rank-32 PiSSA pair (residual 0): the saved A0, B0 multiply back to the base weight.
    const kA = tensors.get(`${PREFIX}model.layers.1.self_attn.k_proj.lora_A.weight`)!.data;
    const kB = tensors.get(`${PREFIX}model.layers.1.self_attn.k_proj.lora_B.weight`)!.data;
    const W = base.get('model.layers.1.self_attn.k_proj.weight').data;
    let worstW = 0;
    for (let o = 0; o < 32; o++)
      for (let j = 0; j < 64; j++) {
        let s = 0;
        for (let i = 0; i < 32; i++) s += -kB[o * 64 + 32 + i] * kA[(32 + i) * 64 + j]; // B' = [B, -B0], A' = [A; A0]; scale 1
        worstW = Math.max(worstW, Math.abs(s - W[o * 64 + j]));
      }
    base.close();
    const [first, last] = epochLosses(run);
    const trainerLoss = run.summary.valid.at(-1)!.logLoss;
    const runnerLoss = importAndValidate(MLPHEAD, out, join(tmp, 'r1-w'), maxTokens, [
      '--tokenizer',
      tok,
      '--head-activation',
      'gelu_tanh',
      '--labels',
      'winner_model_a,winner_model_b,winner_tie',
    ]);
    console.log(
      `      recipe 1 (gemma2-mlphead, byte tokenizer, --max-tokens ${maxTokens}: ${cut.cut}/${cut.rows} rows cut, longest ${cut.longestFull} -> ${cut.longestKept}): ` +
        `${run.summary.steps} steps, mean training loss epoch 1 ${first.toFixed(4)} -> last ${last.toFixed(4)}; head moved >= ${headMoved.toExponential(2)}; ` +
        `k_proj B0 A0 vs W max diff ${worstW.toExponential(2)} (tolerance 1e-4); log loss on the training rows (uniform 1.0986): trainer ${trainerLoss.toFixed(6)} vs runner ${runnerLoss.toFixed(6)}, ` +
        `|diff| ${Math.abs(trainerLoss - runnerLoss).toExponential(2)} (tolerance 1e-4)`,
    );
    assert.ok(cut.cut > 0 && cut.longestKept <= maxTokens, 'truncation cut rows');
    assert.equal(trainerCut(run, TRAIN), cut.cut);
    assert.ok(headMoved > 1e-5, 'every head tensor moved');
    assert.ok(worstW < 1e-4);
    assert.ok(last < first - 0.02, 'the training loss falls');
    assert.ok(trainerLoss < Math.log(3) - 0.1, 'far from uniform');
    assert.ok(Math.abs(trainerLoss - runnerLoss) < 1e-4);
    // and the saved adapter continues training (its rank_pattern read back: k_proj / v_proj stay rank 64 of r 128)
    const more = train([
      '--base',
      MLPHEAD,
      '--adapter',
      out,
      '--tokenizer',
      tok,
      '--head-activation',
      'gelu_tanh',
      '--data',
      TRAIN,
      '--max-tokens',
      String(maxTokens),
      '--max-steps',
      '2',
      '--out',
      join(tmp, 'r1-more'),
    ]);
    assert.equal(more.summary.steps, 2);
  });

  it('recipe 2: first layers frozen (layers_to_transform), AdamW with linear warmup, head+tail truncation', async () => {
    const out = join(tmp, 'r2');
    const maxTokens = 96;
    const cutTrain = await truncation(TRAIN, tiny, maxTokens);
    const peak = 2e-3;
    const warmup = 4;
    const run = train([
      '--base',
      tiny,
      '--data',
      TRAIN,
      '--valid',
      VALID,
      '--max-tokens',
      String(maxTokens),
      '--layers-to-transform',
      '2-3',
      '--lora-r',
      '16',
      '--lora-alpha',
      '32',
      '--lora-dropout',
      '0.05',
      '--lr',
      String(peak),
      '--warmup-steps',
      String(warmup),
      '--schedule',
      'linear',
      '--weight-decay',
      '0.01',
      '--adam-betas',
      '0.9,0.999',
      '--epochs',
      '4',
      '--batch-size',
      '8',
      '--out',
      out,
    ]);
    const { cfg, tensors } = readAdapterFiles(out);
    assert.deepEqual(cfg.layers_to_transform, [2, 3]);
    assert.equal(cfg.r, 16);
    assert.equal(cfg.lora_alpha, 32);
    assert.deepEqual(
      loraModules(tensors),
      [2, 3].flatMap((l) => QKVO.map((p) => `${l}.${p}`)).sort(),
      'no LoRA tensors on the frozen layers 0 and 1',
    );
    const bMoved = Math.min(
      ...[...tensors].filter(([k]) => k.endsWith('lora_B.weight')).map(([, t]) => Math.max(...t.data.map(Math.abs))),
    );
    // transformers' get_linear_schedule_with_warmup, stepped after each optimizer step: step s uses lambda(s - 1)
    const total = run.steps.length;
    const hf = (s: number) =>
      peak * (s - 1 < warmup ? (s - 1) / warmup : Math.max(0, (total - (s - 1)) / (total - warmup)));
    const lrDiff = Math.max(...run.steps.map((s) => Math.abs(s.lr - hf(s.step))));
    const [first, last] = epochLosses(run);
    const trainerLoss = run.summary.valid.at(-1)!.logLoss;
    const runnerLoss = importAndValidate(tiny, out, join(tmp, 'r2-w'), maxTokens);
    console.log(
      `      recipe 2 (tiny Gemma-2, layers 2-3 of 4, --max-tokens ${maxTokens}: ${cutTrain.cut}/${cutTrain.rows} rows cut, ` +
        `longest ${cutTrain.longestFull} -> ${cutTrain.longestKept}): ${total} steps, lr ${run.steps
          .slice(0, warmup + 2)
          .map((s) => s.lr.toExponential(1))
          .join(' ')} ... ` +
        `${run.steps.at(-1)!.lr.toExponential(2)} (max diff from HF ${lrDiff.toExponential(1)}); LoRA B min |max| ${bMoved.toExponential(2)}; ` +
        `mean training loss epoch 1 ${first.toFixed(4)} -> last ${last.toFixed(4)}; log loss on the training rows (uniform 1.0986): trainer ${trainerLoss.toFixed(6)} vs runner ${runnerLoss.toFixed(6)}, ` +
        `|diff| ${Math.abs(trainerLoss - runnerLoss).toExponential(2)} (tolerance 1e-4)`,
    );
    assert.ok(cutTrain.cut > 0 && cutTrain.longestKept <= maxTokens, 'truncation cut rows');
    assert.equal(trainerCut(run, TRAIN), cutTrain.cut);
    assert.equal(run.steps[0].lr, 0, "the scheduler's first step uses lr 0");
    assert.ok(lrDiff < 1e-12);
    assert.ok(bMoved > 0, 'every LoRA B left zero');
    assert.ok(last < first - 0.02, 'the training loss falls');
    assert.ok(trainerLoss < Math.log(3) - 0.1, 'far from uniform');
    assert.ok(Math.abs(trainerLoss - runnerLoss) < 1e-4);
  });

  it('recipe 3: r 16 / alpha 32 on q,k,v,o with the score head saved (modules_to_save)', async () => {
    const out = join(tmp, 'r3');
    const maxTokens = 96;
    const cut = await truncation(TRAIN, tiny, maxTokens);
    const run = train([
      '--base',
      tiny,
      '--data',
      TRAIN,
      '--valid',
      VALID,
      '--max-tokens',
      String(maxTokens),
      '--lora-r',
      '16',
      '--lora-alpha',
      '32',
      '--lora-targets',
      QKVO.join(','),
      '--lora-dropout',
      '0.05',
      '--lr',
      '2e-3',
      '--epochs',
      '4',
      '--batch-size',
      '8',
      '--out',
      out,
    ]);
    const { cfg, tensors } = readAdapterFiles(out);
    assert.equal(cfg.r, 16);
    assert.equal(cfg.lora_alpha, 32);
    assert.deepEqual(cfg.target_modules, QKVO);
    assert.equal(cfg.layers_to_transform, null);
    assert.deepEqual(cfg.modules_to_save, ['classifier', 'score']);
    assert.deepEqual(loraModules(tensors), [0, 1, 2, 3].flatMap((l) => QKVO.map((p) => `${l}.${p}`)).sort());
    assert.deepEqual(tensors.get(`${PREFIX}model.layers.0.self_attn.k_proj.lora_A.weight`)!.shape, [16, 64]);
    assert.deepEqual(tensors.get(`${PREFIX}model.layers.0.self_attn.k_proj.lora_B.weight`)!.shape, [32, 16]);
    assert.deepEqual(
      [...tensors.keys()].filter((k) => !k.includes('.lora_')),
      [`${PREFIX}score.weight`],
    );
    const base = openCheckpoint(tiny);
    const headMoved = moved(base.get('score.weight').data, tensors.get(`${PREFIX}score.weight`)!.data);
    base.close();
    const [first, last] = epochLosses(run);
    const trainerLoss = run.summary.valid.at(-1)!.logLoss;
    const runnerLoss = importAndValidate(tiny, out, join(tmp, 'r3-w'), maxTokens);
    console.log(
      `      recipe 3 (tiny Gemma-2, --max-tokens ${maxTokens}: ${cut.cut}/${cut.rows} rows cut): ${run.summary.steps} steps, score.weight moved ${headMoved.toExponential(2)}; ` +
        `mean training loss epoch 1 ${first.toFixed(4)} -> last ${last.toFixed(4)}; log loss on the training rows (uniform 1.0986): trainer ${trainerLoss.toFixed(6)} vs runner ${runnerLoss.toFixed(6)}, ` +
        `|diff| ${Math.abs(trainerLoss - runnerLoss).toExponential(2)} (tolerance 1e-4)`,
    );
    assert.ok(cut.cut > 0, 'truncation cut rows');
    assert.equal(trainerCut(run, TRAIN), cut.cut);
    assert.ok(headMoved > 1e-4, 'the saved score head was trained');
    assert.ok(last < first - 0.02, 'the training loss falls');
    assert.ok(trainerLoss < Math.log(3) - 0.1, 'far from uniform');
    assert.ok(Math.abs(trainerLoss - runnerLoss) < 1e-4);
  });
});
