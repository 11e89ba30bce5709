// The optimized graph a CPU session saves and later sessions start from (issue 21): the first session of a
// graph on a machine runs ONNX Runtime's optimizers as usual and saves their result (optimizedModelFilePath,
// initializers in an external-data file); a later session
// (predict after doctor, a --devices worker, the next notebook cell) loads that file with the optimizers off.
// Kept in a per-machine folder, never in the weights directory (Kaggle inputs are read-only, and the saved
// graph holds this CPU's kernel layouts): ARENAKIT_OPTIMIZED_DIR=FOLDER turns it on. Off by default: saving costs
// 8-11x a plain start, and the saved int8-rows bench graph starts 0.09 s sooner (with its prepacked weights;
// without them 1 %: BENCHMARKS.md "CPU prefill"), so it pays only over many sessions of one graph. Keyed on the
// graph's sha256 + the ORT core + EP + variant, so an edited graph or another core never loads a stale file.
// Pure planning here; session.ts does the I/O.
import type { onnx } from 'onnx-proto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Folder of saved optimized graphs (ARENAKIT_OPTIMIZED_DIR; `tmp` = <tmp>/arenakit-optimized), or null: off. */
export function optimizedDir(env: NodeJS.ProcessEnv = process.env): string | null {
  const v = env.ARENAKIT_OPTIMIZED_DIR;
  if (!v || v === 'off' || v === '0') return null;
  return v === 'tmp' ? join(tmpdir(), 'arenakit-optimized') : v;
}

export interface OptimizedPaths {
  /** The saved graph once complete (renamed into place after the saving session started). */
  model: string;
  /** Where the saving session writes the graph before the rename (per process: workers may race). */
  partial: string;
  /** Its external-data file name (relative to the folder; the graph refers to it by this name). */
  dataName: string;
}

/** Paths for one graph on one core / EP / variant; null when the graph has no sha256 (manifests before it). */
export function optimizedPaths(
  dir: string,
  g: { sha256?: string; variant: string },
  runtime: string,
  ep: string,
  pid = process.pid,
): OptimizedPaths | null {
  if (!g.sha256 || !/^[0-9a-f]{16,}$/.test(g.sha256)) return null;
  const key = `${g.sha256.slice(0, 32)}-${runtime}-${ep}-${g.variant}`;
  return {
    model: join(dir, `${key}.onnx`),
    partial: join(dir, `${key}.${pid}.onnx.partial`),
    dataName: `${key}.${pid}.data`,
  };
}

/**
 * Whether the CPU EP's prepacked weights (session.save_external_prepacked_constant_initializers) may be saved with
 * this graph: not when it has a MatMulNBits node at accuracy_level 2 or above. With ORT 1.29.0 and 1.30.0 such a
 * graph at level 4 reloaded from them computes NaN logits (tiny model, block 32 and 128, fused and explicit) or
 * crashes on its first run (the bench model); levels 0 / 1, fp32 MatMul and the int8-rows / int4-rows graphs'
 * MatMulInteger reload exactly, and the int8-rows bench session then starts 1.3x faster (0.28 s against 0.37 s
 * plain; BENCHMARKS.md "Saved graph with prepacked weights"). tests/optimized-graph.test.ts pins both sides.
 */
export function prepackSafe(model: onnx.IModelProto): boolean {
  return !(model.graph?.node ?? []).some(
    (n) =>
      n.opType === 'MatMulNBits' && Number((n.attribute ?? []).find((a) => a.name === 'accuracy_level')?.i ?? 0) >= 2,
  );
}

/**
 * Session options that save the optimized graph to `p.partial`, initializers in external data, with the CPU EP's
 * prepacked weights when `prepacked` (only where prepackSafe says they reload exactly). Log level 3: ORT warns on
 * every save that an ORT_ENABLE_ALL graph is for this machine only, which is what this per-machine cache is.
 */
export function saveOptions(
  p: OptimizedPaths,
  prepacked = false,
): {
  optimizedModelFilePath: string;
  logSeverityLevel: 3;
  extra: { session: Record<string, string> };
} {
  return {
    optimizedModelFilePath: p.partial,
    logSeverityLevel: 3,
    extra: {
      session: {
        optimized_model_external_initializers_file_name: p.dataName,
        optimized_model_external_initializers_min_size_in_bytes: '1024',
        ...(prepacked ? { save_external_prepacked_constant_initializers: '1' } : {}),
      },
    },
  };
}

/** Session options that load a saved optimized graph: its optimizations are done. */
export const loadOptions = { graphOptimizationLevel: 'disabled' as const };
