// Checkpoint checks shared by `import` and `train` (issue 19 item 1): one set of refusals, so a base or
// an adapter that import refuses is refused by the trainer too, with the same message. JSON files are
// named on parse errors; the base must hold every tensor the config needs, each of the shape the config
// says, and nothing the graph would drop (a config.json with fewer layers than the checkpoint); the pad
// id must lie inside the vocabulary; tensors must be finite. Adapter features the merge / trainer do not
// implement are refused by peft-config.ts (parseAdapterConfig) and peft.ts (mapAdapterKeys, checkAdapter).
import { readFileSync, statSync } from 'node:fs';
import { familyOf, requiredNames } from '../model/families';
import { checkpointLinears } from '../model/lora';
import type { HostTensor, ModelConfig, WeightSource } from '../types';
import { fsReason } from '../util/files';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

/** A JSON file, parsed; a missing file, a folder or text that is not JSON is a CheckpointError naming the file and `fix`. */
export function readJsonFile(file: string, fix: string): unknown {
  let text: string;
  try {
    if (statSync(file).isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CheckpointError(`${file}: cannot be read (${fsReason(e)}); ${fix}`);
  }
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    throw new CheckpointError(`${file}: not valid JSON (${(e as Error).message.slice(0, 160)}); ${fix}`);
  }
}

/** A JSON object file (config.json): anything else (null, a list, a number) is refused naming the file. */
export function readJsonObject(file: string, fix: string): Record<string, unknown> {
  const j = readJsonFile(file, fix);
  if (j === null || typeof j !== 'object' || Array.isArray(j))
    throw new CheckpointError(`${file}: expected a JSON object, got ${JSON.stringify(j)?.slice(0, 60)}; ${fix}`);
  return j as Record<string, unknown>;
}

/** The shape the config gives each tensor the graph reads ([out, in] for linears). */
export function expectedShapes(c: ModelConfig): Map<string, number[]> {
  const f = familyOf(c);
  const H = c.hiddenSize;
  const m = new Map<string, number[]>([[`${f.embed}.weight`, [c.vocabSize, H]]]);
  for (const l of checkpointLinears(c)) m.set(`${l.module}.weight`, [l.outF, l.inF]);
  for (let i = 0; i < c.numLayers; i++) {
    const l = f.layer(i);
    for (const n of [l.attnNorm, l.postAttnNorm, l.mlpNorm, l.postMlpNorm]) if (n) m.set(`${n}.weight`, [H]);
    for (const n of [l.qNorm, l.kNorm]) if (n) m.set(`${n}.weight`, [c.headDim]);
    if (c.qkvBias) {
      m.set(`${l.q}.bias`, [c.numHeads * c.headDim]);
      m.set(`${l.k}.bias`, [c.numKvHeads * c.headDim]);
      m.set(`${l.v}.bias`, [c.numKvHeads * c.headDim]);
    }
  }
  m.set(`${f.finalNorm}.weight`, [H]);
  if (c.head.kind === 'classifier')
    for (const h of c.head.layers) {
      m.set(h.weight, [h.outFeatures, h.inFeatures]);
      if (h.bias) m.set(h.bias, [h.outFeatures]);
    }
  else m.set(c.head.weight, [c.vocabSize, H]);
  return m;
}

/** Tensors a checkpoint may hold that no graph reads, and why that loses nothing. */
const IGNORABLE: { re: RegExp; why: string }[] = [
  { re: /^lm_head\.weight$/, why: 'the language-model head of a causal-LM base imported as a classifier' },
  { re: /\.rotary_emb\.inv_freq$/, why: 'rotary frequencies (recomputed from rope_theta)' },
];

/** Refuses checkpoint (or adapter) tensors the graph would not use: silently dropping them changes the model. */
export function refuseUnused(names: string[], required: string[], where: string, c: ModelConfig): void {
  const need = new Set(required);
  const unused = names.filter((n) => !need.has(n) && !IGNORABLE.some((i) => i.re.test(n)));
  if (unused.length)
    throw new CheckpointError(
      `${where}: ${unused.length} tensor(s) the ${c.architecture} graph (num_hidden_layers = ${c.numLayers}) would not use: ` +
        `${unused.slice(0, 8).join(', ')}${unused.length > 8 ? ', ...' : ''}; using this checkpoint would drop them and change the model ` +
        '(check num_hidden_layers and the architecture in config.json)',
    );
}

