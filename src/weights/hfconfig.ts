// Hugging Face config.json -> ModelConfig (the decoder spec). One parser per family (PARSERS), each
// owning the conventions of its HF modeling file (norm offset, embedding scale, attention scale,
// soft-caps, which layers slide, rotary variant, biases); keys a family's HF code reads but the
// decoder does not implement are refused, never ignored. The head comes from the caller (import or
// train: it depends on checkpoint tensors and flags, src/model/heads.ts); without one a sequence
// classifier gets HF's `score` linear.
import { familyByArchitecture, FAMILIES, SUPPORTED_ARCHITECTURES } from '../model/families';
import type { Activation, HeadSpec, ModelConfig, RopeSpec } from '../types';

export class HfConfigError extends Error {
  override name = 'HfConfigError';
}

type Json = Record<string, unknown>;

/** HF activation names -> the decoder's. */
const ACTIVATIONS: Record<string, Activation> = {
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_tanh: 'gelu_tanh',
  gelu_new: 'gelu_tanh',
  gelu_fast: 'gelu_tanh',
  gelu: 'gelu',
  silu: 'silu',
  swish: 'silu',
  relu: 'relu',
  tanh: 'tanh',
};

/** Typed access to config.json keys; every failure names the file and the key. */
export class ConfigReader {
  constructor(
    readonly json: Json,
    readonly file: string,
    readonly arch: string,
  ) {}
  fail(msg: string): never {
    throw new HfConfigError(`${this.file}: ${msg}`);
  }
  has(key: string): boolean {
    return key in this.json && this.json[key] !== null && this.json[key] !== undefined;
  }
  num(key: string, o: { int?: boolean; positive?: boolean; default?: number } = {}): number {
    if (!this.has(key)) {
      if (o.default !== undefined) return o.default;
      this.fail(`missing key "${key}" for ${this.arch}`);
    }
    const v = this.json[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) return this.fail(`key "${key}" is ${JSON.stringify(v)}, expected a number`);
    if (o.int && !Number.isInteger(v)) this.fail(`key "${key}" is ${v}, expected an integer`);
    if (o.positive && v <= 0) this.fail(`key "${key}" is ${v}, expected > 0`);
    return v;
  }
  /** A key that must be present but may be null (HF writes null to switch a feature off). */
  optNum(key: string, o: { int?: boolean } = {}): number | null {
    if (!(key in this.json)) this.fail(`missing key "${key}" for ${this.arch} (write null to disable it)`);
    return this.json[key] === null ? null : this.num(key, { ...o, positive: true });
  }
  activation(key: string, fallback?: string): Activation {
    const v = this.json[key] ?? fallback;
    const a = typeof v === 'string' ? ACTIVATIONS[v] : undefined;
    if (!a) this.fail(`${key} ${JSON.stringify(v)} is not supported; one of ${Object.keys(ACTIVATIONS).join(', ')}`);
    return a!;
  }
  /** Refuses a key whose value switches on something the decoder does not implement. */
  refuse(key: string, isOff: (v: unknown) => boolean, why: string): void {
    if (key in this.json && !isOff(this.json[key])) this.fail(`${key} = ${JSON.stringify(this.json[key])}: ${why}`);
  }
}

const offOrFalse = (v: unknown) => v === null || v === false || v === undefined;

/** What the family parser decides; the shared part (sizes, eps, positions, labels, head) is parsed once for all. */
type FamilyParams = Pick<
  ModelConfig,
  'headDim' | 'normPlusOne' | 'embedScale' | 'activation' | 'qkvBias' | 'attnScale' | 'attnSoftcap' | 'slidingWindow' | 'slidingLayers' | 'rope'
> & {
  /** Final logit soft-cap of the LM head (Gemma-2), used by label-token judges only. */
  finalSoftcap: number | null;
  /** lm_head shares the embedding matrix (tie_word_embeddings, whose default differs by family). */
  tied: boolean;
};

