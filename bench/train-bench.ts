// Training figures (`--only train`): (1) the loss curve and time per step of `trainer.cjs train` on the
// 999 sample rows with the hf-reference gemma2-tiny model (hidden 64, 4 layers; the byte tokenizer of
// tests/helpers keeps ids below its 512-row vocabulary); (2) steps/s of one LoRA step on a Gemma-2-2B
// width model with 4 layers (seeded random weights, never written to the repository).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { externalStore } from '../src/graph/store';
import { buildTrainGraph } from '../src/train/graph';
import { DEFAULT_LORA, defaultInit, planLora } from '../src/train/lora';
import { adamState } from '../src/train/optim';
import { TrainSession } from '../src/train/session';
import { trainStep } from '../src/train/step';
import type { ModelConfig, WeightSource } from '../src/types';
import { forName } from '../src/util/rng';
import { writeByteTokenizer } from '../tests/helpers/byte-tokenizer';

const root = resolve(__dirname, '..');
const shared = resolve(root, '..', 'shared');

export const TINY_TRAIN_ARGS = [
  '--data',
  join(shared, 'data', 'arena-sample-999.csv'),
  '--max-tokens',
  '256',
  '--batch-size',
  '8',
  '--max-steps',
  '300',
  '--lr',
  '1e-3',
  '--warmup-steps',
  '20',
  '--lora-r',
  '16',
  '--lora-alpha',
  '32',
  '--lora-dropout',
  '0.05',
  '--lora-targets',
  'all-linear',
];

async function tinyCurve(): Promise<Record<string, unknown>> {
  const dir = join(root, '.bench', 'train');
  const tok = join(dir, 'tok');
  if (!existsSync(join(tok, 'tokenizer.json'))) writeByteTokenizer(tok);
  const out = join(dir, 'adapter');
  const base = join(shared, 'fixtures', 'hf-reference', 'gemma2-tiny');
  const stdout = execFileSync(
    process.execPath,
    [join(root, 'dist', 'trainer.cjs'), 'train', '--base', base, '--tokenizer', tok, ...TINY_TRAIN_ARGS, '--out', out],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const summary = JSON.parse(stdout.trim().split('\n').at(-1)!);
  const log = readFileSync(join(out, 'train_log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((r) => 'loss' in r);
  const window = 25;
  const curve: Record<string, number> = {};
  for (let i = 0; i < log.length; i += window) {
    const w = log.slice(i, i + window);
    curve[`steps_${i + 1}_${i + w.length}`] = Number((w.reduce((a, r) => a + r.loss, 0) / w.length).toFixed(4));
  }
  return { steps: summary.steps, seconds_per_step: summary.seconds_per_step, mean_loss_per_25_steps: curve };
}

/** Seeded N(0, std) weights by name, built on demand (a 2B-width layer is never on disk). */
function randomWeights(c: ModelConfig): WeightSource {
  const H = c.hiddenSize;
  const shapes: Record<string, number[]> = {
    q_proj: [c.numHeads * c.headDim, H],
    k_proj: [c.numKvHeads * c.headDim, H],
    v_proj: [c.numKvHeads * c.headDim, H],
    o_proj: [H, c.numHeads * c.headDim],
    gate_proj: [c.intermediateSize, H],
    up_proj: [c.intermediateSize, H],
    down_proj: [H, c.intermediateSize],
  };
  return (name) => {
    const key = name.split('.').at(-2)!;
    const shape =
      name === 'model.embed_tokens.weight'
        ? [c.vocabSize, H]
        : name === 'score.weight'
          ? [c.numLabels, H]
          : (shapes[key] ?? [H]);
    const rng = forName(1, name);
    const n = shape.reduce((a, d) => a * d, 1);
    const std = shape.length === 1 ? 0.1 : 0.02;
    return { shape, data: Float32Array.from({ length: n }, () => rng.normal() * std) };
  };
}

export const WIDE_2B: ModelConfig = {
  family: 'gemma2',
  architecture: 'Gemma2ForSequenceClassification',
  vocabSize: 512,
  hiddenSize: 2304,
  intermediateSize: 9216,
  numLayers: 4,
  numHeads: 8,
  numKvHeads: 4,
  headDim: 256,
  rmsNormEps: 1e-6,
  normPlusOne: true,
  embedScale: true,
  activation: 'gelu_tanh',
  qkvBias: false,
  rope: { theta: 10000, scaling: null },
  attnScale: 256 ** -0.5,
  attnSoftcap: 50,
  slidingWindow: 4096,
  slidingLayers: 'even',
  numLabels: 3,
  head: {
    kind: 'classifier',
    layers: [{ weight: 'score.weight', bias: null, inFeatures: 2304, outFeatures: 3 }],
    activation: null,
  },
  padTokenId: 0,
  maxPositions: 8192,
};

/** One micro-batch of 2 rows x 128 tokens, LoRA r 16 on q/k/v/o + the head: seconds per optimizer step. */
async function wideSteps(threads: number): Promise<Record<string, unknown>> {
  const c = WIDE_2B;
  const dir = join(root, '.bench', 'train-2b');
  mkdirSync(dir, { recursive: true });
  const spec = planLora(c, { ...DEFAULT_LORA, lora_dropout: 0 });
  const w = randomWeights(c);
  const t0 = Date.now();
  const tg = buildTrainGraph(c, w, spec, { store: externalStore(join(dir, 'train.onnx.data')) });
  const s = await TrainSession.create(tg, threads, join(dir, 'train.onnx'));
  const buildSec = (Date.now() - t0) / 1000;
  const params = defaultInit(spec, w, 0);
  const state = adamState(params);
  const rnd = forName(2, 'rows');
  const rows = [0, 1].map((k) => ({
    inputIds: Array.from({ length: 128 }, () => 1 + Math.floor(rnd.next() * 511)),
    label: k,
  }));
  const o = {
    adam: { lr: 1e-4, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0 },
    maxGradNorm: 1,
    dropout: 0,
    seed: 0,
  };
  await trainStep(c, s, params, state, [rows], 1, 1e-4, o); // warm-up (allocations)
  const n = 3;
  const t1 = Date.now();
  for (let i = 0; i < n; i++) await trainStep(c, s, params, state, [rows], i + 2, 1e-4, o);
  const per = (Date.now() - t1) / 1000 / n;
  await s.release();
  rmSync(dir, { recursive: true, force: true });
  return {
    threads,
    rows: 2,
    tokens_per_row: 128,
    lora: 'r16 q,k,v,o + head',
    graph_build_and_load_s: Number(buildSec.toFixed(1)),
    seconds_per_step: Number(per.toFixed(2)),
    steps_per_s: Number((1 / per).toFixed(3)),
  };
}

export async function trainBench(): Promise<Record<string, unknown>> {
  return { tiny_sample_rows: await tinyCurve(), width_2b_4_layers: await wideSteps(2) };
}
