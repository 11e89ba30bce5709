// Broken checkpoints and adapters must fail with an error that names the file and the tensor or
// option, never crash with a TypeError or load a silently wrong model. Files are made in os.tmpdir().
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseHfConfig } from '../src/weights/hfconfig';
import { checkAdapter, openAdapter } from '../src/weights/peft';
import { parseAdapterConfig } from '../src/weights/peft-config';
import { openCheckpoint, openSafetensors } from '../src/weights/safetensors';

const FIX = join(__dirname, '..', '..', 'shared', 'fixtures', 'hf-reference', 'gemma2-tiny');

interface T {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** Serialises tensors as safetensors; `edit` may corrupt the header before it is written. */
function stBytes(tensors: Record<string, T>, edit?: (h: Record<string, any>) => void): Buffer {
  const header: Record<string, any> = {};
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  edit?.(header);
  const hj = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hj.length));
  return Buffer.concat([len, hj, ...Object.values(tensors).map((t) => Buffer.from(t.bytes))]);
}

const f32 = (shape: number[], fill = 0.5): T => {
  const a = new Float32Array(shape.reduce((x, y) => x * y, 1)).fill(fill);
  return { dtype: 'F32', shape, bytes: new Uint8Array(a.buffer) };
};

/** Asserts that fn throws an error whose class name is `name` and whose message contains every part. */
function throwsNaming(fn: () => unknown, name: string, ...parts: string[]): void {
  let err: Error | undefined;
  try {
    fn();
  } catch (e) {
    err = e as Error;
  }
  assert.ok(err, `expected a ${name} mentioning ${parts.join(', ')}, but nothing was thrown`);
  console.log(`      ${err.name}: ${err.message}`);
  assert.equal(err.name, name, `wrong error class: ${err.stack}`);
  for (const p of parts) assert.ok(err.message.includes(p), `message does not mention "${p}": ${err.message}`);
}

