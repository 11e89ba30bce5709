// PEFT LoRA adapters: adapter_config.json validation, adapter_model.safetensors key mapping and the
// lazy merge W + s * B @ A (plus modules_to_save replacements) as a WeightSource. Options PEFT
// supports but this merge does not reproduce are errors: a silently wrong model is worse than none.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostTensor, WeightSource } from '../types';
import { openSafetensors, type SafetensorsFile } from './safetensors';

export class AdapterError extends Error {
  override name = 'AdapterError';
}

export interface LoraConfig {
  r: number;
  loraAlpha: number;
  /** A list of module-name suffixes, or a regex string that must match a whole module name (PEFT's rule). */
  targetModules: string[] | string;
  /** Layer indices a list target_modules is limited to (null = every layer); PEFT's rule in isTargeted. */
  layersToTransform: number[] | number | null;
  /** Names of the layer container whose index layersToTransform means (null = any `<name>.<digits>.`). */
  layersPattern: string[] | string | null;
  useRslora: boolean;
  modulesToSave: string[];
  fanInFanOut: boolean;
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
  baseModelNameOrPath: string | null;
  /** Things PEFT itself would warn about (e.g. fan_in_fan_out on nn.Linear). */
  warnings: string[];
  /** adapter_config.json as read, for provenance. */
  raw: Record<string, unknown>;
}

/** Linear layers a Gemma / Gemma-2 classifier has, by PEFT module suffix ("all-linear" expands to these). */
export const GEMMA_LINEAR_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/** Keys that must be absent, null, false or empty: each enables a feature the merge does not implement. */
const UNSUPPORTED: Record<string, string> = {
  use_dora: 'DoRA (weight-decomposed LoRA) adds a magnitude vector the merge does not apply; merge it in PEFT (merge_and_unload) and import the merged model',
  layer_replication: 'layer_replication changes the layer stack; not supported',
  loftq_config: 'LoftQ pairs the adapter with a quantized base; not supported',
  megatron_config: 'Megatron parallel layers are not supported',
  lora_bias: 'lora_bias adds a bias to lora_B; not supported',
  exclude_modules: 'exclude_modules is not supported; list the targets in target_modules instead',
  trainable_token_indices: 'trainable_token_indices (token-embedding deltas) is not supported',
  target_parameters: 'target_parameters (LoRA on raw parameters) is not supported',
  alora_invocation_tokens: 'activated LoRA (aLoRA) is not supported',
  use_qalora: 'QA-LoRA is not supported',
};

const isOff = (v: unknown): boolean =>
  v === undefined || v === null || v === false || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && v !== null && Object.keys(v).length === 0);

