// The weights directory's manifest.json: what the runner needs to load a model and refuse a
// directory that does not match (format version, missing files, tokenizer hash), and the one place
// that edits it (updateManifest: fitted calibration, tie model).
import type { ExpandedData } from './expand';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelConfig } from '../types';
import { fsReason, writeFileAtomic } from '../util/files';

export const MANIFEST_FORMAT = 'arenakit-weights';
export const MANIFEST_VERSION = 1;

export interface GraphEntry {
  /** ONNX file name inside the weights directory. */
  file: string;
  /** External-data files the graph refers to (same directory). */
  externalData: string[];
  /** 'float32' CPU graph, 'float16' / 'bfloat16' CUDA graph (GRAPH_KINDS). */
  activations: 'float32' | 'float16' | 'bfloat16';
  /** sha256 of the graph file then each external-data file, in that order (recorded at import; the logits cache key). */
  sha256?: string;
  variants?: Partial<Record<'fused' | 'explicit', { file: string; sha256: string }>>; // attention variants (src/model/lower.ts), all on externalData; file/sha256 above = the first
  /** int4-rows CPU graph: the int8 weights built in memory at load from the 4-bit codes (src/weights/expand.ts). */
  expand?: ExpandedData;
}

/**
 * The graphs an import can write, by manifest key: the fp32 CPU graph (also every GPU graph's self-check
 * reference), the fp16 CUDA graph (every CUDA GPU; a T4 has no bf16 units) and the bf16 CUDA graph (sm80 and
 * newer: fp32's range, no fp16 overflow). Which GPU graph a run takes: src/infer/gpu-precision.ts.
 */
export const GRAPH_KINDS = {
  cpu: { activations: 'float32', embedding: undefined },
  cuda: { activations: 'float16', embedding: 'float16' },
  'cuda-bf16': { activations: 'bfloat16', embedding: 'bfloat16' },
} as const;
export type GraphKind = keyof typeof GRAPH_KINDS;
export const isGraphKind = (k: string): k is GraphKind => Object.hasOwn(GRAPH_KINDS, k);

export interface Quantization {
  kind: 'int4' | 'int8' | 'fp16' | 'fp32';
  blockSize?: number;
  symmetric?: boolean;
  /** MatMulNBits accuracy_level of the CPU graph (absent in imports before issue 21: 0, unset). */
  accuracyLevel?: number;
  /** The CPU graph's kernel (src/quant/nbits.ts INT8_LINEARS / INT4_LINEARS; absent = 'nbits', MatMulNBits). */
  linear?: 'nbits' | 'int8-rows' | 'int4-rows';
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  /** 'neural' = ONNX classifier; other kinds (e.g. 'features') are defined by their modules. */
  kind: 'neural' | 'features';
  architecture: string;
  /** Output label names in logit order (usually the three Kaggle columns; one name for single-score heads). */
  labels: string[];
  /** Input recipe (src/format/templates.ts): template, truncation rule (absent in older manifests: the template's own) and token budget N. */
  template: string;
  truncation?: string;
  maxTokens: number;
  config?: ModelConfig;
  tokenizer?: { files: string[]; sha256: string };
  quantization?: Quantization;
  graphs: Partial<Record<GraphKind, GraphEntry>>;
  /** Sizes of every file the directory must contain, checked on load. */
  files: Record<string, { bytes: number }>;
  /** Fitted post-processing (src/post), applied by predict when present. */
  calibration?: unknown;
  /** Tie model turning a single-score head (num_labels 1) into three probabilities (src/post/tie.ts). */
  tie?: unknown;
  /** How the directory was made: command, seed, source files with sizes and hashes, adapter config. */
  provenance: Record<string, unknown>;
}

export class ManifestError extends Error {
  override name = 'ManifestError';
}

/** sha256 over the files' bytes in order, read in 16 MB chunks (a 9B graph's data is several GB). */
export function sha256Files(dir: string, files: string[]): string {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(16 << 20);
  for (const f of files) {
    const fd = openSync(join(dir, f), 'r');
    try {
      for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
    } finally {
      closeSync(fd);
    }
  }
  return h.digest('hex');
}

