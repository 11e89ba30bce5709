// LoRA for training: the plan (which modules get A/B from the options, by PEFT's rules in
// src/model/lora.ts; the trainable head, modules_to_save) and the starting values: PEFT defaults
// (A kaiming-uniform, B zeros), an existing adapter, or PiSSA (SVD of W; the residual becomes the
// frozen base). Names are adapter-file keys, as PEFT saves them.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelConfig, WeightSource } from '../types';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../weights/peft';
import { openSafetensors } from '../weights/safetensors';
import { readJsonObject } from '../weights/checks';
import { parseAdapterConfig } from '../weights/peft-config';
import {
  checkpointLinears,
  expandTargets,
  isTargeted,
  loraKeys,
  loraScale,
  PEFT_PREFIX,
  peftLayerIndex,
  plainAdapterKey,
  projectionNames,
  type LoraPair,
} from '../model/lora';
import { forName } from '../util/rng';
import { svd } from './svd';

export class LoraSetupError extends Error {
  override name = 'LoraSetupError';
}

/** The options as PEFT's LoraConfig names them. */
export interface LoraSettings {
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  /** Module-name suffixes (q_proj, ...) or ['all-linear']. */
  target_modules: string[];
  /** Layer indices that get LoRA; null = all. */
  layers_to_transform: number[] | null;
  use_rslora: boolean;
  /** ['score'] trains a copy of the head; [] keeps it frozen. */
  modules_to_save: string[];
  /** PEFT's per-module r and lora_alpha, keyed by a trailing module name (e.g. {"k_proj": 32}); absent = none. */
  rank_pattern?: Record<string, number>;
  alpha_pattern?: Record<string, number>;
}

export const DEFAULT_LORA: LoraSettings = {
  r: 16,
  lora_alpha: 32,
  lora_dropout: 0.05,
  target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
  layers_to_transform: null,
  use_rslora: false,
  modules_to_save: ['score'],
};

/** One trainable head tensor (modules_to_save): its adapter key, HF name and shape. */
export interface HeadTensor {
  key: string;
  hf: string;
  shape: number[];
}

export interface TrainableSpec {
  settings: LoraSettings;
  /** By module name, in model order. */
  lora: Map<string, LoraPair>;
  /** The score head's tensors (every layer of a multi-layer head, biases too) when trained; [] = frozen. */
  head: HeadTensor[];
  dropout: number;
}

export function planLora(c: ModelConfig, s: LoraSettings): TrainableSpec {
  if (!Number.isInteger(s.r) || s.r <= 0) throw new LoraSetupError(`r = ${s.r}: expected a positive integer`);
  if (!(s.lora_dropout >= 0 && s.lora_dropout < 1))
    throw new LoraSetupError(`lora_dropout = ${s.lora_dropout}: expected 0 <= p < 1`);
  const projections = projectionNames(c);
  const targets = expandTargets(s.target_modules, projections);
  const unknown = targets.filter((t) => !projections.includes(t));
  if (unknown.length)
    throw new LoraSetupError(
      `target_modules ${JSON.stringify(unknown)} are not linears of this model (${projections.join(', ')})`,
    );
  for (const l of s.layers_to_transform ?? [])
    if (!Number.isInteger(l) || l < 0 || l >= c.numLayers)
      throw new LoraSetupError(`layers_to_transform has ${l}; the model has layers 0..${c.numLayers - 1}`);
  for (const [k, r] of Object.entries(s.rank_pattern ?? {}))
    if (!Number.isInteger(r) || r <= 0)
      throw new LoraSetupError(`rank_pattern["${k}"] = ${r}: expected a positive integer`);
  const patterns = {
    r: s.r,
    loraAlpha: s.lora_alpha,
    useRslora: s.use_rslora,
    rankPattern: s.rank_pattern ?? {},
    alphaPattern: s.alpha_pattern ?? {},
  };
  const lora = new Map<string, LoraPair>();
  for (const m of checkpointLinears(c)) {
    if (!targets.includes(m.name)) continue;
    if (s.layers_to_transform && !s.layers_to_transform.includes(peftLayerIndex(m.module)!)) continue;
    const { rank, scale } = loraScale(patterns, m.module);
    lora.set(m.module, {
      module: m.module,
      ...loraKeys(m.module),
      rank,
      scale,
      inFeatures: m.inF,
      outFeatures: m.outF,
    });
  }
  const badSave = s.modules_to_save.filter((m) => m !== 'score' && m !== 'classifier');
  if (badSave.length)
    throw new LoraSetupError(`modules_to_save ${JSON.stringify(badSave)}: only the score head can be trained in full`);
  const head: HeadTensor[] = [];
  if (s.modules_to_save.includes('score')) {
    if (c.head.kind !== 'classifier')
      throw new LoraSetupError(
        'modules_to_save ["score"]: this model scores with label tokens of its LM head; train a classifier base',
      );
    for (const l of c.head.layers) {
      head.push({ key: `${PEFT_PREFIX}${l.weight}`, hf: l.weight, shape: [l.outFeatures, l.inFeatures] });
      if (l.bias) head.push({ key: `${PEFT_PREFIX}${l.bias}`, hf: l.bias, shape: [l.outFeatures] });
    }
  }
  return { settings: s, lora, head, dropout: s.lora_dropout };
}