export function parseAdapterConfig(json: unknown, file: string): LoraConfig {
  const fail = (msg: string): never => {
    throw new AdapterError(`${file}: ${msg}`);
  };
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return fail('adapter_config.json is not a JSON object');
  const c = json as Record<string, unknown>;
  if (c.peft_type !== 'LORA') fail(`peft_type is ${JSON.stringify(c.peft_type)}; only "LORA" adapters can be merged`);
  for (const [key, why] of Object.entries(UNSUPPORTED)) if (!isOff(c[key])) fail(`${key} = ${JSON.stringify(c[key])}: ${why}`);
  const bias = c.bias ?? 'none';
  if (bias !== 'none') fail(`bias = ${JSON.stringify(bias)}: trained biases are not supported (Gemma linears have none); use bias="none"`);
  const init = c.init_lora_weights ?? true;
  if (!(init === true || init === false || init === 'gaussian'))
    fail(
      `init_lora_weights = ${JSON.stringify(init)}: ${init === 'loftq' ? 'LoftQ' : 'this initialisation'} changes the base weights, so the adapter ` +
        'only fits its residual base; convert it to a plain LoRA (PEFT save_pretrained with path_initial_model_for_weight_conversion) first',
    );

  const posInt = (key: string): number => {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) return fail(`key "${key}" is ${JSON.stringify(v)}, expected a positive integer`);
    return v;
  };
  const r = posInt('r');
  if (typeof c.lora_alpha !== 'number' || !Number.isFinite(c.lora_alpha)) fail(`key "lora_alpha" is ${JSON.stringify(c.lora_alpha)}, expected a number`);
  const tm = c.target_modules;
  let targetModules: string[] | string;
  if (typeof tm === 'string') {
    targetModules = tm;
    if (tm !== 'all-linear')
      try {
        new RegExp(tm);
      } catch (e) {
        fail(`target_modules regex ${JSON.stringify(tm)} does not compile (${(e as Error).message})`);
      }
  } else if (Array.isArray(tm) && tm.length > 0 && tm.every((t) => typeof t === 'string')) {
    targetModules = tm as string[];
  } else {
    return fail(`target_modules is ${JSON.stringify(tm)}, expected a non-empty list of module names or a regex string`);
  }
  // peft 0.13.2 LoraConfig.__post_init__: both only work with a list target_modules
  const ltt = c.layers_to_transform ?? null;
  if (ltt !== null && !(Number.isInteger(ltt) || (Array.isArray(ltt) && ltt.every((i) => Number.isInteger(i)))))
    fail(`layers_to_transform is ${JSON.stringify(ltt)}, expected null, a layer index or a list of layer indices`);
  const lp = c.layers_pattern ?? null;
  if (lp !== null && !(typeof lp === 'string' || (Array.isArray(lp) && lp.every((x) => typeof x === 'string'))))
    fail(`layers_pattern is ${JSON.stringify(lp)}, expected null, a name or a list of names`);
  for (const [key, v] of [['layers_to_transform', ltt], ['layers_pattern', lp]] as const)
    if (v !== null && typeof targetModules === 'string')
      fail(`${key} = ${JSON.stringify(v)} with target_modules a string: PEFT refuses this ("cannot be used when target_modules is a str"); list the module names`);
  const bool = (key: string): boolean => {
    const v = c[key] ?? false;
    if (typeof v !== 'boolean') return fail(`key "${key}" is ${JSON.stringify(v)}, expected true or false`);
    return v;
  };
  const pattern = (key: string): Record<string, number> => {
    const v = c[key] ?? {};
    if (typeof v !== 'object' || Array.isArray(v) || !Object.values(v as object).every((x) => typeof x === 'number' && x > 0))
      return fail(`key "${key}" is ${JSON.stringify(v)}, expected an object of module pattern -> positive number`);
    for (const k of Object.keys(v as object))
      try {
        new RegExp(k);
      } catch (e) {
        fail(`${key} pattern ${JSON.stringify(k)} does not compile (${(e as Error).message})`);
      }
    return v as Record<string, number>;
  };
  const mts = c.modules_to_save ?? [];
  if (!Array.isArray(mts) || !mts.every((m) => typeof m === 'string')) fail(`modules_to_save is ${JSON.stringify(mts)}, expected a list of module names`);
  const fanInFanOut = bool('fan_in_fan_out');
  const warnings: string[] = [];
  if (fanInFanOut)
    warnings.push(
      `${file}: fan_in_fan_out is true but Gemma's projections are nn.Linear; PEFT resets it to false for nn.Linear, so the merge does too`,
    );
  return {
    r,
    loraAlpha: c.lora_alpha as number,
    targetModules,
    layersToTransform: ltt as number[] | number | null,
    layersPattern: lp as string[] | string | null,
    useRslora: bool('use_rslora'),
    modulesToSave: mts as string[],
    fanInFanOut,
    rankPattern: pattern('rank_pattern'),
    alphaPattern: pattern('alpha_pattern'),
    baseModelNameOrPath: typeof c.base_model_name_or_path === 'string' ? c.base_model_name_or_path : null,
    warnings,
    raw: c,
  };
}