describe('broken safetensors files', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'arenakit-broken-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const good = () => ({ 'a.weight': f32([4, 8]), 'b.weight': f32([8]) });
  const put = (name: string, bytes: Buffer) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };

  it('reads a well-formed file (control)', () => {
    const f = openSafetensors(put('good.safetensors', stBytes(good())));
    assert.deepEqual(f.read('a.weight').shape, [4, 8]);
    assert.equal(f.read('b.weight').data[7], 0.5);
    f.close();
  });

  it('truncated file: names the file and the tensor past the end', () => {
    const p = put('trunc.safetensors', stBytes(good()));
    truncateSync(p, readFileSync(p).length - 10);
    throwsNaming(() => openSafetensors(p), 'SafetensorsError', p, 'b.weight', 'truncated');
  });

  it('file shorter than the 8-byte length prefix', () => {
    const p = put('tiny.safetensors', Buffer.from([1, 2, 3]));
    throwsNaming(() => openSafetensors(p), 'SafetensorsError', p, 'shorter than');
  });

  it('header length pointing past the end of the file', () => {
    const b = stBytes(good());
    b.writeBigUInt64LE(BigInt(b.length), 0);
    const p = put('hdrpast.safetensors', b);
    throwsNaming(() => openSafetensors(p), 'SafetensorsError', p, 'runs past the end');
  });

  it('absurd header length', () => {
    const b = stBytes(good());
    b.writeBigUInt64LE(2n ** 62n, 0);
    const p = put('absurd.safetensors', b);
    throwsNaming(() => openSafetensors(p), 'SafetensorsError', p, 'exceeds');
  });

  it('header that is not JSON', () => {
    const b = stBytes(good());
    b.write('#', 8);
    const p = put('badjson.safetensors', b);
    throwsNaming(() => openSafetensors(p), 'SafetensorsError', p, 'not valid JSON');
  });

  it('header that is JSON but not an object', () => {
    const hj = Buffer.from('[1,2,3] ');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hj.length));
    const p = put('array.safetensors', Buffer.concat([len, hj]));
    throwsNaming(() => openSafetensors(p), 'SafetensorsError', p, 'not a JSON object');
  });

  it('overlapping data offsets', () => {
    const p = put(
      'overlap.safetensors',
      stBytes({ 'a.weight': f32([4]), 'b.weight': f32([4]) }, (h) => (h['b.weight'].data_offsets = [8, 24])),
    );
    throwsNaming(() => openSafetensors(p), 'SafetensorsError', p, 'overlap', 'a.weight', 'b.weight');
  });

  it('shape that disagrees with the byte range', () => {
    const p = put(
      'shape.safetensors',
      stBytes(good(), (h) => (h['a.weight'].shape = [4, 9])),
    );
    throwsNaming(() => openSafetensors(p), 'SafetensorsError', p, 'a.weight', '[4,9]');
  });

  it('unknown dtype and negative offsets', () => {
    const p1 = put(
      'dtype.safetensors',
      stBytes(good(), (h) => (h['a.weight'].dtype = 'F8_E9')),
    );
    throwsNaming(() => openSafetensors(p1), 'SafetensorsError', p1, 'a.weight', 'unknown dtype');
    const p2 = put(
      'neg.safetensors',
      stBytes(good(), (h) => (h['b.weight'].data_offsets = [-8, 32])),
    );
    throwsNaming(() => openSafetensors(p2), 'SafetensorsError', p2, 'b.weight', 'data_offsets');
  });

  it('issue 9 defect 8 (found by npm run fuzz): a header entry that is null, not an object, or an inherited dtype name', () => {
    const p1 = put(
      'nullentry.safetensors',
      stBytes(good(), (h) => (h['b.weight'] = null)),
    );
    throwsNaming(() => openSafetensors(p1), 'SafetensorsError', p1, 'b.weight', 'not an object');
    const p2 = put(
      'arrayentry.safetensors',
      stBytes(good(), (h) => (h['b.weight'] = [1, 2])),
    );
    throwsNaming(() => openSafetensors(p2), 'SafetensorsError', p2, 'b.weight', 'not an object');
    const p3 = put(
      'protodtype.safetensors',
      stBytes(good(), (h) => (h['a.weight'].dtype = 'toString')),
    );
    throwsNaming(() => openSafetensors(p3), 'SafetensorsError', p3, 'a.weight', 'unknown dtype');
    const p4 = put(
      'meta.safetensors',
      stBytes(good(), (h) => (h.__metadata__ = 'pt')),
    );
    throwsNaming(() => openSafetensors(p4), 'SafetensorsError', p4, '__metadata__');
    const d = join(dir, 'a-folder.safetensors');
    mkdirSync(d);
    throwsNaming(() => openSafetensors(d), 'SafetensorsError', d, 'not a file');
  });

  it('integer tensor read as weights', () => {
    const p = put('int.safetensors', stBytes({ ids: { dtype: 'I32', shape: [2], bytes: new Uint8Array(8) } }));
    const f = openSafetensors(p);
    throwsNaming(() => f.read('ids'), 'SafetensorsError', p, 'ids', 'not a float type');
    f.close();
  });

  it('sharded index naming a missing shard', () => {
    const d = join(dir, 'sharded');
    mkdirSync(d);
    writeFileSync(join(d, 'model-00001-of-00002.safetensors'), stBytes({ 'a.weight': f32([4]) }));
    const index = join(d, 'model.safetensors.index.json');
    writeFileSync(
      index,
      JSON.stringify({
        weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors' },
      }),
    );
    throwsNaming(
      () => openCheckpoint(d),
      'SafetensorsError',
      index,
      'model-00002-of-00002.safetensors',
      'b.weight',
      'missing',
    );
  });

  it('sharded index mapping a tensor to a shard without it, bad index JSON, path escape', () => {
    const d = join(dir, 'sharded2');
    mkdirSync(d);
    writeFileSync(join(d, 'model-00001-of-00001.safetensors'), stBytes({ 'a.weight': f32([4]) }));
    const index = join(d, 'model.safetensors.index.json');
    writeFileSync(
      index,
      JSON.stringify({
        weight_map: { 'a.weight': 'model-00001-of-00001.safetensors', 'c.weight': 'model-00001-of-00001.safetensors' },
      }),
    );
    throwsNaming(() => openCheckpoint(d), 'SafetensorsError', index, 'c.weight', 'no such tensor');
    writeFileSync(index, '{"weight_map": ');
    throwsNaming(() => openCheckpoint(d), 'SafetensorsError', index, 'not valid JSON');
    writeFileSync(index, 'null');
    throwsNaming(() => openCheckpoint(d), 'SafetensorsError', index, 'weight_map');
    writeFileSync(index, JSON.stringify({ weight_map: { 'a.weight': '../../etc/passwd' } }));
    throwsNaming(() => openCheckpoint(d), 'SafetensorsError', index, 'not a file name');
  });

  it('folder with no checkpoint', () => {
    const d = join(dir, 'empty');
    mkdirSync(d);
    throwsNaming(() => openCheckpoint(d), 'SafetensorsError', d, 'model.safetensors');
  });
});

