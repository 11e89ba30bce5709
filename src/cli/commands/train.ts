// `trainer train`: LoRA fine-tuning of a Hugging Face classifier (or causal LM with a new head) of any family import reads,
// on ONNX Runtime, step for step like transformers + PEFT; writes a PEFT adapter folder that `import --adapter` merges.
import { runTraining, DEFAULT_TRAIN, type TrainOptions } from '../../train/run';
import { PROJECTIONS } from '../../model/lora';
import { DEFAULT_LORA } from '../../train/lora';
import { need, num, parse, UsageError } from '../args';
import { ACTIVATIONS, type Activation } from '../../types';

const D = DEFAULT_TRAIN;
const L = DEFAULT_LORA;
const USAGE = `usage: node dist/trainer.cjs train --base HF_DIR [--adapter PEFT_DIR] (--data train.csv|.parquet | --tokenized rows.jsonl) --out DIR [options]
  --base DIR            Hugging Face classifier folder (config.json, model.safetensors, tokenizer.json for --data)
  --adapter DIR         continue training this PEFT LoRA adapter (its r / alpha / targets are kept)
  --data FILE           labelled competition file (LMSYS CSV, WSDM parquet), formatted + tokenized like predict does
  --tokenized FILE      JSON lines {"input_ids": [...], "label": k} (right-padded per micro-batch)
  --valid FILE          validation rows (CSV or .jsonl): log loss after every epoch
  --out DIR             adapter folder to write (adapter_config.json, adapter_model.safetensors, training.json, train_log.jsonl)
  --train lora|head     lora (default): backprop through the model; head: one forward pass for the pooled
                        states, then only the score head (linear or score.N.* stack) is fitted on them
                        (--max-steps full-batch AdamW steps, default 500; --lr default 1e-2)
LoRA (PEFT LoraConfig names):
  --lora-r N (${L.r})  --lora-alpha A (${L.lora_alpha})  --lora-dropout P (${L.lora_dropout})  --rslora
  --lora-targets LIST   comma list of ${PROJECTIONS.join(',')} or all-linear (default ${L.target_modules.join(',')})
  --layers-to-transform LIST   layer indices that get LoRA, e.g. 6-25 or 2,3 (default all)
  --frozen-head         do not train the score head (default: trained, modules_to_save=["score"], every layer of a score.N.* head)
  --num-labels N        a base without a score head (a causal LM): train a new N-output head (HF init, seeded);
                        a head with another count: its last layer is relabelled (2 on a 3-label model:
                        model_a / model_b, starting from those rows = the runner's 3->2 mapping)
  --head-activation A   activation between the linears of a multi-layer score.N.* head (as import takes it): ${ACTIVATIONS.join('|')}
  --init peft|pissa     PEFT default init (A kaiming-uniform, B 0) or PiSSA (SVD; default peft)
Optimisation (HF TrainingArguments names in brackets):
  --batch-size N (${D.batchSize})  --grad-accum N (${D.gradAccum})  --epochs N (${D.epochs})  --max-steps N
  --lr X (${D.lr})  --warmup-steps N (${D.warmupSteps})  --schedule linear|constant (${D.schedule})  --weight-decay X (${D.weightDecay})
  --adam-betas B1,B2 (${D.betas.join(',')})  --adam-eps X (${D.eps})  --max-grad-norm X (${D.maxGradNorm}; 0 = off)
  --no-shuffle          keep file order  --swap-augment  also train each CSV row with the responses swapped
  --seed N (${D.seed})  --template NAME (the base family's)  --truncation RULE (the template's)  --max-tokens N (${D.maxTokens})  --tokenizer DIR
  --checkpoint-every N  save DIR/checkpoint every N steps   --resume  continue from DIR/checkpoint
  --threads N (${D.threads})  ONNX Runtime intra-op threads
  --ep cpu|webgpu (${D.ep})  execution provider of the training graph (the same graph on either)`;

