// The training run, top to bottom (nanoGPT style): options with commented defaults, base (base.ts) +
// LoRA setup, data, the epoch/step loop of HF Trainer (shuffle, micro-batches, accumulation, clip,
// AdamW, schedule), progress with loss / lr / ETA, checkpoints + resume (checkpoint.ts), validation log
// loss per epoch, and the PEFT adapter folder at the end; `--train head` hands over to head-fit.ts.
import { existsSync, rmSync } from 'node:fs';
import { appendLog, finishOut, prepareOut, RUNNING_LOG, writeFailure } from './output';
import { assertOutDir, recoverDir } from '../util/files';
import { join, resolve } from 'node:path';
import type { Activation, ModelConfig, WeightSource } from '../types';
import { openCheckpoint, type Checkpoint } from '../weights/safetensors';
import { finiteSource } from '../weights/checks';
import { checkAdapter, openAdapter } from '../weights/peft';
import { writeAdapter } from './adapter';
import { loadBase } from './base';
import { loadCheckpoint, runFingerprint, saveCheckpoint, writeTrainingRecord } from './checkpoint';
import { epochOrder, epochSteps, readCsv, readTokenized, type LoadedRows } from './data';
import { batchFeeds, type Example } from './feeds';
import { buildTrainGraph } from './graph';
import { headOnly } from './head-fit';
import {
  checkParams,
  DEFAULT_LORA,
  defaultInit,
  LoraSetupError,
  overlay,
  pissaInit,
  pissaSettings,
  planLora,
  adapterSettings,
  type LoraSettings,
  type Params,
} from './lora';
import { adamState, lrAt, type Schedule } from './optim';
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
  /** With --adapter: false = continue with the adapter's own lora_dropout (the CLI without --lora-dropout); true or unset = lora.lora_dropout. */
  loraDropoutGiven?: boolean;
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
  maxTokens: number; // 512 tokens per row: --data truncates by its recipe, --tokenized rows are cut from the right
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

async function loadRows(
  path: string,
  kind: 'csv' | 'jsonl',
  c: ModelConfig,
  o: TrainOptions,
  labelIndex: [number, number, number],
  tok: () => ArenaTokenizer,
): Promise<LoadedRows> {
  if (kind === 'jsonl') return readTokenized(path, c.numLabels, c.vocabSize, o.maxTokens);
  if (c.numLabels > 3)
    throw new LoraSetupError(
      `${path}: competition rows have 3 outcomes but the base has ${c.numLabels} labels; pass --tokenized rows with labels in 0..${c.numLabels - 1}`,
    );
  const r = await readCsv(path, {
    tokenizerDir: o.tokenizer ?? o.base,
    tokenizer: tok(),
    template: o.template!,
    truncation: o.truncation,
    maxTokens: o.maxTokens,
    swapAugment: o.swapAugment,
    labelIndex,
  });
  o.log(
    `train: ${path}: ${r.truncated} of ${r.rows.length} rows cut to --max-tokens ${o.maxTokens} (${o.template}, ${o.truncation} truncation)`,
  );
  return r;
}

/** The --adapter folder through import's checks against the base (src/weights/peft.ts), before any work. */
function checkTrainAdapter(dir: string, ck: Checkpoint, numLabels: number | undefined): void {
  const ad = openAdapter(resolve(dir));
  try {
    const heads = [...ad.saved.keys()].filter((n) => /^score\./.test(n));
    checkAdapter(ad, { names: ck.names, shape: (n) => ck.info(n).shape }, heads, numLabels ?? ad.labels?.length);
  } finally {
    ad.close();
  }
}

/** A run whose loss, gradients or weights stopped being finite: stopped before any adapter is written. */
export class TrainDivergedError extends Error {
  override name = 'TrainDivergedError';
}

function finiteParams(params: Params): boolean {
  for (const p of params.values()) for (let i = 0; i < p.length; i++) if (!Number.isFinite(p[i])) return false;
  return true;
}

/** Mean cross-entropy over rows, in batches, with the loss output of a forward-only session. */
async function logLoss(
  c: ModelConfig,
  s: TrainSession,
  params: Params,
  rows: Example[],
  batch: number,
): Promise<number> {
  let sum = 0;
  for (let i = 0; i < rows.length; i += batch) {
    const mb = rows.slice(i, i + batch);
    sum += (await s.run(batchFeeds(c, mb), params, 0)).loss * mb.length;
  }
  return sum / rows.length;
}

