// Weights a graph refers to that no file holds as such: the int8 weights of an int4-rows CPU graph
// (src/quant/int4-rows.ts). The writer stores each linear's 4-bit codes and block multipliers in the data file
// and points the graph's int8 initializer at a range of a file that does not exist (`location`); the manifest's
// graph entry records where each tensor's codes lie and where its int8 bytes go. Before the first session the
// loader reads the codes, expands them (an integer product, exact) into a file of that name in a folder beside
// links to the graph and its data files (expandedDir), and the session opens the graph from there.
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { InitializerRef } from '../graph/ir';
import type { TensorStore } from '../graph/store';
import { expandInt4Rows, int4RowsBytes, type Int4RowsWeight } from '../quant/int4-rows';
import { fsReason } from '../util/files';

export interface ExpandedTensor {
  name: string;
  N: number;
  K: number;
  blockSize: number;
  /** Offset of the tensor's int8 [K, N] bytes in the expanded buffer. */
  at: number;
  /** Codes then multipliers, one range of a data file in the weights directory. */
  source: { location: string; offset: number; length: number };
}

export interface ExpandedData {
  /** The external-data name the graph's int8 weights refer to; written by the loader (expandedDir), never shipped. */
  location: string;
  bytes: number;
  tensors: ExpandedTensor[];
}

export class ExpandError extends Error {
  override name = 'ExpandError';
}

/**
 * The writer's side: `put` stores a linear's codes and multipliers (as one uint8 tensor) and returns the int8
 * initializer the graph uses, at the next aligned offset of `location`; null when the store keeps the codes
 * inline (a tensor under its inline limit), where the graph takes the expanded bytes inline instead.
 */
export function expansionPlan(store: TensorStore, location: string) {
  const entry: ExpandedData = { location, bytes: 0, tensors: [] };
  return {
    entry,
    put(name: string, q: Int4RowsWeight): InitializerRef | null {
      const sizes = int4RowsBytes(q.N, q.K, q.blockSize);
      const ref = store.putChunks(`${name}.int4`, 'uint8', [sizes.codes + sizes.multipliers], sizes.codes + sizes.multipliers, [
        q.codes,
        new Uint8Array(q.multipliers.buffer, q.multipliers.byteOffset, q.multipliers.byteLength),
      ]);
      if (!ref.external) return null;
      const length = q.K * q.N;
      // page-aligned starts for large tensors, as the data file's (externalStore): ORT can map them
      const align = length >= 65536 ? 4096 : 64;
      const at = Math.ceil(entry.bytes / align) * align;
      entry.tensors.push({ name, N: q.N, K: q.K, blockSize: q.blockSize, at, source: ref.external });
      entry.bytes = at + length;
      return { name, dtype: 'int8', shape: [q.K, q.N], external: { location, offset: at, length } };
    },
  };
}

/** Where expanded weights are kept: ARENAKIT_EXPAND_DIR, else arenakit-expanded under the system's temp folder. */
export function expandRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.ARENAKIT_EXPAND_DIR || join(tmpdir(), 'arenakit-expanded');
}

/**
 * The loader's side: a folder holding the graph file and its data files (links to the weights directory's,
 * which may be read-only, as a Kaggle dataset is) and the expanded int8 file, under expandRoot() keyed by the
 * graph's sha256; a session opens the graph there. ONNX Runtime reads an in-memory external-data table only
 * when it holds every external file, and one Node buffer stops at 4 GB, so the expanded weights go to a file
 * (memory-mapped by ORT like any data file). Written once per graph and machine (a .partial renamed when
 * complete), so later sessions (workers, shards, the next run) only check its size.
 */
