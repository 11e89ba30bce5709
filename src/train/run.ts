// The training run, top to bottom (nanoGPT style): options with commented defaults, base + LoRA
// setup, data, the epoch/step loop of HF Trainer (shuffle, micro-batches, accumulation, clip, AdamW,
// schedule), progress with loss / lr / ETA, checkpoints + resume, validation log loss per epoch, and
// the PEFT adapter folder at the end. File I/O lives here and in src/cli/commands/train.ts only.
import { existsSync, mkdirSync, readFileSync, writeFileSync, appendFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LABEL_COLUMNS, type Activation, type HostTensor, type ModelConfig, type WeightSource } from '../types';
import { forName } from '../util/rng';
import { hfLabelNames, parseHfConfig } from '../weights/hfconfig';
import { openCheckpoint, openSafetensors, type Checkpoint } from '../weights/safetensors';
import { chooseHead } from '../weights/import';
import { writeSafetensors } from '../weights/safetensors-write';
import { writeAdapter } from './adapter';
import { epochOrder, epochSteps, readCsv, readTokenized, type LoadedRows } from './data';
import { batchFeeds, type Example } from './feeds';
import { buildTrainGraph } from './graph';
import { fitHead, headLoss } from './head';
import { checkParams, PEFT_PREFIX, DEFAULT_LORA, defaultInit, LoraSetupError, overlay, pissaInit, planLora, readAdapter, type LoraSettings, type Params, type TrainableSpec } from './lora';
import { adamState, lrAt, type AdamState, type Schedule } from './optim';
import { TrainSession } from './session';
import { trainStep, type StepLog } from './step';
import { fmt } from '../util/progress';

export interface TrainOptions {
  base: string;
  /** Continue from this PEFT adapter (its LoRA settings win). */
  adapter?: string;
  /** Labelled competition file (CSV or WSDM parquet), tokenized with the base folder's tokenizer ... */
  data?: string;
  /** ... or JSON lines {"input_ids": [...], "label": k}. */
  tokenized?: string;
  /** Optional validation rows (same format as the training rows): log loss after every epoch. */
  valid?: string;
  out: string;
  /** 'lora': LoRA (+ head) by backprop; 'head': one forward pass for pooled features, then the head fitted in JS. */
  train: 'lora' | 'head';
  /** Activation between the linears of a multi-layer score.N.* head (as `import --head-activation`). */
  headActivation?: Activation;
  /** A base without a score head (a causal LM): train a new one with this many outputs. */
  numLabels?: number;
  lora: LoraSettings; // DEFAULT_LORA: r 16, alpha 32, dropout 0.05, q/k/v/o, all layers, score head trained
  init: 'peft' | 'pissa'; // PEFT default init (A kaiming-uniform, B zeros) or PiSSA
  batchSize: number; // 4 rows per micro-batch (per_device_train_batch_size)
  gradAccum: number; // 1 micro-batch per optimizer step (gradient_accumulation_steps)
  epochs: number; // 1
  maxSteps: number | null; // null = epochs decide; else stop after this many optimizer steps
  lr: number; // 5e-5, HF TrainingArguments' default
  warmupSteps: number; // 0
  schedule: Schedule; // 'linear' decay to 0 after warmup, or 'constant'
  weightDecay: number; // 0, HF's default (decoupled, AdamW)
  betas: [number, number]; // [0.9, 0.999]
  eps: number; // 1e-8
  maxGradNorm: number | null; // 1.0; null = no clipping
  shuffle: boolean; // true: seeded shuffle per epoch; false keeps file order
  swapAugment: boolean; // false: CSV rows also trained with responses swapped
  seed: number; // 0: LoRA init, shuffling, dropout masks
  template: string; // 'gemma-chat' prompt template for --data
  maxTokens: number; // 512 tokens per row for --data
  tokenizer?: string; // folder with tokenizer.json when the base folder has none
  checkpointEvery: number; // 0 = none; else save out/checkpoint every N steps
  resume: boolean; // continue from out/checkpoint
  threads: number; // ORT intra-op threads
  log: (line: string) => void;
}