const tiedOr = (r: ConfigReader, dflt: boolean) => {
  const v = r.json.tie_word_embeddings;
  return typeof v === 'boolean' ? v : dflt;
};

const plainRope = (r: ConfigReader): RopeSpec => {
  r.refuse('rope_scaling', (v) => v === null, 'rotary scaling is not supported for this family');
  return { theta: r.num('rope_theta', { positive: true }), scaling: null };
};

/** Llama-3.x rope_scaling {rope_type: "llama3", ...}; other scalings (linear, dynamic, yarn) are refused. */
const llamaRope = (r: ConfigReader): RopeSpec => {
  const theta = r.num('rope_theta', { positive: true });
  const s = r.json.rope_scaling as Json | null | undefined;
  if (s === null || s === undefined) return { theta, scaling: null };
  const type = s.rope_type ?? s.type;
  if (type !== 'llama3') r.fail(`rope_scaling ${JSON.stringify(s)}: only rope_type "llama3" is supported`);
  const n = (k: string) => {
    const v = s[k];
    if (typeof v !== 'number' || !(v > 0)) r.fail(`rope_scaling.${k} is ${JSON.stringify(v)}, expected a positive number`);
    return v as number;
  };
  const scaling = { type: 'llama3' as const, factor: n('factor'), lowFreqFactor: n('low_freq_factor'), highFreqFactor: n('high_freq_factor'), originalMaxPositions: n('original_max_position_embeddings') };
  if (scaling.highFreqFactor <= scaling.lowFreqFactor) r.fail('rope_scaling.high_freq_factor must exceed low_freq_factor');
  return { theta, scaling };
};

/** Llama-style configs may leave head_dim out (= hidden_size / heads); Gemma's default is not that, so the Gemma parsers require it. */
const llamaHeadDim = (r: ConfigReader) => r.num('head_dim', { int: true, positive: true, default: r.num('hidden_size') / r.num('num_attention_heads') });
const gemmaHeadDim = (r: ConfigReader) => r.num('head_dim', { int: true, positive: true });

/** Llama-style families: RMSNorm by w, no embedding scale, head_dim ** -0.5. */
const llamaStyle = (r: ConfigReader, extra: Partial<FamilyParams>): FamilyParams => ({
  headDim: llamaHeadDim(r),
  normPlusOne: false,
  embedScale: false,
  activation: r.activation('hidden_act'),
  qkvBias: false,
  attnScale: llamaHeadDim(r) ** -0.5,
  attnSoftcap: null,
  slidingWindow: null,
  slidingLayers: 'all',
  finalSoftcap: null,
  tied: tiedOr(r, false),
  ...extra,
  rope: extra.rope ?? plainRope(r),
});