/** "2,3" or "6-25" or "0-2,5" -> indices. */
function layerList(s: string): number[] {
  const out: number[] = [];
  for (const part of s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new UsageError(`--layers-to-transform: "${part}" is not an index or a range like 6-25`);
    if (m[2] !== undefined && Number(m[2]) < Number(m[1]))
      throw new UsageError(
        `--layers-to-transform: "${part}" is an empty range; write it low-high, e.g. ${m[2]}-${m[1]}`,
      );
    for (let i = Number(m[1]); i <= Number(m[2] ?? m[1]); i++) out.push(i);
  }
  return out;
}

export async function run(argv: string[]): Promise<void> {
  const s = { type: 'string' } as const;
  const b = { type: 'boolean' } as const;
  const v = parse(
    argv,
    {
      base: s,
      adapter: s,
      data: s,
      tokenized: s,
      valid: s,
      out: s,
      train: s,
      'lora-r': s,
      'lora-alpha': s,
      'lora-dropout': s,
      rslora: b,
      'lora-targets': s,
      'layers-to-transform': s,
      'frozen-head': b,
      init: s,
      'batch-size': s,
      'grad-accum': s,
      epochs: s,
      'max-steps': s,
      lr: s,
      'warmup-steps': s,
      schedule: s,
      'weight-decay': s,
      'adam-betas': s,
      'adam-eps': s,
      'max-grad-norm': s,
      'no-shuffle': b,
      'swap-augment': b,
      seed: s,
      template: s,
      truncation: s,
      'max-tokens': s,
      tokenizer: s,
      'checkpoint-every': s,
      resume: b,
      threads: s,
      ep: s,
      'head-activation': s,
      'num-labels': s,
    },
    USAGE,
  );
  if ((v.data === undefined) === (v.tokenized === undefined))
    throw new UsageError(`pass exactly one of --data and --tokenized\n\n${USAGE}`);
  const int = (flag: string, dflt: number, min: number) => {
    const n = num(v[flag.slice(2)], flag, dflt);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`${flag} must be an integer >= ${min}, got ${n}`);
    return n;
  };
  const loraFlags = [
    'lora-r',
    'lora-alpha',
    'rslora',
    'lora-targets',
    'layers-to-transform',
    'frozen-head',
    'init',
  ].filter((f) => v[f] !== undefined);
  if (v.adapter && loraFlags.length)
    throw new UsageError(`--adapter keeps the adapter's LoRA settings; drop --${loraFlags.join(', --')}`);
  const init = (v.init as string | undefined) ?? 'peft';
  if (init !== 'peft' && init !== 'pissa') throw new UsageError(`--init must be peft or pissa, got "${init}"`);
  const schedule = (v.schedule as string | undefined) ?? D.schedule;
  if (schedule !== 'linear' && schedule !== 'constant')
    throw new UsageError(`--schedule must be linear or constant, got "${schedule}"`);
  const betas = v['adam-betas'] === undefined ? D.betas : String(v['adam-betas']).split(',').map(Number);
  if (betas.length !== 2 || !betas.every((x) => x >= 0 && x < 1))
    throw new UsageError(`--adam-betas takes two numbers in [0, 1), e.g. 0.9,0.999`);
  const headActivation = v['head-activation'] as string | undefined;
  if (headActivation !== undefined && !(ACTIVATIONS as readonly string[]).includes(headActivation))
    throw new UsageError(`--head-activation must be one of ${ACTIVATIONS.join(', ')}, got "${headActivation}"`);
  const ep = (v.ep as string | undefined) ?? D.ep;
  if (ep !== 'cpu' && ep !== 'webgpu')
    throw new UsageError(`--ep must be cpu or webgpu (CUDA training is not wired yet), got "${ep}"`);
  const mode = (v.train as string | undefined) ?? 'lora';
  if (mode !== 'lora' && mode !== 'head') throw new UsageError(`--train must be lora or head, got "${mode}"`);
  const maxGradNorm = num(v['max-grad-norm'], '--max-grad-norm', D.maxGradNorm ?? 0);
  // As torch.optim.AdamW and transformers' TrainingArguments check them (a bad value trains silently wrong).
  const positive = (flag: string, dflt: number, min: number, strict: boolean) => {
    const n = num(v[flag.slice(2)], flag, dflt);
    if (!Number.isFinite(n) || (strict ? n <= min : n < min))
      throw new UsageError(`${flag} must be a finite number ${strict ? '>' : '>='} ${min}, got ${v[flag.slice(2)]}`);
    return n;
  };
  positive('--lr', D.lr, 0, true);
  positive('--weight-decay', D.weightDecay, 0, false);
  positive('--adam-eps', D.eps, 0, true);
  positive('--max-grad-norm', D.maxGradNorm ?? 0, 0, false);
  const opts: TrainOptions = {
    ...D,
    base: need(v.base, '--base', USAGE),
    adapter: v.adapter as string | undefined,
    loraDropoutGiven: v['lora-dropout'] !== undefined,
    data: v.data as string | undefined,
    tokenized: v.tokenized as string | undefined,
    valid: v.valid as string | undefined,
    out: need(v.out, '--out', USAGE),
    train: mode,
    headActivation: headActivation as Activation | undefined,
    numLabels: v['num-labels'] === undefined ? undefined : int('--num-labels', 3, 2),
    lora: {
      r: int('--lora-r', L.r, 1),
      lora_alpha: num(v['lora-alpha'], '--lora-alpha', L.lora_alpha),
      lora_dropout: num(v['lora-dropout'], '--lora-dropout', L.lora_dropout),
      target_modules:
        v['lora-targets'] === undefined
          ? L.target_modules
          : String(v['lora-targets'])
              .split(',')
              .map((t) => t.trim()),
      layers_to_transform: v['layers-to-transform'] === undefined ? null : layerList(String(v['layers-to-transform'])),
      use_rslora: !!v.rslora,
      modules_to_save: v['frozen-head'] ? [] : ['score'],
    },
    init,
    batchSize: int('--batch-size', D.batchSize, 1),
    gradAccum: int('--grad-accum', D.gradAccum, 1),
    epochs: int('--epochs', D.epochs, 1),
    maxSteps: v['max-steps'] === undefined ? null : int('--max-steps', 0, 1),
    lr: num(v.lr, '--lr', mode === 'head' ? 1e-2 : D.lr),
    warmupSteps: int('--warmup-steps', D.warmupSteps, 0),
    schedule,
    weightDecay: num(v['weight-decay'], '--weight-decay', D.weightDecay),
    betas: betas as [number, number],
    eps: num(v['adam-eps'], '--adam-eps', D.eps),
    maxGradNorm: maxGradNorm > 0 ? maxGradNorm : null,
    shuffle: !v['no-shuffle'],
    swapAugment: !!v['swap-augment'],
    seed: int('--seed', D.seed, 0),
    template: v.template as string | undefined,
    truncation: v.truncation as string | undefined,
    maxTokens: int('--max-tokens', D.maxTokens, 16),
    tokenizer: v.tokenizer as string | undefined,
    checkpointEvery: int('--checkpoint-every', 0, 0),
    resume: !!v.resume,
    threads: int('--threads', D.threads, 1),
    ep,
    log: (line) => process.stderr.write(line + '\n'),
  };
  const r = await runTraining(opts);
  process.stdout.write(
    JSON.stringify({
      out: opts.out,
      steps: r.steps,
      seconds: +r.seconds.toFixed(2),
      seconds_per_step: +r.secondsPerStep.toFixed(3),
      final_loss: r.log.at(-1)?.loss ?? null,
      valid: r.valid,
    }) + '\n',
  );
}