export const DEFAULT_TRAIN: Omit<TrainOptions, 'base' | 'out' | 'log'> = {
  train: 'lora',
  lora: DEFAULT_LORA,
  init: 'peft',
  batchSize: 4,
  gradAccum: 1,
  epochs: 1,
  maxSteps: null,
  lr: 5e-5,
  warmupSteps: 0,
  schedule: 'linear',
  weightDecay: 0,
  betas: [0.9, 0.999],
  eps: 1e-8,
  maxGradNorm: 1,
  shuffle: true,
  swapAugment: false,
  seed: 0,
  template: 'gemma-chat',
  maxTokens: 512,
  checkpointEvery: 0,
  resume: false,
  threads: 1,
};

export interface TrainResult {
  steps: number;
  seconds: number;
  secondsPerStep: number;
  log: StepLog[];
  valid: { epoch: number; logLoss: number }[];
}

/**
 * The base's config with its head as import sees it: score.weight or a score.N.* stack from the
 * checkpoint, else from the --adapter's modules_to_save (a causal-LM base with a Kaggle adapter), else a
 * NEW score head of `numLabels` outputs (HF init: normal(0, initializer_range), seeded). `extra` holds
 * the head tensors the checkpoint lacks.
 */
function loadBase(dir: string, ck: Checkpoint, o: TrainOptions): { config: ModelConfig; labelIndex: [number, number, number]; extra: Map<string, HostTensor> } {
  const file = join(dir, 'config.json');
  if (!existsSync(file)) throw new LoraSetupError(`${dir}: no config.json; --base takes a Hugging Face model folder`);
  const json = JSON.parse(readFileSync(file, 'utf8'));
  const extra = new Map<string, HostTensor>();
  if (o.adapter && existsSync(join(o.adapter, 'adapter_model.safetensors'))) {
    const f = openSafetensors(join(o.adapter, 'adapter_model.safetensors'));
    try {
      for (const key of f.tensors.keys()) {
        const hf = key.slice(PEFT_PREFIX.length).replace(/\.default(?=\.|$)/g, '').replace('.modules_to_save', '');
        if (/^score\./.test(hf) && !ck.names.includes(hf)) extra.set(hf, f.read(key));
      }
    } finally {
      f.close();
    }
  }
  // chooseHead reads names and shapes only
  const view = { names: [...ck.names, ...extra.keys()], info: (n: string) => (extra.has(n) ? ({ shape: extra.get(n)!.shape } as ReturnType<Checkpoint['info']>) : ck.info(n)) };
  let head = chooseHead(view, null, { activation: o.headActivation, tokenizerDir: dir, configFile: file });
  if (!head && o.numLabels) {
    const H = (json as { hidden_size: number }).hidden_size;
    const std = (json as { initializer_range?: number }).initializer_range ?? 0.02;
    const rng = forName(o.seed, 'score.weight');
    extra.set('score.weight', { shape: [o.numLabels, H], data: Float32Array.from({ length: o.numLabels * H }, () => rng.normal() * std) });
    head = { kind: 'classifier', layers: [{ weight: 'score.weight', bias: null, inFeatures: H, outFeatures: o.numLabels }], activation: null };
  } else if (head && o.numLabels && head.kind === 'classifier' && head.layers.at(-1)!.outFeatures !== o.numLabels)
    throw new LoraSetupError(`--num-labels ${o.numLabels}: the base already has a ${head.layers.at(-1)!.outFeatures}-output score head; drop --num-labels`);
  if (!head && /ForCausalLM$/.test(String((json as { architectures?: string[] }).architectures?.[0])))
    throw new LoraSetupError(`${file}: a causal-LM base has no score head; pass --num-labels 3 (or 2) to train a new one`);
  const config = parseHfConfig(json, file, head ? { head } : {});
  if (config.numLabels < 2) throw new LoraSetupError(`${file}: num_labels ${config.numLabels}; cross-entropy training needs 2 or more labels`);
  // CSV outcomes go to the logit id2label names them by; generic names (LABEL_0..) keep Kaggle's order.
  const names = hfLabelNames(json) ?? [];
  const named = LABEL_COLUMNS.every((c) => names.includes(c));
  // A 2-label head (WSDM: model_a / model_b) has no tie output.
  const labelIndex = (named ? LABEL_COLUMNS.map((c) => names.indexOf(c)) : config.numLabels === 2 ? [0, 1, -1] : [0, 1, 2]) as [number, number, number];
  return { config, labelIndex, extra };
}

