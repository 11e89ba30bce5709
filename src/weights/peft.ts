// PEFT LoRA adapters: the adapter folder (adapter_config.json via peft-config.ts, adapter_model.safetensors),
// key mapping onto the base's tensors, checks before a long import, and the lazy merge W + s * B @ A (plus
// modules_to_save replacements) as a WeightSource. PEFT's target and scale rules live in src/model/lora.ts.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isTargeted, loraScale, PEFT_PREFIX, plainAdapterKey, type LoraPair } from '../model/lora';
import type { HostTensor, WeightSource } from '../types';
import { AdapterError, parseAdapterConfig, type LoraConfig } from './peft-config';
import { openSafetensors, type SafetensorsFile } from './safetensors';

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

/** The two files PEFT's save_pretrained writes for an adapter. */
export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

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
  const configFile = join(dir, ADAPTER_CONFIG_FILE);
  const weightsFile = join(dir, ADAPTER_WEIGHTS_FILE);
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
    if (!key.startsWith(PEFT_PREFIX)) fail(`tensor "${key}" does not start with "${PEFT_PREFIX}" (not a PEFT adapter for a sequence classifier?)`);
    const name = plainAdapterKey(key).slice(PEFT_PREFIX.length);
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
    const module = name.slice(0, name.lastIndexOf('.'));
    // a saved module's parameters may sit deeper than the module itself (score.0.weight of a Sequential `score`)
    if (!config.modulesToSave.some((mm) => `.${module}.`.includes(`.${mm}.`)))
      fail(`tensor "${key}" is neither a lora_A/lora_B weight nor part of modules_to_save ${JSON.stringify(config.modulesToSave)}`);
    saved.set(name, key);
  }
  const lora = new Map<string, LoraPair>();
  for (const [module, h] of halves) {
    if (!h.a) fail(`module ${module} has lora_B but no lora_A ("${PEFT_PREFIX}${module}.lora_A.weight" missing)`);
    if (!h.b) fail(`module ${module} has lora_A but no lora_B ("${PEFT_PREFIX}${module}.lora_B.weight" missing)`);
    const { rank, scale } = loraScale(config, module);
    const as = shapeOf(h.a!);
    const bs = shapeOf(h.b!);
    if (as.length !== 2 || bs.length !== 2) fail(`module ${module}: lora_A ${JSON.stringify(as)} / lora_B ${JSON.stringify(bs)} must be 2-D`);
    if (as[0] !== rank || bs[1] !== rank)
      fail(`module ${module}: lora_A is [${as}] and lora_B is [${bs}], but rank r = ${rank} (from r / rank_pattern) needs lora_A [${rank}, in] and lora_B [out, ${rank}]`);
    lora.set(`${module}.weight`, { module, aKey: h.a!, bKey: h.b!, rank, scale, inFeatures: as[1], outFeatures: bs[0] });
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
function mergeLora(w: HostTensor, a: HostTensor, b: HostTensor, scale: number, where: string): HostTensor {
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
