// IO binding (issue 21), opt-in with ARENAKIT_IO_BINDING=1 until a GPU measures it (bench/gpu-check.ts runs both).
// What onnxruntime-node can bind: CPU memory, or WebGPU memory ('gpu-buffer', its only device memory type); it
// has no CUDA memory type, so on the CUDA EP ORT itself copies ids up and logits down, bound or not. Built here:
// the logits written into an output buffer the runner allocates per batch (a fetch), on every EP; ORT fills the
// caller's buffer instead of allocating its own output. Not used: WebGPU outputs kept on the device
// (preferredOutputLocation 'gpu-buffer'): reading them back (Tensor.getData) aborts the whole process in
// onnxruntime-node 1.29 and 1.30 ("terminate called after throwing an instance of 'char const*'", on lavapipe;
// tests/webgpu pins it), which would cost a competitor the run. DESIGN.md "GPU levers".
import type * as Ort from 'onnxruntime-node';

/** Whether IO binding is asked for (ARENAKIT_IO_BINDING=1). */
export const ioBindingEnabled = (env: NodeJS.ProcessEnv = process.env): boolean => env.ARENAKIT_IO_BINDING === '1';

/** The fetches of one run: the logits bound to a buffer of [n, numLabels] float32 (the caller keeps it). */
export function boundLogits(
  ort: typeof Ort,
  n: number,
  numLabels: number,
): { fetches: Record<string, Ort.Tensor>; data: Float32Array } {
  const data = new Float32Array(n * numLabels);
  return { fetches: { logits: new ort.Tensor('float32', data, [n, numLabels]) }, data };
}

/** The logits' label count when the graph states it (a fixed last dimension), else undefined (then no binding). */
export function logitsWidth(session: Ort.InferenceSession): number | undefined {
  const meta = (session as { outputMetadata?: readonly { name: string; shape?: readonly unknown[] }[] }).outputMetadata;
  const shape = meta?.find((m) => m.name === 'logits')?.shape;
  const last = shape?.[shape.length - 1];
  return typeof last === 'number' && last > 0 ? last : undefined;
}

/**
 * The logits of a bound run: the runner's own buffer when ORT filled it (onnxruntime-node 1.29 fills it and also
 * returns a copy), else the returned tensor's data (a binding that replaced the fetch leaves ours stale).
 */
export function boundResult(bound: Float32Array, returned: Float32Array): Float32Array {
  const same =
    bound === returned || (bound.length === returned.length && bound.every((x, i) => Object.is(x, returned[i])));
  return same ? bound : returned;
}
