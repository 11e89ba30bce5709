// PEFT adapter_config.json -> LoraConfig. Options PEFT supports but the merge does not reproduce are
// errors naming the key and the way out: a silently wrong model is worse than none.
import type { ScaleRule, TargetRule } from '../model/lora';

export class AdapterError extends Error {
  override name = 'AdapterError';
}

/** adapter_config.json as the merge reads it; the target and scale rules are PEFT's (src/model/lora.ts). */
export interface LoraConfig extends TargetRule, ScaleRule {
  modulesToSave: string[];
  fanInFanOut: boolean;
  baseModelNameOrPath: string | null;
  /** Things PEFT itself would warn about (e.g. fan_in_fan_out on nn.Linear). */
  warnings: string[];
  /** adapter_config.json as read, for provenance. */
  raw: Record<string, unknown>;
}

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
  if (bias !== 'none') fail(`bias = ${JSON.stringify(bias)}: trained biases are not supported (the merge adds no bias terms); use bias="none"`);
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
      `${file}: fan_in_fan_out is true but the decoder's projections are nn.Linear; PEFT resets it to false for nn.Linear, so the merge does too`,
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
