// The self-check before a long run: a few rows (the shortest and the longest) scored on the chosen
// core, EP and attention variant and on the reference (the fp32 graph of the same import on the CPU
// EP); over tolerance, the explicit variant is tried, then the CPU (--ep auto) or the run stops
// (--ep cuda|webgpu). This is how a runtime that silently computes something else (measured: ORT
// 1.29's WebGPU GroupQueryAttention drops Gemma-2's soft-cap) is caught on the user's machine.
import type * as Ort from 'onnxruntime-node';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { graphSha256, type Manifest } from '../weights/manifest';
import { padBatch } from './batching';
import {
  createSession,
  graphForEp,
  graphVariants,
  runLogits,
  SessionError,
  type OpenedGraph,
  type SessionOptions,
} from './session';
import type { Ep } from './runtime';

export interface SelfCheck {
  rows: number;
  /** Max |logit difference| of the used graph against the reference; null when the used graph is the reference. */
  maxDiff: number | null;
  tolerance: number;
  /** What was tried before the graph that passed, with its difference. */
  rejected: { ep: Ep; variant: string; maxDiff: number }[];
  /** Wall-clock seconds the check took (reference session, both runs); 0 when skipped. */
  seconds: number;
  /** The verdict came from an earlier process of this run (doctor, or another worker): no rows scored here. */
  reused?: boolean;
}

/** The check's bound (issue 22): at most this many rows, each cut to its last CHECK_MAX_TOKENS tokens. */
export const CHECK_MAX_ROWS = 4;
export const CHECK_MAX_TOKENS = 64;

/**
 * Bounded work: `ids` (the shortest and the longest rows, checkRows' order) cut to `maxRows` rows (half
 * from each end) of at most `maxTokens` tokens (the tail, where the classifier reads). Both graphs get
 * the same inputs, so the comparison stays exact; the cost is at most maxRows x maxTokens tokens.
 */
export function boundCheckIds(ids: Int32Array[], maxRows = CHECK_MAX_ROWS, maxTokens = CHECK_MAX_TOKENS): Int32Array[] {
  const pick =
    ids.length <= maxRows
      ? ids
      : [...ids.slice(0, Math.ceil(maxRows / 2)), ...ids.slice(ids.length - Math.floor(maxRows / 2))];
  return pick.map((x) => (x.length > maxTokens ? x.subarray(x.length - maxTokens) : x));
}

/** One run's verdict on a graph (runtime, EP, variant), shared by doctor, predict and the --devices workers. */
export interface Verdict {
  maxDiff: number;
  tolerance: number;
  rows: number;
  seconds: number;
}

/** Folder of verdict files: ARENAKIT_SELFCHECK_DIR, else <tmp>/arenakit-selfcheck (one machine, one run). */
export const verdictDir = (env: NodeJS.ProcessEnv = process.env): string =>
  env.ARENAKIT_SELFCHECK_DIR || join(tmpdir(), 'arenakit-selfcheck');

/** The verdict's key: the graph's sha256, the core, the EP, the attention variant and the check's bound. */
export function verdictKey(graphSha: string, runtime: string, ep: string, variant: string): string {
  return createHash('sha256')
    .update(['arenakit-selfcheck-1', graphSha, runtime, ep, variant, CHECK_MAX_ROWS, CHECK_MAX_TOKENS].join('\n'))
    .digest('hex')
    .slice(0, 32);
}

function readVerdict(file: string): Verdict | null {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as Verdict;
    return typeof v.maxDiff === 'number' || v.maxDiff === null ? { ...v, maxDiff: v.maxDiff ?? Infinity } : null;
  } catch {
    return null;
  }
}

function writeVerdict(file: string, v: Verdict): void {
  try {
    mkdirSync(join(file, '..'), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ ...v, maxDiff: Number.isFinite(v.maxDiff) ? v.maxDiff : null }) + '\n');
    renameSync(tmp, file);
  } catch {
    // A read-only tmp costs a second check later, nothing more.
  }
}

/**
 * Largest max |logit diff| from the fp32 CPU graph that still passes: fp16 activations round to 2^-11
 * relative, bf16 to 2^-8 (8x coarser: its tolerance is fp16's times 4, a wrong kernel still misses it by
 * orders of magnitude); int4/int8 weights are the same bytes in every graph.
 */
export function checkTolerance(g: { activations: 'float32' | 'float16' | 'bfloat16' }): number {
  return { float32: 5e-3, float16: 5e-2, bfloat16: 2e-1 }[g.activations];
}

/** Indices of the k/2 shortest and k/2 longest rows (by token count), each once. */
export function checkRows(lengths: number[], k: number): number[] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[a] - lengths[b] || a - b);
  const pick = new Set([
    ...order.slice(0, Math.ceil(k / 2)),
    ...order.slice(Math.max(0, order.length - Math.floor(k / 2))),
  ]);
  return [...pick].sort((a, b) => a - b);
}

async function logitsOf(session: Ort.InferenceSession, ids: Int32Array[], padId: number): Promise<Float32Array> {
  const rows = ids.map((_, i) => i);
  const seqLen = Math.max(...ids.map((x) => x.length));
  const { inputIds, attentionMask } = padBatch(ids, { rows, seqLen }, padId);
  return runLogits(session, inputIds, attentionMask, ids.length, seqLen);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isFinite(d) ? d : Infinity;
  }
  return m;
}