/**
 * The base checkpoint against its config, before any long work: every tensor the graph needs is there
 * (or comes from `extra`, e.g. an adapter's modules_to_save head), has the config's shape, and no tensor
 * would be dropped; pad_token_id lies in the vocabulary. `where` names the checkpoint folder.
 */
export function checkBase(
  ckpt: { names: string[]; shape(name: string): number[] },
  c: ModelConfig,
  where: string,
  configFile: string,
  extra: ReadonlySet<string> = new Set(),
): string[] {
  const have = new Set(ckpt.names);
  // Layers first: a num_hidden_layers past the checkpoint's (1e16 in a broken config.json) would make the
  // name lists below endless.
  const layers = 1 + Math.max(-1, ...ckpt.names.map((n) => Number(/\.layers\.(\d+)\./.exec(n)?.[1] ?? -1)));
  if (c.numLayers > layers)
    throw new CheckpointError(
      `${configFile}: num_hidden_layers ${c.numLayers} but ${where} holds ${layers} layer(s) (model.layers.0 .. ${layers - 1}); ` +
        'the config does not describe this checkpoint',
    );
  const required = requiredNames(c);
  for (const n of required)
    if (!have.has(n) && !extra.has(n))
      throw new CheckpointError(
        `${where}: checkpoint has no tensor "${n}", which ${c.architecture} with num_hidden_layers = ${c.numLayers} needs` +
          (/^score\./.test(n) ? ' (a causal-LM base needs an adapter whose modules_to_save holds "score", or --label-tokens)' : ''),
      );
  refuseUnused(ckpt.names, required, where, c);
  const shapes = expectedShapes(c);
  for (const n of required) {
    if (extra.has(n) || !have.has(n)) continue;
    const want = shapes.get(n);
    const got = ckpt.shape(n);
    if (want && want.join(',') !== got.join(','))
      throw new CheckpointError(
        `${where}: tensor "${n}" is [${got}] but ${configFile} (hidden_size ${c.hiddenSize}, intermediate_size ${c.intermediateSize}, ` +
          `heads ${c.numHeads} / ${c.numKvHeads} x head_dim ${c.headDim}, vocab_size ${c.vocabSize}) needs [${want}]; the config does not describe this checkpoint`,
      );
  }
  if (!(c.padTokenId >= 0 && c.padTokenId < c.vocabSize))
    throw new CheckpointError(
      `${configFile}: pad_token_id ${c.padTokenId} is outside the vocabulary (vocab_size ${c.vocabSize}); set it to the tokenizer's pad token id`,
    );
  return required;
}

/** Throws when a tensor holds NaN / Inf, naming the tensor and its file. */
export function assertFinite(t: HostTensor, name: string, file: string, what = ''): HostTensor {
  const d = t.data;
  for (let i = 0; i < d.length; i++)
    if (!Number.isFinite(d[i]))
      throw new CheckpointError(
        `${file}: tensor "${name}"${what} holds ${d[i]} at flat index ${i}; a non-finite weight makes every prediction NaN. Fix or re-export the checkpoint`,
      );
  return t;
}

/** Wraps a source so every tensor read is checked for NaN / Inf, naming the tensor and its file. */
export function finiteSource(get: WeightSource, fileOf: (name: string) => string): WeightSource {
  const whole = (name: string) => assertFinite(get(name), name, fileOf(name));
  const { rows, shape } = get;
  return Object.assign(whole, {
    ...(shape ? { shape } : {}),
    ...(rows
      ? {
          rows: (name: string, start: number, count: number) =>
            assertFinite(rows(name, start, count), name, fileOf(name), ` (rows ${start}..${start + count - 1})`),
        }
      : {}),
  });
}
