// The family table (in the spirit of llama.cpp's per-architecture tensor maps): for each decoder
// family, the HF architectures it covers and the HF module name of every tensor the decoder reads.
// Hyper-parameters that depend on config.json come from the family's parser (src/weights/hfconfig.ts
// PARSERS); the builder (src/model/decoder.ts) reads only ModelConfig and this table.
// Adding a family = one entry here + one parser there.
import type { HostTensor, ModelConfig, WeightSource } from '../types';

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
  /** Per-head RMSNorm (over head_dim) of the q / k projection outputs before rotary (Qwen3), else null. */
  qNorm: string | null;
  kNorm: string | null;
  /**
   * Checkpoint modules that hold several of the projections above stacked by output rows (Phi-3's
   * qkv_proj = rows q, k, v; gate_up_proj = gate then up). The decoder reads the parts by their names
   * above; `fusedSource` cuts them out of the fused tensor, and the import / LoRA merge see only the fused
   * module.
   */
  fused: FusedModule[];
}

/** One checkpoint tensor stacking several projections along its output rows, in this order. */
export interface FusedModule {
  module: string;
  parts: string[];
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
    qNorm: null,
    kNorm: null,
    fused: [],
  };
};

/** Qwen3: the Llama layer plus q_norm / k_norm on each head before rotary. */
const qwen3Layer = (i: number): LayerModules => {
  const p = `model.layers.${i}`;
  return { ...llamaLayer(i), qNorm: `${p}.self_attn.q_norm`, kNorm: `${p}.self_attn.k_norm` };
};

/** Phi-3 / Phi-4: the Llama layer with q/k/v in one qkv_proj and gate/up in one gate_up_proj. */
const phi3Layer = (i: number): LayerModules => {
  const p = `model.layers.${i}`;
  const l = llamaLayer(i);
  return {
    ...l,
    fused: [
      { module: `${p}.self_attn.qkv_proj`, parts: [l.q, l.k, l.v] },
      { module: `${p}.mlp.gate_up_proj`, parts: [l.gate, l.up] },
    ],
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
  qwen3: {
    seqCls: 'Qwen3ForSequenceClassification',
    causalLm: 'Qwen3ForCausalLM',
    ...common,
    defaultTemplate: 'chatml-chat',
    layer: qwen3Layer,
  },
  phi3: {
    seqCls: 'Phi3ForSequenceClassification',
    causalLm: 'Phi3ForCausalLM',
    ...common,
    defaultTemplate: 'phi4-chat',
    layer: phi3Layer,
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
    const inFused = new Set(l.fused.flatMap((u) => u.parts));
    const projections = [l.q, l.k, l.v, l.o, l.gate, l.up, l.down].filter((m) => !inFused.has(m));
    for (const m of [
      l.attnNorm,
      l.postAttnNorm,
      l.mlpNorm,
      l.postMlpNorm,
      l.qNorm,
      l.kNorm,
      ...projections,
      ...l.fused.map((u) => u.module),
    ])
      if (m) names.push(`${m}.weight`);
    if (c.qkvBias) names.push(`${l.q}.bias`, `${l.k}.bias`, `${l.v}.bias`);
  }
  names.push(`${f.finalNorm}.weight`);
  if (c.head.kind === 'classifier') for (const h of c.head.layers) names.push(h.weight, ...(h.bias ? [h.bias] : []));
  else if (c.head.weight !== `${f.embed}.weight`) names.push(c.head.weight);
  return names;
}

/**
 * The source with each fused module's parts readable by their own names (rows cut from the fused
 * tensor, sizes from the layer's projection widths); every other name passes through. Biases of fused
 * modules are not supported (no family has them).
 */
export function fusedSource(c: ModelConfig, src: WeightSource): WeightSource {
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const parts = new Map<string, { module: string; start: number; rows: number }>();
  for (let i = 0; i < c.numLayers; i++) {
    const l = familyOf(c).layer(i);
    const rowsOf = new Map([
      [l.q, q],
      [l.k, kv],
      [l.v, kv],
      [l.o, c.hiddenSize],
      [l.gate, c.intermediateSize],
      [l.up, c.intermediateSize],
      [l.down, c.hiddenSize],
    ]);
    for (const u of l.fused) {
      let start = 0;
      for (const p of u.parts) {
        const rows = rowsOf.get(p)!;
        parts.set(`${p}.weight`, { module: `${u.module}.weight`, start, rows });
        start += rows;
      }
    }
  }
  if (parts.size === 0) return src;
  const read: WeightSource = (name) => {
    const p = parts.get(name);
    if (!p) return src(name);
    const t = src(p.module);
    const total = [...parts.values()].filter((o) => o.module === p.module).reduce((a, o) => a + o.rows, 0);
    if (t.shape.length !== 2 || t.shape[0] !== total)
      throw new FamilyError(
        `fused tensor "${p.module}" has shape [${t.shape}], expected [${total}, in] (${c.architecture}: the stacked rows of its parts)`,
      );
    const K = t.shape[1];
    return { shape: [p.rows, K], data: t.data.slice(p.start * K, (p.start + p.rows) * K) };
  };
  if (src.shape) read.shape = (n) => (parts.has(n) ? read(n).shape : src.shape!(n));
  if (src.rows) read.rows = (n, s, k) => (parts.has(n) ? sliceRows(read(n), s, k) : src.rows!(n, s, k));
  return read;
}

function sliceRows(t: HostTensor, start: number, count: number): HostTensor {
  const K = t.data.length / t.shape[0];
  return { shape: [count, ...t.shape.slice(1)], data: t.data.slice(start * K, (start + count) * K) };
}
