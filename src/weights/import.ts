// HF checkpoint (+ optional PEFT LoRA adapter) -> arenakit weights directory. Owns the import
// pipeline's bookkeeping: config parsing, the head (src/model/heads.ts) with --label-tokens resolved
// against the tokenizer, output names, adapter checks before any long work, the lazy merged
// WeightSource, tokenizer location, provenance (source files with sizes and sha256) and progress.
// Graph building, quantization and file writing belong to writeWeightsDir.
import { outcomeOf, TASKS } from '../task/task';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { chooseRecipe, readTrainedSettings, type Recipe } from '../format/recipe';
import { familyOf } from '../model/families';
import { chooseScoreHead, defaultLabels, hfLabelNames, labelKeys } from '../model/heads';
import type { AttentionVariant } from '../model/lower';
import type { Activation, HeadSpec, ModelConfig, WeightSource } from '../types';
import { cpuGraphDefaults, type AccuracyLevel, type BlockSize, type Int4Linear, type Int8Linear } from '../quant/nbits';
import { INT4_ROWS_BLOCK } from '../quant/int4-rows';
import { sha256Files, type GraphKind, type Quantization } from './manifest';
import { parseHfConfig } from './hfconfig';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, checkAdapter, mergedSource, openAdapter, type Adapter } from './peft';
import { openCheckpoint, type Checkpoint } from './safetensors';
import { writeWeightsDir } from './write';
import { checkBase, finiteSource, readJsonObject, refuseUnused } from './checks';
import { assertOutDir, replaceDir } from '../util/files';

export class ImportError extends Error {
  override name = 'ImportError';
}

