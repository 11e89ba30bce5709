// Writes a trained adapter as the folder PEFT's save_pretrained writes (adapter_config.json +
// adapter_model.safetensors with PEFT's key names), so `trainer import --adapter` merges it and PEFT
// loads it: the config has exactly the keys peft 0.13.2 writes for a SEQ_CLS LoraConfig (every
// dataclass field but runtime_config; PeftConfig.from_pretrained passes them all to LoraConfig(**kw),
// so an unknown key is a TypeError there). tests/train-peft-format.test.ts compares both files with
// adapters peft 0.13.2 wrote. PiSSA is saved converted, like save_pretrained(
// path_initial_model_for_weight_conversion=...): A' = [A; A0], B' = [B, -B0], r and lora_alpha
// doubled (alpha * sqrt(2) with rsLoRA), rank_pattern / alpha_pattern likewise, init_lora_weights
// true, so it applies to the ORIGINAL base: W + s B'A' = W_res + s B A.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labelKeys } from '../model/heads';
import { expandTargets, projectionNames } from '../model/lora';
import { ADAPTER_CONFIG_FILE, ADAPTER_LABELS_FILE, ADAPTER_WEIGHTS_FILE } from '../weights/peft';
import { writeSafetensors } from '../weights/safetensors-write';
import type { ModelConfig } from '../types';
import type { Params, TrainableSpec } from './lora';

export interface AdapterOutput {
  spec: TrainableSpec;
  params: Params;
  config: ModelConfig;
  /** PiSSA starting A/B values (the conversion needs them); null for other inits. */
  pissaStart: Params | null;
  baseModelNameOrPath: string;
  /** The head's outputs in logit order as trained (written to ADAPTER_LABELS_FILE for import). */
  labels: string[];
}

export function writeAdapter(dir: string, o: AdapterOutput): void {
  mkdirSync(dir, { recursive: true });
  const s = o.spec.settings;
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const m of o.spec.lora.values()) {
    const A = o.params.get(m.aKey)!;
    const B = o.params.get(m.bKey)!;
    if (!o.pissaStart) {
      tensors.set(m.aKey, { shape: [m.rank, m.inFeatures], data: A });
      tensors.set(m.bKey, { shape: [m.outFeatures, m.rank], data: B });
      continue;
    }
    const A0 = o.pissaStart.get(m.aKey)!;
    const B0 = o.pissaStart.get(m.bKey)!;
    const r = m.rank;
    const a2 = new Float32Array(2 * r * m.inFeatures);
    a2.set(A, 0);
    a2.set(A0, r * m.inFeatures);
    const b2 = new Float32Array(m.outFeatures * 2 * r);
    for (let i = 0; i < m.outFeatures; i++)
      for (let k = 0; k < r; k++) {
        b2[i * 2 * r + k] = B[i * r + k];
        b2[i * 2 * r + r + k] = -B0[i * r + k];
      }
    tensors.set(m.aKey, { shape: [2 * r, m.inFeatures], data: a2 });
    tensors.set(m.bKey, { shape: [m.outFeatures, 2 * r], data: b2 });
  }
  for (const t of o.spec.head) tensors.set(t.key, { shape: t.shape, data: o.params.get(t.key)! });
  writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: 'pt' });

  const doubled = o.pissaStart !== null;
  const twiceAlpha = (a: number) => (s.use_rslora ? a * Math.SQRT2 : a * 2);
  const config = {
    alpha_pattern: Object.fromEntries(
      Object.entries(s.alpha_pattern ?? {}).map(([k, a]) => [k, doubled ? twiceAlpha(a) : a]),
    ),
    auto_mapping: null,
    base_model_name_or_path: o.baseModelNameOrPath,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: s.layers_to_transform,
    loftq_config: {},
    lora_alpha: doubled ? twiceAlpha(s.lora_alpha) : s.lora_alpha,
    lora_dropout: s.lora_dropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    // what PeftModelForSequenceClassification makes of modules_to_save=None (it always trains the head);
    // a frozen head saves none: PEFT's copy then stays the base head, as here
    modules_to_save: o.spec.head.length ? ['classifier', 'score'] : null,
    peft_type: 'LORA',
    r: doubled ? s.r * 2 : s.r,
    rank_pattern: Object.fromEntries(Object.entries(s.rank_pattern ?? {}).map(([k, r]) => [k, doubled ? r * 2 : r])),
    revision: null,
    // PEFT expands all-linear to the module names before saving (and refuses it with layers_to_transform).
    target_modules: expandTargets(s.target_modules, projectionNames(o.config)),
    task_type: 'SEQ_CLS',
    use_dora: false,
    use_rslora: s.use_rslora,
  };
  writeFileSync(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
  // What each output was trained to mean: import reads it before the base's id2label (a relabelled
  // head has another number of outputs than config.json says).
  writeFileSync(
    join(dir, ADAPTER_LABELS_FILE),
    JSON.stringify({ id2label: labelKeys(o.labels).id2label }, null, 2) + '\n',
  );
}