async function loadRows(path: string, kind: 'csv' | 'jsonl', c: ModelConfig, o: TrainOptions, labelIndex: [number, number, number]): Promise<LoadedRows> {
  if (kind === 'jsonl') return readTokenized(path, c.numLabels, c.vocabSize);
  if (c.numLabels > 3) throw new LoraSetupError(`${path}: competition rows have 3 outcomes but the base has ${c.numLabels} labels; pass --tokenized rows with labels in 0..${c.numLabels - 1}`);
  return readCsv(path, { tokenizerDir: o.tokenizer ?? o.base, template: o.template, maxTokens: o.maxTokens, swapAugment: o.swapAugment, labelIndex });
}

/** Mean cross-entropy over rows, in batches, with the loss output of a forward-only session. */
async function logLoss(c: ModelConfig, s: TrainSession, params: Params, rows: Example[], batch: number): Promise<number> {
  let sum = 0;
  for (let i = 0; i < rows.length; i += batch) {
    const mb = rows.slice(i, i + batch);
    sum += (await s.run(batchFeeds(c, mb), params, 0)).loss * mb.length;
  }
  return sum / rows.length;
}

interface TrainCheckpoint {
  step: number;
  adamT: number;
  rows: number;
}

function saveCheckpoint(dir: string, params: Params, state: AdamState, ck: TrainCheckpoint, shapes: Map<string, number[]>): void {
  mkdirSync(dir, { recursive: true });
  const t = (m: Params, prefix: string) => new Map([...m].map(([k, d]) => [`${prefix}${k}`, { shape: shapes.get(k)!, data: d }]));
  writeSafetensors(join(dir, 'state.safetensors'), new Map([...t(params, 'param/'), ...t(state.m, 'exp_avg/'), ...t(state.v, 'exp_avg_sq/')]));
  writeFileSync(join(dir, 'checkpoint.json'), JSON.stringify(ck) + '\n');
}

function loadCheckpoint(dir: string, params: Params, state: AdamState, rows: number): TrainCheckpoint {
  const file = join(dir, 'checkpoint.json');
  if (!existsSync(file)) throw new LoraSetupError(`--resume: no checkpoint at ${dir}; run without --resume (or with --checkpoint-every N) first`);
  const ck = JSON.parse(readFileSync(file, 'utf8')) as TrainCheckpoint;
  if (ck.rows !== rows) throw new LoraSetupError(`--resume: ${file} was made with ${ck.rows} training rows, this run has ${rows}; resume with the same data`);
  const f = openSafetensors(join(dir, 'state.safetensors'));
  try {
    for (const [prefix, m] of [['param/', params], ['exp_avg/', state.m], ['exp_avg_sq/', state.v]] as const)
      for (const k of m.keys()) m.get(k)!.set(f.read(`${prefix}${k}`).data);
  } finally {
    f.close();
  }
  state.t = ck.adamT;
  return ck;
}

/** Pooled features of `rows` (one forward pass, eval mode) with the current LoRA tensors. */
async function features(c: ModelConfig, s: TrainSession, params: Params, rows: Example[], batch: number): Promise<Float32Array> {
  const x = new Float32Array(rows.length * c.hiddenSize);
  for (let i = 0; i < rows.length; i += batch) x.set((await s.run(batchFeeds(c, rows.slice(i, i + batch)), params, 0)).pooled!, i * c.hiddenSize);
  return x;
}

