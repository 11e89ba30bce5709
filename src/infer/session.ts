// Opens a weights directory's graph for inference: which ONNX Runtime core (src/infer/runtime.ts),
// which execution provider, and which attention variant of the graph that core runs correctly there.
// `--ep auto` tries CUDA and falls back to the CPU loudly; `--ep cuda` / `--ep webgpu` without a
// usable provider is an error that says what is missing.
import type * as Ort from 'onnxruntime-node';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { cudaEnv, describeCudaStatus, findCudaLibraries, needsReexec } from './cuda-libs';
import type { Manifest, GraphEntry, GraphKind } from '../weights/manifest';
import type { GpuPrecision } from './gpu-precision';
import { fsReason } from '../util/files';
import { loadOptions, optimizedDir, optimizedPaths, prepackSafe, saveOptions } from './optimized';
import { parseModel } from '../graph/serialise';
import { fpaIntbConfig } from './gpu-levers';
import { boundLogits, boundResult, ioBindingEnabled, logitsWidth } from './io-binding';
import { exactNBitsModel } from './reference-graph';
import { expandedDir } from '../weights/expand';
import {
  availableRuntimes,
  chooseAttention,
  chooseRuntimeByLibraries,
  loadOrt,
  readDriver,
  type DriverInfo,
  runtimeDir,
  RUNTIMES,
  type AttentionVariant,
  type Ep,
  type RuntimeName,
} from './runtime';

export type EpChoice = Ep | 'auto';

export class SessionError extends Error {
  override name = 'SessionError';
}

/** One runnable graph: a manifest graph entry resolved to one attention variant's file. */
export interface ResolvedGraph extends GraphEntry {
  variant: AttentionVariant;
}

export interface OpenedGraph {
  session: Ort.InferenceSession;
  ep: Ep;
  graph: ResolvedGraph;
  runtime: RuntimeName;
  /** CPU EP: the session started from the saved optimized graph ('loaded'), saved it ('saved'), or neither. */
  optimized?: 'loaded' | 'saved' | 'none';
}

export interface SessionOptions {
  ep: EpChoice;
  /** Intra-op threads on the CPU EP (default: ORT's choice = physical cores). */
  threads?: number;
  /** CUDA device id (one model copy per GPU). */
  deviceId?: number;
  /** CPU EP: MatMulNBits at accuracy_level 0 whatever the graph says (the self-check's exact reference; reference-graph.ts;
   * other EPs always run the CPU graph that way). */
  exactNBits?: boolean;
  /** --attention: run this variant whatever the capability table says (the self-check still applies). */
  attention?: AttentionVariant;
  /** Activations of the CUDA graph to prefer (src/infer/gpu-precision.ts; default fp16). */
  gpuPrecision?: GpuPrecision;
  warn?: (msg: string) => void;
}

export function parseEp(s: string | undefined): EpChoice {
  const v = s ?? 'auto';
  if (v === 'cpu' || v === 'cuda' || v === 'webgpu' || v === 'auto') return v;
  throw new RangeError(`--ep must be cpu, cuda, webgpu or auto, got "${v}"`);
}

export function parseRuntime(s: string | undefined): RuntimeName | undefined {
  if (s === undefined) return undefined;
  if (s === 'cu12' || s === 'cu13') return s;
  throw new RangeError(`--runtime must be cu12 or cu13, got "${s}"`);
}

export function parseAttention(s: string | undefined): AttentionVariant | undefined {
  if (s === undefined) return undefined;
  if (s === 'fused' || s === 'explicit') return s;
  throw new RangeError(`--attention must be fused or explicit, got "${s}"`);
}

let chosen: { runtime: RuntimeName; reason: string; target?: RuntimeName | null } | undefined;

/**
 * The core this process runs, chosen once from the NVIDIA driver (or --runtime) and announced; every
 * session of the process uses it. ARENAKIT_RUNTIME carries a forced choice to shard workers.
 */
/** `driver`: what the command already read (one nvidia-smi call per run), or a stand-in for --ep cpu. */
export function processRuntime(
  forced?: RuntimeName,
  driver?: DriverInfo,
): { runtime: RuntimeName; reason: string; target?: RuntimeName | null } {
  if (chosen) {
    if (forced && forced !== chosen.runtime)
      throw new SessionError(
        `ONNX Runtime core ${chosen.runtime} is already in use in this process; --runtime ${forced} needs a new process`,
      );
    return chosen;
  }
  const want = forced ?? parseRuntime(process.env.ARENAKIT_RUNTIME || undefined);
  chosen = chooseRuntimeByLibraries(
    want ? { found: false, gpus: [] } : (driver ?? readDriver()),
    availableRuntimes(),
    coreMissingLibraries,
    want,
  );
  process.stderr.write(`runtime: ${chosen.runtime} (${chosen.reason})\n`);
  return chosen;
}

