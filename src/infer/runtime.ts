// Which ONNX Runtime core runs this process, and which graph variant it may run on each execution
// provider. Two cores ship in a `--cuda` pack because NVIDIA drivers decide which CUDA major works:
//   cu13: onnxruntime-node 1.29.0 (bundled; CUDA provider built for CUDA 13, driver >= 580)
//   cu12: onnxruntime-node 1.19.2 + its CUDA 12 provider (driver >= 525; Kaggle's T4 image showed 560 / CUDA 12.6)
// One process loads one core: both libonnxruntime.so.1 share a soname, so the core is chosen before
// the first session and loaded lazily (never import 'onnxruntime-node' at module top level).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type * as Ort from 'onnxruntime-node';

export type RuntimeName = 'cu12' | 'cu13';
export type Ep = 'cpu' | 'cuda' | 'webgpu';
import type { AttentionVariant } from '../model/lower';
export type { AttentionVariant };

export class RuntimeError extends Error {
  override name = 'RuntimeError';
}

export interface RuntimeSpec {
  name: RuntimeName;
  /** ONNX Runtime version of the core and of the CUDA provider paired with it. */
  ort: string;
  cudaMajor: number;
  /** Lowest NVIDIA driver that runs this CUDA major (NVIDIA's compatibility table). */
  minDriver: number;
  /** Folder beside the bundle holding the core (onnxruntime_binding.node, libonnxruntime.so.1, providers). */
  nativeDir: string;
  /** CUDA runtime sonames its CUDA provider needs (readelf -d of the provider library, plus dlopen'ed cuDNN). */
  cudaSonames: readonly string[];
  /**
   * Attention variants each EP runs correctly with this core, best first. Measured: ORT 1.29's WebGPU
   * GroupQueryAttention ignores `softcap` (Gemma-2 logits equal the no-soft-cap model's); ORT 1.19.2
   * rejects the fused GQA nodes the kit writes (its GQA has no softcap attribute at all).
   */
  attention: Partial<Record<Ep, readonly AttentionVariant[]>>;
}

export const RUNTIMES: Record<RuntimeName, RuntimeSpec> = {
  cu13: {
    name: 'cu13',
    ort: '1.29.0',
    cudaMajor: 13,
    minDriver: 580,
    nativeDir: 'ort',
    cudaSonames: ['libcudart.so.13', 'libcublasLt.so.13', 'libcublas.so.13', 'libcurand.so.10', 'libcudnn.so.9'],
    attention: { cpu: ['fused', 'explicit'], cuda: ['fused', 'explicit'], webgpu: ['explicit'] },
  },
  cu12: {
    name: 'cu12',
    ort: '1.19.2',
    cudaMajor: 12,
    minDriver: 525,
    nativeDir: 'ort-cu12',
    cudaSonames: [
      'libcudart.so.12',
      'libcublasLt.so.12',
      'libcublas.so.12',
      'libcurand.so.10',
      'libcufft.so.11',
      'libcudnn.so.9',
    ],
    attention: { cpu: ['explicit'], cuda: ['explicit'] },
  },
};

export interface DriverInfo {
  /** nvidia-smi answered. */
  found: boolean;
  driver?: string;
  /** Highest CUDA version the driver supports ("CUDA Version" in nvidia-smi's header). */
  cuda?: string;
  gpus: string[];
  /** Why nothing was found (no nvidia-smi, it failed, ...). */
  note?: string;
}

/** Driver and CUDA versions from nvidia-smi's header: "Driver Version: 560.35.03   CUDA Version: 12.6". */
export function parseNvidiaSmi(text: string): { driver?: string; cuda?: string } {
  return {
    driver: /Driver Version:\s*([0-9.]+)/.exec(text)?.[1],
    cuda: /CUDA Version:\s*([0-9.]+)/.exec(text)?.[1],
  };
}