/** `--train head`: the LoRA tensors stay as they are; only the score head is refitted on cached features. */
async function headOnly(
  o: TrainOptions,
  c: ModelConfig,
  weights: WeightSource,
  spec: TrainableSpec,
  params: Params,
  pissaStart: Params | null,
  train: LoadedRows,
  valid: LoadedRows | null,
  out: string,
): Promise<TrainResult> {
  if (spec.head.length !== 1 || spec.head[0].shape.length !== 2)
    throw new LoraSetupError('--train head fits a single linear score head (no bias); this model has a multi-layer head: train it with --train lora');
  const head = spec.head[0].key;
  const t0 = Date.now();
  const s = await TrainSession.create(buildTrainGraph(c, weights, spec, { forwardOnly: true }), o.threads);
  const x = await features(c, s, params, train.rows, o.batchSize);
  const vx = valid ? await features(c, s, params, valid.rows, o.batchSize) : null;
  await s.release();
  const featSec = (Date.now() - t0) / 1000;
  o.log(`train: pooled features of ${train.rows.length} rows in ${featSec.toFixed(1)} s`);
  const steps = o.maxSteps ?? 500;
  const labels = train.rows.map((r) => r.label);
  const fit = fitHead(x, labels, c.hiddenSize, c.numLabels, params.get(head)!, { steps, lr: o.lr, weightDecay: o.weightDecay });
  params.set(head, fit.weight);
  o.log(`train: head fitted in ${steps} full-batch AdamW steps: training log loss ${fit.startLoss.toFixed(4)} -> ${fit.loss.toFixed(4)}`);
  const result: TrainResult = { steps, seconds: (Date.now() - t0) / 1000, secondsPerStep: 0, log: [], valid: [] };
  if (valid && vx) {
    const ll = headLoss(fit.weight, vx, valid.rows.map((r) => r.label), c.hiddenSize, c.numLabels);
    result.valid.push({ epoch: 1, logLoss: ll });
    o.log(`train: validation log loss ${ll.toFixed(4)} (${valid.rows.length} rows; uniform ${Math.log(c.numLabels).toFixed(4)})`);
  }
  writeAdapter(out, { spec, params, config: c, pissaStart, baseModelNameOrPath: resolve(o.base) });
  const { log: _log, ...recorded } = o;
  writeFileSync(
    join(out, 'training.json'),
    JSON.stringify({ options: recorded, rows: train.rows.length, head_fit: { steps, start_loss: fit.startLoss, loss: fit.loss }, valid: result.valid, seconds: result.seconds }, null, 2) + '\n',
  );
  return result;
}

