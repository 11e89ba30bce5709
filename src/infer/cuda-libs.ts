// Finds the shared libraries ONNX Runtime's CUDA execution provider needs before a session is
// created, and builds the environment for a child process that can load them. Pure over the file
// system it is pointed at (every location is injectable); it never loads a library itself.
//
// Why a child process: the dynamic loader reads LD_LIBRARY_PATH once, at process start, so a runner
// that finds the libraries in Python's site-packages must re-exec itself with `cudaEnv(...)`.
//
// Sonames: from `readelf -d` on libonnxruntime_providers_cuda.so of the pinned provider package
// (com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9, ORT 1.29.0, CUDA 13): NEEDED libcublasLt.so.13,
// libcublas.so.13, libcurand.so.10, libcudart.so.13, libcuda.so.1 (the driver); cuDNN 9 is dlopen'ed
// at run time as libcudnn.so.9 (it then loads its own sub-libraries from its own folder). No cuFFT.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Provider libraries that must sit beside libonnxruntime.so.1 (ORT loads them from its own folder). */
export const ORT_PROVIDER_LIBS = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'] as const;

/** CUDA 13 runtime sonames the ORT 1.29 CUDA provider needs, in load order. */
export const CUDA_RUNTIME_SONAMES = [
  'libcudart.so.13',
  'libcublasLt.so.13',
  'libcublas.so.13',
  'libcurand.so.10',
  'libcudnn.so.9',
] as const;

/** The NVIDIA driver's user-space library; provided by the machine, never by a package. */
export const CUDA_DRIVER_SONAME = 'libcuda.so.1';

/** Set in the environment cudaEnv returns, so a re-exec'ed runner does not re-exec again. */
export const CUDA_ENV_MARKER = 'ARENAKIT_CUDA_ENV';

/** Folders the loader searches without LD_LIBRARY_PATH: a library found there needs no env change. */
const LOADER_DEFAULT_DIRS = [
  '/lib/x86_64-linux-gnu',
  '/usr/lib/x86_64-linux-gnu',
  '/lib64',
  '/usr/lib64',
  '/lib',
  '/usr/lib',
];

export interface CudaLibsOptions {
  /** Folder holding libonnxruntime.so.1 (dist/ort or the pack's ort/): the provider libraries must be here. */
  ortDir: string;
  /** Extra folders, searched after LD_LIBRARY_PATH: each is taken as a library folder and as a site-packages folder (its nvidia/<pkg>/lib). */
  searchDirs?: string[];
  /** Environment to read LD_LIBRARY_PATH, HOME, CUDA_HOME, CUDA_PATH, CONDA_PREFIX, VIRTUAL_ENV from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Search the usual system places (python site-packages, /usr/local/cuda, loader folders, ld.so.cache); default true. Tests set false. */
  defaults?: boolean;
  /** Loader cache consulted last (default /etc/ld.so.cache). */
  ldCache?: string;
  /** CUDA runtime sonames the chosen core's provider needs (src/infer/runtime.ts RUNTIMES); default the CUDA 13 set. */
  sonames?: readonly string[];
}

