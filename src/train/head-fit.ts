// `--train head`: the head alone on pooled states from one forward pass (seconds), by full-batch AdamW
// steps of the head-only graph (src/train/graph.ts buildHeadGraph: the full graph's head lowering, loss
// and gradients) with the run's lr schedule, warmup, clipping and weight decay.
import { resolve } from 'node:path';
import type { ModelConfig, WeightSource } from '../types';
import { fmt } from '../util/progress';
import { writeAdapter } from './adapter';
import { finishOut } from './output';
import { writeTrainingRecord } from './checkpoint';
import type { LoadedRows } from './data';
import { batchFeeds, type Example, type Feeds } from './feeds';
import { buildHeadGraph, buildTrainGraph } from './graph';
import type { Params, TrainableSpec } from './lora';
import { adamState, adamwStep, clipGradNorm, lrAt } from './optim';
import type { TrainOptions, TrainResult } from './run';
import { TrainSession } from './session';
import type { StepLog } from './step';

/** Pooled features of `rows` (one forward pass, eval mode) with the current LoRA tensors. */
async function features(
  c: ModelConfig,
  s: TrainSession,
  params: Params,
  rows: Example[],
  batch: number,
): Promise<Float32Array> {
  const x = new Float32Array(rows.length * c.hiddenSize);
  for (let i = 0; i < rows.length; i += batch)
    x.set((await s.run(batchFeeds(c, rows.slice(i, i + batch)), params, 0)).pooled!, i * c.hiddenSize);
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
export async function headOnly(
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
  const s = await TrainSession.create(
    buildTrainGraph(c, weights, spec, { forwardOnly: true }),
    o.threads,
    undefined,
    o.ep,
  );
  const x = await features(c, s, params, train.rows, o.batchSize);
  const vx = valid ? await features(c, s, params, valid.rows, o.batchSize) : null;
  await s.release();
  o.log(
    `train: pooled features of ${train.rows.length}${valid ? ` + ${valid.rows.length}` : ''} rows in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
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
      o.log(
        `train: head step ${step}/${steps} loss ${r.loss.toFixed(4)} lr ${lr.toExponential(2)} ${(per * 1000).toFixed(1)} ms/step ETA ${fmt(per * (steps - step))}`,
      );
    }
  }
  const loss = (await hs.run(feeds, headParams, 0)).loss;
  o.log(
    `train: head fitted in ${steps} full-batch AdamW steps: training log loss ${startLoss.toFixed(6)} -> ${loss.toFixed(6)}`,
  );
  for (const [k, v] of headParams) params.set(k, v);
  const result: TrainResult = {
    steps,
    seconds: (Date.now() - t0) / 1000,
    secondsPerStep: (Date.now() - t1) / 1000 / steps,
    log,
    valid: [],
  };
  if (valid && vx) {
    const ll = (await hs.run(headFeeds(c, vx, valid.rows), headParams, 0)).loss;
    result.valid.push({ epoch: 1, logLoss: ll });
    o.log(
      `train: validation log loss ${ll.toFixed(4)} (${valid.rows.length} rows; uniform ${Math.log(c.numLabels).toFixed(4)})`,
    );
  }
  await hs.release();
  await finishOut(out, (dir) => {
    writeAdapter(dir, { spec, params, config: c, pissaStart: null, baseModelNameOrPath: resolve(o.base), labels });
    writeTrainingRecord(dir, o, {
      rows: train.rows.length,
      head_fit: { steps, start_loss: startLoss, loss },
      valid: result.valid,
      seconds: result.seconds,
    });
  });
  return result;
}