/** A core's provider and CUDA libraries that do not resolve on this machine (the core itself when absent). */
export function coreMissingLibraries(r: RuntimeName): string[] {
  const dir = runtimeDir(r);
  return dir ? findCudaLibraries({ ortDir: dir, sonames: RUNTIMES[r].cudaSonames }).missing : [`the ${r} core`];
}

const ort = (): typeof Ort => loadOrt(processRuntime().runtime);

/** Folder holding the chosen core's libonnxruntime.so.1 (and its CUDA provider libraries when packed with --cuda). */
export function ortNativeDir(): string {
  const r = processRuntime().runtime;
  const d = runtimeDir(r);
  if (!d) throw new SessionError(`the ${r} core has no native folder in this build`);
  return d;
}

/**
 * Before any session: when CUDA may be used and its libraries sit in folders the loader does not
 * search (e.g. PyTorch's site-packages nvidia/*\/lib), re-run this process once with LD_LIBRARY_PATH
 * extended (the loader reads it only at start). Returns only when no re-exec was needed.
 */
export function ensureCudaEnv(ep: EpChoice, runtime?: RuntimeName): void {
  if (ep === 'cpu' || ep === 'webgpu') return;
  const r = processRuntime(runtime).runtime;
  const libs = findCudaLibraries({ ortDir: ortNativeDir(), sonames: RUNTIMES[r].cudaSonames });
  if (!needsReexec(libs)) return;
  process.stderr.write(
    `CUDA libraries found outside the loader path; restarting with LD_LIBRARY_PATH += ${libs.dirs.join(':')}\n`,
  );
  const r2 = spawnSync(process.execPath, process.argv.slice(1), {
    stdio: 'inherit',
    env: { ...cudaEnv(libs), ARENAKIT_RUNTIME: r },
  });
  process.exit(r2.status ?? 1);
}

/** Human-readable reason CUDA cannot run here, or null when it might. */
export function cudaUnavailableReason(): string | null {
  const o = ort() as unknown as { listSupportedBackends?: () => { name: string }[] };
  const backends = o.listSupportedBackends?.() ?? [];
  if (backends.length && !backends.some((b) => b.name === 'cuda'))
    return `this onnxruntime-node build lists no CUDA backend (has: ${backends.map((b) => b.name).join(', ')})`;
  const libs = findCudaLibraries({ ortDir: ortNativeDir(), sonames: RUNTIMES[processRuntime().runtime].cudaSonames });
  if (libs.missing.length) return describeCudaStatus(libs);
  return null;
}

/** Every file of a graph readable, else a SessionError naming the file and the reason. */
function checkGraphFiles(dir: string, g: GraphEntry): void {
  for (const f of [g.file, ...g.externalData]) {
    try {
      accessSync(join(dir, f), constants.R_OK);
    } catch (e) {
      throw new SessionError(
        `${join(dir, f)}: cannot be read (${fsReason(e)}); the weights directory's graph needs it`,
      );
    }
  }
}

/** Attention variants a manifest graph entry offers (entries written before variants existed are fused). */
export function graphVariants(g: GraphEntry): AttentionVariant[] {
  return g.variants ? (['fused', 'explicit'] as const).filter((v) => g.variants![v]) : ['fused'];
}

export function resolveGraph(g: GraphEntry, variant: AttentionVariant): ResolvedGraph {
  const v = g.variants?.[variant];
  return { ...g, ...(v ? { file: v.file, sha256: v.sha256 } : {}), variant };
}

/**
 * The manifest graph an EP runs, with a note when it is not the one asked for: on CUDA the GPU graph of the
 * chosen precision, else the other GPU graph, else the fp32 one; the fp32 graph on every other EP.
 */
export function chooseGraph(
  manifest: Manifest,
  ep: Ep,
  precision: GpuPrecision = 'float16',
): { kind: GraphKind; entry: GraphEntry; note?: string } | undefined {
  const want: GraphKind = precision === 'bfloat16' ? 'cuda-bf16' : 'cuda';
  const order: GraphKind[] = ep !== 'cuda' ? ['cpu'] : [want, want === 'cuda' ? 'cuda-bf16' : 'cuda', 'cpu'];
  const kind = order.find((k) => manifest.graphs[k]);
  if (!kind) return undefined;
  const note =
    ep === 'cuda' && kind !== want
      ? `the weights have no ${want} graph for ${precision} activations; running the ${kind} graph (import --graphs ${want} writes it)`
      : undefined;
  return { kind, entry: manifest.graphs[kind]!, ...(note ? { note } : {}) };
}

