// Runs the training graph with onnxruntime-node: one call = forward + backward of one micro-batch,
// returning the mean loss, the logits and d(loss * seed)/d(param) for every trainable tensor.
import * as ort from 'onnxruntime-node';
import { serialise, writeModel } from '../graph/serialise';
import type { Feeds } from './feeds';
import type { TrainGraph } from './graph';
import type { Params } from './lora';

/**
 * Where the training graph runs: the CPU, or WebGPU (the same primitive-op graph; CI runs it on Mesa's
 * lavapipe against the HF gradients). CUDA training is not wired: the trainer bundles one ORT core.
 */
export type TrainEp = 'cpu' | 'webgpu';

export interface StepResult {
  loss: number;
  logits: Float32Array;
  /** By parameter key; empty for a forward-only graph. */
  grads: Params;
  /** [batch, hidden] pooled final-norm states (forward-only graphs). */
  pooled?: Float32Array;
}

export class TrainSession {
  private constructor(
    private readonly s: ort.InferenceSession,
    readonly tg: TrainGraph,
    readonly shapes: Map<string, number[]>,
  ) {}

  /**
   * `modelPath`: write the model there and load it from the file (needed when the graph's frozen
   * weights live in an external-data file beside it); otherwise the model is loaded from memory.
   */
  static async create(tg: TrainGraph, threads = 1, modelPath?: string, ep: TrainEp = 'cpu'): Promise<TrainSession> {
    // 'basic' (constant folding, no op fusion) keeps the primitives as written: closer to torch's eager
    // numbers (the fixture gradients differ by 5.7e-6 instead of 6.7e-6 with 'all').
    const o: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'basic',
    };
    if (ep === 'webgpu') {
      process.env.XDG_RUNTIME_DIR ??= '/tmp'; // Dawn's Vulkan loader wants it
      o.executionProviders = ['webgpu'];
    }
    let s: ort.InferenceSession;
    if (modelPath) {
      writeModel(modelPath, tg.graph, 'arenakit-train');
      s = await ort.InferenceSession.create(modelPath, o);
    } else s = await ort.InferenceSession.create(serialise(tg.graph, 'arenakit-train'), o);
    const shapes = new Map(
      tg.graph.inputs.filter((v) => tg.params.includes(v.name)).map((v) => [v.name, v.shape as number[]]),
    );
    return new TrainSession(s, tg, shapes);
  }

  /** `seed` scales the gradient fed into the loss (1 / accumulation steps: torch's (loss / n).backward()). */
  async run(feeds: Feeds, params: Params, seed: number): Promise<StepResult> {
    const inputs: Record<string, ort.Tensor> = {};
    for (const [k, t] of Object.entries(feeds)) inputs[k] = new ort.Tensor(t.dtype, t.data, t.dims);
    for (const k of this.tg.params) inputs[k] = new ort.Tensor('float32', params.get(k)!, this.shapes.get(k)!);
    const hasSeed = this.tg.graph.inputs.some((v) => v.name === 'loss_grad');
    if (hasSeed) inputs.loss_grad = new ort.Tensor('float32', Float32Array.of(seed), []);
    const out = await this.s.run(inputs);
    const grads: Params = new Map();
    if (hasSeed) for (const k of this.tg.params) grads.set(k, out[`grad.${k}`].data as Float32Array);
    return {
      loss: (out.loss.data as Float32Array)[0],
      logits: out.logits.data as Float32Array,
      grads,
      pooled: out.pooled?.data as Float32Array | undefined,
    };
  }

  release(): Promise<void> {
    return this.s.release();
  }
}