describe('broken adapters', () => {
  let dir: string;
  let n = 0;
  const baseCfg = () => JSON.parse(readFileSync(join(FIX, 'adapter', 'adapter_config.json'), 'utf8'));
  const src = () => {
    const f = openSafetensors(join(FIX, 'adapter', 'adapter_model.safetensors'));
    const out: Record<string, T> = {};
    for (const k of f.tensors.keys()) {
      const t = f.read(k);
      out[k] = { dtype: 'F32', shape: t.shape, bytes: new Uint8Array(t.data.buffer) };
    }
    f.close();
    return out;
  };
  /** Writes an adapter folder from the fixture's, with the config and tensors edited. */
  const make = (editCfg?: (c: any) => void, editT?: (t: Record<string, T>) => void): string => {
    const d = join(dir, `a${n++}`);
    mkdirSync(d);
    const cfg = baseCfg();
    editCfg?.(cfg);
    writeFileSync(join(d, 'adapter_config.json'), JSON.stringify(cfg));
    const t = src();
    editT?.(t);
    writeFileSync(join(d, 'adapter_model.safetensors'), stBytes(t));
    return d;
  };
  const base = () => {
    const ck = openCheckpoint(FIX);
    return { names: ck.names, shape: (nm: string) => ck.info(nm).shape };
  };
  const open = (d: string) => {
    const a = openAdapter(d);
    try {
      checkAdapter(a, base());
    } finally {
      a.close();
    }
  };
  const P = 'base_model.model.model.layers.1.self_attn.q_proj';
  before(() => (dir = mkdtempSync(join(tmpdir(), 'arenakit-broken-adapter-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the fixture adapter passes (control)', () => {
    open(make());
  });

  it('lora_A without lora_B', () => {
    const d = make(undefined, (t) => delete t[`${P}.lora_B.weight`]);
    throwsNaming(() => open(d), 'AdapterError', 'model.layers.1.self_attn.q_proj', 'no lora_B');
  });

  it('lora_B without lora_A', () => {
    const d = make(undefined, (t) => delete t[`${P}.lora_A.weight`]);
    throwsNaming(() => open(d), 'AdapterError', 'model.layers.1.self_attn.q_proj', 'no lora_A');
  });

  it('lora_A with the wrong rank', () => {
    const d = make(undefined, (t) => (t[`${P}.lora_A.weight`] = f32([4, 64])));
    throwsNaming(() => open(d), 'AdapterError', 'model.layers.1.self_attn.q_proj', 'r = 8');
  });

  it('lora_B whose output size does not match the base weight', () => {
    const d = make(undefined, (t) => (t[`${P}.lora_B.weight`] = f32([48, 8])));
    throwsNaming(() => open(d), 'AdapterError', 'model.layers.1.self_attn.q_proj.weight', '[64,64]', '[48, 64]');
  });

  it('modules_to_save head of the wrong num_labels', () => {
    const d = make(undefined, (t) => (t['base_model.model.score.weight'] = f32([2, 64])));
    throwsNaming(() => open(d), 'AdapterError', 'score.weight', 'modules_to_save', '[2,64]');
  });

  it('DoRA: use_dora in the config, or a magnitude vector in the file', () => {
    const d1 = make((c) => (c.use_dora = true));
    throwsNaming(() => open(d1), 'AdapterError', 'adapter_config.json', 'use_dora', 'DoRA');
    const d2 = make(undefined, (t) => (t[`${P}.lora_magnitude_vector`] = f32([64])));
    throwsNaming(() => open(d2), 'AdapterError', `${P}.lora_magnitude_vector`, 'DoRA');
  });

  it('a LoRA pair for a module the base does not have', () => {
    const d = make(
      (c) => c.target_modules.push('qkv_proj'),
      (t) => {
        t['base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight'] = f32([8, 64]);
        t['base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight'] = f32([64, 8]);
      },
    );
    throwsNaming(() => open(d), 'AdapterError', 'model.layers.0.self_attn.qkv_proj.weight', 'matches no base tensor');
  });

  it('a LoRA pair for a module outside target_modules', () => {
    const d = make((c) => (c.target_modules = ['q_proj', 'k_proj']));
    throwsNaming(() => open(d), 'AdapterError', 'not in target_modules', '_proj');
  });

  it('a stray non-LoRA tensor', () => {
    const d = make(undefined, (t) => (t['base_model.model.model.norm.weight'] = f32([64])));
    throwsNaming(() => open(d), 'AdapterError', 'base_model.model.model.norm.weight', 'modules_to_save');
  });

  it('unsupported options are errors, each named', () => {
    const cases: [string, (c: any) => void][] = [
      ['bias', (c) => (c.bias = 'lora_only')],
      ['layers_to_transform', (c) => ((c.layers_to_transform = [0, 1]), (c.target_modules = '.*q_proj'))],
      ['layers_pattern', (c) => (c.layers_pattern = 7)],
      ['layer_replication', (c) => (c.layer_replication = [[0, 2]])],
      ['peft_type', (c) => (c.peft_type = 'IA3')],
      ['loftq_config', (c) => (c.loftq_config = { loftq_bits: 4 })],
      ['init_lora_weights', (c) => (c.init_lora_weights = 'pissa')],
      ['target_modules', (c) => (c.target_modules = [])],
      ['"r"', (c) => (c.r = 0)],
    ];
    for (const [key, edit] of cases) {
      const cfg = baseCfg();
      edit(cfg);
      throwsNaming(
        () => parseAdapterConfig(cfg, 'x/adapter_config.json'),
        'AdapterError',
        'x/adapter_config.json',
        key,
      );
    }
  });

  it('adapter folder without safetensors weights', () => {
    const d = join(dir, 'nobin');
    mkdirSync(d);
    copyFileSync(join(FIX, 'adapter', 'adapter_config.json'), join(d, 'adapter_config.json'));
    writeFileSync(join(d, 'adapter_model.bin'), 'x');
    throwsNaming(() => openAdapter(d), 'AdapterError', d, 'safe_serialization');
  });
});

describe('broken config.json', () => {
  const cfg = () => JSON.parse(readFileSync(join(FIX, 'config.json'), 'utf8'));
  it('unknown architecture, missing keys, wrong num_labels, non-object', () => {
    const cases: [string[], (c: any) => void][] = [
      [['Gemma2ForCausalLM', '--label-tokens'], (c) => (c.architectures = ['Gemma2ForCausalLM'])],
      [
        ['unsupported architecture', 'PhiForSequenceClassification', 'LlamaForSequenceClassification'],
        (c) => (c.architectures = ['PhiForSequenceClassification']),
      ],
      [['query_pre_attn_scalar', 'missing'], (c) => delete c.query_pre_attn_scalar],
      [['sliding_window', 'missing'], (c) => delete c.sliding_window],
      [['head_dim', 'missing'], (c) => delete c.head_dim],
      [['pad_token_id'], (c) => delete c.pad_token_id],
      [['num_labels is 4'], (c) => (c.id2label = { 0: 'a', 1: 'b', 2: 'c', 3: 'd' })],
      [['hidden_activation'], (c) => (c.hidden_activation = 'quick_gelu')],
      [['rope_scaling'], (c) => (c.rope_scaling = { type: 'linear', factor: 2 })],
    ];
    for (const [parts, edit] of cases) {
      const c = cfg();
      edit(c);
      throwsNaming(() => parseHfConfig(c, 'm/config.json'), 'HfConfigError', 'm/config.json', ...parts);
    }
    throwsNaming(() => parseHfConfig([1], 'm/config.json'), 'HfConfigError', 'm/config.json', 'not a JSON object');
  });

  it('null disables soft-capping and the sliding window', () => {
    const c = cfg();
    c.attn_logit_softcapping = null;
    c.sliding_window = null;
    const m = parseHfConfig(c, 'm/config.json');
    assert.equal(m.attnSoftcap, null);
    assert.equal(m.slidingWindow, null);
  });
});
