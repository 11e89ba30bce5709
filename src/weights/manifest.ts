// The weights directory's manifest.json: what the runner needs to load a model and refuse a
// directory that does not match (format version, missing files, tokenizer hash).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelConfig } from '../types';

export const MANIFEST_FORMAT = 'arenakit-weights';
export const MANIFEST_VERSION = 1;

export interface GraphEntry {
  /** ONNX file name inside the weights directory. */
  file: string;
  /** External-data files the graph refers to (same directory). */
  externalData: string[];
  /** 'float32' CPU graph, 'float16' CUDA graph. */
  activations: 'float32' | 'float16';
  sha256?: string; // hex, of the .onnx file then its external-data files in order (written at import; the logits cache key)
  variants?: Partial<Record<'fused' | 'explicit', { file: string; sha256: string }>>; // attention variants (src/model/lower.ts), all on externalData; file/sha256 above = the first
}

export interface Quantization {
  kind: 'int4' | 'int8' | 'fp16' | 'fp32';
  blockSize?: number;
  symmetric?: boolean;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  /** 'neural' = ONNX classifier; other kinds (e.g. 'features') are defined by their modules. */
  kind: 'neural' | 'features';
  architecture: string;
  /** Output label names in logit order (usually the three Kaggle columns; one name for single-score heads). */
  labels: string[];
  template: string;
  maxTokens: number;
  config?: ModelConfig;
  tokenizer?: { files: string[]; sha256: string };
  quantization?: Quantization;
  graphs: { cpu?: GraphEntry; cuda?: GraphEntry };
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

export function sha256Files(dir: string, files: string[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(readFileSync(join(dir, f)));
  return h.digest('hex');
}

/** Reads and checks DIR/manifest.json; every failure names the directory and the command that rebuilds it. */
export function readManifest(dir: string): Manifest {
  const path = join(dir, 'manifest.json');
  const rebuild = 'rebuild it with `node dist/trainer.cjs tiny --out DIR` or `node dist/trainer.cjs import --base HF_DIR --out DIR`';
  if (!existsSync(path)) throw new ManifestError(`${path}: no manifest.json in the weights directory; ${rebuild}`);
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ManifestError(`${path}: not valid JSON (${(e as Error).message}); ${rebuild}`);
  }
  if (m.format !== MANIFEST_FORMAT) throw new ManifestError(`${path}: format is ${JSON.stringify(m.format)}, expected "${MANIFEST_FORMAT}"; ${rebuild}`);
  if (m.version !== MANIFEST_VERSION)
    throw new ManifestError(`${path}: manifest version ${m.version}, this runner reads version ${MANIFEST_VERSION}; ${rebuild}`);
  const problems: string[] = [];
  for (const [f, info] of Object.entries(m.files ?? {})) {
    const p = join(dir, f);
    if (!existsSync(p)) problems.push(`missing ${f}`);
    else if (statSync(p).size !== info.bytes) problems.push(`${f} is ${statSync(p).size} bytes, manifest says ${info.bytes}`);
  }
  if (problems.length) throw new ManifestError(`${dir}: weights directory does not match its manifest (${problems.join('; ')}); ${rebuild}`);
  if (m.tokenizer && sha256Files(dir, m.tokenizer.files) !== m.tokenizer.sha256)
    throw new ManifestError(`${dir}: tokenizer files ${m.tokenizer.files.join(', ')} do not match the manifest's sha256; ${rebuild}`);
  return m;
}

/** Fills `files` with the current sizes of the listed files. */
export function fileSizes(dir: string, files: string[]): Record<string, { bytes: number }> {
  return Object.fromEntries(files.map((f) => [f, { bytes: statSync(join(dir, f)).size }]));
}