export type Params = Map<string, Float32Array>;

/** PEFT defaults: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0; the head copies the base head. */
export function defaultInit(spec: TrainableSpec, weights: WeightSource, seed: number): Params {
  const p: Params = new Map();
  for (const m of spec.lora.values()) {
    const rng = forName(seed, m.aKey);
    const bound = 1 / Math.sqrt(m.inFeatures);
    p.set(
      m.aKey,
      Float32Array.from({ length: m.rank * m.inFeatures }, () => (2 * rng.next() - 1) * bound),
    );
    p.set(m.bKey, new Float32Array(m.outFeatures * m.rank));
  }
  for (const t of spec.head) p.set(t.key, Float32Array.from(weights(t.hf).data));
  return p;
}

/**
 * The settings PiSSA trains with. peft 0.13.2's pissa_init slices svd(W) to its first r, so where r
 * exceeds a weight's rank k = min(out, in) (r 64 on a tiny model's 32 x 64 k_proj) it trains A [k, in]
 * and B [out, k] with the scale of r (alpha / r), silently, and then saves tensors its own config
 * cannot load back (size mismatch). The same training is written here as PEFT's rank_pattern r k with
 * the alpha_pattern that keeps the scale, so PEFT and import load the adapter. `clamped` names the
 * projections for the log.
 */
export function pissaSettings(c: ModelConfig, s: LoraSettings): { settings: LoraSettings; clamped: string[] } {
  const rank: Record<string, number> = {};
  const alpha: Record<string, number> = {};
  for (const m of planLora(c, s).lora.values()) {
    const name = m.module.slice(m.module.lastIndexOf('.') + 1);
    const k = Math.min(m.inFeatures, m.outFeatures);
    if (m.rank <= k) continue;
    if (rank[name] !== undefined && rank[name] !== k)
      throw new LoraSetupError(`${m.module}: PiSSA rank ${k} differs between layers; set a rank_pattern per module`);
    rank[name] = k;
    // the scale of r: alpha / r = alpha' / k (rsLoRA: alpha / sqrt r = alpha' / sqrt k)
    alpha[name] = s.use_rslora ? (s.lora_alpha * Math.sqrt(k)) / Math.sqrt(m.rank) : (s.lora_alpha * k) / m.rank;
  }
  const clamped = Object.keys(rank);
  if (!clamped.length) return { settings: s, clamped };
  return {
    settings: { ...s, rank_pattern: { ...s.rank_pattern, ...rank }, alpha_pattern: { ...s.alpha_pattern, ...alpha } },
    clamped,
  };
}