/** Asks nvidia-smi (found on PATH, or ARENAKIT_NVIDIA_SMI) for the driver; never throws. */
export function readDriver(env: NodeJS.ProcessEnv = process.env): DriverInfo {
  const cmd = env.ARENAKIT_NVIDIA_SMI || 'nvidia-smi';
  // A wedged driver can leave nvidia-smi deaf to SIGTERM: the deadline ends in SIGKILL.
  const ms = Number(env.ARENAKIT_NVIDIA_SMI_TIMEOUT_MS) || 15000;
  const opts = { encoding: 'utf8' as const, env, timeout: ms, killSignal: 'SIGKILL' as const };
  const head = spawnSync(cmd, [], opts);
  if ((head.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT' || head.signal === 'SIGKILL')
    return {
      found: false,
      gpus: [],
      note: `${cmd} did not answer within ${ms / 1000} s (killed): the driver may be wedged; treated as no GPU`,
    };
  if (head.error) return { found: false, gpus: [], note: `${cmd} not found: no NVIDIA driver on this machine` };
  if (head.status !== 0)
    return {
      found: false,
      gpus: [],
      note: `${cmd} failed (exit ${head.status}): ${(head.stderr || head.stdout).trim().split('\n')[0]}`,
    };
  const { driver, cuda } = parseNvidiaSmi(head.stdout);
  const list = spawnSync(cmd, ['--query-gpu=name,memory.total', '--format=csv,noheader'], opts);
  const gpus =
    list.status === 0
      ? list.stdout
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean)
      : [];
  return { found: true, driver, cuda, gpus, ...(driver ? {} : { note: `${cmd} printed no driver version` }) };
}

const major = (v: string | undefined): number => (v ? Number(v.split('.')[0]) : NaN);

/**
 * The core to load: `forced` when given (--runtime), else the newest whose CUDA major the driver
 * supports among the cores present; without a usable driver, the bundled core (cu13) for the CPU.
 */
export function chooseRuntime(
  driver: DriverInfo,
  available: RuntimeName[],
  forced?: RuntimeName,
): { runtime: RuntimeName; reason: string } {
  if (forced) {
    if (!available.includes(forced))
      throw new RuntimeError(
        `--runtime ${forced}: this build has no ${forced} core (has: ${available.join(', ')}); pack with \`npm run pack -- --cuda\` to ship both`,
      );
    return { runtime: forced, reason: `--runtime ${forced}` };
  }
  const fallback: RuntimeName = available.includes('cu13') ? 'cu13' : available[0];
  if (!driver.found || !driver.driver)
    return {
      runtime: fallback,
      reason: `${driver.note ?? 'no NVIDIA driver'}; ${fallback} core (ORT ${RUNTIMES[fallback].ort}) for the CPU`,
    };
  const cudaMajor = major(driver.cuda);
  const drv = major(driver.driver);
  const fits = (['cu13', 'cu12'] as const).filter(
    (r) => available.includes(r) && (cudaMajor >= RUNTIMES[r].cudaMajor || drv >= RUNTIMES[r].minDriver),
  );
  const seen = `driver ${driver.driver}${driver.cuda ? ` (CUDA ${driver.cuda})` : ''}`;
  if (!fits.length)
    return {
      runtime: fallback,
      reason: `${seen} is too old for every packed core (CUDA 12 needs driver >= 525); ${fallback} core for the CPU`,
    };
  const r = fits[0];
  return { runtime: r, reason: `${seen} supports CUDA ${RUNTIMES[r].cudaMajor}: ${r} core (ORT ${RUNTIMES[r].ort})` };
}

/**
 * The core to load, by driver AND libraries: cu13 then cu12, each tried when the build has it, the
 * driver supports its CUDA major and `missing(core)` (its provider and CUDA libraries that do not
 * resolve) is empty; else the bundled core for the CPU. `steps` says why at each step; `target` is the
 * newest core the driver supports (whose libraries doctor's hints name), null without a usable driver.
 */
export function chooseRuntimeByLibraries(
  driver: DriverInfo,
  available: RuntimeName[],
  missing: (r: RuntimeName) => readonly string[],
  forced?: RuntimeName,
): { runtime: RuntimeName; reason: string; steps: string[]; target: RuntimeName | null } {
  if (forced) return { ...chooseRuntime(driver, available, forced), steps: [], target: forced };
  const fallback: RuntimeName = available.includes('cu13') ? 'cu13' : available[0];
  if (!driver.found || !driver.driver) {
    const c = chooseRuntime(driver, available);
    return { ...c, steps: [c.reason], target: null };
  }
  const seen = `driver ${driver.driver}${driver.cuda ? ` (CUDA ${driver.cuda})` : ''}`;
  const steps: string[] = [];
  let target: RuntimeName | null = null;
  for (const r of ['cu13', 'cu12'] as const) {
    const spec = RUNTIMES[r];
    if (!available.includes(r)) {
      steps.push(`${r}: not in this build (pack with --cuda ${r})`);
      continue;
    }
    if (!(major(driver.cuda) >= spec.cudaMajor || major(driver.driver) >= spec.minDriver)) {
      steps.push(`${r}: ${seen} does not support CUDA ${spec.cudaMajor} (needs driver >= ${spec.minDriver})`);
      continue;
    }
    target ??= r;
    const miss = missing(r);
    if (miss.length) {
      steps.push(`${r}: ${seen} supports CUDA ${spec.cudaMajor}, but ${miss.join(', ')} do not resolve`);
      continue;
    }
    steps.push(`${r}: ${seen} supports CUDA ${spec.cudaMajor} and its libraries resolve`);
    return { runtime: r, reason: `${steps.join('; ')}: ${r} core (ORT ${spec.ort})`, steps, target };
  }
  return {
    runtime: fallback,
    reason: `${steps.join('; ')}: no CUDA core can load, ${fallback} core (ORT ${RUNTIMES[fallback].ort}) for the CPU`,
    steps,
    target,
  };
}

/**
 * The attention variant to run: `forced` (--attention) when the core runs it on this EP, else the
 * first variant of the capability table that the weights directory has.
 */
export function chooseAttention(
  runtime: RuntimeName,
  ep: Ep,
  have: AttentionVariant[],
  forced?: AttentionVariant,
): { variant: AttentionVariant; reason: string } {
  const ok = RUNTIMES[runtime].attention[ep] ?? [];
  if (forced) {
    if (!have.includes(forced))
      throw new RuntimeError(
        `--attention ${forced}: the weights directory has no ${forced} graph (has: ${have.join(', ')}); re-import to add it`,
      );
    return {
      variant: forced,
      reason: `--attention ${forced}${ok.includes(forced) ? '' : ` (not validated for ${ep} on ORT ${RUNTIMES[runtime].ort}; the self-check decides)`}`,
    };
  }
  const v = ok.find((x) => have.includes(x));
  if (!v)
    throw new RuntimeError(
      `${ep} on ORT ${RUNTIMES[runtime].ort} needs the ${ok.join(' or ') || '(none)'} attention graph, and the weights directory has only ${have.join(', ')}; re-import with \`trainer.cjs import ... --attention fused,explicit\` to add it`,
    );
  return { variant: v, reason: `${ep} on ORT ${RUNTIMES[runtime].ort} runs the ${v} attention graph` };
}

/** Folder of a core: beside the bundle (dist/ or a pack), else the source checkout's node_modules. */
export function runtimeDir(runtime: RuntimeName): string | null {
  const bundled = join(__dirname, RUNTIMES[runtime].nativeDir);
  if (existsSync(join(bundled, 'libonnxruntime.so.1'))) return bundled;
  const pkg = runtime === 'cu13' ? 'onnxruntime-node' : 'onnxruntime-node-cu12';
  try {
    const root = dirname(require.resolve(`${pkg}/package.json`));
    const napi = runtime === 'cu13' ? 'napi-v6' : 'napi-v3';
    return join(root, 'bin', napi, process.platform, process.arch);
  } catch {
    return null;
  }
}

/** Cores this build carries. */
export function availableRuntimes(): RuntimeName[] {
  return (['cu13', 'cu12'] as const).filter((r) => runtimeDir(r) !== null);
}

let loaded: { name: RuntimeName; ort: typeof Ort } | undefined;

/** Loads a core (once per process; a second, different core is refused: they cannot share a process). */
export function loadOrt(runtime: RuntimeName = 'cu13'): typeof Ort {
  if (loaded) {
    if (loaded.name !== runtime)
      throw new RuntimeError(
        `ONNX Runtime core ${loaded.name} is already loaded in this process; ${runtime} needs its own process`,
      );
    return loaded.ort;
  }
  let ort: typeof Ort;
  if (runtime === 'cu13') {
    ort = require('onnxruntime-node');
  } else {
    const bundled = join(__dirname, RUNTIMES.cu12.nativeDir, 'ort.cjs');
    try {
      ort = existsSync(bundled) ? require(bundled) : require('onnxruntime-node-cu12');
    } catch (e) {
      throw new RuntimeError(
        `the cu12 core (onnxruntime-node ${RUNTIMES.cu12.ort}) is not in this build (${(e as Error).message.split('\n')[0]}); pack with \`npm run pack -- --cuda\``,
      );
    }
  }
  loaded = { name: runtime, ort };
  return ort;
}
