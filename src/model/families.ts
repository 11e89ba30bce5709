// The family table (in the spirit of llama.cpp's per-architecture tensor maps): for each decoder
// family, the HF architectures it covers and the HF module name of every tensor the decoder reads.
// Hyper-parameters that depend on config.json come from the family's parser (src/weights/hfconfig.ts
// PARSERS); the builder (src/model/decoder.ts) reads only ModelConfig and this table.
// Adding a family = one entry here + one parser there.
import type { ModelConfig } from '../types';

/** HF module names (without ".weight" / ".bias") of one decoder layer. */
export interface LayerModules {
  attnNorm: string;
  /** Norm on the attention output before the residual add (Gemma-2), else null. */
  postAttnNorm: string | null;
  mlpNorm: string;
  /** Norm on the MLP output before the residual add (Gemma-2), else null. */
  postMlpNorm: string | null;
  q: string;
  k: string;
  v: string;
  o: string;
  gate: string;
  up: string;
  down: string;
}

export interface Family {
  /** HF class names: the sequence classifier and the causal LM (imported as a label-token judge or with a trained score head). */
  seqCls: string;
  causalLm: string;
  embed: string;
  finalNorm: string;
  /** Untied language-model head (causal LMs); tied models use `embed`. */
  lmHead: string;
  /** Prompt template (src/format/templates.ts) import records when neither --template nor the adapter's training says. */
  defaultTemplate: string;
  layer(i: number): LayerModules;
}

/** Llama-style layer: input_layernorm -> attention -> +res; post_attention_layernorm -> MLP -> +res. */
const llamaLayer = (i: number): LayerModules => {
  const p = `model.layers.${i}`;
  return {
    attnNorm: `${p}.input_layernorm`,
    postAttnNorm: null,
    mlpNorm: `${p}.post_attention_layernorm`,
    postMlpNorm: null,
    q: `${p}.self_attn.q_proj`,
    k: `${p}.self_attn.k_proj`,
    v: `${p}.self_attn.v_proj`,
    o: `${p}.self_attn.o_proj`,
    gate: `${p}.mlp.gate_proj`,
    up: `${p}.mlp.up_proj`,
    down: `${p}.mlp.down_proj`,
  };
};

/** Gemma-2: the same projections, but post_attention_layernorm normalises the attention output and two more norms wrap the MLP. */
const gemma2Layer = (i: number): LayerModules => {
  const p = `model.layers.${i}`;
  return {
    ...llamaLayer(i),
    postAttnNorm: `${p}.post_attention_layernorm`,
    mlpNorm: `${p}.pre_feedforward_layernorm`,
    postMlpNorm: `${p}.post_feedforward_layernorm`,
  };
};

const common = { embed: 'model.embed_tokens', finalNorm: 'model.norm', lmHead: 'lm_head' };

export const FAMILIES: Record<string, Family> = {
  gemma: {
    seqCls: 'GemmaForSequenceClassification',
    causalLm: 'GemmaForCausalLM',
    ...common,
    defaultTemplate: 'gemma-chat',
    layer: llamaLayer,
  },
  gemma2: {
    seqCls: 'Gemma2ForSequenceClassification',
    causalLm: 'Gemma2ForCausalLM',
    ...common,
    defaultTemplate: 'gemma-chat',
    layer: gemma2Layer,
  },
  llama: {
    seqCls: 'LlamaForSequenceClassification',
    causalLm: 'LlamaForCausalLM',
    ...common,
    defaultTemplate: 'llama3-chat',
    layer: llamaLayer,
  },
  qwen2: {
    seqCls: 'Qwen2ForSequenceClassification',
    causalLm: 'Qwen2ForCausalLM',
    ...common,
    defaultTemplate: 'chatml-chat',
    layer: llamaLayer,
  },
  mistral: {
    seqCls: 'MistralForSequenceClassification',
    causalLm: 'MistralForCausalLM',
    ...common,
    defaultTemplate: 'mistral-chat',
    layer: llamaLayer,
  },
};

export class FamilyError extends Error {
  override name = 'FamilyError';
}

export function familyOf(c: Pick<ModelConfig, 'family'>): Family {
  const f = FAMILIES[c.family];
  if (!f) throw new FamilyError(`unknown model family "${c.family}"; known: ${Object.keys(FAMILIES).join(', ')}`);
  return f;
}

/** The family and role of an HF architecture name, or null. */
export function familyByArchitecture(arch: string): { family: string; causalLm: boolean } | null {
  for (const [family, f] of Object.entries(FAMILIES)) {
    if (f.seqCls === arch) return { family, causalLm: false };
    if (f.causalLm === arch) return { family, causalLm: true };
  }
  return null;
}

export const SUPPORTED_ARCHITECTURES: string[] = Object.values(FAMILIES).flatMap((f) => [f.seqCls, f.causalLm]);

/** Sliding window of layer i, or null when the layer attends globally. */
export function layerWindow(c: ModelConfig, i: number): number | null {
  if (c.slidingWindow === null) return null;
  return c.slidingLayers === 'all' || i % 2 === 0 ? c.slidingWindow : null;
}

/** Every HF tensor name the decoder reads for this config: the import refuses checkpoint tensors outside this list. */
export function requiredNames(c: ModelConfig): string[] {
  const f = familyOf(c);
  const names = [`${f.embed}.weight`];
  for (let i = 0; i < c.numLayers; i++) {
    const l = f.layer(i);
    for (const m of [l.attnNorm, l.postAttnNorm, l.mlpNorm, l.postMlpNorm, l.q, l.k, l.v, l.o, l.gate, l.up, l.down])
      if (m) names.push(`${m}.weight`);
    if (c.qkvBias) names.push(`${l.q}.bias`, `${l.k}.bias`, `${l.v}.bias`);
  }
  names.push(`${f.finalNorm}.weight`);
  if (c.head.kind === 'classifier') for (const h of c.head.layers) names.push(h.weight, ...(h.bias ? [h.bias] : []));
  else if (c.head.weight !== `${f.embed}.weight`) names.push(c.head.weight);
  return names;
}
