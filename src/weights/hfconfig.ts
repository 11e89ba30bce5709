// Hugging Face config.json -> ModelConfig for Gemma / Gemma-2 sequence classifiers. Owns every
// convention that differs between the two generations (attention scale, soft-capping, sliding
// window, sandwich norms) so the graph builder never reads HF keys itself.
import type { ModelConfig } from '../types';

export class HfConfigError extends Error {
  override name = 'HfConfigError';
}

export const SUPPORTED_ARCHITECTURES = ['Gemma2ForSequenceClassification', 'GemmaForSequenceClassification'] as const;

/** Activations HF maps to the tanh-approximated GELU our graph uses. */
const TANH_GELU = new Set(['gelu_pytorch_tanh', 'gelu_tanh', 'gelu_new', 'gelu_fast']);

type Json = Record<string, unknown>;

/** Causal-LM bases (the usual Kaggle setup: gemma-2-9b-it + a PEFT adapter whose modules_to_save holds the score head). */
export const CAUSAL_LM_ARCHITECTURES: Record<string, (typeof SUPPORTED_ARCHITECTURES)[number]> = {
  Gemma2ForCausalLM: 'Gemma2ForSequenceClassification',
  GemmaForCausalLM: 'GemmaForSequenceClassification',
};

export interface HfConfigOptions {
  /** Accept a *ForCausalLM config as the matching classifier with this many labels (the head comes from elsewhere). */
  causalLmNumLabels?: number;
}

/**
 * Parses config.json (already JSON.parse'd) of a Gemma-2 / Gemma sequence classifier.
 * `file` is only used in error messages.
 */
