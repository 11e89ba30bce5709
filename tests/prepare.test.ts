// Base + adapter helpers (src/weights/prepare.ts) and the deduplicating store (src/graph/store.ts):
// which base an adapter gets, the import-size estimate and the free-space refusal, and equal tensors
// stored once.
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { externalStore } from '../src/graph/store';
import { checkFreeSpace, chooseBase, estimateImportBytes, PrepareError } from '../src/weights/prepare';

const found = (fits: string[], misfits: { dir: string; why: string }[] = []) => ({ fits, misfits });

describe('prepare: choosing the base', () => {
  const gemma = '/kaggle/input/gemma-2/transformers/gemma-2-9b-it/2';
  const gemmaBase = '/kaggle/input/gemma-2/transformers/gemma-2-9b/1';
  it('the fitting folder that carries the base name wins over one that only fits by shape', () => {
    assert.equal(chooseBase('a', 'google/gemma-2-9b-it', found([gemmaBase, gemma]), '/kaggle/input'), gemma);
  });
  it('a hub base whose name no fitting folder carries is refused, listing the fits and the fix', () => {
    assert.throws(
      () => chooseBase('a', 'google/gemma-2-9b-it', found([gemmaBase]), '/kaggle/input'),
      (e: Error) =>
        e instanceof PrepareError &&
        e.message.includes(`its tensors fit ${gemmaBase}`) &&
        /ARENAKIT_BASE/.test(e.message),
    );
  });
  it('an adapter trained on a local path (the kit trainer) takes the one folder it fits', () => {
    assert.equal(chooseBase('a', '/data/G9', found([gemmaBase]), '/kaggle/input'), gemmaBase);
    assert.equal(chooseBase('a', '', found([gemmaBase]), '/kaggle/input'), gemmaBase);
    assert.throws(
      () => chooseBase('a', '/data/G9', found([gemmaBase, gemma]), '/kaggle/input'),
      /fit it|carries that name/,
    );
  });
  it('nothing fits: the misfits are listed with why', () => {
    assert.throws(
      () => chooseBase('a', 'x/y', found([], [{ dir: '/in/m', why: 'q_proj matches no base tensor' }]), '/in'),
      /no Hugging Face model folder under \/in fits it \(it was trained on x\/y\).*\n  \/in\/m: q_proj matches no base tensor/s,
    );
  });
});

describe('prepare: import size and free space', () => {
  const shapes = new Map<string, number[]>([
    ['model.embed_tokens.weight', [1000, 64]],
    ['model.layers.0.self_attn.q_proj.weight', [64, 64]],
    ['model.layers.0.mlp.up_proj.weight', [128, 64]],
    ['model.layers.0.input_layernorm.weight', [64]],
    ['lm_head.weight', [1000, 64]],
  ]);
  it('int4 block 32: 0.5 B per weight + scales per graph (fp32 CPU, fp16 GPU); embedding fp16; lm_head not imported', () => {
    const lin = 64 * 64 + 128 * 64;
    assert.equal(
      estimateImportBytes(shapes, { kind: 'int4', blockSize: 32 }, ['cpu']),
      Math.ceil(1000 * 64 * 2 + lin * (0.5 + 4 / 32) + 64 * 4),
    );
    assert.equal(
      estimateImportBytes(shapes, { kind: 'int4', blockSize: 32 }, ['cuda', 'cpu'], 100),
      Math.ceil(100 + 1000 * 64 * 2 + lin * (0.5 + 6 / 32) + 64 * 4),
    );
    assert.equal(estimateImportBytes(shapes, { kind: 'fp16' }, ['cuda', 'cpu']), 1000 * 64 * 2 + lin * 6 + 64 * 4);
  });
  it('refuses less free space than the estimate + 5% + 64 MB, naming the folder and the fix', () => {
    checkFreeSpace({ dir: '/w', free: 2e9, need: 1e9, what: 'x' });
    assert.throws(
      () => checkFreeSpace({ dir: '/w', free: 1.1e9, need: 1e9, what: 'importing B with adapter a' }),
      /\/w: 1\.10 GB free, but importing B with adapter a needs about 1\.11 GB .*ARENAKIT_IMPORT_DIR/,
    );
  });
});

describe('external store: dedupe', () => {
  it('an equal tensor (dtype, shape, bytes) points at the stored copy; a different one is written; the file ends at the last real tensor', () => {
    const dir = mkdtempSync(join(tmpdir(), 'arenakit-dedupe-'));
    try {
      const a = new Uint8Array(4096).map((_, i) => i % 251);
      const b = a.slice();
      b[7] ^= 1;
      const s = externalStore(join(dir, 'd.onnx.data'), 1024, { dedupe: true });
      const ra = s.put('a', 'uint8', [4096], a);
      const rb = s.put('b', 'uint8', [4096], b);
      const ra2 = s.put('a2', 'uint8', [4096], a.slice());
      const rf = s.put('a-as-f32', 'float32', [1024], a.slice()); // same bytes, other dtype: its own copy
      const ra3 = s.put('a3', 'uint8', [4096], a.slice()); // a duplicate written last
      s.close();
      assert.deepEqual(ra2.external, ra.external);
      assert.deepEqual(ra3.external, ra.external);
      assert.notDeepEqual(rb.external, ra.external);
      assert.notDeepEqual(rf.external, ra.external);
      const file = readFileSync(join(dir, 'd.onnx.data'));
      assert.equal(statSync(join(dir, 'd.onnx.data')).size, rf.external!.offset + 4096, 'trailing duplicate cut off');
      for (const r of [ra, rb, rf]) {
        const want = r === rb ? b : a;
        assert.deepEqual(file.subarray(r.external!.offset, r.external!.offset + 4096), Buffer.from(want));
      }
      // Without dedupe: every tensor its own copy (the store's old behaviour).
      const s2 = externalStore(join(dir, 'e.onnx.data'));
      const x = s2.put('a', 'uint8', [4096], a);
      const y = s2.put('a2', 'uint8', [4096], a);
      s2.close();
      assert.notEqual(x.external!.offset, y.external!.offset);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