export async function runTraining(o: TrainOptions): Promise<TrainResult> {
  const out = resolve(o.out);
  assertOutDir(
    { flag: '--out', path: o.out },
    [
      { flag: '--base', path: o.base },
      { flag: '--adapter', path: o.adapter },
      { flag: '--data', path: o.data },
      { flag: '--tokenized', path: o.tokenized },
      { flag: '--valid', path: o.valid },
    ],
    ['adapter_config.json', 'training.json', 'checkpoint'],
  );
  recoverDir(out);
  // A folder this run created goes again when it fails before its first checkpoint: nothing partial stays.
  const created = !existsSync(out);
  try {
    return await trainInto(o, out);
  } catch (e) {
    if (created && !existsSync(join(out, 'checkpoint'))) rmSync(out, { recursive: true, force: true });
    throw e;
  }
}

async function trainInto(o: TrainOptions, out: string): Promise<TrainResult> {
  prepareOut(out);
  const ck = openCheckpoint(o.base);
  // import's adapter checks: config features (DoRA, ...), every tensor placed on a base tensor of its shape, finite
  if (o.adapter) checkTrainAdapter(o.adapter, ck, o.numLabels);
  const { config: c, labelIndex, extra, labels } = loadBase(o.base, ck, o);
  // The recipe is resolved (and checked) once, and recorded in training.json for import.
  o = {
    ...o,
    template: o.template ?? familyOf(c).defaultTemplate,
    truncation: getRecipe(o.template ?? familyOf(c).defaultTemplate, o.truncation).truncation,
  };
  try {
    // ---- trainable tensors and their starting values
    let settings = o.lora;
    let params: Params;
    const base = finiteSource(ck.get, (n) => ck.info(n).file);
    let weights: WeightSource = extra.size ? (name) => extra.get(name) ?? base(name) : base;
    let pissaStart: Params | null = null;
    if (o.adapter) {
      const ad = adapterSettings(o.adapter, c);
      if (ad.init !== true && ad.init !== false && ad.init !== undefined && ad.init !== 'gaussian')
        throw new LoraSetupError(
          `${o.adapter}: init_lora_weights ${JSON.stringify(ad.init)} needs its residual base; save it converted (PEFT path_initial_model_for_weight_conversion) first`,
        );
      const dropout = o.loraDropoutGiven === false ? ad.settings.lora_dropout : o.lora.lora_dropout;
      if (dropout !== ad.settings.lora_dropout)
        o.log(`train: lora_dropout ${dropout} (given) instead of the adapter's ${ad.settings.lora_dropout}`);
      settings = { ...ad.settings, lora_dropout: dropout };
      params = ad.params;
      // a relabelled head (--num-labels) starts from loadBase's tensors, not the adapter's old shape
      for (const t of planLora(c, settings).head)
        if (extra.has(t.hf)) params.set(t.key, Float32Array.from(extra.get(t.hf)!.data));
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
    if (o.train === 'head' && !spec.head.length)
      throw new LoraSetupError('--train head needs a trainable score head (drop --frozen-head)');
    o.log(
      `train: ${spec.lora.size} LoRA modules (r ${settings.r}, alpha ${settings.lora_alpha}${settings.use_rslora ? ', rsLoRA' : ''}), head ${spec.head.length ? 'trained' : 'frozen'}, ${[...params.values()].reduce((a, p) => a + p.length, 0)} trainable values`,
    );

    // ---- data
    let tokenizer: ArenaTokenizer | undefined; // loaded once, when a competition file needs it
    const tok = () => (tokenizer ??= loadTokenizer(o.tokenizer ?? o.base));
    const train = await loadRows((o.data ?? o.tokenized)!, o.data ? 'csv' : 'jsonl', c, o, labelIndex, tok);
    const valid = o.valid
      ? await loadRows(o.valid, /\.jsonl?$/i.test(o.valid) ? 'jsonl' : 'csv', c, o, labelIndex, tok)
      : null;
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
    const evalSession = valid
      ? await TrainSession.create(buildTrainGraph(c, weights, spec, { forwardOnly: true }), o.threads, undefined, o.ep)
      : null;
    const state = adamState(params);
    const shapes = session.shapes;
    const ckDir = join(out, 'checkpoint');
    const fingerprint = runFingerprint(o, o.base, settings, train.rows);
    let done = 0;
    if (o.resume) {
      done = loadCheckpoint(ckDir, params, state, train.rows.length, fingerprint).step;
      o.log(`train: resumed at step ${done}`);
    }
    if (!o.resume) {
      rmSync(join(out, RUNNING_LOG), { force: true });
      // marks a new folder as this command's from the start; a previous run's output stays whole until the swap
      if (!existsSync(join(out, 'adapter_config.json')))
        try {
          writeTrainingRecord(out, o, { status: 'running' });
        } catch (e) {
          throw writeFailure(e, join(out, 'training.json'));
        }
    }

    const result: TrainResult = { steps: 0, seconds: 0, secondsPerStep: 0, log: [], valid: [] };
    const t0 = Date.now();
    let step = 0;
    let ran = 0;
    let stepSeconds = 0; // optimizer steps only (no validation passes)
    for (let epoch = 0; step < total; epoch++) {
      const steps = epochSteps(
        epochOrder(train.rows.length, o.shuffle, o.seed, epoch),
        train.rows,
        o.batchSize,
        o.gradAccum,
      );
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
        if (!Number.isFinite(s.loss) || !Number.isFinite(s.gradNorm) || !finiteParams(params))
          throw new TrainDivergedError(
            `step ${step} (epoch ${epoch + 1}, rows ${mbs.flat().length}): ${!Number.isFinite(s.loss) ? `loss ${s.loss}` : !Number.isFinite(s.gradNorm) ? `gradient norm ${s.gradNorm}` : 'the LoRA weights became non-finite'} ` +
              `at lr ${lr.toExponential(2)}; no adapter written. Lower --lr, raise --adam-eps, set --max-grad-norm, or check the base / adapter for NaN values` +
              (o.checkpointEvery > 0 ? `; the last checkpoint in ${ckDir} is kept` : ''),
          );
        ran++;
        stepSeconds += (Date.now() - ts) / 1000;
        result.log.push(s);
        const per = stepSeconds / ran;
        appendLog(
          out,
          JSON.stringify({ step, epoch: epoch + 1, loss: s.loss, lr, grad_norm: s.gradNorm, seconds_per_step: per }),
        );
        o.log(
          `train: step ${step}/${total} epoch ${epoch + 1} loss ${s.loss.toFixed(4)} lr ${lr.toExponential(2)} grad-norm ${s.gradNorm.toFixed(3)} ` +
            `${per.toFixed(2)} s/step ETA ${fmt(per * (total - step))}`,
        );
        if (o.checkpointEvery > 0 && step % o.checkpointEvery === 0)
          try {
            saveCheckpoint(
              ckDir,
              params,
              state,
              { step, adamT: state.t, rows: train.rows.length, fingerprint },
              shapes,
            );
          } catch (e) {
            throw writeFailure(e, ckDir);
          }
      }
      if (valid && evalSession && step > done) {
        const ll = await logLoss(c, evalSession, params, valid.rows, o.batchSize);
        result.valid.push({ epoch: epoch + 1, logLoss: ll });
        appendLog(out, JSON.stringify({ epoch: epoch + 1, valid_log_loss: ll }));
        o.log(
          `train: epoch ${epoch + 1} validation log loss ${ll.toFixed(4)} (${valid.rows.length} rows; uniform ${Math.log(c.numLabels).toFixed(4)})`,
        );
      }
    }
    await session.release();
    await evalSession?.release();
    result.steps = step;
    result.seconds = (Date.now() - t0) / 1000;
    result.secondsPerStep = ran ? stepSeconds / ran : 0;

    // ---- the adapter, and how it was made
    await finishOut(out, (dir) => {
      writeAdapter(dir, { spec, params, config: c, pissaStart, baseModelNameOrPath: resolve(o.base), labels });
      writeTrainingRecord(dir, o, {
        rows: train.rows.length,
        steps: step,
        seconds: result.seconds,
        final_loss: result.log.at(-1)?.loss ?? null,
        valid: result.valid,
      });
    });
    return result;
  } finally {
    ck.close();
  }
}
