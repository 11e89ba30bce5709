// The score head as tensors say it is, shared by import and training: which head a checkpoint holds
// (score, score + bias, a score.N.* stack), its outputs' names (config.json's id2label / label2id /
// num_labels both ways, and the names a new head gets), and relabelling a head's last layer to other
// outputs (which old row serves each new label). Pure: callers read the files and own the values.
import { outcomeOf, TASKS } from '../task/task';
import type { Activation, HeadSpec } from '../types';

export class HeadError extends Error {
  override name = 'HeadError';
}

/** Names and shapes of the tensors a head may come from (a checkpoint, with an adapter's modules_to_save over it). */
export interface HeadView {
  names: Iterable<string>;
  /** The tensor's shape, or null when there is no such tensor. */
  shape(name: string): number[] | null;
}

/**
 * The classifier head the tensors hold, or null for config.json's plain `score` linear:
 * - `score.weight` (+ `score.bias`);
 * - `score.N.weight` (+ bias): a stack of linears; config.json cannot say what lies between them, so
 *   `activation` (--head-activation) must.
 */
export function chooseScoreHead(view: HeadView, o: { activation?: Activation; configFile: string }): HeadSpec | null {
  const names = new Set(view.names);
  const layer = (w: string, b: string) => {
    const s = view.shape(w)!;
    if (s.length !== 2) throw new HeadError(`${o.configFile}: head tensor "${w}" has shape [${s}], expected [out, in]`);
    const bs = view.shape(b);
    if (bs && (bs.length !== 1 || bs[0] !== s[0]))
      throw new HeadError(`head tensor "${b}" has shape [${bs}], expected [${s[0]}]`);
    return { weight: w, bias: bs ? b : null, inFeatures: s[1], outFeatures: s[0] };
  };
  if (names.has('score.weight')) {
    if (o.activation)
      throw new HeadError(
        '--head-activation is for multi-layer score.N.* heads; this checkpoint has a single score.weight',
      );
    return { kind: 'classifier', layers: [layer('score.weight', 'score.bias')], activation: null };
  }
  const idx = [...names]
    .map((n) => /^score\.(\d+)\.weight$/.exec(n))
    .filter((m) => m)
    .map((m) => Number(m![1]))
    .sort((a, b) => a - b);
  if (!idx.length) return null;
  const layers = idx.map((i) => layer(`score.${i}.weight`, `score.${i}.bias`));
  if (!o.activation)
    throw new HeadError(
      `the checkpoint's head is ${layers.length} linear layers (${idx.map((i) => `score.${i}`).join(', ')}), and config.json cannot say ` +
        'which activation lies between them; pass --head-activation gelu_tanh|gelu|relu|silu|tanh',
    );
  for (let i = 1; i < layers.length; i++)
    if (layers[i].inFeatures !== layers[i - 1].outFeatures)
      throw new HeadError(
        `head layer ${layers[i].weight} takes ${layers[i].inFeatures} features but ${layers[i - 1].weight} gives ${layers[i - 1].outFeatures}`,
      );
  return { kind: 'classifier', layers, activation: o.activation };
}

/** The head with its last layer giving `n` outputs (the layer's tensors are replaced by the caller). */
export function relabelledHead(
  head: Extract<HeadSpec, { kind: 'classifier' }>,
  n: number,
): Extract<HeadSpec, { kind: 'classifier' }> {
  const last = head.layers[head.layers.length - 1];
  return { ...head, layers: [...head.layers.slice(0, -1), { ...last, outFeatures: n }] };
}

/**
 * For each new label, the row of the old head holding the same outcome (a 2-output WSDM head on a
 * 3-label LMSYS head: the model_a / model_b rows, i.e. the runner's 3 -> 2 mapping); null when the old
 * names are unknown or one outcome is missing.
 */
export function relabelRows(old: string[] | null, labels: string[]): number[] | null {
  if (!old) return null;
  const rows = labels.map((l) => old.findIndex((n) => outcomeOf(n) !== undefined && outcomeOf(n) === outcomeOf(l)));
  return rows.every((r) => r >= 0) ? rows : null;
}

/**
 * The outputs' names of a head whose config cannot name them: one output is a single score, two are
 * WSDM's model_a / model_b, three LMSYS's columns; other counts get HF's generic LABEL_i.
 */
export function defaultLabels(n: number): string[] {
  if (n === 1) return ['score'];
  if (n === 2) return [...TASKS.wsdm.labels];
  if (n === 3) return [...TASKS.lmsys.labels];
  return Array.from({ length: n }, (_, i) => `LABEL_${i}`);
}

/** config.json's id2label / label2id / num_labels for these output names (logit order): the inverse of hfLabelNames. */
export function labelKeys(labels: readonly string[]): {
  id2label: Record<string, string>;
  label2id: Record<string, number>;
  num_labels: number;
} {
  return {
    id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])),
    label2id: Object.fromEntries(labels.map((l, i) => [l, i])),
    num_labels: labels.length,
  };
}

/** Label names in logit order from id2label, or null when the config has none. */
export function hfLabelNames(json: unknown): string[] | null {
  const m = (json as Record<string, unknown> | null)?.id2label;
  if (!m || typeof m !== 'object') return null;
  const entries = Object.entries(m as Record<string, unknown>).map(([k, v]) => [Number(k), String(v)] as const);
  entries.sort((a, b) => a[0] - b[0]);
  return entries.map(([, v]) => v);
}
