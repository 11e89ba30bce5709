// The activation precision of the GPU graph from the GPU's compute capability (issue 20): bf16 runs
// natively from Ampere on (sm80 A100, sm86, sm89 L4, sm90 H100) and keeps fp32's range (Gemma-2's
// activations can overflow fp16); a T4 (sm75) has no bf16 units, where bf16 is several times slower than
// fp16. With several GPUs the oldest decides. Overridable (--gpu-precision). Pure parsing and choice here;
// the one I/O function asks nvidia-smi (ARENAKIT_NVIDIA_SMI, as src/infer/runtime.ts) and never throws.
import { spawnSync } from 'node:child_process';

export type GpuPrecision = 'float16' | 'bfloat16';
export const GPU_PRECISIONS: readonly GpuPrecision[] = ['float16', 'bfloat16'];

/** bf16 from this compute capability on (Ampere). */
export const BF16_MIN_CAPABILITY = 8.0;

export class GpuPrecisionError extends Error {
  override name = 'GpuPrecisionError';
}

/** Compute capabilities from `nvidia-smi --query-gpu=compute_cap --format=csv,noheader` ("7.5" per GPU line). */
export function parseComputeCaps(text: string): number[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      if (!/^\d+\.\d+$/.test(l))
        throw new GpuPrecisionError(`nvidia-smi compute_cap printed "${l}", expected MAJOR.MINOR such as 7.5`);
      return Number(l);
    });
}

/**
 * `nvidia-smi --query-gpu=FIELD --format=csv,noheader` (ARENAKIT_NVIDIA_SMI; killed past ARENAKIT_NVIDIA_SMI_TIMEOUT_MS,
 * default 15 s): its output, or a note saying why there is none. Never throws.
 */
export function querySmi(field: string, env: NodeJS.ProcessEnv = process.env): { stdout: string } | { note: string } {
  const cmd = env.ARENAKIT_NVIDIA_SMI || 'nvidia-smi';
  const r = spawnSync(cmd, [`--query-gpu=${field}`, '--format=csv,noheader'], {
    encoding: 'utf8',
    env,
    timeout: Number(env.ARENAKIT_NVIDIA_SMI_TIMEOUT_MS) || 15000,
    killSignal: 'SIGKILL',
  });
  if (r.error || r.status !== 0)
    return { note: `${cmd} --query-gpu=${field} failed${r.error ? ` (${r.error.message})` : ` (exit ${r.status})`}` };
  return { stdout: r.stdout };
}

/** Asks nvidia-smi for every GPU's compute capability; [] with a note when it cannot tell. */
export function readComputeCaps(env: NodeJS.ProcessEnv = process.env): { caps: number[]; note?: string } {
  const r = querySmi('compute_cap', env);
  if ('note' in r) return { caps: [], note: r.note };
  try {
    return { caps: parseComputeCaps(r.stdout) };
  } catch (e) {
    return { caps: [], note: (e as Error).message };
  }
}

/** The GPU graph's activation dtype: `forced` when given, else bf16 when every GPU is sm80 or newer, else fp16. */
export function chooseGpuPrecision(caps: number[], forced?: string): { precision: GpuPrecision; reason: string } {
  if (forced !== undefined) {
    const f = (
      { fp16: 'float16', float16: 'float16', bf16: 'bfloat16', bfloat16: 'bfloat16' } as Record<string, GpuPrecision>
    )[forced];
    if (!f) throw new GpuPrecisionError(`--gpu-precision ${forced}: expected fp16 or bf16`);
    return { precision: f, reason: `--gpu-precision ${forced}` };
  }
  if (!caps.length)
    return { precision: 'float16', reason: 'compute capability unknown: fp16 (runs on every CUDA GPU)' };
  const oldest = Math.min(...caps);
  const sm = `sm${oldest.toFixed(1).replace('.', '')}`;
  return oldest >= BF16_MIN_CAPABILITY
    ? {
        precision: 'bfloat16',
        reason: `compute capability ${oldest.toFixed(1)} (${sm}) >= ${BF16_MIN_CAPABILITY.toFixed(1)}: bf16 activations`,
      }
    : {
        precision: 'float16',
        reason: `compute capability ${oldest.toFixed(1)} (${sm}) has no bf16 units: fp16 activations`,
      };
}

/**
 * The precision a run's CUDA graph takes: `forced` as given, else from nvidia-smi's compute capabilities; none
 * for --ep cpu / webgpu (nvidia-smi is not asked: a wedged driver cannot stall a CPU run).
 */
export function resolveGpuPrecision(
  ep: string,
  forced?: string,
  env: NodeJS.ProcessEnv = process.env,
): { precision: GpuPrecision; reason: string } | undefined {
  if (ep === 'cpu' || ep === 'webgpu') return undefined;
  if (forced !== undefined) return chooseGpuPrecision([], forced);
  const { caps, note } = readComputeCaps(env);
  const c = chooseGpuPrecision(caps);
  return note ? { ...c, reason: `${c.reason}; ${note}` } : c;
}