export function parseHfConfig(json: unknown, file: string, opts: HfConfigOptions = {}): ModelConfig {
  const fail = (msg: string): never => {
    throw new HfConfigError(`${file}: ${msg}`);
  };
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return fail('config.json is not a JSON object');
  const c = json as Json;

  const archs = c.architectures;
  if (!Array.isArray(archs) || archs.length === 0) fail('missing key "architectures" (expected ["Gemma2ForSequenceClassification"] or ["GemmaForSequenceClassification"])');
  let arch = (archs as unknown[])[0];
  const causal = typeof arch === 'string' && arch in CAUSAL_LM_ARCHITECTURES && opts.causalLmNumLabels !== undefined;
  if (causal) arch = CAUSAL_LM_ARCHITECTURES[arch as string];
  if ((archs as unknown[]).length !== 1 || !SUPPORTED_ARCHITECTURES.includes(arch as (typeof SUPPORTED_ARCHITECTURES)[number]))
    fail(
      `unsupported architecture ${JSON.stringify(archs)}; arenakit imports ${SUPPORTED_ARCHITECTURES.join(' and ')} ` +
        '(a *ForCausalLM base is accepted together with an adapter whose modules_to_save holds the "score" head)',
    );
  const gemma2 = arch === 'Gemma2ForSequenceClassification';

  const num = (key: string, opts: { int?: boolean; positive?: boolean } = {}): number => {
    if (!(key in c)) fail(`missing key "${key}" for ${arch}`);
    const v = c[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) return fail(`key "${key}" is ${JSON.stringify(v)}, expected a number`);
    if (opts.int && !Number.isInteger(v)) fail(`key "${key}" is ${v}, expected an integer`);
    if (opts.positive && v <= 0) fail(`key "${key}" is ${v}, expected > 0`);
    return v;
  };
  /** A key that must be present but may be null (HF writes null to switch a feature off). */
  const optNum = (key: string): number | null => {
    if (!(key in c)) fail(`missing key "${key}" for ${arch} (write null to disable it)`);
    return c[key] === null ? null : num(key, { positive: true });
  };

  const hiddenSize = num('hidden_size', { int: true, positive: true });
  const numHeads = num('num_attention_heads', { int: true, positive: true });
  const numKvHeads = num('num_key_value_heads', { int: true, positive: true });
  const headDim = num('head_dim', { int: true, positive: true });
  if (numHeads % numKvHeads !== 0) fail(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  if (headDim % 2 !== 0) fail(`head_dim ${headDim} must be even for rotary embeddings`);

  // HF Gemma: hidden_activation (falls back to gelu_pytorch_tanh when null); the legacy hidden_act is ignored.
  const act = c.hidden_activation ?? (gemma2 ? undefined : 'gelu_pytorch_tanh');
  if (act === undefined && gemma2) fail('missing key "hidden_activation" for Gemma2ForSequenceClassification');
  if (typeof act !== 'string' || !TANH_GELU.has(act))
    fail(`hidden_activation ${JSON.stringify(act)} is not supported; the graph implements gelu_pytorch_tanh`);
  if (c.attention_bias === true) fail('attention_bias: true is not supported (Gemma checkpoints have no projection biases)');
  if (c.rope_scaling !== undefined && c.rope_scaling !== null) fail(`rope_scaling ${JSON.stringify(c.rope_scaling)} is not supported`);

  let attnScale: number;
  let attnSoftcap: number | null = null;
  let slidingWindow: number | null = null;
  if (gemma2) {
    attnScale = num('query_pre_attn_scalar', { positive: true }) ** -0.5;
    attnSoftcap = optNum('attn_logit_softcapping');
    slidingWindow = optNum('sliding_window');
    if (slidingWindow !== null && !Number.isInteger(slidingWindow)) fail(`sliding_window ${slidingWindow} is not an integer`);
    // final_logit_softcapping belongs to the LM head only; Gemma2ForSequenceClassification ignores it.
  } else {
    attnScale = headDim ** -0.5;
  }

  const numLabels = causal ? opts.causalLmNumLabels! : parseNumLabels(c, fail);
  if (numLabels !== 3 && numLabels !== 1) fail(`num_labels is ${numLabels}; arenakit supports 3 (winner A / B / tie) or 1 (single score)`);
  if (!('pad_token_id' in c) || c.pad_token_id === null)
    fail('missing key "pad_token_id": the classifier pools the token before the first pad_token_id');
  const padTokenId = num('pad_token_id', { int: true });

  return {
    architecture: arch as ModelConfig['architecture'],
    vocabSize: num('vocab_size', { int: true, positive: true }),
    hiddenSize,
    intermediateSize: num('intermediate_size', { int: true, positive: true }),
    numLayers: num('num_hidden_layers', { int: true, positive: true }),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num('rms_norm_eps', { positive: true }),
    ropeTheta: num('rope_theta', { positive: true }),
    attnScale,
    attnSoftcap,
    slidingWindow,
    sandwichNorms: gemma2,
    numLabels,
    padTokenId,
    maxPositions: num('max_position_embeddings', { int: true, positive: true }),
  };
}

/** num_labels as HF derives it: from id2label when present, else the num_labels key. */
function parseNumLabels(c: Json, fail: (msg: string) => never): number {
  let n: number | undefined;
  if (c.id2label && typeof c.id2label === 'object') n = Object.keys(c.id2label).length;
  else if (typeof c.num_labels === 'number') n = c.num_labels;
  if (n === undefined) fail('missing key "id2label" (or "num_labels"): the number of classifier outputs is unknown');
  if (typeof c.num_labels === 'number' && c.num_labels !== n) fail(`num_labels ${c.num_labels} disagrees with id2label (${n} entries)`);
  if (n !== 3 && n !== 1) fail(`num_labels is ${n}; arenakit supports 3 (winner A / B / tie) or 1 (single score)`);
  return n as number;
}

/** Label names in logit order from id2label, or null when the config has none. */
export function hfLabelNames(json: unknown): string[] | null {
  const m = (json as Json | null)?.id2label;
  if (!m || typeof m !== 'object') return null;
  const entries = Object.entries(m as Record<string, unknown>).map(([k, v]) => [Number(k), String(v)] as const);
  entries.sort((a, b) => a[0] - b[0]);
  return entries.map(([, v]) => v);
}
