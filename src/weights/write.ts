// Weights-directory writer: builds the CPU graph (and optionally the fp16 / bf16 CUDA graphs) from a
// WeightSource, streams initializers to `model.<kind>.onnx.data` (one graph kind) or to one shared
// `model.onnx.data` (both kinds: a tensor both graphs hold, the quantized weights, the embedding, the
// norms and the head, is stored once and referenced by both), copies the tokenizer files and writes
// manifest.json last (so a half-written directory has no manifest and is refused by the runner).
import { copyFileSync, existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TOKENIZER_FILES } from '../format/encode';
import { writeModel } from '../graph/serialise';
import type { InitializerRef } from '../graph/ir';
import { familyOf } from '../model/families';
import { buildDecoderGraph, type AttentionVariant } from '../model/lower';
import { externalStore } from '../graph/store';
import { expansionPlan, type ExpandedData } from './expand';
import { INT4_ROWS_BLOCK } from '../quant/int4-rows';
import { BLOCK_SIZES, cpuGraphDefaults, GPU_BLOCK_SIZE, isBlockSize, type ReconstructionError } from '../quant/nbits';
import type { LinearFormat, ModelConfig, WeightSource } from '../types';
import { fileSizes, GRAPH_KINDS, type GraphKind, MANIFEST_FORMAT, MANIFEST_VERSION, sha256Files, type GraphEntry, type Manifest, type Quantization } from './manifest';

export interface WriteWeightsOptions {
  dir: string;
  config: ModelConfig;
  weights: WeightSource;
  quant: Quantization;
  graphs: GraphKind[];
  /** Folder with tokenizer.json + tokenizer_config.json (special_tokens_map.json copied when present). */
  tokenizerDir: string;
  template?: string;
  /** Recorded truncation rule (src/format/templates.ts; absent = the template's own). */
  truncation?: string;
  maxTokens: number;
  labels: string[];
  provenance: Record<string, unknown>;
  /** Checkpoint dtype the sqrt(hidden) embedding multiplier is rounded to (HF behaviour); default float32. */
  embedScaleDtype?: 'float32' | 'bfloat16' | 'float16';
  /** Embedding table storage in the CPU graph; default float16 unless quant.kind is 'fp32'. */
  embedding?: 'float32' | 'float16';
  /** Attention variants to write (default ['fused']); they share one external-data file per graph. */
  attention?: AttentionVariant[];
  /** Per graph kind, overriding `attention` (import --target: the GPU graph both variants, the CPU reference one). */
  attentionByGraph?: Partial<Record<GraphKind, AttentionVariant[]>>;
  /** Receives per-weight reconstruction errors of the quantized CPU graph. */
  quantReport?: ReconstructionError[];
}

export class WeightsWriteError extends Error {
  override name = 'WeightsWriteError';
}

const OPTIONAL_TOKENIZER_FILES = ['special_tokens_map.json'];

export function linearFormat(q: Quantization): LinearFormat {
  if (q.kind === 'int8' && q.linear === 'int8-rows') return { kind: 'int8-rows' };
  if (q.kind === 'int4' && q.linear === 'int4-rows') return { kind: 'int4-rows', blockSize: q.blockSize ?? INT4_ROWS_BLOCK };
  if (q.kind === 'int4' || q.kind === 'int8') {
    const blockSize = q.blockSize ?? GPU_BLOCK_SIZE; // manifests before issue 21 recorded none only for block 32
    if (!isBlockSize(blockSize)) throw new WeightsWriteError(`quantization block size ${blockSize} is not one of ${BLOCK_SIZES.join(', ')}`);
    return { kind: 'nbits', bits: q.kind === 'int4' ? 4 : 8, blockSize, symmetric: q.symmetric ?? true };
  }
  return { kind: 'float' };
}

/**
 * The CPU graph's embedding storage when the import does not say: fp32 for fp32 weights, else the half
 * type of the GPU graph written beside it (so the shared data file holds the table once: bf16 beside a
 * cuda-bf16 graph alone, else fp16). Both halve the table and hold bf16 / fp16 checkpoints' values.
 */
function cpuEmbedding(q: Quantization, kinds: GraphKind[]): 'float32' | 'float16' | 'bfloat16' {
  if (q.kind === 'fp32') return 'float32';
  return kinds.includes('cuda-bf16') && !kinds.includes('cuda') ? 'bfloat16' : 'float16';
}