/**
 * PiSSA (peft 0.13.2 pissa_init): U S Vh = svd(W); Sr = S[:r] / scale; A = diag(sqrt Sr) Vh[:r];
 * B = U[:, :r] diag(sqrt Sr); the frozen base becomes W - scale * B A. Returns the A/B values and
 * the residual weights by HF name.
 */
export function pissaInit(
  spec: TrainableSpec,
  weights: WeightSource,
): { params: Params; residual: Map<string, Float32Array> } {
  const params: Params = new Map();
  const residual = new Map<string, Float32Array>();
  for (const m of spec.lora.values()) {
    const w = weights(`${m.module}.weight`).data;
    const { u, s, vt, k } = svd(w, m.outFeatures, m.inFeatures);
    const r = m.rank;
    if (r > k)
      throw new LoraSetupError(
        `${m.module}: r = ${r} exceeds the rank ${k} of its [${m.outFeatures}, ${m.inFeatures}] weight; plan PiSSA with pissaSettings`,
      );
    const A = new Float32Array(r * m.inFeatures);
    const B = new Float32Array(m.outFeatures * r);
    for (let i = 0; i < r; i++) {
      const sq = Math.sqrt(Math.fround(s[i] / m.scale));
      for (let j = 0; j < m.inFeatures; j++) A[i * m.inFeatures + j] = vt[i * m.inFeatures + j] * sq;
      for (let o = 0; o < m.outFeatures; o++) B[o * r + i] = u[o * k + i] * sq;
    }
    const res = new Float32Array(w.length);
    for (let o = 0; o < m.outFeatures; o++)
      for (let j = 0; j < m.inFeatures; j++) {
        let ba = 0;
        for (let i = 0; i < r; i++) ba += B[o * r + i] * A[i * m.inFeatures + j];
        res[o * m.inFeatures + j] = w[o * m.inFeatures + j] - m.scale * ba;
      }
    params.set(m.aKey, A);
    params.set(m.bKey, B);
    residual.set(`${m.module}.weight`, res);
  }
  for (const t of spec.head) params.set(t.key, Float32Array.from(weights(t.hf).data));
  return { params, residual };
}

/** A WeightSource that serves `over` (e.g. PiSSA residuals) in place of the base tensors it names. */
export function overlay(base: WeightSource, over: Map<string, Float32Array>): WeightSource {
  return (name) => {
    const r = over.get(name);
    return r ? { shape: base(name).shape, data: r } : base(name);
  };
}

/**
 * An existing PEFT adapter folder: its settings (as LoraSettings) and tensors by adapter key. The config
 * goes through import's parser (src/weights/peft-config.ts), so every feature import refuses (DoRA,
 * LoftQ, lora_bias, layer_replication, ...) is refused here too. A regex target_modules is taken as the
 * module names and layers it selects on `c`'s linears, which must be every (name, layer) pair of them:
 * anything else cannot be written as target_modules + layers_to_transform and is refused.
 */