export interface ImportOptions {
  /** HF model folder: config.json + model.safetensors or a sharded index. */
  base: string;
  /** PEFT adapter folder (adapter_config.json + adapter_model.safetensors). */
  adapter?: string;
  /** Tokenizer folder when `base` has no tokenizer.json. */
  tokenizer?: string;
  quant: Quantization['kind'];
  /** MatMulNBits block size for int4 / int8 (default cpuGraphDefaults(graphs): 128 CPU-only, 32 with a CUDA graph). */
  blockSize?: BlockSize;
  /** MatMulNBits accuracy_level of the CPU graph (default cpuGraphDefaults(graphs): 4 CPU-only, 0 with a CUDA graph). */
  accuracyLevel?: AccuracyLevel;
  /** int8: the CPU graph's kernel (default cpuGraphDefaults(graphs): int8-rows CPU-only, nbits with a CUDA graph). */
  int8Linear?: Int8Linear;
  /** int4: the CPU graph's kernel (default cpuGraphDefaults(graphs): int4-rows CPU-only, nbits with a CUDA graph). */
  int4Linear?: Int4Linear;
  /** Symmetric int4 / int8 (no zero points; default true) or asymmetric (per-block zero points). */
  symmetric?: boolean;
  graphs: GraphKind[];
  /** Recipe (src/format/recipe.ts chooseRecipe): default from the adapter's training.json, else the family's template. */
  template?: string;
  /** Truncation rule (default: the trained one, else the template's own). */
  truncation?: string;
  /** Token budget N (default: the trained one, else 2048). */
  maxTokens?: number;
  out: string;
  /** Label names in logit order; default from id2label when it names the Kaggle columns, else the Kaggle order. */
  labels?: string[];
  /** Activation between the linears of a multi-layer score.N.* head (config.json cannot say). */
  headActivation?: Activation;
  /** Causal-LM judge: label tokens (strings of the tokenizer or ids) for A, B[, tie]. */
  labelTokens?: string[];
  /** Attention variants to write (default fused); one shared data file per graph. */
  attention?: AttentionVariant[];
  /** Per graph kind, overriding `attention` (import --target: src/weights/targets.ts). */
  attentionByGraph?: Partial<Record<GraphKind, AttentionVariant[]>>;
  /** The command line, recorded in the manifest. */
  command?: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface ImportResult {
  out: string;
  config: ModelConfig;
  sourceBytes: number;
  seconds: number;
  warnings: string[];
}

interface FileRecord {
  file: string;
  bytes: number;
  sha256: string;
}

function fileRecords(dir: string, files: string[]): FileRecord[] {
  return files.map((f) => {
    const p = join(dir, f);
    return { file: f, bytes: statSync(p).size, sha256: sha256Files(dir, [f]) };
  });
}

/**
 * Label names in logit order, exactly as id2label (or --labels) gives them: the runner maps logits to
 * the submission's columns by name. Three outputs must be named by the Kaggle columns in some order;
 * one output is a single score (any name; HF's default LABEL_0 becomes "score").
 */
function chooseLabels(config: ModelConfig, hfConfig: unknown, override?: string[], configFile = 'config.json'): string[] {
  const kaggle = TASKS.lmsys.labels;
  const example = config.numLabels === 2 ? 'model_a,model_b' : kaggle.join(',');
  const fix = `pass --labels with the outcome each output stands for, in logit order (e.g. --labels ${example})`;
  // Names the runner maps to task columns (src/task/task.ts): the tasks' own column names only
  // (winner_model_a / winner_model_b / winner_tie, or model_a / model_b), each outcome once.
  const known = new Set<string>(Object.values(TASKS).flatMap((t) => [...t.labels]));
  const named = (names: string[]) => names.every((n) => known.has(n)) && new Set(names.map(outcomeOf)).size === names.length;
  if (override) {
    if (override.length !== config.numLabels)
      throw new ImportError(`--labels names ${override.length} labels but the model has num_labels = ${config.numLabels}`);
    if (config.numLabels > 1 && !named(override))
      throw new ImportError(`--labels ${override.join(',')}: each of the ${override.length} outputs must name a different outcome (${kaggle.join(', ')}, or model_a, model_b)`);
    return override;
  }
  const names = hfLabelNames(hfConfig);
  if (config.numLabels === 1) return [names?.[0] && !/^LABEL_\d+$/.test(names[0]) ? names[0] : 'score'];
  if (names && names.length === config.numLabels && named(names)) return names;
  throw new ImportError(
    `${configFile}: id2label is ${names ? JSON.stringify(Object.fromEntries(names.map((n, i) => [i, n]))) : 'missing'}: ` +
      `it does not say which output is ${config.numLabels === 2 ? 'model_a / model_b' : kaggle.join(' / ')}, and the runner maps outputs to columns by these names; ${fix}`,
  );
}

const fmtBytes = (b: number) => (b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : `${(b / 1e6).toFixed(1)} MB`);

/**
 * Wraps a WeightSource so each fetched tensor advances a byte counter with a throttled ETA line.
 * Row-range reads (WeightSource.rows) pass through and count their share of the tensor's bytes.
 */
function withProgress(
  get: WeightSource,
  bytesOf: (name: string) => number,
  totalBytes: number,
  log: (line: string) => void,
  everyMs = 2000,
): WeightSource {
  const t0 = Date.now();
  let done = 0;
  let last = 0;
  const advance = (name: string, bytes: number) => {
    done += bytes;
    const now = Date.now();
    if (now - last >= everyMs || done >= totalBytes) {
      last = now;
      const s = (now - t0) / 1000;
      const frac = Math.min(1, done / totalBytes);
      const eta = frac > 0 ? (s / frac) * (1 - frac) : 0;
      log(
        `import: ${(100 * frac).toFixed(1)}% (${fmtBytes(done)} / ${fmtBytes(totalBytes)} read, ` +
          `${(done / 1e6 / Math.max(s, 1e-3)).toFixed(0)} MB/s, ${s.toFixed(0)} s elapsed, ETA ${eta.toFixed(0)} s) ${name}`,
      );
    }
  };
  const whole = (name: string) => {
    const t = get(name);
    advance(name, bytesOf(name));
    return t;
  };
  const { rows, shape } = get;
  if (!rows || !shape) return shape ? Object.assign(whole, { shape }) : whole;
  return Object.assign(whole, {
    shape,
    rows: (name: string, start: number, count: number) => {
      const t = rows(name, start, count);
      const n = shape(name)[0];
      advance(name, n > 0 ? (bytesOf(name) * count) / n : 0);
      return t;
    },
  });
}

/** The embedding multiplier's dtype: HF rounds sqrt(hidden) to the dtype the model ran in. */
function torchDtype(hf: Record<string, unknown>): 'float32' | 'bfloat16' | 'float16' {
  return hf.torch_dtype === 'bfloat16' ? 'bfloat16' : hf.torch_dtype === 'float16' ? 'float16' : 'float32';
}

export async function importCheckpoint(opts: ImportOptions): Promise<ImportResult> {
  const t0 = Date.now();
  const log = opts.log ?? (() => {});
  const base = resolve(opts.base);
  assertOutDir({ flag: '--out', path: opts.out }, [
    { flag: '--base', path: opts.base },
    { flag: '--adapter', path: opts.adapter },
    { flag: '--tokenizer', path: opts.tokenizer },
  ], 'manifest.json');
  const configFile = join(base, 'config.json');
  if (!existsSync(configFile)) throw new ImportError(`${base}: no config.json; --base must be a Hugging Face model folder (save_pretrained output)`);
  let hf = readJsonObject(configFile, 'fix or re-save the model folder (save_pretrained)');
  const adapter: Adapter | null = opts.adapter ? openAdapter(resolve(opts.adapter)) : null;
  let ckpt: Checkpoint | null = null;
  try {
    ckpt = openCheckpoint(base);
    const tokenizerDir = findTokenizer(opts, base);
    // Before anything else reads the adapter: every tensor must fit the base (a causal-LM base may get a new score head).
    const c = ckpt;
    // Output names: --labels, else those of a head the trainer relabelled (the adapter's labels file),
    // else config.json's id2label. Given names stand in for id2label, so the head may have another count.
    const labels = opts.labels ?? (opts.labelTokens ? undefined : (adapter?.labels ?? undefined));
    if (labels && !opts.labelTokens) hf = { ...hf, ...labelKeys(labels) };
    if (adapter) checkAdapter(adapter, { names: c.names, shape: (n) => c.info(n).shape }, [...adapter.saved.keys()].filter((n) => /^score\./.test(n)), labels?.length);
    const head = chooseHead(ckpt, adapter, { activation: opts.headActivation, labelTokens: opts.labelTokens, tokenizerDir, configFile });
    const config = parseHfConfig(hf, configFile, head ? { head } : {});
    const recipe = chooseRecipe({
      given: { template: opts.template, truncation: opts.truncation, maxTokens: opts.maxTokens },
      trained: opts.adapter ? readTrainedSettings(resolve(opts.adapter)) : null,
      defaultTemplate: familyOf(config).defaultTemplate,
      tokenizerDir,
    });
    log(`import: recipe ${recipe.template} (${recipe.source.template}), truncation ${recipe.truncation} (${recipe.source.truncation}), max tokens ${recipe.maxTokens} (${recipe.source.maxTokens})`);
    return await importWith({ ...opts, labels }, { base, hf, config, adapter, ckpt, tokenizerDir, t0, log, recipe });
  } finally {
    adapter?.close();
    ckpt?.close();
  }
}

function findTokenizer(opts: ImportOptions, base: string): string {
  const dir = resolve(opts.tokenizer ?? base);
  if (!existsSync(join(dir, 'tokenizer.json')))
    throw new ImportError(
      opts.tokenizer
        ? `${dir}: no tokenizer.json in the --tokenizer folder`
        : `${base}: no tokenizer.json next to the checkpoint; pass --tokenizer DIR (a folder with the model's tokenizer.json and tokenizer_config.json)`,
    );
  return dir;
}

/**
 * The head, from the tensors and flags, or null for config.json's plain `score` linear: with
 * `labelTokens` a causal-LM judge on those tokens' lm_head (or tied embedding) rows, else the score head
 * the base's tensors hold, with the adapter's modules_to_save over them (src/model/heads.ts).
 */
export function chooseHead(
  ckpt: Pick<Checkpoint, 'names' | 'info'>,
  adapter: Adapter | null,
  o: { activation?: Activation; labelTokens?: string[]; tokenizerDir: string; configFile: string },
): HeadSpec | null {
  if (o.labelTokens) {
    if (o.activation) throw new ImportError('--head-activation applies to score.N.* heads, not to --label-tokens judges');
    if (o.labelTokens.length !== 2 && o.labelTokens.length !== 3)
      throw new ImportError(`--label-tokens takes 2 or 3 tokens (A,B or A,B,tie), got ${o.labelTokens.length}`);
    const ids = resolveLabelTokens(o.labelTokens, join(o.tokenizerDir, 'tokenizer.json'));
    const dup = ids.findIndex((id, i) => ids.indexOf(id) !== i);
    if (dup >= 0)
      throw new ImportError(
        `--label-tokens ${o.labelTokens.join(',')}: "${o.labelTokens[dup]}" is the same token (id ${ids[dup]}) as "${o.labelTokens[ids.indexOf(ids[dup])]}"; each outcome needs its own token`,
      );
    return { kind: 'label-tokens', tokenIds: ids, weight: '', finalSoftcap: null }; // weight and soft-cap: the family parser
  }
  const shape = (n: string): number[] | null => {
    const saved = adapter?.saved.get(n);
    if (saved) return adapter!.file.info(saved).shape;
    return ckpt.names.includes(n) ? ckpt.info(n).shape : null;
  };
  const names = [...ckpt.names, ...(adapter ? adapter.saved.keys() : [])];
  return chooseScoreHead({ names, shape }, { activation: o.activation, configFile: o.configFile });
}

/** Token strings (exact vocabulary entries of tokenizer.json, added tokens included) or numeric ids -> ids. */
export function resolveLabelTokens(tokens: string[], tokenizerFile: string): number[] {
  if (tokens.every((t) => /^\d+$/.test(t))) return tokens.map(Number);
  let tok: { model?: { vocab?: unknown }; added_tokens?: { id: number; content: string }[] };
  try {
    tok = JSON.parse(readFileSync(tokenizerFile, 'utf8'));
  } catch (e) {
    throw new ImportError(`${tokenizerFile}: cannot read the tokenizer to look up --label-tokens (${(e as Error).message})`);
  }
  const vocab = new Map<string, number>();
  const v = tok.model?.vocab;
  if (Array.isArray(v)) v.forEach((e, i) => vocab.set(String((e as unknown[])[0]), i)); // Unigram: [piece, score]
  else if (v && typeof v === 'object') for (const [k, id] of Object.entries(v as Record<string, number>)) vocab.set(k, id);
  for (const a of tok.added_tokens ?? []) vocab.set(a.content, a.id);
  return tokens.map((t) => {
    const id = vocab.get(t);
    if (id !== undefined) return id;
    const near = ['▁', 'Ġ', ' '].map((p) => p + t).filter((c) => vocab.has(c));
    throw new ImportError(
      `--label-tokens: "${t}" is not a token of ${tokenizerFile}` + (near.length ? ` (it has ${near.map((c) => `"${c}" = ${vocab.get(c)}`).join(', ')}; pass that string or its id)` : '; pass token ids instead'),
    );
  });
}

async function importWith(
  opts: ImportOptions,
  ctx: {
    base: string;
    hf: Record<string, unknown>;
    config: ModelConfig;
    adapter: Adapter | null;
    ckpt: Checkpoint;
    tokenizerDir: string;
    t0: number;
    log: (l: string) => void;
    recipe: Recipe;
  },
): Promise<ImportResult> {
  const { base, hf, config, adapter, ckpt, tokenizerDir, t0, log, recipe } = ctx;
  const warnings: string[] = [];

  {
    const labels =
      config.head.kind === 'label-tokens' && !opts.labels ? defaultLabels(config.numLabels) : chooseLabels(config, hf, opts.labels, join(base, 'config.json'));
    const have = new Set(ckpt.names);
    const required = checkBase({ names: ckpt.names, shape: (n) => ckpt.info(n).shape }, config, base, join(base, 'config.json'), new Set(adapter?.saved.keys() ?? []));
    let weights: WeightSource = finiteSource(ckpt.get, (n) => ckpt.info(n).file);
    if (adapter) {
      warnings.push(...adapter.config.warnings);
      refuseUnused([...adapter.lora.keys(), ...adapter.saved.keys()], required, adapter.weightsFile, config);
      weights = mergedSource(weights, adapter);
    }
    for (const w of warnings) log(`warning: ${w}`);

    const bytesOf = (n: string) => (have.has(n) ? ckpt.info(n).end - ckpt.info(n).begin : 0);
    const sourceBytes = required.reduce((a, n) => a + bytesOf(n), 0);
    log(`import: ${config.architecture}, ${config.numLayers} layers, ${fmtBytes(sourceBytes)} of weights; hashing source files`);

    const baseFiles = ['config.json', ...ckpt.files.map((f) => basename(f.path))];
    if (existsSync(join(base, 'model.safetensors.index.json'))) baseFiles.push('model.safetensors.index.json');
    const provenance: Record<string, unknown> = {
      tool: 'arenakit import',
      command: opts.command ?? null,
      created: new Date().toISOString(),
      base: { dir: base, files: fileRecords(base, baseFiles), config: hf },
      adapter: adapter
        ? { dir: adapter.dir, files: fileRecords(adapter.dir, [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]), config: adapter.config.raw }
        : null,
      tokenizer: { dir: tokenizerDir },
      recipe: recipe.source,
      merge: adapter ? 'W + s * lora_B @ lora_A (s = lora_alpha / r, or / sqrt(r) with use_rslora); modules_to_save from the adapter' : null,
      warnings,
    };

    const quant = importQuantization(opts);
    const progress = withProgress(weights, bytesOf, sourceBytes * opts.graphs.length, log);
    // Written beside --out and swapped in when complete: a killed re-import leaves the old weights usable.
    await replaceDir(resolve(opts.out), (dir) => writeWeightsDir({
      dir,
      config,
      weights: progress,
      quant,
      graphs: opts.graphs,
      tokenizerDir,
      template: recipe.template,
      truncation: recipe.truncation,
      maxTokens: recipe.maxTokens,
      labels,
      provenance,
      embedScaleDtype: torchDtype(hf),
      attention: opts.attention,
      attentionByGraph: opts.attentionByGraph,
    }));
    const seconds = (Date.now() - t0) / 1000;
    return { out: resolve(opts.out), config, sourceBytes, seconds, warnings };
  }
}

/**
 * The quantization an import records: int8 / int4 take the rows kernels (int8-rows, int4-rows) unless asked
 * for MatMulNBits (--int8-kernel / --int4-kernel nbits, or any MatMulNBits setting given) or a GPU graph is
 * written beside the CPU graph (cpuGraphDefaults); MatMulNBits takes the block size and accuracy level given
 * or cpuGraphDefaults'.
 */
export function importQuantization(
  opts: Pick<ImportOptions, 'quant' | 'graphs' | 'blockSize' | 'accuracyLevel' | 'symmetric' | 'int8Linear' | 'int4Linear'>,
): Quantization {
  const defaults = cpuGraphDefaults(opts.graphs);
  const nbitsAsked = opts.blockSize !== undefined || opts.accuracyLevel !== undefined || opts.symmetric === false;
  const linear =
    opts.quant === 'int8'
      ? (opts.int8Linear ?? (nbitsAsked ? 'nbits' : defaults.int8Linear))
      : opts.quant === 'int4'
        ? (opts.int4Linear ?? (nbitsAsked ? 'nbits' : defaults.int4Linear))
        : null;
  if (linear === 'int8-rows') return { kind: 'int8', symmetric: true, linear: 'int8-rows' };
  if (linear === 'int4-rows') return { kind: 'int4', symmetric: true, blockSize: INT4_ROWS_BLOCK, linear: 'int4-rows' };
  if (opts.quant === 'int4' || opts.quant === 'int8')
    return {
      kind: opts.quant,
      blockSize: opts.blockSize ?? defaults.blockSize,
      symmetric: opts.symmetric ?? true,
      accuracyLevel: opts.accuracyLevel ?? defaults.accuracyLevel,
    };
  return { kind: opts.quant };
}
