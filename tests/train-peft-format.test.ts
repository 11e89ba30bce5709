// The trainer's output folder against adapters peft 0.13.2 itself wrote (../shared/fixtures/hf-reference):
// train two steps with a fixture adapter's LoRA settings (or continue from it with --adapter), then
// adapter_config.json must have every key peft wrote and none LoraConfig does not know, the same
// settings, and adapter_model.safetensors exactly the fixture's key names, dtypes and shapes. The
// module set the saved config selects under PEFT's target rule must be the fixture's.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_TRAIN, runTraining, type TrainOptions } from '../src/train/run';
import { isTargeted, peftLayerIndex, PROJECTIONS } from '../src/model/lora';
import type { LoraSettings } from '../src/train/lora';
import { checkAdapter, mergedSource, openAdapter } from '../src/weights/peft';
import { parseAdapterConfig } from '../src/weights/peft-config';
import { buildDecoderGraph } from '../src/model/lower';
import { serialise } from '../src/graph/serialise';
import { openCheckpoint, openSafetensors } from '../src/weights/safetensors';
import { FIXTURES, fixtureConfig, maxAbsDiff, runLogits } from './helpers/fixtures';
import { fixtureBatch, GEMMA2_TINY, GEMMA2_TRAIN } from './helpers/train-fixtures';
import type { Activation } from '../src/types';

/**
 * Every key peft 0.13.2 can write to adapter_config.json for LoRA, read from its source at tag v0.13.2
 * (431c0e2d5ca56fa512dc4c96876c4145bb538f62): src/peft/config.py PeftConfigMixin (peft_type, auto_mapping)
 * and PeftConfig (base_model_name_or_path, revision, task_type, inference_mode); src/peft/tuners/lora/config.py
 * LoraConfig (r ... layer_replication; runtime_config is popped by LoraConfig.to_dict and dropped by
 * from_json_file). PeftConfig.from_peft_type calls LoraConfig(**json), so any other key is a TypeError.
 */
const LORA_CONFIG_FIELDS = [
  'peft_type',
  'auto_mapping',
  'base_model_name_or_path',
  'revision',
  'task_type',
  'inference_mode',
  'r',
  'target_modules',
  'lora_alpha',
  'lora_dropout',
  'fan_in_fan_out',
  'bias',
  'use_rslora',
  'modules_to_save',
  'init_lora_weights',
  'layers_to_transform',
  'layers_pattern',
  'rank_pattern',
  'alpha_pattern',
  'megatron_config',
  'megatron_core',
  'loftq_config',
  'use_dora',
  'layer_replication',
];

const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));
const sortedSet = (v: unknown) => [...new Set(v as string[])].sort();

/** Module names of a checkpoint (tensor names without their last part), as named_modules() lists the leaves. */
function modulesOf(dir: string): string[] {
  const ck = openCheckpoint(dir);
  const m = [...new Set(ck.names.map((n) => n.slice(0, n.lastIndexOf('.'))))];
  ck.close();
  return m;
}

/** The modules a saved config gives LoRA under PEFT's rule, and the modules with lora_A tensors in the file. */
function loraModules(adapterDir: string, modules: string[]): { byConfig: string[]; byFile: string[] } {
  const cfg = parseAdapterConfig(json(join(adapterDir, 'adapter_config.json')), adapterDir);
  const f = openSafetensors(join(adapterDir, 'adapter_model.safetensors'));
  const byFile = [...f.tensors.keys()]
    .filter((k) => k.endsWith('.lora_A.weight'))
    .map((k) => k.slice('base_model.model.'.length, -'.lora_A.weight'.length));
  f.close();
  return { byConfig: modules.filter((m) => isTargeted(cfg, m)).sort(), byFile: byFile.sort() };
}