/**
 * PEFT's layer index of a module path (peft 0.13.2 tuners_utils.check_target_module_exists): without
 * layers_pattern, re.match(r".*\.[^.]*\.(\d+)\.", key); with it, the first pattern p for which
 * re.match(rf".*\.{p}\.(\d+)\.", key) matches. null = no index (the module is then not targeted).
 */
export function peftLayerIndex(module: string, layersPattern: string[] | string | null = null): number | null {
  const pats = layersPattern === null || layersPattern.length === 0 ? ['[^.]*'] : [layersPattern].flat();
  for (const p of pats) {
    const m = new RegExp(`^.*\\.${p}\\.(\\d+)\\.`).exec(module);
    if (m) return Number(m[1]);
  }
  return null;
}

/**
 * PEFT's target rule (peft 0.13.2 check_target_module_exists): a regex string must match the whole module
 * name; a list entry matches the exact name, or a ".name" suffix that is then limited to layers_to_transform.
 */
export function isTargeted(cfg: LoraConfig, module: string): boolean {
  const t = cfg.targetModules;
  if (t === 'all-linear') return GEMMA_LINEAR_MODULES.some((m) => module.endsWith(`.${m}`));
  if (typeof t === 'string') return new RegExp(`^(?:${t})$`).test(module);
  if (t.includes(module)) return true;
  if (!t.some((m) => module.endsWith(`.${m}`))) return false;
  const layers = cfg.layersToTransform;
  if (layers === null || (Array.isArray(layers) && layers.length === 0)) return true;
  const i = peftLayerIndex(module, cfg.layersPattern);
  return i !== null && (typeof layers === 'number' ? i === layers : layers.includes(i));
}

/** Rank, alpha and merge scale of one module: rank_pattern / alpha_pattern keys match a trailing name (PEFT's get_pattern_key). */
export function loraScale(cfg: Pick<LoraConfig, 'r' | 'loraAlpha' | 'useRslora' | 'rankPattern' | 'alphaPattern'>, module: string): { rank: number; alpha: number; scale: number } {
  const keys = [...Object.keys(cfg.rankPattern), ...Object.keys(cfg.alphaPattern)];
  const key = keys.find((k) => new RegExp(`(?:^|.*\\.)(?:${k})$`).test(module)) ?? module;
  const rank = cfg.rankPattern[key] ?? cfg.r;
  const alpha = cfg.alphaPattern[key] ?? cfg.loraAlpha;
  return { rank, alpha, scale: cfg.useRslora ? alpha / Math.sqrt(rank) : alpha / rank };
}

export interface LoraPair {
  /** Module name inside the classifier, e.g. model.layers.0.self_attn.q_proj. */
  module: string;
  /** adapter_model.safetensors keys. */
  aKey: string;
  bKey: string;
  rank: number;
  scale: number;
}

export interface Adapter {
  dir: string;
  configFile: string;
  weightsFile: string;
  config: LoraConfig;
  /** LoRA pairs by the base weight they modify (HF name, e.g. model.layers.0.self_attn.q_proj.weight). */
  lora: Map<string, LoraPair>;
  /** modules_to_save replacements: base HF name -> adapter key. */
  saved: Map<string, string>;
  /** Output names of a head the trainer relabelled (ADAPTER_LABELS_FILE), else null: config.json's id2label holds. */
  labels: string[] | null;
  file: SafetensorsFile;
  close(): void;
}

const PREFIX = 'base_model.model.';

/**
 * Beside PEFT's two files, `trainer train --num-labels` writes the output names of a relabelled head
 * (e.g. a 2-output WSDM head trained on a 3-label LMSYS base), which the base's config.json cannot say.
 * PEFT ignores the file; with PEFT, load the base with num_labels (and ignore_mismatched_sizes=True).
 */
export const ADAPTER_LABELS_FILE = 'arenakit_labels.json';