/**
 * Checks `opened` on `ids`; returns the graph to run (the same one, the explicit variant, or the CPU
 * reference under --ep auto) and the check's record. Throws when nothing passes and the EP was forced.
 */
export async function selfCheck(
  dir: string,
  manifest: Manifest,
  opened: OpenedGraph,
  ids: Int32Array[],
  opts: SessionOptions & { padId: number; warn: (m: string) => void },
): Promise<{ graph: OpenedGraph; check: SelfCheck }> {
  const t0 = Date.now();
  const ref = manifest.graphs.cpu;
  if (!ref || !ids.length)
    return { graph: opened, check: { rows: 0, maxDiff: null, tolerance: 0, rejected: [], seconds: 0 } };
  const refVariant = graphVariants(ref).includes('explicit') ? 'explicit' : 'fused';
  // The CPU EP running an fp32 graph is the reference platform itself (both variants are tested against HF).
  if (opened.ep === 'cpu' && opened.graph.activations === 'float32')
    return { graph: opened, check: { rows: 0, maxDiff: null, tolerance: 0, rejected: [], seconds: 0 } };
  ids = boundCheckIds(ids);
  const dirOfVerdicts = verdictDir();
  // The reference session and its logits: opened only when some graph has no verdict yet.
  let refSession: OpenedGraph | undefined;
  let want: Float32Array | undefined;
  const reference = async (): Promise<OpenedGraph> =>
    (refSession ??= await createSession(dir, ref, refVariant, 'cpu', { ...opts, ep: 'cpu', exactNBits: true }));
  const rejected: SelfCheck['rejected'] = [];
  let passed = 0;
  let reused = true;
  const attempt = async (g: OpenedGraph): Promise<boolean> => {
    const tol = checkTolerance(g.graph);
    // The files' sizes and times join the recorded sha256: a graph rewritten in place is checked again.
    const stamp = [g.graph.file, ...g.graph.externalData]
      .map((f) => {
        const st = statSync(join(dir, f));
        return `${f}:${st.size}:${st.mtimeMs}`;
      })
      .join(',');
    const file = join(
      dirOfVerdicts,
      `${verdictKey(`${graphSha256(dir, g.graph)}|${stamp}`, g.runtime, g.ep, g.graph.variant)}.json`,
    );
    const earlier = readVerdict(file);
    let d: number;
    if (earlier) {
      d = earlier.maxDiff;
      process.stderr.write(
        `self-check: ${g.runtime} ${g.ep} ${g.graph.variant}: verdict of an earlier process of this run reused (${file})\n`,
      );
    } else {
      reused = false;
      const t = Date.now();
      try {
        want ??= await logitsOf((await reference()).session, ids, opts.padId);
        d = maxAbsDiff(await logitsOf(g.session, ids, opts.padId), want);
      } catch (e) {
        opts.warn(
          `self-check: ${g.ep} ${g.graph.variant} graph failed to run (${(e as Error).message.split('\n')[0]})`,
        );
        d = Infinity;
      }
      writeVerdict(file, { maxDiff: d, tolerance: tol, rows: ids.length, seconds: (Date.now() - t) / 1000 });
    }
    const ok = d <= tol;
    process.stderr.write(
      `self-check: ${ids.length} rows (<= ${CHECK_MAX_TOKENS} tokens each) on ${g.runtime} ${g.ep} ${g.graph.variant} (${g.graph.activations}) vs fp32 CPU ${refVariant}: max |diff| ${d.toExponential(2)} (tolerance ${tol}) ${ok ? 'ok' : 'FAILED'}\n`,
    );
    if (ok) passed = d;
    else rejected.push({ ep: g.ep, variant: g.graph.variant, maxDiff: d });
    return ok;
  };
  const use = async (g: OpenedGraph) => {
    if (refSession && g !== refSession) await refSession.session.release();
    const seconds = (Date.now() - t0) / 1000;
    process.stderr.write(`self-check: ${seconds.toFixed(2)} s${reused ? ' (verdict reused)' : ''}\n`);
    return {
      graph: g,
      check: {
        rows: ids.length,
        maxDiff: g === refSession ? null : passed,
        tolerance: checkTolerance(g.graph),
        rejected,
        seconds,
        ...(reused ? { reused } : {}),
      },
    };
  };
  if (await attempt(opened)) return use(opened);
  await opened.session.release();
  const g = graphForEp(manifest, opened.ep, opts.gpuPrecision)!;
  if (opened.graph.variant !== 'explicit' && graphVariants(g).includes('explicit')) {
    opts.warn(`self-check: switching ${opened.ep} to the explicit attention graph`);
    const explicit = await createSession(dir, g, 'explicit', opened.ep, opts);
    if (await attempt(explicit)) return use(explicit);
    await explicit.session.release();
  }
  if (opts.ep === 'auto' || opts.ep === 'cpu') {
    opts.warn(`self-check failed on ${opened.ep}: *** FALLING BACK TO THE CPU (fp32 ${refVariant} graph) ***`);
    return use(await reference());
  }
  if (refSession) await refSession.session.release();
  throw new SessionError(
    `${dir}: self-check failed: ${rejected.map((r) => `${r.ep} ${r.variant} differs by ${r.maxDiff.toExponential(2)}`).join('; ')} from the fp32 CPU graph on ${ids.length} rows; ` +
      `this runtime computes something else. Run with --ep auto (falls back to the CPU) or --ep cpu, or check the machine with \`runner.cjs doctor\`.`,
  );
}