export interface CudaLibsResult {
  /** soname (or provider file name) -> absolute path where it was found. */
  found: Record<string, string>;
  /** Required names not found anywhere, in the order of ORT_PROVIDER_LIBS, CUDA_RUNTIME_SONAMES, driver. */
  missing: string[];
  /** Folders to add to LD_LIBRARY_PATH for a child process (not already on it, not searched by the loader anyway). */
  dirs: string[];
  /** Other major versions seen where a missing soname was looked for (e.g. libcublas.so.12 when .13 is needed). */
  otherVersions: Record<string, string[]>;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function listDir(p: string): string[] {
  try {
    return readdirSync(p).sort();
  } catch {
    return [];
  }
}

/** `<root>/<prefix>*` folders (one glob level), sorted newest-looking last. */
function globChildren(root: string, prefix: string): string[] {
  return listDir(root)
    .filter((n) => n.startsWith(prefix))
    .map((n) => join(root, n))
    .filter(isDir);
}

/** Library folders inside a site-packages folder, as NVIDIA's pip wheels lay them out: nvidia/<pkg>/lib (cu12: nvidia/cublas/lib; cu13: nvidia/cu13/lib). */
function nvidiaLibDirs(sitePackages: string): string[] {
  const nv = join(sitePackages, 'nvidia');
  return listDir(nv).flatMap((pkg) => ['lib', 'lib64'].map((l) => join(nv, pkg, l)).filter(isDir));
}

/** Python site-packages folders where PyTorch / pip install the nvidia-* wheels. */
export function defaultSitePackages(env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  const pyLibs = (libRoot: string) =>
    globChildren(libRoot, 'python3').flatMap((d) => [join(d, 'site-packages'), join(d, 'dist-packages')]);
  if (env.VIRTUAL_ENV) out.push(...pyLibs(join(env.VIRTUAL_ENV, 'lib')));
  if (env.CONDA_PREFIX) out.push(...pyLibs(join(env.CONDA_PREFIX, 'lib')));
  out.push(
    ...pyLibs('/usr/local/lib'),
    '/usr/lib/python3/dist-packages',
    ...pyLibs('/usr/lib'),
    ...pyLibs('/opt/conda/lib'),
  );
  if (env.HOME) out.push(...pyLibs(join(env.HOME, '.local', 'lib')));
  return out.filter(isDir);
}

/** Every folder searched, in priority order (the order the loader would use once cudaEnv appends them). */
export function candidateDirs(opts: CudaLibsOptions): string[] {
  const env = opts.env ?? process.env;
  const ld = (env.LD_LIBRARY_PATH ?? '').split(delimiter).filter(Boolean);
  const extra = (opts.searchDirs ?? []).flatMap((d) => [d, ...nvidiaLibDirs(d)]);
  const dirs = [...ld, ...extra];
  if (opts.defaults !== false) {
    dirs.push(...defaultSitePackages(env).flatMap(nvidiaLibDirs));
    for (const root of [env.CUDA_HOME, env.CUDA_PATH, env.CONDA_PREFIX, '/usr/local/cuda'].filter(
      (x): x is string => !!x,
    ))
      dirs.push(join(root, 'lib64'), join(root, 'lib'), join(root, 'targets', 'x86_64-linux', 'lib'));
    dirs.push(...globChildren('/usr/local', 'cuda-').map((d) => join(d, 'lib64')));
    dirs.push('/usr/local/nvidia/lib64', '/usr/lib/wsl/lib', ...LOADER_DEFAULT_DIRS);
  }
  return [...new Set(dirs)].filter(isDir);
}

/** Paths the loader cache (/etc/ld.so.cache) knows for a soname; the file stores them as NUL-terminated strings. */
function ldCacheLookup(cacheText: string, soname: string): string | undefined {
  const re = new RegExp(`(/[^\\0]*/)${soname.replace(/[.+]/g, '\\$&')}\\0`);
  const m = re.exec(cacheText);
  return m ? m[1] + soname : undefined;
}

/** `libcublas.so.13` -> other `libcublas.so.N` files present in the folders (a CUDA 12 install, say). */
function otherMajors(dirs: string[], soname: string): string[] {
  const base = soname.replace(/\.so\.\d+$/, '.so.');
  const out: string[] = [];
  for (const d of dirs)
    for (const n of listDir(d))
      if (n.startsWith(base) && n !== soname && /^\d+$/.test(n.slice(base.length))) out.push(join(d, n));
  return out;
}

export function findCudaLibraries(opts: CudaLibsOptions): CudaLibsResult {
  const env = opts.env ?? process.env;
  const found: Record<string, string> = {};
  const missing: string[] = [];
  const otherVersions: Record<string, string[]> = {};
  for (const f of ORT_PROVIDER_LIBS) {
    const p = join(opts.ortDir, f);
    if (existsSync(p)) found[f] = p;
    else missing.push(f);
  }
  const dirs = candidateDirs(opts);
  let cacheText: string | null = null;
  if (opts.defaults !== false || opts.ldCache) {
    try {
      cacheText = readFileSync(opts.ldCache ?? '/etc/ld.so.cache', 'latin1');
    } catch {
      cacheText = null;
    }
  }
  const needDirs: string[] = [];
  for (const so of [...(opts.sonames ?? CUDA_RUNTIME_SONAMES), CUDA_DRIVER_SONAME]) {
    const dir = dirs.find((d) => existsSync(join(d, so)));
    if (dir) {
      found[so] = join(dir, so);
      if (!needDirs.includes(dir)) needDirs.push(dir);
      continue;
    }
    const cached = cacheText ? ldCacheLookup(cacheText, so) : undefined;
    if (cached) {
      found[so] = cached;
      continue;
    }
    missing.push(so);
    const others = otherMajors(dirs, so);
    if (others.length) otherVersions[so] = others;
  }
  const onPath = new Set((env.LD_LIBRARY_PATH ?? '').split(delimiter).filter(Boolean));
  return {
    found,
    missing,
    dirs: needDirs.filter((d) => !onPath.has(d) && !LOADER_DEFAULT_DIRS.includes(d)),
    otherVersions,
  };
}

/** The environment a child process needs to load what was found: LD_LIBRARY_PATH with `dirs` added, plus the re-exec marker. */
export function cudaEnv(result: Pick<CudaLibsResult, 'dirs'>, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  // Existing entries stay first: findCudaLibraries looked in them first, so the loader picks the same files.
  const current = (env.LD_LIBRARY_PATH ?? '').split(delimiter).filter(Boolean);
  const merged = [...current, ...result.dirs.filter((d) => !current.includes(d))];
  return { ...env, LD_LIBRARY_PATH: merged.join(delimiter), [CUDA_ENV_MARKER]: '1' };
}

/** True when the current process cannot load what was found without a re-exec (and has not re-exec'ed yet). */
export function needsReexec(
  result: Pick<CudaLibsResult, 'dirs' | 'missing'>,
  env: NodeJS.ProcessEnv = process.env,
): boolean {
  return result.missing.length === 0 && result.dirs.length > 0 && env[CUDA_ENV_MARKER] !== '1';
}

/** Where each library usually comes from (NVIDIA's pip wheels, which PyTorch installs). */
const PIP_SOURCE: Record<string, string> = {
  'libcudart.so.13': 'CUDA 13 runtime (pip: nvidia-cuda-runtime, CUDA 13 wheel)',
  'libcublas.so.13': 'cuBLAS for CUDA 13 (pip: nvidia-cublas, CUDA 13 wheel)',
  'libcublasLt.so.13': 'cuBLASLt for CUDA 13 (pip: nvidia-cublas, CUDA 13 wheel)',
  'libcurand.so.10': 'cuRAND for CUDA 13 (pip: nvidia-curand, CUDA 13 wheel)',
  'libcudnn.so.9': 'cuDNN 9 (pip: nvidia-cudnn-cu13 or nvidia-cudnn-cu12, matching the CUDA major)',
  'libcudart.so.12': 'CUDA 12 runtime (pip: nvidia-cuda-runtime-cu12, which PyTorch installs)',
  'libcublas.so.12': 'cuBLAS for CUDA 12 (pip: nvidia-cublas-cu12)',
  'libcublasLt.so.12': 'cuBLASLt for CUDA 12 (pip: nvidia-cublas-cu12)',
  'libcufft.so.11': 'cuFFT for CUDA 12 (pip: nvidia-cufft-cu12)',
};

/** The pip wheel (or pack option) that provides `so` for a core built against CUDA `cudaMajor`. */
export function wheelHint(so: string, cudaMajor: 12 | 13 | number): string {
  const cu = cudaMajor === 12 ? 'cu12' : 'cu13';
  if ((ORT_PROVIDER_LIBS as readonly string[]).includes(so))
    return `ONNX Runtime CUDA provider: \`npm run pack -- --cuda ${cu}\``;
  if (so === CUDA_DRIVER_SONAME) return 'the NVIDIA driver (on Kaggle: a GPU accelerator)';
  const base = so.replace(/\.so\.\d+$/, '');
  const wheels: Record<string, [string, string]> = {
    libcudart: ['nvidia-cuda-runtime-cu12', 'nvidia-cuda-runtime (13.x)'],
    libcublas: ['nvidia-cublas-cu12', 'nvidia-cublas (13.x)'],
    libcublasLt: ['nvidia-cublas-cu12', 'nvidia-cublas (13.x)'],
    libcurand: ['nvidia-curand-cu12', 'nvidia-curand (10.4, CUDA 13)'],
    libcufft: ['nvidia-cufft-cu12', 'nvidia-cufft (CUDA 13)'],
    libcudnn: ['nvidia-cudnn-cu12', 'nvidia-cudnn-cu13'],
  };
  const w = wheels[base];
  return w ? `pip: ${w[cudaMajor === 12 ? 0 : 1]}` : `a CUDA ${cudaMajor} library`;
}

/** One message for the log: what was found, what is missing, and what --ep auto / --ep cuda will do about it. */
export function describeCudaStatus(result: CudaLibsResult): string {
  if (result.missing.length === 0) {
    const lines = Object.entries(result.found).map(([so, p]) => `  ${so}: ${p}`);
    const extra = result.dirs.length ? `\n  LD_LIBRARY_PATH additions: ${result.dirs.join(', ')}` : '';
    return `CUDA libraries: all found\n${lines.join('\n')}${extra}`;
  }
  const why = (so: string): string => {
    if ((ORT_PROVIDER_LIBS as readonly string[]).includes(so))
      return 'ONNX Runtime CUDA provider of the chosen core; put it beside libonnxruntime.so.1: build the kit with `npm run pack -- --cuda`';
    if (so === CUDA_DRIVER_SONAME)
      return 'NVIDIA driver: no GPU driver on this machine (on Kaggle, choose a GPU accelerator)';
    const other = result.otherVersions[so];
    const seen = other
      ? `; found only ${other.join(', ')}: another CUDA major version, which this ONNX Runtime build cannot use`
      : '';
    return `${PIP_SOURCE[so] ?? 'CUDA 13 runtime'}${seen}`;
  };
  const lines = result.missing.map((so) => `  missing ${so}: ${why(so)}`);
  return [
    `CUDA libraries: ${result.missing.length} missing, so the CUDA execution provider cannot start`,
    ...lines,
    `  searched: LD_LIBRARY_PATH, python site-packages nvidia/*/lib, /usr/local/cuda/lib64, loader folders and ld.so.cache`,
    `  --ep auto: FALLS BACK TO THE CPU (far slower); --ep cuda: stops with this error; add the folders holding these files to LD_LIBRARY_PATH to fix it.`,
  ].join('\n');
}