/** The manifest graph an EP runs (chooseGraph without the note). */
export function graphForEp(manifest: Manifest, ep: Ep, precision?: GpuPrecision): GraphEntry | undefined {
  return chooseGraph(manifest, ep, precision)?.entry;
}

function providerOptions(ep: Ep, opts: SessionOptions): Ort.InferenceSession.SessionOptions {
  if (ep === 'cuda') {
    const extra = fpaIntbConfig(processRuntime().runtime); // the CUTLASS fpA_intB GEMM, opt-in (gpu-levers.ts)
    return {
      executionProviders: [{ name: 'cuda', deviceId: opts.deviceId ?? 0 }],
      graphOptimizationLevel: 'all',
      ...(Object.keys(extra).length ? { extra } : {}),
    };
  }
  if (ep === 'webgpu') return { executionProviders: ['webgpu'], graphOptimizationLevel: 'all' };
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
  };
}

/** Session config for a graph created from bytes: its external data sits in the weights directory. */
const externalFolder = (dir: string) => ({ 'session.model_external_initializers_file_folder_path': dir });

/** A session of one variant of one manifest graph on one EP; load failures name the file. */
export async function createSession(
  dir: string,
  g: GraphEntry,
  variant: AttentionVariant,
  ep: Ep,
  opts: SessionOptions,
): Promise<OpenedGraph> {
  const graph = resolveGraph(g, variant);
  checkGraphFiles(dir, graph);
  process.env.XDG_RUNTIME_DIR ??= '/tmp'; // Dawn's Vulkan loader wants it; harmless elsewhere
  // an int4-rows graph opens from the folder that holds its expanded int8 weights (src/weights/expand.ts)
  const from = expandedDir(dir, graph, process.env, (m) => process.stderr.write(`${m}\n`));
  try {
    const runtime = processRuntime().runtime;
    if (ep === 'cpu') return await cpuSession(from, graph, opts, runtime);
    // accuracy_level 4 is the CPU EP's choice: another EP running the CPU graph (WebGPU) gets it at level 0, the
    // exact path the self-check compares with (WebGPU's own int8-activation path is 0.05 off on the tiny fixture)
    const exact = graph.activations === 'float32' ? exactNBitsModel(readFileSync(join(from, graph.file))) : null;
    const o = providerOptions(ep, opts);
    const session = exact
      ? await ort().InferenceSession.create(exact, { ...o, extra: { ...o.extra, ...externalFolder(from) } })
      : await ort().InferenceSession.create(join(from, graph.file), o);
    return { session, ep, graph, runtime };
  } catch (e) {
    throw new SessionError(
      `${join(dir, graph.file)}: ONNX Runtime ${RUNTIMES[processRuntime().runtime].ort} cannot load the ${variant} graph on ${ep} (${(e as Error).message.split('\n')[0]})`,
    );
  }
}

/**
 * A CPU session that starts from the saved optimized graph of this graph when one exists (src/infer/optimized.ts),
 * else from the plain graph, saving the optimized one for the next session. Any failure of the saved graph
 * (unreadable, disk full, an older file) falls back to the plain graph: the cache only ever costs a warning.
 */
async function cpuSession(
  dir: string,
  graph: ResolvedGraph,
  opts: SessionOptions,
  runtime: RuntimeName,
): Promise<OpenedGraph> {
  const plain = providerOptions('cpu', opts);
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
  const cache = optimizedDir();
  const p = cache ? optimizedPaths(cache, graph, runtime, 'cpu') : null;
  const open = (file: string, o: Ort.InferenceSession.SessionOptions) => ort().InferenceSession.create(file, o);
  const done = (session: Ort.InferenceSession, optimized: OpenedGraph['optimized']): OpenedGraph => ({
    session,
    ep: 'cpu',
    graph,
    runtime,
    optimized,
  });
  if (opts.exactNBits) {
    const exact = exactNBitsModel(readFileSync(join(dir, graph.file)));
    if (exact)
      return done(await ort().InferenceSession.create(exact, { ...plain, extra: externalFolder(dir) }), 'none');
  }
  if (!p) return done(await open(join(dir, graph.file), plain), 'none');
  if (existsSync(p.model)) {
    try {
      return done(await open(p.model, { ...plain, ...loadOptions }), 'loaded');
    } catch (e) {
      warn(
        `saved optimized graph ${p.model} did not load (${(e as Error).message.split('\n')[0]}); using ${graph.file}`,
      );
      rmSync(p.model, { force: true });
    }
  }
  try {
    mkdirSync(cache!, { recursive: true });
    const prepacked = prepackSafe(parseModel(readFileSync(join(dir, graph.file))));
    const session = await open(join(dir, graph.file), { ...plain, ...saveOptions(p, prepacked) });
    renameSync(p.partial, p.model);
    return done(session, 'saved');
  } catch (e) {
    rmSync(p.partial, { force: true });
    rmSync(join(cache!, p.dataName), { force: true });
    warn(
      `could not save the optimized graph under ${cache} (${(e as Error).message.split('\n')[0]}); the next session starts from ${graph.file} again`,
    );
    return done(await open(join(dir, graph.file), plain), 'none');
  }
}

