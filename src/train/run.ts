// The training run, top to bottom (nanoGPT style): options with commented defaults, base + LoRA
// setup, data, the epoch/step loop of HF Trainer (shuffle, micro-batches, accumulation, clip, AdamW,
// schedule), progress with loss / lr / ETA, checkpoints + resume, validation log loss per epoch, and
// the PEFT adapter folder at the end. File I/O lives here and in src/cli/commands/train.ts only.
import { existsSync, mkdirSync, readFileSync, writeFileSync, appendFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { outcomeOf, TASKS } from '../task/task';
import { LABEL_COLUMNS, type Activation, type HostTensor, type ModelConfig, type WeightSource } from '../types';
import { forName } from '../util/rng';
import { hfLabelNames, labelKeys, parseHfConfig } from '../weights/hfconfig';
import { readAdapterLabels } from '../weights/peft';
import { openCheckpoint, openSafetensors, type Checkpoint } from '../weights/safetensors';
import { chooseHead } from '../weights/import';
import { writeSafetensors } from '../weights/safetensors-write';
import { writeAdapter } from './adapter';
import { epochOrder, epochSteps, readCsv, readTokenized, type LoadedRows } from './data';
import { batchFeeds, type Example, type Feeds } from './feeds';
import { buildHeadGraph, buildTrainGraph } from './graph';
import { checkParams, PEFT_PREFIX, DEFAULT_LORA, defaultInit, LoraSetupError, overlay, pissaInit, pissaSettings, planLora, readAdapter, type LoraSettings, type Params, type TrainableSpec } from './lora';
import { adamState, adamwStep, clipGradNorm, lrAt, type AdamState, type Schedule } from './optim';
import { TrainSession, type TrainEp } from './session';
import { trainStep, type StepLog } from './step';
import { fmt } from '../util/progress';
import { loadTokenizer, type ArenaTokenizer } from '../format/encode';
import { getRecipe } from '../format/templates';
import { familyOf } from '../model/families';

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
  template?: string; // input recipe for --data (src/format/templates.ts); default: the base family's defaultTemplate
  truncation?: string; // its truncation rule (head-tail, right, left, part-budget); default: the template's own
  maxTokens: number; // 512 tokens per row for --data
  tokenizer?: string; // folder with tokenizer.json when the base folder has none
  checkpointEvery: number; // 0 = none; else save out/checkpoint every N steps
  resume: boolean; // continue from out/checkpoint
  threads: number; // ORT intra-op threads
  ep: TrainEp; // where the training graph runs (cpu, or webgpu)
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
  maxTokens: 512,
  checkpointEvery: 0,
  resume: false,
  threads: 1,
  ep: 'cpu',
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
 * NEW score head of `numLabels` outputs (HF init: normal(0, initializer_range), seeded). With
 * `numLabels` on a base whose head has another number of outputs, the head's last layer is replaced
 * (relabelled): a 2-output WSDM layer on a 3-label LMSYS head starts from its model_a / model_b rows
 * (so it starts as the runner's 3->2 mapping), anything else from a fresh HF init. `extra` holds the
 * head tensors the checkpoint lacks or that replace its own; `labels` names the outputs in logit order.
 */
function loadBase(dir: string, ck: Checkpoint, o: TrainOptions): { config: ModelConfig; labelIndex: [number, number, number]; extra: Map<string, HostTensor>; labels: string[] } {
  const file = join(dir, 'config.json');
  if (!existsSync(file)) throw new LoraSetupError(`${dir}: no config.json; --base takes a Hugging Face model folder`);
  let json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const extra = new Map<string, HostTensor>();
  if (o.adapter && existsSync(join(o.adapter, 'adapter_model.safetensors'))) {
    const f = openSafetensors(join(o.adapter, 'adapter_model.safetensors'));
    try {
      for (const key of f.tensors.keys()) {
        const hf = key.slice(PEFT_PREFIX.length).replace(/\.default(?=\.|$)/g, '').replace('.modules_to_save', '');
        // the adapter's head replaces the base's (PEFT modules_to_save), also when frozen or relabelled below
        if (/^score\./.test(hf)) extra.set(hf, f.read(key));
      }
    } finally {
      f.close();
    }
  }
  const H = json.hidden_size as number;
  const std = (json.initializer_range as number | undefined) ?? 0.02;
  const causal = /ForCausalLM$/.test(String((json.architectures as string[] | undefined)?.[0]));
  // chooseHead reads names and shapes only
  const view = { names: [...new Set([...ck.names, ...extra.keys()])], info: (n: string) => (extra.has(n) ? ({ shape: extra.get(n)!.shape } as ReturnType<Checkpoint['info']>) : ck.info(n)) };
  let head = chooseHead(view, null, { activation: o.headActivation, tokenizerDir: dir, configFile: file });
  // An adapter whose head was relabelled carries its own label names (see writeAdapter).
  const adapterLabels = o.adapter ? readAdapterLabels(o.adapter) : null;
  if (adapterLabels) json = { ...json, ...labelKeys(adapterLabels) };
  if (!head && causal) {
    if (!o.numLabels) throw new LoraSetupError(`${file}: a causal-LM base has no score head; pass --num-labels 3 (or 2) to train a new one`);
    const rng = forName(o.seed, 'score.weight');
    extra.set('score.weight', { shape: [o.numLabels, H], data: Float32Array.from({ length: o.numLabels * H }, () => rng.normal() * std) });
    head = { kind: 'classifier', layers: [{ weight: 'score.weight', bias: null, inFeatures: H, outFeatures: o.numLabels }], activation: null };
    json = { ...json, ...labelKeys(defaultLabels(o.numLabels)) };
  } else if (o.numLabels) {
    // config.json's plain score linear when chooseHead found nothing more
    const current = head ?? { kind: 'classifier' as const, layers: [{ weight: 'score.weight', bias: null, inFeatures: H, outFeatures: (ck.info('score.weight').shape[0]) }], activation: null };
    if (current.kind !== 'classifier') throw new LoraSetupError('--num-labels: this model scores with label tokens; train a classifier base');
    const last = current.layers[current.layers.length - 1];
    if (last.outFeatures !== o.numLabels) {
      const labels = defaultLabels(o.numLabels);
      const w = view.names.includes(last.weight) ? (extra.get(last.weight) ?? ck.get(last.weight)) : null;
      const rows = w ? rowsFor(hfLabelNames(json), labels) : null;
      const I = last.inFeatures;
      const rng = forName(o.seed, last.weight);
      const weight = rows
        ? Float32Array.from({ length: o.numLabels * I }, (_, i) => w!.data[rows[Math.floor(i / I)] * I + (i % I)])
        : Float32Array.from({ length: o.numLabels * I }, () => rng.normal() * std);
      extra.set(last.weight, { shape: [o.numLabels, I], data: weight });
      if (last.bias) {
        const b = extra.get(last.bias) ?? ck.get(last.bias);
        extra.set(last.bias, { shape: [o.numLabels], data: rows ? Float32Array.from(rows, (r) => b.data[r]) : new Float32Array(o.numLabels) });
      }
      o.log(`train: the head's last layer ${last.weight} relabelled from ${last.outFeatures} to ${o.numLabels} outputs (${labels.join(', ')}), ${rows ? 'starting from the base rows of the same outcomes' : 'freshly initialised'}`);
      head = { ...current, layers: [...current.layers.slice(0, -1), { ...last, outFeatures: o.numLabels }] };
      json = { ...json, ...labelKeys(labels) };
    }
  }
  const config = parseHfConfig(json, file, head ? { head } : {});
  if (config.numLabels < 2) throw new LoraSetupError(`${file}: num_labels ${config.numLabels}; cross-entropy training needs 2 or more labels`);
  // CSV outcomes go to the logit id2label names them by; generic names (LABEL_0..) keep Kaggle's order.
  const names = hfLabelNames(json) ?? [];
  const idx = (outcome: string) => names.findIndex((n) => outcomeOf(n) === outcome);
  const named = ['a', 'b'].every((x) => idx(x) >= 0) && (config.numLabels === 2 || idx('tie') >= 0);
  const labelIndex = (named ? [idx('a'), idx('b'), config.numLabels === 2 ? -1 : idx('tie')] : config.numLabels === 2 ? [0, 1, -1] : [0, 1, 2]) as [number, number, number];
  const labels = named ? names : defaultLabels(config.numLabels);
  return { config, labelIndex, extra, labels };
}

/** The outcome names of a new head: WSDM's model_a / model_b for 2 outputs, Kaggle's LMSYS columns for 3. */
const defaultLabels = (n: number): string[] => (n === 2 ? [...TASKS.wsdm.labels] : n === 3 ? [...LABEL_COLUMNS] : Array.from({ length: n }, (_, i) => `LABEL_${i}`));

/** For each new label, the row of the old head holding the same outcome; null when one is missing. */
function rowsFor(old: string[] | null, labels: string[]): number[] | null {
  if (!old) return null;
  const rows = labels.map((l) => old.findIndex((n) => outcomeOf(n) !== undefined && outcomeOf(n) === outcomeOf(l)));
  return rows.every((r) => r >= 0) ? rows : null;
}

async function loadRows(path: string, kind: 'csv' | 'jsonl', c: ModelConfig, o: TrainOptions, labelIndex: [number, number, number], tok: () => ArenaTokenizer): Promise<LoadedRows> {
  if (kind === 'jsonl') return readTokenized(path, c.numLabels, c.vocabSize);
  if (c.numLabels > 3) throw new LoraSetupError(`${path}: competition rows have 3 outcomes but the base has ${c.numLabels} labels; pass --tokenized rows with labels in 0..${c.numLabels - 1}`);
  const r = await readCsv(path, { tokenizerDir: o.tokenizer ?? o.base, tokenizer: tok(), template: o.template!, truncation: o.truncation, maxTokens: o.maxTokens, swapAugment: o.swapAugment, labelIndex });
  o.log(`train: ${path}: ${r.truncated} of ${r.rows.length} rows cut to --max-tokens ${o.maxTokens} (${o.template}, ${o.truncation} truncation)`);
  return r;
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

/** Feeds of the head-only graph: pooled states [n, hidden] and one-hot labels. */
function headFeeds(c: ModelConfig, x: Float32Array, rows: Example[]): Feeds {
  const onehot = new Float32Array(rows.length * c.numLabels);
  rows.forEach((r, i) => (onehot[i * c.numLabels + r.label] = 1));
  return {
    pooled: { dtype: 'float32', dims: [rows.length, c.hiddenSize], data: x },
    labels_onehot: { dtype: 'float32', dims: [rows.length, c.numLabels], data: onehot },
  };
}

/**
 * `--train head`: the LoRA tensors stay as they are; one forward pass gives every row's pooled state,
 * then the head (one linear or a score.N.* stack, any number of labels) is fitted on them by full-batch
 * AdamW steps of the head-only graph (the full graph's head lowering, loss and gradients), with the
 * run's lr schedule, warmup, clipping and weight decay.
 */
async function headOnly(
  o: TrainOptions,
  c: ModelConfig,
  weights: WeightSource,
  spec: TrainableSpec,
  params: Params,
  train: LoadedRows,
  valid: LoadedRows | null,
  out: string,
  labels: string[],
): Promise<TrainResult> {
  const t0 = Date.now();
  const s = await TrainSession.create(buildTrainGraph(c, weights, spec, { forwardOnly: true }), o.threads, undefined, o.ep);
  const x = await features(c, s, params, train.rows, o.batchSize);
  const vx = valid ? await features(c, s, params, valid.rows, o.batchSize) : null;
  await s.release();
  o.log(`train: pooled features of ${train.rows.length}${valid ? ` + ${valid.rows.length}` : ''} rows in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const headParams: Params = new Map(spec.head.map((t) => [t.key, params.get(t.key)!]));
  const hs = await TrainSession.create(buildHeadGraph(c, weights, spec), o.threads, undefined, o.ep);
  const feeds = headFeeds(c, x, train.rows);
  const steps = o.maxSteps ?? 500;
  const state = adamState(headParams);
  const log: StepLog[] = [];
  const t1 = Date.now();
  let startLoss = NaN;
  for (let step = 1; step <= steps; step++) {
    const lr = lrAt(step, o.lr, o.schedule, o.warmupSteps, steps);
    const r = await hs.run(feeds, headParams, 1);
    if (step === 1) startLoss = r.loss;
    const gradNorm = o.maxGradNorm !== null ? clipGradNorm(r.grads, o.maxGradNorm) : NaN;
    adamwStep(headParams, r.grads, state, { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weightDecay }, lr);
    log.push({ step, lr, loss: r.loss, microLosses: [r.loss], gradNorm });
    if (step % Math.max(1, Math.round(steps / 10)) === 0 || step === steps) {
      const per = (Date.now() - t1) / 1000 / step;
      o.log(`train: head step ${step}/${steps} loss ${r.loss.toFixed(4)} lr ${lr.toExponential(2)} ${(per * 1000).toFixed(1)} ms/step ETA ${fmt(per * (steps - step))}`);
    }
  }
  const loss = (await hs.run(feeds, headParams, 0)).loss;
  o.log(`train: head fitted in ${steps} full-batch AdamW steps: training log loss ${startLoss.toFixed(6)} -> ${loss.toFixed(6)}`);
  for (const [k, v] of headParams) params.set(k, v);
  const result: TrainResult = { steps, seconds: (Date.now() - t0) / 1000, secondsPerStep: (Date.now() - t1) / 1000 / steps, log, valid: [] };
  if (valid && vx) {
    const ll = (await hs.run(headFeeds(c, vx, valid.rows), headParams, 0)).loss;
    result.valid.push({ epoch: 1, logLoss: ll });
    o.log(`train: validation log loss ${ll.toFixed(4)} (${valid.rows.length} rows; uniform ${Math.log(c.numLabels).toFixed(4)})`);
  }
  await hs.release();
  writeAdapter(out, { spec, params, config: c, pissaStart: null, baseModelNameOrPath: resolve(o.base), labels });
  const { log: _log, ...recorded } = o;
  writeFileSync(
    join(out, 'training.json'),
    JSON.stringify({ options: recorded, rows: train.rows.length, head_fit: { steps, start_loss: startLoss, loss }, valid: result.valid, seconds: result.seconds }, null, 2) + '\n',
  );
  return result;
}

export async function runTraining(o: TrainOptions): Promise<TrainResult> {
  const out = resolve(o.out);
  mkdirSync(out, { recursive: true });
  const ck = openCheckpoint(o.base);
  const { config: c, labelIndex, extra, labels } = loadBase(o.base, ck, o);
  // The recipe is resolved (and checked) once, and recorded in training.json for import.
  o = { ...o, template: o.template ?? familyOf(c).defaultTemplate, truncation: getRecipe(o.template ?? familyOf(c).defaultTemplate, o.truncation).truncation };
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
      // a relabelled head (--num-labels) starts from loadBase's tensors, not the adapter's old shape
      for (const t of planLora(c, settings).head) if (extra.has(t.hf)) params.set(t.key, Float32Array.from(extra.get(t.hf)!.data));
      checkParams(planLora(c, settings), params, o.adapter);
    } else if (o.init === 'pissa') {
      const planned = pissaSettings(c, settings);
      settings = planned.settings;
      if (planned.clamped.length)
        o.log(
          `train: PiSSA: r ${o.lora.r} exceeds the rank of ${planned.clamped.map((n) => `${n} (${settings.rank_pattern![n]})`).join(', ')}; ` +
            `like peft 0.13.2 (pissa_init keeps the first r singular values there are) they train at that rank with the scale of r, saved as rank_pattern / alpha_pattern`,
        );
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
    let tokenizer: ArenaTokenizer | undefined; // loaded once, when a competition file needs it
    const tok = () => (tokenizer ??= loadTokenizer(o.tokenizer ?? o.base));
    const train = await loadRows((o.data ?? o.tokenized)!, o.data ? 'csv' : 'jsonl', c, o, labelIndex, tok);
    const valid = o.valid ? await loadRows(o.valid, /\.jsonl?$/i.test(o.valid) ? 'jsonl' : 'csv', c, o, labelIndex, tok) : null;
    for (const w of [...train.warnings, ...(valid?.warnings ?? [])]) o.log(`warning: ${w}`);
    const stepsPerEpoch = Math.ceil(Math.ceil(train.rows.length / o.batchSize) / o.gradAccum);
    const total = o.maxSteps ?? stepsPerEpoch * o.epochs;
    o.log(`train: ${train.rows.length} rows, ${stepsPerEpoch} steps per epoch, ${total} steps`);

    if (o.train === 'head') {
      if (o.init === 'pissa') throw new LoraSetupError('--train head keeps the base as it is; drop --init pissa');
      // Without --adapter there is no LoRA to keep: the adapter holds the head alone (its LoRA config is inert).
      const headSpec = o.adapter ? spec : { ...spec, lora: new Map() };
      const headParams = o.adapter ? params : new Map(spec.head.map((t) => [t.key, params.get(t.key)!]));
      return await headOnly(o, c, weights, headSpec, headParams, train, valid, out, labels);
    }

    // ---- graph and sessions
    const tg = buildTrainGraph(c, weights, spec);
    const session = await TrainSession.create(tg, o.threads, undefined, o.ep);
    const evalSession = valid ? await TrainSession.create(buildTrainGraph(c, weights, spec, { forwardOnly: true }), o.threads, undefined, o.ep) : null;
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
    writeAdapter(out, { spec, params, config: c, pissaStart, baseModelNameOrPath: resolve(o.base), labels });
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
