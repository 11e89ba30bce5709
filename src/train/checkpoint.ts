// What a run leaves on disk besides the adapter: the resumable checkpoint (parameters and AdamW moments
// in one safetensors file, the step and the run's fingerprint in checkpoint.json, both swapped in as one
// folder so a kill never pairs one step's weights with another's step) and training.json, the options
// and figures of the run (nanoGPT's "checkpoints carry their own config").
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { recoverDir, replaceDirSync } from '../util/files';
import { openSafetensors } from '../weights/safetensors';
import { writeSafetensors } from '../weights/safetensors-write';
import type { Example } from './feeds';
import { LoraSetupError, type LoraSettings, type Params } from './lora';
import type { AdamState } from './optim';
import type { TrainOptions } from './run';

/** Everything that shapes a run's trajectory: a resumed run must match it field for field. */
export type RunFingerprint = Record<string, unknown>;

interface TrainCheckpoint {
  step: number;
  adamT: number;
  rows: number;
  fingerprint?: RunFingerprint;
}

/** The fingerprint of a run: base (config and weight files), data (the token ids and labels), LoRA and optimiser settings. */
export function runFingerprint(o: TrainOptions, base: string, settings: LoraSettings, rows: Example[]): RunFingerprint {
  const h = createHash('sha256');
  for (const r of rows) h.update(Int32Array.from(r.inputIds)).update(`:${r.label};`);
  const baseHash = createHash('sha256');
  for (const f of ['config.json', 'model.safetensors.index.json'])
    if (existsSync(join(base, f))) baseHash.update(readFileSync(join(base, f)));
  for (const f of readdirSync(base)
    .filter((n) => n.endsWith('.safetensors'))
    .sort())
    baseHash.update(`${f}:${statSync(join(base, f)).size};`);
  return {
    base: baseHash.digest('hex').slice(0, 16),
    data: `${rows.length} rows ${h.digest('hex').slice(0, 16)}`,
    r: settings.r,
    lora_alpha: settings.lora_alpha,
    lora_dropout: settings.lora_dropout,
    use_rslora: settings.use_rslora,
    target_modules: settings.target_modules,
    layers_to_transform: settings.layers_to_transform,
    rank_pattern: settings.rank_pattern ?? null,
    alpha_pattern: settings.alpha_pattern ?? null,
    modules_to_save: settings.modules_to_save,
    init: o.init,
    adapter: o.adapter ?? null,
    lr: o.lr,
    schedule: o.schedule,
    warmup_steps: o.warmupSteps,
    epochs: o.epochs,
    max_steps: o.maxSteps,
    weight_decay: o.weightDecay,
    betas: o.betas,
    eps: o.eps,
    max_grad_norm: o.maxGradNorm,
    seed: o.seed,
    batch_size: o.batchSize,
    grad_accum: o.gradAccum,
    shuffle: o.shuffle,
    swap_augment: o.swapAugment,
    template: o.template,
    max_tokens: o.maxTokens,
  };
}

/** Saves the parameters and AdamW moments with the step and the run's fingerprint, in one folder swap. */
export function saveCheckpoint(
  dir: string,
  params: Params,
  state: AdamState,
  ck: TrainCheckpoint,
  shapes: Map<string, number[]>,
): void {
  const t = (m: Params, prefix: string) =>
    new Map([...m].map(([k, d]) => [`${prefix}${k}`, { shape: shapes.get(k)!, data: d }]));
  replaceDirSync(dir, (tmp) => {
    writeSafetensors(
      join(tmp, 'state.safetensors'),
      new Map([...t(params, 'param/'), ...t(state.m, 'exp_avg/'), ...t(state.v, 'exp_avg_sq/')]),
    );
    writeFileSync(join(tmp, 'checkpoint.json'), JSON.stringify(ck) + '\n');
  });
}

/** Restores what saveCheckpoint wrote into `params` and `state`; refuses another run's checkpoint, naming the differing fields. */
export function loadCheckpoint(
  dir: string,
  params: Params,
  state: AdamState,
  rows: number,
  fingerprint?: RunFingerprint,
): TrainCheckpoint {
  recoverDir(dir);
  const file = join(dir, 'checkpoint.json');
  if (!existsSync(file))
    throw new LoraSetupError(
      `--resume: no checkpoint at ${dir}; run without --resume (or with --checkpoint-every N) first`,
    );
  let ck: TrainCheckpoint;
  try {
    ck = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new LoraSetupError(
      `--resume: ${file} is not valid JSON (${(e as Error).message}); run without --resume to start again`,
    );
  }
  if (
    !ck ||
    typeof ck !== 'object' ||
    !(Number.isInteger(ck.step) && ck.step >= 0) ||
    !(Number.isInteger(ck.adamT) && ck.adamT >= 0)
  )
    throw new LoraSetupError(
      `--resume: ${file} holds no step (got ${JSON.stringify(ck)?.slice(0, 60)}); run without --resume to start again`,
    );
  if (ck.rows !== rows)
    throw new LoraSetupError(
      `--resume: ${file} was made with ${ck.rows} training rows, this run has ${rows}; resume with the same data`,
    );
  if (fingerprint && ck.fingerprint) {
    const differ = Object.keys({ ...fingerprint, ...ck.fingerprint }).filter(
      (k) => JSON.stringify(fingerprint[k]) !== JSON.stringify(ck.fingerprint![k]),
    );
    if (differ.length)
      throw new LoraSetupError(
        `--resume: ${file} was made by another run: ${differ.map((k) => `${k} ${JSON.stringify(ck.fingerprint![k])} there, ${JSON.stringify(fingerprint[k])} now`).join('; ')}. ` +
          `Resume with the same settings, or start again without --resume`,
      );
  }
  const f = openSafetensors(join(dir, 'state.safetensors'));
  try {
    for (const [prefix, m] of [
      ['param/', params],
      ['exp_avg/', state.m],
      ['exp_avg_sq/', state.v],
    ] as const)
      for (const k of m.keys()) {
        const d = f.read(`${prefix}${k}`).data;
        if (d.length !== m.get(k)!.length)
          throw new LoraSetupError(
            `--resume: ${join(dir, 'state.safetensors')}: ${prefix}${k} has ${d.length} values, this run's tensor ${m.get(k)!.length}; start again without --resume`,
          );
        if (!d.every(Number.isFinite))
          throw new LoraSetupError(
            `--resume: ${join(dir, 'state.safetensors')}: ${prefix}${k} holds NaN or Inf; start again without --resume`,
          );
        m.get(k)!.set(d);
      }
  } finally {
    f.close();
  }
  state.t = ck.adamT;
  return ck;
}

/** training.json: the options the run was given (without its log callback), then the run's figures. */
export function writeTrainingRecord(out: string, o: TrainOptions, figures: Record<string, unknown>): void {
  const { log: _log, ...recorded } = o;
  writeFileSync(join(out, 'training.json'), JSON.stringify({ options: recorded, ...figures }, null, 2) + '\n');
}