const REBUILD = 'rebuild it with `node dist/trainer.cjs tiny --out DIR` or `node dist/trainer.cjs import --base HF_DIR --out DIR`';

function readManifestText(dir: string): { path: string; text: string } {
  const path = join(dir, 'manifest.json');
  try {
    return { path, text: readFileSync(path, 'utf8') };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ManifestError(`${path}: no manifest.json in the weights directory; ${REBUILD}`);
    throw new ManifestError(`${path}: cannot be read (${fsReason(e)}); check the file and folder permissions`);
  }
}

function statSize(p: string): number | string {
  try {
    return statSync(p).size;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : fsReason(e);
  }
}

/** Reads and checks DIR/manifest.json; every failure names the directory and the command that rebuilds it. */
export function readManifest(dir: string): Manifest {
  const { path, text } = readManifestText(dir);
  let m: Manifest;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new ManifestError(`${path}: not valid JSON (${(e as Error).message}); ${REBUILD}`);
  }
  if (!m || typeof m !== 'object') throw new ManifestError(`${path}: not a JSON object; ${REBUILD}`);
  if (m.format !== MANIFEST_FORMAT) throw new ManifestError(`${path}: format is ${JSON.stringify(m.format)}, expected "${MANIFEST_FORMAT}"; ${REBUILD}`);
  if (m.version !== MANIFEST_VERSION)
    throw new ManifestError(`${path}: manifest version ${m.version}, this runner reads version ${MANIFEST_VERSION}; ${REBUILD}`);
  const problems: string[] = [];
  for (const [f, info] of Object.entries(m.files ?? {})) {
    const size = statSize(join(dir, f));
    if (size === 'missing') problems.push(`missing ${f}`);
    else if (typeof size === 'string') problems.push(`${f}: ${size}`);
    else if (size !== info.bytes) problems.push(`${f} is ${size} bytes, manifest says ${info.bytes}`);
  }
  for (const g of Object.values(m.graphs ?? {}))
    for (const f of g ? [g.file, ...(g.externalData ?? [])] : [])
      if (!(f in (m.files ?? {})) && statSize(join(dir, f)) === 'missing') problems.push(`missing graph file ${f}`);
  if (problems.length) throw new ManifestError(`${dir}: weights directory does not match its manifest (${problems.join('; ')}); ${REBUILD}`);
  if (m.tokenizer) {
    let sha: string;
    try {
      sha = sha256Files(dir, m.tokenizer.files);
    } catch (e) {
      throw new ManifestError(`${dir}: tokenizer files ${m.tokenizer.files.join(', ')} cannot be read (${fsReason(e)})`);
    }
    if (sha !== m.tokenizer.sha256)
      throw new ManifestError(`${dir}: tokenizer files ${m.tokenizer.files.join(', ')} do not match the manifest's sha256; ${REBUILD}`);
  }
  return m;
}

/**
 * The one manifest editor: sets the given post-processing keys (calibration, tie) and rewrites
 * manifest.json atomically. Graph files are untouched, so logits cached for this model stay valid.
 */
export function updateManifest(dir: string, patch: Pick<Partial<Manifest>, 'calibration' | 'tie'>): void {
  const m = readManifest(dir);
  writeFileAtomic(join(dir, 'manifest.json'), JSON.stringify({ ...m, ...patch }, null, 2) + '\n');
}

/** Content hash of a graph (recorded sha256, else the files hashed now). */
export function graphSha256(dir: string, g: GraphEntry): string {
  if (g.sha256) return g.sha256;
  return sha256Files(dir, [g.file, ...g.externalData]);
}

/** Fills `files` with the current sizes of the listed files. */
export function fileSizes(dir: string, files: string[]): Record<string, { bytes: number }> {
  return Object.fromEntries(files.map((f) => [f, { bytes: statSync(join(dir, f)).size }]));
}