describe('train: the saved adapter folder has the format peft 0.13.2 writes', function () {
  this.timeout(300_000);
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-peft-'));
    const rows = [...fixtureBatch('padded', [0, 1, 2]), ...fixtureBatch('single', [2])];
    writeFileSync(
      join(tmp, 'rows.jsonl'),
      rows.map((r) => JSON.stringify({ input_ids: Array.from(r.inputIds), label: r.label })).join('\n') + '\n',
    );
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('the LoraConfig field list above is the key set of every peft-written fixture config', () => {
    for (const d of [
      'gemma2-tiny/adapter',
      'gemma2-train/adapter-frozen2',
      'gemma2-mlphead/adapter',
      'llama3-tiny/adapter',
      'qwen2-tiny/adapter',
    ])
      assert.deepEqual(
        Object.keys(json(join(FIXTURES, d, 'adapter_config.json'))).sort(),
        [...LORA_CONFIG_FIELDS].sort(),
        d,
      );
  });

  // r 8 / alpha 16 / all 7 projections / SEQ_CLS (the head trained) as in the fixtures' LoraConfig calls
  const lora = (layers: number[] | null, targets = PROJECTIONS): LoraSettings => ({
    ...DEFAULT_TRAIN.lora,
    r: 8,
    lora_alpha: 16,
    lora_dropout: 0,
    target_modules: targets,
    layers_to_transform: layers,
    use_rslora: false,
    modules_to_save: ['score'],
  });
  const cases: { name: string; fixture: string; base: string; opts: Partial<TrainOptions>; act?: Activation }[] = [
    {
      name: 'gemma2-tiny, all-linear',
      fixture: join(GEMMA2_TINY, 'adapter'),
      base: GEMMA2_TINY,
      opts: { lora: lora(null, ['all-linear']) },
    },
    {
      name: 'gemma2-train frozen2 (--layers-to-transform 2,3)',
      fixture: join(GEMMA2_TRAIN, 'adapter-frozen2'),
      base: GEMMA2_TINY,
      opts: { lora: lora([2, 3]) },
    },
    {
      name: 'gemma2-train frozen2, continued (--adapter)',
      fixture: join(GEMMA2_TRAIN, 'adapter-frozen2'),
      base: GEMMA2_TINY,
      opts: { adapter: join(GEMMA2_TRAIN, 'adapter-frozen2') },
    },
    {
      name: 'gemma2-mlphead (score.0/2/4 head)',
      fixture: join(FIXTURES, 'gemma2-mlphead', 'adapter'),
      base: join(FIXTURES, 'gemma2-mlphead'),
      opts: { lora: lora(null), headActivation: 'gelu_tanh' },
    },
  ];
  for (const k of cases)
    it(`${k.name}: config keys and settings, tensor names / dtypes / shapes, and the module set equal peft's`, async () => {
      const out = join(tmp, k.name.replace(/\W+/g, '-'));
      const r = await runTraining({
        ...DEFAULT_TRAIN,
        base: k.base,
        tokenized: join(tmp, 'rows.jsonl'),
        out,
        maxSteps: 2,
        batchSize: 2,
        lr: 1e-3,
        warmupSteps: 0,
        log: () => {},
        ...k.opts,
      });
      assert.equal(r.steps, 2);
      const peft = json(join(k.fixture, 'adapter_config.json'));
      const mine = json(join(out, 'adapter_config.json'));
      const missing = Object.keys(peft).filter((key) => !(key in mine));
      const unknown = Object.keys(mine).filter((key) => !LORA_CONFIG_FIELDS.includes(key));
      assert.deepEqual(missing, [], 'keys peft writes');
      assert.deepEqual(unknown, [], 'keys LoraConfig does not take');
      for (const key of [
        'r',
        'lora_alpha',
        'layers_to_transform',
        'layers_pattern',
        'use_rslora',
        'peft_type',
        'task_type',
        'init_lora_weights',
        'bias',
        'use_dora',
      ])
        assert.deepEqual(mine[key], peft[key], key);
      // saved as sets by peft (target_modules) or with repeats (modules_to_save extended by SEQ_CLS)
      assert.deepEqual(sortedSet(mine.target_modules), sortedSet(peft.target_modules), 'target_modules');
      assert.deepEqual(sortedSet(mine.modules_to_save), sortedSet(peft.modules_to_save), 'modules_to_save');

      const a = openSafetensors(join(k.fixture, 'adapter_model.safetensors'));
      const b = openSafetensors(join(out, 'adapter_model.safetensors'));
      const sig = (f: typeof a) => [...f.tensors.values()].map((t) => `${t.name} ${t.dtype} [${t.shape}]`).sort();
      assert.deepEqual(sig(b), sig(a), 'tensor names, dtypes and shapes');
      assert.deepEqual(b.metadata, a.metadata, '__metadata__');
      const moved = [...a.tensors.keys()].some((key) => a.read(key).data.some((v, i) => v !== b.read(key).data[i]));
      a.close();
      b.close();

      const modules = modulesOf(k.base);
      const theirs = loraModules(k.fixture, modules);
      const ours = loraModules(out, modules);
      assert.deepEqual(theirs.byConfig, theirs.byFile, "the PEFT rule port selects the fixture file's modules");
      assert.deepEqual(ours.byConfig, theirs.byConfig, 'our config selects the same modules');
      assert.deepEqual(ours.byFile, theirs.byFile);
      console.log(
        `      ${k.name}: ${Object.keys(mine).length} config keys (peft ${Object.keys(peft).length}), ${sig(a).length} tensors, ` +
          `${ours.byConfig.length} LoRA modules; tensors ${moved ? 'differ from' : 'equal'} the fixture's after 2 steps`,
      );
    });

  it("peft 0.13.2's layer rule: layers_to_transform with and without layers_pattern", () => {
    const modules = modulesOf(GEMMA2_TINY);
    const cfg = json(join(GEMMA2_TRAIN, 'adapter-frozen2', 'adapter_config.json'));
    const pick = (edit: Record<string, unknown>) => {
      const c = parseAdapterConfig({ ...cfg, ...edit }, 'adapter_config.json');
      return new Set(modules.filter((m) => isTargeted(c, m)).map((m) => peftLayerIndex(m)));
    };
    // re.match(r".*\.[^.]*\.(\d+)\.", key): the digits after the last `.<name>.` before a dot
    assert.equal(peftLayerIndex('model.layers.12.self_attn.q_proj'), 12);
    assert.equal(peftLayerIndex('model.layers.2'), null, 'the digits must be followed by a dot');
    assert.deepEqual(pick({}), new Set([2, 3]));
    assert.deepEqual(pick({ layers_pattern: 'layers' }), new Set([2, 3]), 'the Gemma layer list is named "layers"');
    assert.deepEqual(pick({ layers_pattern: ['h', 'layers'] }), new Set([2, 3]), 'the first pattern that matches');
    assert.deepEqual(pick({ layers_pattern: 'h' }), new Set(), 'a pattern naming no layer list matches nothing');
    assert.deepEqual(pick({ layers_to_transform: 1 }), new Set([1]), 'a single index');
    assert.deepEqual(pick({ layers_to_transform: [] }), new Set([0, 1, 2, 3]), 'an empty list means every layer');
    assert.throws(
      () => parseAdapterConfig({ ...cfg, target_modules: '.*q_proj' }, 'adapter_config.json'),
      /layers_to_transform.*target_modules a string/,
    );
  });

  it("import merges peft's own layers_to_transform adapter (adapter-frozen2) to the logits PEFT computed with it", async () => {
    const dir = join(GEMMA2_TRAIN, 'adapter-frozen2');
    const c = fixtureConfig(GEMMA2_TINY);
    const ck = openCheckpoint(GEMMA2_TINY);
    const adapter = openAdapter(dir);
    checkAdapter(adapter, { names: ck.names, shape: (n) => ck.info(n).shape });
    assert.equal(adapter.lora.size, 14, 'layers 2 and 3 x 7 projections');
    const g = buildDecoderGraph(c, mergedSource(ck.get, adapter), {
      linear: { kind: 'float' },
      activations: 'float32',
      maxSeqLen: 64,
    });
    const logits = await runLogits(serialise(g), json(join(GEMMA2_TINY, 'inputs.json')).padded);
    adapter.close();
    ck.close();
    const d = maxAbsDiff(
      logits,
      json(join(GEMMA2_TRAIN, 'trajectory-frozen2.json'))['logits_before_training (eval)'].padded.flat(),
    );
    console.log(
      `      adapter-frozen2 merged by import vs PEFT's eval logits: max abs diff ${d.toExponential(2)} (tolerance 2e-5)`,
    );
    assert.ok(d < 2e-5);
  });
});