/** One parser per family (key = FAMILIES key). */
export const PARSERS: Record<keyof typeof FAMILIES, (r: ConfigReader) => FamilyParams> = {
  gemma: (r) => {
    r.refuse('attention_bias', offOrFalse, 'Gemma projections with biases are not supported');
    return {
      headDim: gemmaHeadDim(r),
      normPlusOne: true,
      embedScale: true,
      // HF Gemma reads hidden_activation (gelu_pytorch_tanh when null); the legacy hidden_act is ignored.
      activation: r.activation('hidden_activation', 'gelu_pytorch_tanh'),
      qkvBias: false,
      attnScale: gemmaHeadDim(r) ** -0.5,
      attnSoftcap: null,
      slidingWindow: null,
      slidingLayers: 'all',
      rope: plainRope(r),
      finalSoftcap: null,
      tied: tiedOr(r, true),
    };
  },
  gemma2: (r) => {
    r.refuse('attention_bias', offOrFalse, 'Gemma-2 projections with biases are not supported');
    const window = r.optNum('sliding_window', { int: true });
    return {
      headDim: gemmaHeadDim(r),
      normPlusOne: true,
      embedScale: true,
      activation: r.activation('hidden_activation'),
      qkvBias: false,
      attnScale: r.num('query_pre_attn_scalar', { positive: true }) ** -0.5,
      attnSoftcap: r.optNum('attn_logit_softcapping'),
      slidingWindow: window,
      slidingLayers: 'even', // HF marks EVEN layer indices as sliding (one public exporter has it backwards)
      rope: plainRope(r),
      // the LM head's soft-cap; Gemma2ForSequenceClassification's score head ignores it
      finalSoftcap: r.has('final_logit_softcapping') ? r.num('final_logit_softcapping', { positive: true }) : null,
      tied: tiedOr(r, true),
    };
  },
  llama: (r) => {
    r.refuse('attention_bias', offOrFalse, 'Llama attention biases (q/k/v/o) are not supported');
    r.refuse('mlp_bias', offOrFalse, 'Llama MLP biases are not supported');
    return llamaStyle(r, { rope: llamaRope(r) });
  },
  qwen2: (r) => {
    // Qwen2's eager / sdpa attention ignores the window (transformers 4.45: only flash-attention-2 applies it).
    r.refuse('use_sliding_window', offOrFalse, 'Qwen2 sliding-window attention (flash-attention only in HF) is not supported');
    return llamaStyle(r, { qkvBias: true });
  },
  qwen3: (r) => {
    // modeling_qwen3.py: head_dim from the config (Qwen3 sets it; not hidden/heads), q_norm / k_norm per head
    // (family table), attention_bias off in every released checkpoint, window only with use_sliding_window.
    r.refuse('attention_bias', offOrFalse, 'Qwen3 attention biases (q/k/v/o) are not supported');
    r.refuse('use_sliding_window', offOrFalse, 'Qwen3 sliding-window attention is not supported');
    return llamaStyle(r, {});
  },
  phi3: (r) => {
    // modeling_phi3.py: fused qkv_proj / gate_up_proj (family table), rotary over partial_rotary_factor * head_dim.
    r.refuse('partial_rotary_factor', (v) => v === undefined || v === null || v === 1 || v === 1.0, 'partial rotary embeddings are not supported (Phi-3 / Phi-4 rotate the full head_dim)');
    r.refuse('rope_scaling', (v) => v === null, 'Phi-3 longrope / su rotary scaling is not supported (the 128k-context variants); use a 4k-context checkpoint');
    // 4.45.2's eager attention never applies sliding_window (Phi-3-mini sets 2047, Phi-4 null): ignored as HF does.
    return llamaStyle(r, {});
  },
  mistral: (r) => {
    const window = r.has('sliding_window') ? r.num('sliding_window', { int: true, positive: true }) : null;
    return llamaStyle(r, { slidingWindow: window, slidingLayers: 'all' });
  },
};

export interface HfConfigOptions {
  /** The head, when the importer knows it (multi-layer score.N.*, score bias, label tokens, a causal-LM base's trained score). */
  head?: HeadSpec;
}

/**
 * Parses config.json (already JSON.parse'd) into the decoder spec. `file` names the file in errors.
 * A *ForCausalLM config needs `opts.head` (label tokens or a trained score head).
 */
