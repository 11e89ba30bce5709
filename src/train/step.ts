// One optimizer step in HF Trainer's order: for each micro-batch, forward + backward of
// mean CE / accumulation count (grads summed in float32), then clip_grad_norm_, AdamW with the
// scheduled lr, (the scheduler advances by the caller's step count). Dropout masks are seeded per
// (seed, step, micro-batch) so a resumed run draws the same masks.
import { batchFeeds, dropoutFeeds, type Example } from './feeds';
import type { Params } from './lora';
import { adamwStep, clipGradNorm, type AdamState, type AdamWOptions } from './optim';
import type { TrainSession } from './session';
import type { ModelConfig } from '../types';
import { hashString } from '../util/rng';

export interface StepOptions {
  adam: AdamWOptions;
  maxGradNorm: number | null;
  dropout: number;
  seed: number;
  /** Divisor of each micro-batch loss; default the number of micro-batches (transformers 4.45 always uses gradient_accumulation_steps). */
  accumulation?: number;
}

export interface StepLog {
  step: number;
  lr: number;
  /** Mean of the micro-batch mean losses (what HF Trainer logs). */
  loss: number;
  microLosses: number[];
  gradNorm: number;
}

export async function trainStep(
  c: ModelConfig,
  session: TrainSession,
  params: Params,
  state: AdamState,
  microBatches: Example[][],
  step: number,
  lr: number,
  o: StepOptions,
): Promise<StepLog> {
  const acc: Params = new Map([...params].map(([k, p]) => [k, new Float32Array(p.length)]));
  const microLosses: number[] = [];
  const seed = Math.fround(1 / (o.accumulation ?? microBatches.length));
  for (let i = 0; i < microBatches.length; i++) {
    const mb = microBatches[i];
    const feeds = batchFeeds(c, mb);
    if (o.dropout > 0) {
      const [B, S] = feeds.input_ids.dims;
      Object.assign(
        feeds,
        dropoutFeeds(session.tg.dropoutModules, o.dropout, B, S, hashString(`${o.seed}:${step}:${i}`)),
      );
    }
    const r = await session.run(feeds, params, seed);
    microLosses.push(r.loss);
    for (const [k, g] of r.grads) {
      const a = acc.get(k)!;
      for (let j = 0; j < a.length; j++) a[j] = Math.fround(a[j] + g[j]);
    }
  }
  const gradNorm = o.maxGradNorm !== null ? clipGradNorm(acc, o.maxGradNorm) : NaN;
  adamwStep(params, acc, state, o.adam, lr);
  return { step, lr, loss: microLosses.reduce((a, l) => a + l, 0) / microLosses.length, microLosses, gradNorm };
}