export function readAdapter(dir: string, c?: ModelConfig): { settings: LoraSettings; params: Params; init: unknown } {
  const cfgFile = join(dir, ADAPTER_CONFIG_FILE);
  const wFile = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(cfgFile) || !existsSync(wFile))
    throw new LoraSetupError(
      `${dir}: needs adapter_config.json and adapter_model.safetensors (a folder PEFT's save_pretrained wrote)`,
    );
  const j = readJsonObject(cfgFile, "pass the folder PEFT's save_pretrained wrote");
  const cfg = parseAdapterConfig(j, cfgFile);
  const f = openSafetensors(wFile);
  const params: Params = new Map();
  try {
    for (const key of f.tensors.keys()) params.set(plainAdapterKey(key), f.read(key).data);
  } finally {
    f.close();
  }
  let targets: string[] = typeof cfg.targetModules === 'string' ? [cfg.targetModules] : cfg.targetModules;
  const ltt = cfg.layersToTransform;
  let layers: number[] | null = ltt === null || (Array.isArray(ltt) && !ltt.length) ? null : [ltt].flat();
  if (typeof cfg.targetModules === 'string' && cfg.targetModules !== 'all-linear') {
    const picked = c
      ? checkpointLinears(c)
          .filter((m) => isTargeted(cfg, m.module))
          .map((m) => ({ name: m.name, layer: peftLayerIndex(m.module)! }))
      : // without the model: the LoRA tensors present say which modules it named
        [...params.keys()]
          .map((k) => /\.layers\.(\d+)\.\w+\.(\w+)\.lora_A\.weight$/.exec(k))
          .filter((m) => m !== null)
          .map((m) => ({ name: m![2], layer: Number(m![1]) }));
    targets = [...new Set(picked.map((m) => m.name))];
    layers = [...new Set(picked.map((m) => m.layer))].sort((a, b) => a - b);
    if (!picked.length || picked.length !== targets.length * layers.length)
      throw new LoraSetupError(
        `${cfgFile}: target_modules regex ${JSON.stringify(cfg.targetModules)} selects ${picked.length} module(s) ` +
          `(${picked
            .slice(0, 4)
            .map((m) => `layer ${m.layer} ${m.name}`)
            .join(
              ', ',
            )}${picked.length > 4 ? ', ...' : ''}), not every pairing of the names ${JSON.stringify(targets)} with the layers ${JSON.stringify(layers)}; ` +
          'training cannot continue it (import can merge it): list target_modules and layers_to_transform instead',
      );
  }
  const settings: LoraSettings = {
    r: cfg.r,
    lora_alpha: cfg.loraAlpha,
    lora_dropout: (j.lora_dropout ?? 0) as number,
    target_modules: targets,
    layers_to_transform: layers,
    use_rslora: cfg.useRslora,
    modules_to_save: cfg.modulesToSave.includes('score') ? ['score'] : [],
    ...(Object.keys(cfg.rankPattern).length ? { rank_pattern: cfg.rankPattern } : {}),
    ...(Object.keys(cfg.alphaPattern).length ? { alpha_pattern: cfg.alphaPattern } : {}),
  };
  if (!(typeof settings.lora_dropout === 'number' && settings.lora_dropout >= 0 && settings.lora_dropout < 1))
    throw new LoraSetupError(`${cfgFile}: lora_dropout ${JSON.stringify(j.lora_dropout)}: expected 0 <= p < 1`);
  return { settings, params, init: j.init_lora_weights };
}

/** An --adapter folder to continue: readAdapter, and its settings planned on `c` (errors name the adapter's config file). */
export function adapterSettings(
  dir: string,
  c: ModelConfig,
): { settings: LoraSettings; params: Params; init: unknown; spec: TrainableSpec } {
  const ad = readAdapter(dir, c);
  try {
    return { ...ad, spec: planLora(c, ad.settings) };
  } catch (e) {
    if (e instanceof LoraSetupError) throw new LoraSetupError(`${join(dir, ADAPTER_CONFIG_FILE)}: ${e.message}`);
    throw e;
  }
}

/** Checks that `params` holds exactly the tensors `spec` trains, with the right sizes. */
export function checkParams(spec: TrainableSpec, params: Params, where: string): void {
  const want = new Map<string, number>();
  for (const m of spec.lora.values()) {
    want.set(m.aKey, m.rank * m.inFeatures);
    want.set(m.bKey, m.outFeatures * m.rank);
  }
  for (const t of spec.head)
    want.set(
      t.key,
      t.shape.reduce((a, d) => a * d, 1),
    );
  for (const [k, n] of want) {
    const p = params.get(k);
    if (!p) throw new LoraSetupError(`${where}: tensor "${k}" is missing`);
    if (p.length !== n)
      throw new LoraSetupError(`${where}: tensor "${k}" has ${p.length} values, the model needs ${n}`);
  }
  for (const k of params.keys())
    if (!want.has(k)) throw new LoraSetupError(`${where}: tensor "${k}" is not trained by this configuration`);
}