export function parseHfConfig(json: unknown, file: string, opts: HfConfigOptions = {}): ModelConfig {
  const fail = (msg: string): never => {
    throw new HfConfigError(`${file}: ${msg}`);
  };
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return fail('config.json is not a JSON object');
  const c = json as Json;
  const archs = c.architectures;
  const supported = `supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`;
  if (!Array.isArray(archs) || archs.length !== 1 || typeof archs[0] !== 'string') return fail(`key "architectures" is ${JSON.stringify(archs)}; expected one of: ${supported}`);
  const arch = archs[0] as string;
  const fam = familyByArchitecture(arch);
  if (!fam) return fail(`unsupported architecture ${arch}; ${supported}`);
  const r = new ConfigReader(c, file, arch);
  const p = PARSERS[fam.family](r);

  const hiddenSize = r.num('hidden_size', { int: true, positive: true });
  const numHeads = r.num('num_attention_heads', { int: true, positive: true });
  const numKvHeads = r.num('num_key_value_heads', { int: true, positive: true, default: numHeads });
  const headDim = p.headDim;
  if (!Number.isInteger(headDim)) fail(`head_dim ${headDim} (hidden_size / num_attention_heads) is not an integer`);
  if (numHeads % numKvHeads !== 0) fail(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  if (headDim % 2 !== 0) fail(`head_dim ${headDim} must be even for rotary embeddings`);
  const vocabSize = r.num('vocab_size', { int: true, positive: true });

  let head = opts.head;
  if (!head) {
    if (fam.causalLm)
      fail(
        `${arch} is a causal LM: import it as a judge with --label-tokens (e.g. --label-tokens A,B,tie), ` +
          'or with an adapter whose modules_to_save holds a trained "score" head',
      );
    const n = parseNumLabels(c, fail);
    head = { kind: 'classifier', layers: [{ weight: 'score.weight', bias: null, inFeatures: hiddenSize, outFeatures: n }], activation: null };
  }
  let numLabels: number;
  if (head.kind === 'classifier') {
    numLabels = head.layers[head.layers.length - 1].outFeatures;
    if (head.layers[0].inFeatures !== hiddenSize) fail(`the score head takes ${head.layers[0].inFeatures} features but hidden_size is ${hiddenSize}`);
    if (!fam.causalLm && (c.id2label || typeof c.num_labels === 'number')) {
      const n = parseNumLabels(c, fail);
      if (n !== numLabels) fail(`id2label / num_labels say ${n} outputs but the score head has ${numLabels}`);
    }
  } else {
    if (!fam.causalLm) fail(`--label-tokens needs a causal LM (${FAMILIES[fam.family].causalLm}); ${arch} has a classification head`);
    if (head.tokenIds.length !== 2 && head.tokenIds.length !== 3) fail(`${head.tokenIds.length} label tokens; a judge takes 2 (A, B) or 3 (A, B, tie)`);
    numLabels = head.tokenIds.length === 2 ? 1 : 3; // A / B: one score, logit(A) - logit(B)
    for (const t of head.tokenIds) if (!(Number.isInteger(t) && t >= 0 && t < vocabSize)) fail(`label token id ${t} is outside the vocabulary (vocab_size ${vocabSize})`);
    const f = FAMILIES[fam.family];
    head = { ...head, weight: p.tied ? `${f.embed}.weight` : `${f.lmHead}.weight`, finalSoftcap: p.finalSoftcap };
  }
  if (numLabels < 1 || numLabels > 3) fail(`num_labels is ${numLabels}; arenakit supports 3 (winner A / B / tie), 2 (A / B, the WSDM task) or 1 (single score)`);
  if (!fam.causalLm && !r.has('pad_token_id')) fail('missing key "pad_token_id": the classifier pools the token before the first pad_token_id');

  const { finalSoftcap: _cap, tied: _tied, ...params } = p;
  return {
    family: fam.family,
    architecture: arch,
    vocabSize,
    hiddenSize,
    intermediateSize: r.num('intermediate_size', { int: true, positive: true }),
    numLayers: r.num('num_hidden_layers', { int: true, positive: true }),
    numHeads,
    numKvHeads,
    rmsNormEps: r.num('rms_norm_eps', { positive: true }),
    ...params,
    numLabels,
    head,
    padTokenId: r.num('pad_token_id', { int: true, default: 0 }),
    maxPositions: r.num('max_position_embeddings', { int: true, positive: true }),
  };
}

/** num_labels as HF derives it: from id2label when present, else the num_labels key. */
function parseNumLabels(c: Json, fail: (msg: string) => never): number {
  let n: number | undefined;
  if (c.id2label && typeof c.id2label === 'object') n = Object.keys(c.id2label).length;
  else if (typeof c.num_labels === 'number') n = c.num_labels;
  if (n === undefined) fail('missing key "id2label" (or "num_labels"): the number of classifier outputs is unknown');
  if (typeof c.num_labels === 'number' && c.num_labels !== n) fail(`num_labels ${c.num_labels} disagrees with id2label (${n} entries)`);
  return n as number;
}
