// LoRA as PEFT defines it, shared by the import merge (src/weights/peft.ts) and the trainer
// (src/train/lora.ts): the decoder's projections (the list "all-linear" expands to, with their
// [in, out] features from the family table), PEFT's adapter key names, its target rule
// (target_modules, layers_to_transform, layers_pattern), and each module's rank and scale
// (lora_alpha / r, or / sqrt(r) with rsLoRA; rank_pattern / alpha_pattern). Pure.
import type { ModelConfig } from '../types';
import { familyOf } from './families';

/**
 * The projection module names (PEFT suffixes) of the Llama-shaped layer every family has today, in layer
 * order: what "all-linear" means where no config is at hand (an adapter's keys before the base is read).
 * With a config, projectionNames reads the family table instead.
 */
export const PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/** The model's projection names (PEFT suffixes) from its family's layer table, in layer order. */
export function projectionNames(c: ModelConfig): string[] {
  return [...new Set(linearModules({ ...c, numLayers: 1 }).map((m) => m.name))];
}

/** target_modules with PEFT's "all-linear" expanded to the projection names (PEFT saves the expansion). */
export function expandTargets(targets: readonly string[], projections: readonly string[]): string[] {
  return targets.includes('all-linear') ? [...projections] : [...targets];
}

/** Every projection of the decoder (HF module names from the family table) with its [in, out] features, in model order. */
export function linearModules(c: ModelConfig): { module: string; name: string; inF: number; outF: number }[] {
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const out = [];
  for (let i = 0; i < c.numLayers; i++) {
    const l = familyOf(c).layer(i);
    const rows: [string, number, number][] = [
      [l.q, H, q],
      [l.k, H, kv],
      [l.v, H, kv],
      [l.o, q, H],
      [l.gate, H, I],
      [l.up, H, I],
      [l.down, I, H],
    ];
    for (const [module, inF, outF] of rows)
      out.push({ module, name: module.slice(module.lastIndexOf('.') + 1), inF, outF });
  }
  return out;
}

/** PEFT's prefix of every adapter key of a sequence classifier (PeftModel -> LoraModel -> the HF model). */
export const PEFT_PREFIX = 'base_model.model.';

/** One LoRA pair: W [out, in] += scale * B [out, rank] @ A [rank, in]. */
export interface LoraPair {
  /** Module name inside the model, e.g. model.layers.0.self_attn.q_proj. */
  module: string;
  /** adapter_model.safetensors keys of A and B. */
  aKey: string;
  bKey: string;
  rank: number;
  scale: number;
  inFeatures: number;
  outFeatures: number;
}

/** The adapter keys PEFT saves for a module's A and B. */
export function loraKeys(module: string): { aKey: string; bKey: string } {
  return { aKey: `${PEFT_PREFIX}${module}.lora_A.weight`, bKey: `${PEFT_PREFIX}${module}.lora_B.weight` };
}

/**
 * An adapter key without PEFT's adapter name (".default") and modules_to_save wrapper, keeping the
 * prefix: base_model.model.score.modules_to_save.default.weight -> base_model.model.score.weight.
 */
export function plainAdapterKey(key: string): string {
  return key.replace(/\.default(?=\.|$)/g, '').replace('.modules_to_save', '');
}

/** The rule part of a LoRA config (PEFT's names in camelCase). */
export interface TargetRule {
  /** A list of module-name suffixes, or a regex string that must match a whole module name (PEFT's rule). */
  targetModules: string[] | string;
  /** Layer indices a list target_modules is limited to (null = every layer). */
  layersToTransform: number[] | number | null;
  /** Names of the layer container whose index layersToTransform means (null = any `<name>.<digits>.`). */
  layersPattern: string[] | string | null;
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
export function isTargeted(cfg: TargetRule, module: string): boolean {
  const t = cfg.targetModules;
  if (t === 'all-linear') return PROJECTIONS.some((m) => module.endsWith(`.${m}`));
  if (typeof t === 'string') return new RegExp(`^(?:${t})$`).test(module);
  if (t.includes(module)) return true;
  if (!t.some((m) => module.endsWith(`.${m}`))) return false;
  const layers = cfg.layersToTransform;
  if (layers === null || (Array.isArray(layers) && layers.length === 0)) return true;
  const i = peftLayerIndex(module, cfg.layersPattern);
  return i !== null && (typeof layers === 'number' ? i === layers : layers.includes(i));
}

/** What sets a module's rank and scale (PEFT's names in camelCase). */
export interface ScaleRule {
  r: number;
  loraAlpha: number;
  useRslora: boolean;
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
}

/** Rank, alpha and merge scale of one module: rank_pattern / alpha_pattern keys match a trailing name (PEFT's get_pattern_key). */
export function loraScale(cfg: ScaleRule, module: string): { rank: number; alpha: number; scale: number } {
  const keys = [...Object.keys(cfg.rankPattern), ...Object.keys(cfg.alphaPattern)];
  const key = keys.find((k) => new RegExp(`(?:^|.*\\.)(?:${k})$`).test(module)) ?? module;
  const rank = cfg.rankPattern[key] ?? cfg.r;
  const alpha = cfg.alphaPattern[key] ?? cfg.loraAlpha;
  return { rank, alpha, scale: cfg.useRslora ? alpha / Math.sqrt(rank) : alpha / rank };
}