/** The adapter folder's head output names in logit order, or null when it has no ADAPTER_LABELS_FILE. */
export function readAdapterLabels(dir: string): string[] | null {
  const file = join(dir, ADAPTER_LABELS_FILE);
  if (!existsSync(file)) return null;
  let json: { id2label?: Record<string, unknown> };
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new AdapterError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  const m = json.id2label;
  const n = m && typeof m === 'object' ? Object.keys(m).length : 0;
  const labels = Array.from({ length: n }, (_, i) => m![String(i)]);
  if (!n || !labels.every((l) => typeof l === 'string' && l.length > 0))
    throw new AdapterError(`${file}: id2label must map "0".."${Math.max(0, n - 1)}" to label names, got ${JSON.stringify(m)}; delete the file to use the base's config.json`);
  return labels as string[];
}

/** Opens DIR/adapter_config.json + DIR/adapter_model.safetensors and maps every key; throws on anything it cannot place. */
export function openAdapter(dir: string): Adapter {
  const configFile = join(dir, 'adapter_config.json');
  const weightsFile = join(dir, 'adapter_model.safetensors');
  if (!existsSync(configFile)) throw new AdapterError(`${dir}: no adapter_config.json; pass the folder PEFT's save_pretrained wrote`);
  if (!existsSync(weightsFile))
    throw new AdapterError(
      `${dir}: no adapter_model.safetensors${existsSync(join(dir, 'adapter_model.bin')) ? ' (only adapter_model.bin: re-save with safe_serialization=True)' : ''}`,
    );
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(configFile, 'utf8'));
  } catch (e) {
    throw new AdapterError(`${configFile}: not valid JSON (${(e as Error).message})`);
  }
  const config = parseAdapterConfig(json, configFile);
  const file = openSafetensors(weightsFile);
  try {
    const { lora, saved } = mapAdapterKeys([...file.tensors.keys()], config, weightsFile, (k) => file.info(k).shape);
    return { dir, configFile, weightsFile, config, lora, saved, labels: readAdapterLabels(dir), file, close: () => file.close() };
  } catch (e) {
    file.close();
    throw e;
  }
}

/** Pure key mapping of an adapter file: which base tensor each LoRA pair and each saved module replaces. */
export function mapAdapterKeys(
  keys: string[],
  config: LoraConfig,
  where: string,
  shapeOf: (key: string) => number[],
): { lora: Map<string, LoraPair>; saved: Map<string, string> } {
  const fail = (msg: string): never => {
    throw new AdapterError(`${where}: ${msg}`);
  };
  const halves = new Map<string, { a?: string; b?: string }>();
  const saved = new Map<string, string>();
  for (const key of keys) {
    if (!key.startsWith(PREFIX)) fail(`tensor "${key}" does not start with "${PREFIX}" (not a PEFT adapter for a sequence classifier?)`);
    const name = key.slice(PREFIX.length).replace(/\.default(?=\.|$)/g, '');
    if (/\.lora_magnitude_vector(\.|$)/.test(name)) fail(`tensor "${key}" is a DoRA magnitude vector; DoRA adapters are not supported`);
    if (/\.lora_embedding_[AB](\.|$)/.test(name)) fail(`tensor "${key}" is an embedding LoRA; LoRA on embed_tokens is not supported`);
    const m = /^(.*)\.lora_([AB])\.(.*)$/.exec(name);
    if (m) {
      const [, module, half, param] = m;
      if (param !== 'weight') fail(`tensor "${key}": lora_${half}.${param} is not supported (only lora_A/lora_B weights)`);
      if (!isTargeted(config, module))
        fail(
          `tensor "${key}": module ${module} is not in target_modules ${JSON.stringify(config.targetModules)}` +
            (config.layersToTransform === null ? '' : ` on layers_to_transform ${JSON.stringify(config.layersToTransform)}`),
        );
      const h = halves.get(module) ?? {};
      h[half === 'A' ? 'a' : 'b'] = key;
      halves.set(module, h);
      continue;
    }
    const s = name.replace('.modules_to_save', '');
    const module = s.slice(0, s.lastIndexOf('.'));
    // a saved module's parameters may sit deeper than the module itself (score.0.weight of a Sequential `score`)
    if (!config.modulesToSave.some((mm) => `.${module}.`.includes(`.${mm}.`)))
      fail(`tensor "${key}" is neither a lora_A/lora_B weight nor part of modules_to_save ${JSON.stringify(config.modulesToSave)}`);
    saved.set(s, key);
  }
  const lora = new Map<string, LoraPair>();
  for (const [module, h] of halves) {
    if (!h.a) fail(`module ${module} has lora_B but no lora_A ("${PREFIX}${module}.lora_A.weight" missing)`);
    if (!h.b) fail(`module ${module} has lora_A but no lora_B ("${PREFIX}${module}.lora_B.weight" missing)`);
    const { rank, scale } = loraScale(config, module);
    const as = shapeOf(h.a!);
    const bs = shapeOf(h.b!);
    if (as.length !== 2 || bs.length !== 2) fail(`module ${module}: lora_A ${JSON.stringify(as)} / lora_B ${JSON.stringify(bs)} must be 2-D`);
    if (as[0] !== rank || bs[1] !== rank)
      fail(`module ${module}: lora_A is [${as}] and lora_B is [${bs}], but rank r = ${rank} (from r / rank_pattern) needs lora_A [${rank}, in] and lora_B [out, ${rank}]`);
    lora.set(`${module}.weight`, { module, aKey: h.a!, bKey: h.b!, rank, scale });
  }
  return { lora, saved };
}

