// Which devices a run uses (--devices): `auto` (the default) puts one worker on each GPU that
// nvidia-smi lists (Kaggle's 2 x T4: two), one process where none is listed; an explicit list
// ("0,1") is taken as given. Results do not depend on the count (src/infer/shards.ts). Pure: the GPU
// list comes from readDriver (src/infer/runtime.ts) at the command's edge.

/** --devices as written: `auto`, or distinct GPU ids. */
export type DeviceOption = { kind: 'auto' } | { kind: 'list'; ids: number[] };

export function parseDeviceOption(s: string | undefined): DeviceOption {
  if (s === undefined || s.trim() === 'auto') return { kind: 'auto' };
  const ids = s.split(',').map((x) => (x.trim() === '' ? NaN : Number(x.trim())));
  if (!ids.length || !ids.every((d) => Number.isInteger(d) && d >= 0) || new Set(ids).size !== ids.length)
    throw new RangeError(`--devices needs "auto" or distinct GPU ids separated by commas (e.g. 0,1), got "${s}"`);
  return { kind: 'list', ids };
}

/**
 * The device ids for `opt` on a machine whose nvidia-smi lists `gpus` (one line per GPU).
 * `auto`: one per listed GPU (when CUDA cannot load there, each becomes a CPU worker, and results are
 * the same), else [0] (one process); with --ep cpu, auto is one process: CPU workers are asked for
 * with an explicit list.
 */
export function resolveDevices(
  opt: DeviceOption,
  gpus: readonly string[],
  ep: string,
): { ids: number[]; reason: string } {
  if (opt.kind === 'list') return { ids: opt.ids, reason: `--devices ${opt.ids.join(',')}` };
  if (ep === 'cpu') return { ids: [0], reason: '--devices auto with --ep cpu: one process' };
  if (!gpus.length) return { ids: [0], reason: '--devices auto: nvidia-smi lists no GPU: one process' };
  return {
    ids: gpus.map((_, i) => i),
    reason: `--devices auto: ${gpus.length} GPU(s) listed by nvidia-smi (${gpus.join('; ')}): one worker each`,
  };
}
