// Opens a weights directory for inference: manifest check, tokenizer, and an ONNX Runtime
// session on the chosen execution provider. `--ep auto` tries CUDA and falls back to the CPU
// loudly; `--ep cuda` without a usable CUDA runtime is an error that says what is missing.
import * as ort from 'onnxruntime-node';
import { accessSync, constants, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { cudaEnv, describeCudaStatus, findCudaLibraries, needsReexec } from './cuda-libs';
import type { Manifest, GraphEntry } from '../weights/manifest';
import { fsReason } from '../util/files';

export type EpChoice = 'cpu' | 'cuda' | 'auto';

export class SessionError extends Error {
  override name = 'SessionError';
}

export interface OpenedGraph {
  session: ort.InferenceSession;
  ep: 'cpu' | 'cuda';
  graph: GraphEntry;
}

export interface SessionOptions {
  ep: EpChoice;
  /** Intra-op threads on the CPU EP (default: ORT's choice = physical cores). */
  threads?: number;
  /** CUDA device id (one model copy per GPU). */
  deviceId?: number;
  warn?: (msg: string) => void;
}

export function parseEp(s: string | undefined): EpChoice {
  const v = s ?? 'auto';
  if (v === 'cpu' || v === 'cuda' || v === 'auto') return v;
  throw new RangeError(`--ep must be cpu, cuda or auto, got "${v}"`);
}

/** Folder holding libonnxruntime.so.1 (and the CUDA provider libraries when packed with --cuda). */
export function ortNativeDir(): string {
  const bundled = join(__dirname, 'ort');
  if (existsSync(join(bundled, 'libonnxruntime.so.1'))) return bundled;
  return join(dirname(require.resolve('onnxruntime-node/package.json')), 'bin', 'napi-v6', process.platform, process.arch);
}

/**
 * Before any session: when CUDA may be used and its libraries sit in folders the loader does not
 * search (e.g. PyTorch's site-packages nvidia/*\/lib), re-run this process once with LD_LIBRARY_PATH
 * extended (the loader reads it only at start). Returns only when no re-exec was needed.
 */
export function ensureCudaEnv(ep: EpChoice): void {
  if (ep === 'cpu') return;
  const libs = findCudaLibraries({ ortDir: ortNativeDir() });
  if (!needsReexec(libs)) return;
  process.stderr.write(`CUDA libraries found outside the loader path; restarting with LD_LIBRARY_PATH += ${libs.dirs.join(':')}\n`);
  const r = spawnSync(process.execPath, process.argv.slice(1), { stdio: 'inherit', env: cudaEnv(libs) });
  process.exit(r.status ?? 1);
}

/** Human-readable reason CUDA cannot run here, or null when it might. */
export function cudaUnavailableReason(): string | null {
  const backends = (ort as unknown as { listSupportedBackends?: () => { name: string }[] }).listSupportedBackends?.() ?? [];
  if (backends.length && !backends.some((b) => b.name === 'cuda'))
    return `this onnxruntime-node build lists no CUDA backend (has: ${backends.map((b) => b.name).join(', ')})`;
  const libs = findCudaLibraries({ ortDir: ortNativeDir() });
  if (libs.missing.length) return describeCudaStatus(libs);
  return null;
}

/** Every file of a graph readable, else a SessionError naming the file and the reason. */
function checkGraphFiles(dir: string, g: GraphEntry): void {
  for (const f of [g.file, ...g.externalData]) {
    try {
      accessSync(join(dir, f), constants.R_OK);
    } catch (e) {
      throw new SessionError(`${join(dir, f)}: cannot be read (${fsReason(e)}); the weights directory's graph needs it`);
    }
  }
}

async function createSession(dir: string, g: GraphEntry, options: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
  checkGraphFiles(dir, g);
  try {
    return await ort.InferenceSession.create(join(dir, g.file), options);
  } catch (e) {
    throw new SessionError(`${join(dir, g.file)}: ONNX Runtime cannot load the graph (${(e as Error).message.split('\n')[0]}); rebuild the weights directory`);
  }
}

export async function openGraph(dir: string, manifest: Manifest, opts: SessionOptions): Promise<OpenedGraph> {
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
  const cpuGraph = manifest.graphs.cpu;
  const cudaGraph = manifest.graphs.cuda ?? manifest.graphs.cpu;
  const cpuOptions = (): ort.InferenceSession.SessionOptions => ({
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
  });
  if (opts.ep !== 'cpu') {
    if (!cudaGraph) throw new SessionError(`${dir}: manifest lists no graph to run`);
    checkGraphFiles(dir, cudaGraph);
    const reason = cudaUnavailableReason();
    let err: Error | null = reason ? new Error(reason) : null;
    if (!err) {
      try {
        const session = await ort.InferenceSession.create(join(dir, cudaGraph.file), {
          executionProviders: [{ name: 'cuda', deviceId: opts.deviceId ?? 0 }],
          graphOptimizationLevel: 'all',
        });
        return { session, ep: 'cuda', graph: cudaGraph };
      } catch (e) {
        err = e as Error;
      }
    }
    const msg = `CUDA execution provider unavailable: ${err.message.replace(/\.+\s*$/, "")}`;
    if (opts.ep === 'cuda')
      throw new SessionError(`${msg}. Install the CUDA provider libraries matching onnxruntime-node ${ort.env.versions.node} (npm run pack -- --cuda) and the CUDA 13 / cuDNN 9 runtime, or run with --ep cpu.`);
    warn(`${msg}\n*** FALLING BACK TO THE CPU EXECUTION PROVIDER: this is far slower than a GPU. ***`);
  }
  if (!cpuGraph) throw new SessionError(`${dir}: manifest has no CPU graph (graphs.cpu); rebuild the weights directory with a CPU graph`);
  const session = await createSession(dir, cpuGraph, cpuOptions());
  return { session, ep: 'cpu', graph: cpuGraph };
}

/** One forward pass: int64 [n, L] feeds in, float32 logits [n, numLabels] out. */
export async function runLogits(
  session: ort.InferenceSession,
  inputIds: BigInt64Array,
  attentionMask: BigInt64Array,
  n: number,
  seqLen: number,
): Promise<Float32Array> {
  const feeds = {
    input_ids: new ort.Tensor('int64', inputIds, [n, seqLen]),
    attention_mask: new ort.Tensor('int64', attentionMask, [n, seqLen]),
  };
  const out = await session.run(feeds);
  const logits = out.logits;
  if (!logits) throw new SessionError(`graph has no "logits" output (outputs: ${Object.keys(out).join(', ')})`);
  const data = logits.data as Float32Array;
  for (const t of Object.values(out)) t.dispose?.();
  return data;
}