/**
 * Checks every adapter tensor against the base checkpoint before anything is written: each LoRA
 * pair and saved module must name a base tensor of a compatible shape. Saved modules the base
 * lacks (a "score" head trained on a causal-LM base) are allowed only when `allowNew` holds them.
 */
export function checkAdapter(adapter: Adapter, base: { names: string[]; shape(name: string): number[] }, allowNew: string[] = [], relabelled?: number): void {
  const names = new Set(base.names);
  const fail = (msg: string): never => {
    throw new AdapterError(`${adapter.weightsFile}: ${msg}`);
  };
  for (const [target, p] of adapter.lora) {
    if (!names.has(target)) fail(`"${p.aKey}" targets ${target}, which matches no base tensor (is the adapter for another model?)`);
    const w = base.shape(target);
    const a = adapter.file.info(p.aKey).shape;
    const b = adapter.file.info(p.bKey).shape;
    if (w.length !== 2 || b[0] !== w[0] || a[1] !== w[1])
      fail(`${target}: base weight is [${w}] but lora_B @ lora_A is [${b[0]}, ${a[1]}] (adapter for a different model size?)`);
  }
  for (const [target, key] of adapter.saved) {
    const a = adapter.file.info(key).shape;
    if (!names.has(target)) {
      if (allowNew.includes(target)) continue;
      fail(`"${key}" (modules_to_save) replaces ${target}, which matches no base tensor`);
    }
    const w = base.shape(target);
    // a relabelled head (ADAPTER_LABELS_FILE / --labels): its last layer has that many outputs
    if (relabelled !== undefined && target === lastHeadTensor(adapter.saved, target) && a[0] === relabelled && a.slice(1).join() === w.slice(1).join()) continue;
    if (w.join(',') !== a.join(','))
      fail(
        `"${key}" (modules_to_save) is [${a}] but base ${target} is [${w}]` +
          (/^score\./.test(target) && a.slice(1).join() === w.slice(1).join() ? ` (a head with ${a[0]} outputs: name them with --labels)` : ' (different num_labels or model size?)'),
      );
  }
  // Adapters are small next to the base: read every tensor once so a NaN / Inf stops the import up front.
  for (const key of adapter.file.tensors.keys()) {
    const d = adapter.file.read(key).data;
    for (let i = 0; i < d.length; i++)
      if (!Number.isFinite(d[i])) fail(`tensor "${key}" holds ${d[i]} at flat index ${i}; a non-finite adapter weight makes every prediction NaN`);
  }
}