export async function writeWeightsDir(opts: WriteWeightsOptions): Promise<Manifest> {
  const { dir, config } = opts;
  if (!opts.graphs.length) throw new WeightsWriteError(`${dir}: no graphs requested; pass graphs: ['cpu'] and/or ['cuda']`);
  for (const f of TOKENIZER_FILES)
    if (!existsSync(join(opts.tokenizerDir, f)))
      throw new WeightsWriteError(`${opts.tokenizerDir}: missing ${f}; point the tokenizer folder at the model's Hugging Face folder (tokenizer.json + tokenizer_config.json)`);
  if (opts.labels.length !== config.numLabels)
    throw new WeightsWriteError(`${dir}: ${opts.labels.length} labels (${opts.labels.join(', ')}) for a head with num_labels ${config.numLabels}`);
  mkdirSync(dir, { recursive: true });
  const manifestPath = join(dir, 'manifest.json');
  if (existsSync(manifestPath)) renameSync(manifestPath, manifestPath + '.old'); // a stale manifest must not vouch for new files

  const linear = linearFormat(opts.quant);
  // int4 / int8 CPU graph: the accuracy_level the import asked for, else cpuGraphDefaults' (recorded in the manifest).
  const quant: Quantization =
    linear.kind === 'nbits' ? { ...opts.quant, accuracyLevel: opts.quant.accuracyLevel ?? cpuGraphDefaults(opts.graphs).accuracyLevel } : opts.quant;
  const graphs: Manifest['graphs'] = {};
  const files: string[] = [];
  // One data file for every graph kind: equal tensors are stored once (externalStore dedupe).
  const kinds = [...new Set(opts.graphs)];
  const data = kinds.length > 1 ? 'model.onnx.data' : `model.${kinds[0]}.onnx.data`;
  const store = externalStore(join(dir, data), 1024, { dedupe: kinds.length > 1 });
  const written: {
    kind: GraphKind;
    entries: NonNullable<GraphEntry['variants']>;
    first: AttentionVariant;
    expand?: ExpandedData;
  }[] = [];
  try {
    for (const kind of kinds) {
      const variants = opts.attentionByGraph?.[kind] ?? opts.attention ?? ['fused'];
      if (!variants.length) throw new WeightsWriteError(`${dir}: no attention variant requested for the ${kind} graph`);
      const { activations, embedding } = GRAPH_KINDS[kind];
      const entries: NonNullable<GraphEntry['variants']> = {};
      // Every variant of a kind takes the first variant's initializers by name (the weights are not read again).
      let reuse: Map<string, InitializerRef> | undefined;
      // int4-rows: the codes go to the data file, the graph's int8 weights to a buffer built at load
      const plan = linear.kind === 'int4-rows' ? expansionPlan(store, `model.${kind}.int8-rows`) : null;
      for (const [i, attention] of variants.entries()) {
        const graph = buildDecoderGraph(config, opts.weights, {
          linear,
          activations,
          attention,
          store,
          reuse,
          maxTokens: opts.maxTokens,
          embedScaleDtype: opts.embedScaleDtype,
          accuracyLevel: kind === 'cpu' ? quant.accuracyLevel : undefined,
          embedding: embedding ?? opts.embedding ?? cpuEmbedding(opts.quant, kinds),
          quantReport: kind === 'cpu' && i === 0 ? opts.quantReport : undefined,
          int4Rows: plan?.put,
        });
        reuse ??= new Map(graph.initializers.map((r) => [r.name, r]));
        const file = i === 0 ? `model.${kind}.onnx` : `model.${kind}.${attention}.onnx`;
        writeModel(join(dir, file), graph);
        entries[attention] = { file, sha256: '' };
        files.push(file);
      }
      written.push({ kind, entries, first: variants[0], expand: plan?.entry.tensors.length ? plan.entry : undefined });
    }
  } finally {
    store.close();
  }
  files.push(data);
  for (const { kind, entries, first, expand } of written) {
    for (const e of Object.values(entries)) e!.sha256 = sha256Files(dir, [e!.file, data]);
    const { activations } = GRAPH_KINDS[kind];
    graphs[kind] = { file: entries[first]!.file, externalData: [data], activations, sha256: entries[first]!.sha256, variants: entries, ...(expand ? { expand } : {}) };
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
    template: opts.template ?? familyOf(config).defaultTemplate,
    ...(opts.truncation ? { truncation: opts.truncation } : {}),
    maxTokens: opts.maxTokens,
    config,
    tokenizer: { files: tokFiles, sha256: sha256Files(dir, tokFiles) },
    quantization: quant,
    graphs,
    files: fileSizes(dir, files),
    provenance: opts.provenance,
  };
  writeFileSync(manifestPath + '.tmp', JSON.stringify(manifest, null, 2) + '\n');
  renameSync(manifestPath + '.tmp', manifestPath);
  return manifest;
}
