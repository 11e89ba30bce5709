// The base model a run trains on: config.json with its head as import sees it (src/model/heads.ts), the
// head tensors an --adapter brings, a new or relabelled head's starting values (HF init: normal(0,
// initializer_range), seeded), and the logit each competition outcome trains.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chooseScoreHead, defaultLabels, hfLabelNames, labelKeys, relabelledHead, relabelRows } from '../model/heads';
import { PEFT_PREFIX, plainAdapterKey } from '../model/lora';
import { outcomeOf } from '../task/task';
import type { HeadSpec, HostTensor, ModelConfig } from '../types';
import { forName } from '../util/rng';
import { checkBase, readJsonObject } from '../weights/checks';
import { parseHfConfig } from '../weights/hfconfig';
import { ADAPTER_WEIGHTS_FILE, readAdapterLabels } from '../weights/peft';
import { openSafetensors, type Checkpoint } from '../weights/safetensors';
import { LoraSetupError } from './lora';
import type { TrainOptions } from './run';

export interface TrainBase {
  config: ModelConfig;
  /** The logit of outcome A, B and tie (-1: a two-output head has none). */
  labelIndex: [number, number, number];
  /** Head tensors the checkpoint lacks or that replace its own, by HF name. */
  extra: Map<string, HostTensor>;
  /** The outputs' names in logit order. */
  labels: string[];
}

/** The score tensors of an adapter folder, by HF name: PEFT's modules_to_save replace the base's head. */
function adapterHead(dir: string | undefined): Map<string, HostTensor> {
  const extra = new Map<string, HostTensor>();
  if (!dir || !existsSync(join(dir, ADAPTER_WEIGHTS_FILE))) return extra;
  const f = openSafetensors(join(dir, ADAPTER_WEIGHTS_FILE));
  try {
    for (const key of f.tensors.keys()) {
      const hf = plainAdapterKey(key).slice(PEFT_PREFIX.length);
      // the adapter's head replaces the base's (PEFT modules_to_save), also when frozen or relabelled below
      if (/^score\./.test(hf)) extra.set(hf, f.read(key));
    }
  } finally {
    f.close();
  }
  return extra;
}

/**
 * The base's config with its head as import sees it: score.weight or a score.N.* stack from the
 * checkpoint, else from the --adapter's modules_to_save (a causal-LM base with a Kaggle adapter), else a
 * NEW score head of `numLabels` outputs. With `numLabels` on a base whose head has another number of
 * outputs, the head's last layer is replaced (relabelled): a 2-output WSDM layer on a 3-label LMSYS head
 * starts from its model_a / model_b rows (so it starts as the runner's 3->2 mapping), anything else from
 * a fresh HF init.
 */
export function loadBase(dir: string, ck: Checkpoint, o: TrainOptions): TrainBase {
  const file = join(dir, 'config.json');
  if (!existsSync(file)) throw new LoraSetupError(`${dir}: no config.json; --base takes a Hugging Face model folder`);
  let json = readJsonObject(file, 'fix or re-save the model folder (save_pretrained)');
  const extra = adapterHead(o.adapter);
  const H = json.hidden_size as number;
  const std = (json.initializer_range as number | undefined) ?? 0.02;
  const causal = /ForCausalLM$/.test(String((json.architectures as string[] | undefined)?.[0]));
  const names = [...new Set([...ck.names, ...extra.keys()])];
  const shape = (n: string) => extra.get(n)?.shape ?? (ck.names.includes(n) ? ck.info(n).shape : null);
  let head: HeadSpec | null = chooseScoreHead({ names, shape }, { activation: o.headActivation, configFile: file });
  // An adapter whose head was relabelled carries its own label names (see writeAdapter).
  const adapterLabels = o.adapter ? readAdapterLabels(o.adapter) : null;
  if (adapterLabels) json = { ...json, ...labelKeys(adapterLabels) };
  if (!head && causal) {
    if (!o.numLabels)
      throw new LoraSetupError(
        `${file}: a causal-LM base has no score head; pass --num-labels 3 (or 2) to train a new one`,
      );
    const rng = forName(o.seed, 'score.weight');
    extra.set('score.weight', {
      shape: [o.numLabels, H],
      data: Float32Array.from({ length: o.numLabels * H }, () => rng.normal() * std),
    });
    head = {
      kind: 'classifier',
      layers: [{ weight: 'score.weight', bias: null, inFeatures: H, outFeatures: o.numLabels }],
      activation: null,
    };
    json = { ...json, ...labelKeys(defaultLabels(o.numLabels)) };
  } else if (o.numLabels) {
    // config.json's plain score linear when chooseScoreHead found nothing more
    const current = head ?? {
      kind: 'classifier' as const,
      layers: [{ weight: 'score.weight', bias: null, inFeatures: H, outFeatures: ck.info('score.weight').shape[0] }],
      activation: null,
    };
    if (current.kind !== 'classifier')
      throw new LoraSetupError('--num-labels: this model scores with label tokens; train a classifier base');
    const last = current.layers[current.layers.length - 1];
    if (last.outFeatures !== o.numLabels) {
      const labels = defaultLabels(o.numLabels);
      const w = names.includes(last.weight) ? (extra.get(last.weight) ?? ck.get(last.weight)) : null;
      const rows = w ? relabelRows(hfLabelNames(json), labels) : null;
      const I = last.inFeatures;
      const rng = forName(o.seed, last.weight);
      const weight = rows
        ? Float32Array.from({ length: o.numLabels * I }, (_, i) => w!.data[rows[Math.floor(i / I)] * I + (i % I)])
        : Float32Array.from({ length: o.numLabels * I }, () => rng.normal() * std);
      extra.set(last.weight, { shape: [o.numLabels, I], data: weight });
      if (last.bias) {
        const b = extra.get(last.bias) ?? ck.get(last.bias);
        extra.set(last.bias, {
          shape: [o.numLabels],
          data: rows ? Float32Array.from(rows, (r) => b.data[r]) : new Float32Array(o.numLabels),
        });
      }
      o.log(
        `train: the head's last layer ${last.weight} relabelled from ${last.outFeatures} to ${o.numLabels} outputs (${labels.join(', ')}), ` +
          `${rows ? 'starting from the base rows of the same outcomes' : 'freshly initialised'}`,
      );
      head = relabelledHead(current, o.numLabels);
      json = { ...json, ...labelKeys(labels) };
    }
  }
  const config = parseHfConfig(json, file, head ? { head } : {});
  // import's checks: every tensor there with the config's shape, none dropped, pad id in the vocabulary
  checkBase({ names: ck.names, shape: (n) => ck.info(n).shape }, config, dir, file, new Set(extra.keys()));
  if (config.numLabels < 2)
    throw new LoraSetupError(`${file}: num_labels ${config.numLabels}; cross-entropy training needs 2 or more labels`);
  // CSV outcomes go to the logit id2label names them by; generic names (LABEL_0..) keep Kaggle's order.
  const labelNames = hfLabelNames(json) ?? [];
  const idx = (outcome: string) => labelNames.findIndex((n) => outcomeOf(n) === outcome);
  const named = ['a', 'b'].every((x) => idx(x) >= 0) && (config.numLabels === 2 || idx('tie') >= 0);
  const labelIndex = (
    named
      ? [idx('a'), idx('b'), config.numLabels === 2 ? -1 : idx('tie')]
      : config.numLabels === 2
        ? [0, 1, -1]
        : [0, 1, 2]
  ) as [number, number, number];
  const labels = named ? labelNames : defaultLabels(config.numLabels);
  return { config, labelIndex, extra, labels };
}