/** `target` when it is the weight or bias of the score head's last layer (score.* or the highest score.N.*), else null. */
function lastHeadTensor(saved: Map<string, string>, target: string): string | null {
  const m = /^score\.(?:(\d+)\.)?(weight|bias)$/.exec(target);
  if (!m) return null;
  const layers = [...saved.keys()].map((n) => /^score\.(?:(\d+)\.)?(?:weight|bias)$/.exec(n)).filter((x) => x !== null);
  const last = Math.max(...layers.map((x) => Number(x![1] ?? -1)));
  return Number(m[1] ?? -1) === last ? target : null;
}

/** W + scale * B @ A for one [out, in] weight; B @ A summed in float64 per row, then rounded as PEFT does. Pure. */
export function mergeLora(w: HostTensor, a: HostTensor, b: HostTensor, scale: number, where: string): HostTensor {
  const [out, inn] = w.shape;
  const rank = a.shape[0];
  if (w.shape.length !== 2 || a.shape.length !== 2 || b.shape.length !== 2 || a.shape[1] !== inn || b.shape[0] !== out || b.shape[1] !== rank)
    throw new AdapterError(`${where}: cannot merge lora_B [${b.shape}] @ lora_A [${a.shape}] into a weight of shape [${w.shape}]`);
  const data = new Float32Array(w.data.length);
  const row = new Float64Array(inn);
  for (let o = 0; o < out; o++) {
    row.fill(0);
    for (let k = 0; k < rank; k++) {
      const bk = b.data[o * rank + k];
      if (bk === 0) continue;
      const off = k * inn;
      for (let i = 0; i < inn; i++) row[i] += bk * a.data[off + i];
    }
    const wo = o * inn;
    // PEFT: delta = (B @ A) * scaling in float32, then W += delta: three float32 roundings
    for (let i = 0; i < inn; i++) data[wo + i] = w.data[wo + i] + Math.fround(Math.fround(row[i]) * scale);
  }
  return { shape: [...w.shape], data };
}

/**
 * The merged model as a WeightSource, computed lazily one tensor at a time: LoRA targets become
 * W + s * B @ A, modules_to_save tensors come from the adapter, everything else from `base`.
 * When `base` reads row ranges, so does the merge: each output row of W + s * B @ A needs only that
 * row of W and of B (mergeLora works row by row), so a row range is merged exactly, without the whole
 * tensor. Run checkAdapter first to catch mismatches before a long import.
 */
export function mergedSource(base: WeightSource, adapter: Adapter): WeightSource {
  const where = (name: string) => `${adapter.weightsFile}: ${name}`;
  const get = (name: string): HostTensor => {
    const savedKey = adapter.saved.get(name);
    if (savedKey) return adapter.file.read(savedKey);
    const p = adapter.lora.get(name);
    if (!p) return base(name);
    return mergeLora(base(name), adapter.file.read(p.aKey), adapter.file.read(p.bKey), p.scale, where(name));
  };
  const baseShape = base.shape;
  const shape = baseShape
    ? (name: string): number[] => {
        const savedKey = adapter.saved.get(name);
        return savedKey ? [...adapter.file.info(savedKey).shape] : baseShape(name);
      }
    : undefined;
  const baseRows = base.rows;
  if (!baseRows) return shape ? Object.assign(get, { shape }) : get;
  const rows = (name: string, start: number, count: number): HostTensor => {
    const savedKey = adapter.saved.get(name);
    if (savedKey) return adapter.file.readRows(savedKey, start, count);
    const p = adapter.lora.get(name);
    if (!p) return baseRows(name, start, count);
    return mergeLora(baseRows(name, start, count), adapter.file.read(p.aKey), adapter.file.readRows(p.bKey, start, count), p.scale, where(name));
  };
  return Object.assign(get, shape ? { rows, shape } : { rows });
}
