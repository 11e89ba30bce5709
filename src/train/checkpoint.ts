// What a run leaves on disk besides the adapter: the resumable checkpoint (parameters and AdamW moments
// in one safetensors file, the step in checkpoint.json) and training.json, the options and figures of
// the run (nanoGPT's "checkpoints carry their own config").
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSafetensors } from '../weights/safetensors';
import { writeSafetensors } from '../weights/safetensors-write';
import { LoraSetupError, type Params } from './lora';
import type { AdamState } from './optim';
import type { TrainOptions } from './run';

interface TrainCheckpoint {
  step: number;
  adamT: number;
  rows: number;
}

/** Saves the parameters and AdamW moments (step and row count for resume's check). */
export function saveCheckpoint(dir: string, params: Params, state: AdamState, ck: TrainCheckpoint, shapes: Map<string, number[]>): void {
  mkdirSync(dir, { recursive: true });
  const t = (m: Params, prefix: string) => new Map([...m].map(([k, d]) => [`${prefix}${k}`, { shape: shapes.get(k)!, data: d }]));
  writeSafetensors(join(dir, 'state.safetensors'), new Map([...t(params, 'param/'), ...t(state.m, 'exp_avg/'), ...t(state.v, 'exp_avg_sq/')]));
  writeFileSync(join(dir, 'checkpoint.json'), JSON.stringify(ck) + '\n');
}

/** Restores what saveCheckpoint wrote into `params` and `state`; refuses another data file. */
export function loadCheckpoint(dir: string, params: Params, state: AdamState, rows: number): TrainCheckpoint {
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

/** training.json: the options the run was given (without its log callback), then the run's figures. */
export function writeTrainingRecord(out: string, o: TrainOptions, figures: Record<string, unknown>): void {
  const { log: _log, ...recorded } = o;
  writeFileSync(join(out, 'training.json'), JSON.stringify({ options: recorded, ...figures }, null, 2) + '\n');
}