/** The variant this core runs on `ep` for this graph (capability table, or --attention). */
export function variantFor(
  g: GraphEntry,
  ep: Ep,
  forced?: AttentionVariant,
): { variant: AttentionVariant; reason: string } {
  return chooseAttention(processRuntime().runtime, ep, graphVariants(g), forced);
}

export async function openGraph(dir: string, manifest: Manifest, opts: SessionOptions): Promise<OpenedGraph> {
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
  const rt = RUNTIMES[processRuntime().runtime];
  const tryEp = async (ep: Ep, precision = opts.gpuPrecision): Promise<OpenedGraph> => {
    const chosen = chooseGraph(manifest, ep, precision);
    if (!chosen)
      throw new SessionError(`${dir}: manifest has no graph for ${ep} (graphs.cpu); rebuild the weights directory`);
    if (chosen.note) warn(chosen.note);
    const g = chosen.entry;
    const { variant, reason } = variantFor(g, ep, opts.attention);
    const opened = await createSession(dir, g, variant, ep, opts);
    process.stderr.write(`graph: ${opened.graph.file} (${reason})\n`);
    return opened;
  };
  if (opts.ep === 'webgpu') return tryEp('webgpu');
  if (opts.ep === 'cuda' || opts.ep === 'auto') {
    const reason = cudaUnavailableReason();
    let err: Error | null = reason ? new Error(reason) : null;
    if (!err) {
      try {
        return await tryEp('cuda');
      } catch (e) {
        err = e as Error;
      }
      // A core without bf16 kernels (the CUDA 12 core, ORT 1.19) can still run the fp16 graph.
      if (chooseGraph(manifest, 'cuda', opts.gpuPrecision)?.kind === 'cuda-bf16' && manifest.graphs.cuda) {
        warn(`the cuda-bf16 graph does not load (${err.message.split('\n')[0]}); trying the fp16 cuda graph`);
        try {
          return await tryEp('cuda', 'float16');
        } catch (e) {
          err = e as Error;
        }
      }
    }
    const msg = `CUDA execution provider unavailable: ${err.message.replace(/\.+\s*$/, '')}`;
    if (opts.ep === 'cuda')
      throw new SessionError(
        `${msg}. Install the CUDA provider libraries matching the ${rt.name} core (ORT ${rt.ort}: npm run pack -- --cuda) and the CUDA ${rt.cudaMajor} / cuDNN 9 runtime, or run with --ep cpu.`,
      );
    warn(`${msg}\n*** FALLING BACK TO THE CPU EXECUTION PROVIDER: this is far slower than a GPU. ***`);
  }
  return tryEp('cpu');
}

/** One forward pass: int64 [n, L] feeds in, float32 logits [n, numLabels] out. */
export async function runLogits(
  session: Ort.InferenceSession,
  inputIds: BigInt64Array,
  attentionMask: BigInt64Array,
  n: number,
  seqLen: number,
): Promise<Float32Array> {
  const feeds = {
    input_ids: new (ort().Tensor)('int64', inputIds, [n, seqLen]),
    attention_mask: new (ort().Tensor)('int64', attentionMask, [n, seqLen]),
  };
  // IO binding (io-binding.ts, opt-in): ORT writes the logits into a buffer of ours.
  const width = ioBindingEnabled() ? logitsWidth(session) : undefined;
  const bound = width ? boundLogits(ort(), n, width) : undefined;
  const out = bound ? await session.run(feeds, bound.fetches) : await session.run(feeds);
  const logits = out.logits;
  if (!logits) throw new SessionError(`graph has no "logits" output (outputs: ${Object.keys(out).join(', ')})`);
  const data = bound ? boundResult(bound.data, logits.data as Float32Array) : (logits.data as Float32Array);
  for (const t of Object.values(out)) t.dispose?.();
  return data;
}