export async function runTraining(o: TrainOptions): Promise<TrainResult> {
  const out = resolve(o.out);
  mkdirSync(out, { recursive: true });
  const ck = openCheckpoint(o.base);
  const { config: c, labelIndex, extra } = loadBase(o.base, ck, o);
  try {
    // ---- trainable tensors and their starting values
    let settings = o.lora;
    let params: Params;
    let weights: WeightSource = extra.size ? (name) => extra.get(name) ?? ck.get(name) : ck.get;
    let pissaStart: Params | null = null;
    if (o.adapter) {
      const ad = readAdapter(o.adapter);
      if (ad.init !== true && ad.init !== false && ad.init !== undefined && ad.init !== 'gaussian')
        throw new LoraSetupError(`${o.adapter}: init_lora_weights ${JSON.stringify(ad.init)} needs its residual base; save it converted (PEFT path_initial_model_for_weight_conversion) first`);
      settings = { ...ad.settings, lora_dropout: o.lora.lora_dropout };
      params = ad.params;
      checkParams(planLora(c, settings), params, o.adapter);
    } else if (o.init === 'pissa') {
      const p = pissaInit(planLora(c, settings), weights);
      params = p.params;
      pissaStart = new Map([...params].map(([k, v]) => [k, Float32Array.from(v)]));
      weights = overlay(weights, p.residual);
    } else {
      params = defaultInit(planLora(c, settings), weights, o.seed);
    }
    const spec = planLora(c, settings);
    if (o.train === 'head' && !spec.head.length) throw new LoraSetupError('--train head needs a trainable score head (drop --frozen-head)');
    o.log(`train: ${spec.lora.size} LoRA modules (r ${settings.r}, alpha ${settings.lora_alpha}${settings.use_rslora ? ', rsLoRA' : ''}), head ${spec.head.length ? 'trained' : 'frozen'}, ${[...params.values()].reduce((a, p) => a + p.length, 0)} trainable values`);

    // ---- data
    const train = await loadRows((o.data ?? o.tokenized)!, o.data ? 'csv' : 'jsonl', c, o, labelIndex);
    const valid = o.valid ? await loadRows(o.valid, /\.jsonl?$/i.test(o.valid) ? 'jsonl' : 'csv', c, o, labelIndex) : null;
    for (const w of [...train.warnings, ...(valid?.warnings ?? [])]) o.log(`warning: ${w}`);
    const stepsPerEpoch = Math.ceil(Math.ceil(train.rows.length / o.batchSize) / o.gradAccum);
    const total = o.maxSteps ?? stepsPerEpoch * o.epochs;
    o.log(`train: ${train.rows.length} rows, ${stepsPerEpoch} steps per epoch, ${total} steps`);

    if (o.train === 'head') {
      if (o.init === 'pissa') throw new LoraSetupError('--train head keeps the base as it is; drop --init pissa');
      // Without --adapter there is no LoRA to keep: the adapter holds the head alone (its LoRA config is inert).
      const headSpec = o.adapter ? spec : { ...spec, lora: new Map() };
      const headParams = o.adapter ? params : new Map(spec.head.map((t) => [t.key, params.get(t.key)!]));
      return await headOnly(o, c, weights, headSpec, headParams, null, train, valid, out);
    }

    // ---- graph and sessions
    const tg = buildTrainGraph(c, weights, spec);
    const session = await TrainSession.create(tg, o.threads);
    const evalSession = valid ? await TrainSession.create(buildTrainGraph(c, weights, spec, { forwardOnly: true }), o.threads) : null;
    const state = adamState(params);
    const shapes = session.shapes;
    const ckDir = join(out, 'checkpoint');
    let done = 0;
    if (o.resume) {
      done = loadCheckpoint(ckDir, params, state, train.rows.length).step;
      o.log(`train: resumed at step ${done}`);
    }
    const logFile = join(out, 'train_log.jsonl');
    if (!o.resume) rmSync(logFile, { force: true });

    const result: TrainResult = { steps: 0, seconds: 0, secondsPerStep: 0, log: [], valid: [] };
    const t0 = Date.now();
    let step = 0;
    let ran = 0;
    let stepSeconds = 0; // optimizer steps only (no validation passes)
    for (let epoch = 0; step < total; epoch++) {
      const steps = epochSteps(epochOrder(train.rows.length, o.shuffle, o.seed, epoch), train.rows, o.batchSize, o.gradAccum);
      for (const mbs of steps) {
        if (step >= total) break;
        step++;
        if (step <= done) continue; // resumed: these steps are in the checkpoint
        const lr = lrAt(step, o.lr, o.schedule, o.warmupSteps, total);
        const ts = Date.now();
        const s = await trainStep(c, session, params, state, mbs, step, lr, {
          adam: { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weightDecay },
          maxGradNorm: o.maxGradNorm,
          dropout: spec.dropout,
          seed: o.seed,
          accumulation: o.gradAccum,
        });
        ran++;
        stepSeconds += (Date.now() - ts) / 1000;
        result.log.push(s);
        const per = stepSeconds / ran;
        appendFileSync(logFile, JSON.stringify({ step, epoch: epoch + 1, loss: s.loss, lr, grad_norm: s.gradNorm, seconds_per_step: per }) + '\n');
        o.log(
          `train: step ${step}/${total} epoch ${epoch + 1} loss ${s.loss.toFixed(4)} lr ${lr.toExponential(2)} grad-norm ${s.gradNorm.toFixed(3)} ` +
            `${per.toFixed(2)} s/step ETA ${fmt(per * (total - step))}`,
        );
        if (o.checkpointEvery > 0 && step % o.checkpointEvery === 0) saveCheckpoint(ckDir, params, state, { step, adamT: state.t, rows: train.rows.length }, shapes);
      }
      if (valid && evalSession && step > done) {
        const ll = await logLoss(c, evalSession, params, valid.rows, o.batchSize);
        result.valid.push({ epoch: epoch + 1, logLoss: ll });
        appendFileSync(logFile, JSON.stringify({ epoch: epoch + 1, valid_log_loss: ll }) + '\n');
        o.log(`train: epoch ${epoch + 1} validation log loss ${ll.toFixed(4)} (${valid.rows.length} rows; uniform ${Math.log(c.numLabels).toFixed(4)})`);
      }
    }
    await session.release();
    await evalSession?.release();
    result.steps = step;
    result.seconds = (Date.now() - t0) / 1000;
    result.secondsPerStep = ran ? stepSeconds / ran : 0;

    // ---- the adapter, and how it was made
    writeAdapter(out, { spec, params, config: c, pissaStart, baseModelNameOrPath: resolve(o.base) });
    const { log: _log, ...recorded } = o;
    writeFileSync(
      join(out, 'training.json'),
      JSON.stringify({ options: recorded, rows: train.rows.length, steps: step, seconds: result.seconds, final_loss: result.log.at(-1)?.loss ?? null, valid: result.valid }, null, 2) + '\n',
    );
    return result;
  } finally {
    ck.close();
  }
}