export function expandedDir(
  dir: string,
  graph: { file: string; externalData: string[]; sha256?: string; expand?: ExpandedData },
  env: NodeJS.ProcessEnv = process.env,
  note: (message: string) => void = () => {},
): string {
  const e = graph.expand;
  if (!e) return dir;
  const key = graph.sha256 ?? createHash('sha256').update(resolve(dir, graph.file)).digest('hex');
  const root = expandRoot(env);
  const out = join(root, key.slice(0, 32));
  const target = join(out, e.location);
  try {
    mkdirSync(out, { recursive: true });
    for (const f of [graph.file, ...graph.externalData]) {
      const link = join(out, f);
      if (existsSync(link) && realpathSync(link) === realpathSync(join(dir, f))) continue;
      rmSync(link, { force: true });
      try {
        symlinkSync(resolve(dir, f), link);
      } catch (err) {
        // another worker of the same run made it first
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || realpathSync(link) !== realpathSync(join(dir, f)))
          throw err;
      }
    }
  } catch (err) {
    throw new ExpandError(`${out}: cannot prepare the folder for the expanded 4-bit weights (${fsReason(err)}); ${fix(root)}`);
  }
  if (existsSync(target) && statSync(target).size === e.bytes) return out;
  const free = freeBytes(root);
  if (free !== null && free < e.bytes)
    throw new ExpandError(
      `${root}: ${(e.bytes / 2 ** 30).toFixed(2)} GB needed for the expanded int8 weights of ${join(dir, graph.file)}, ${(free / 2 ** 30).toFixed(2)} GB free; ${fix(root)}`,
    );
  const partial = `${target}.${process.pid}.partial`;
  const t0 = Date.now();
  try {
    writeExpanded(dir, e, partial);
    renameSync(partial, target);
    note(
      `expanded the 4-bit weights of ${graph.file} into ${(e.bytes / 2 ** 20).toFixed(0)} MB of int8 under ${out} in ${((Date.now() - t0) / 1000).toFixed(1)} s (once per model and machine)`,
    );
  } catch (err) {
    rmSync(partial, { force: true });
    if (err instanceof ExpandError) throw err;
    throw new ExpandError(`${partial}: cannot write the expanded int8 weights (${fsReason(err)}); ${fix(root)}`);
  }
  return out;
}

const fix = (root: string) =>
  `set ARENAKIT_EXPAND_DIR to a writable folder with room (now ${root}), or import with --int4-kernel nbits (4-bit weights in memory, slower on the CPU)`;

function freeBytes(path: string): number | null {
  try {
    const s = statfsSync(path);
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}

/** Reads each tensor's codes from the weights directory and writes its int8 weights at its offset of `path`. */
function writeExpanded(dir: string, e: ExpandedData, path: string): void {
  const fds = new Map<string, number>();
  const outFd = openSync(path, 'w');
  try {
    ftruncateSync(outFd, e.bytes);
    for (const t of e.tensors) {
      const file = join(dir, t.source.location);
      const sizes = int4RowsBytes(t.N, t.K, t.blockSize);
      if (t.source.length !== sizes.codes + sizes.multipliers || t.at + t.N * t.K > e.bytes)
        throw new ExpandError(
          `${join(dir, 'manifest.json')}: tensor "${t.name}" (int4-rows ${t.K} x ${t.N}) does not match its recorded sizes; re-import the model`,
        );
      let fd = fds.get(file);
      if (fd === undefined) {
        try {
          fd = openSync(file, 'r');
        } catch (err) {
          throw new ExpandError(`${file}: cannot read the 4-bit weights (${fsReason(err)})`);
        }
        fds.set(file, fd);
      }
      const src = new Uint8Array(t.source.length);
      let got = 0;
      while (got < src.length) {
        const n = readSync(fd, src, got, src.length - got, t.source.offset + got);
        if (n === 0) break;
        got += n;
      }
      if (got !== src.length)
        throw new ExpandError(
          `${file}: tensor "${t.name}" needs bytes ${t.source.offset}..${t.source.offset + t.source.length}, the file ends first (a truncated copy? re-copy the weights directory)`,
        );
      const int8 = expandInt4Rows({
        N: t.N,
        K: t.K,
        blockSize: t.blockSize,
        codes: src.subarray(0, sizes.codes),
        multipliers: new Int8Array(src.buffer, sizes.codes, sizes.multipliers),
      });
      const bytes = new Uint8Array(int8.buffer);
      let done = 0;
      while (done < bytes.length) done += writeSync(outFd, bytes, done, bytes.length - done, t.at + done);
    }
  } finally {
    closeSync(outFd);
    for (const fd of fds.values()) closeSync(fd);
  }
}
