// Graph builder + ONNX serialisation: round trip through onnx-proto, ORT runs a built graph with
// the expected numbers (computed here by hand), and external data files load like inline data.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder, GraphBuildError } from '../src/graph/builder';
import { f32ToF16 } from '../src/util/fp16';
import { parseModel, serialise } from '../src/graph/serialise';
import { externalStore, type TensorStore } from '../src/graph/store';
import { attr } from '../src/graph/ir';
import { buildDecoderGraph } from '../src/model/lower';
import { openCheckpoint } from '../src/weights/safetensors';
import { FIXTURES, fixtureConfig, maxAbsDiff, runLogits } from './helpers/fixtures';

/** y = rmsNorm(x @ W + bias) * gamma, with W big enough to go to the external file. */
function smallGraph(store?: TensorStore) {
  const b = new GraphBuilder('t', store);
  const x = b.input('x', 'float32', ['batch', 8]);
  const w = b.constFloat(
    'w',
    Float32Array.from({ length: 8 * 300 }, (_, i) => Math.sin(i) * 0.1),
    [8, 300],
  );
  const bias = b.constFloat(
    'bias',
    Float32Array.from({ length: 300 }, (_, i) => i / 300),
    [300],
  );
  const gamma = b.constFloat(
    'gamma',
    Float32Array.from({ length: 300 }, (_, i) => 1 + (i % 3)),
    [300],
  );
  const y = b.rmsNorm(b.add(b.matmul(x, w), bias), gamma, 1e-6, 'norm');
  b.output(y, 'y');
  return b.finish();
}

function reference(x: number[]): number[] {
  const h = Array.from(
    { length: 300 },
    (_, n) => x.reduce((s, xv, k) => s + xv * Math.fround(Math.sin(k * 300 + n) * 0.1), 0) + Math.fround(n / 300),
  );
  const rms = Math.sqrt(h.reduce((s, v) => s + v * v, 0) / 300 + 1e-6);
  return h.map((v, n) => (v / rms) * (1 + (n % 3)));
}

describe('graph builder', function () {
  this.timeout(30000);

  it('infers dtypes and shapes and refuses mixed dtypes', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'float32', ['batch', 'seq', 4]);
    const w = b.constFloat('w', new Float32Array(12), [4, 3]);
    const y = b.matmul(x, w);
    assert.deepEqual(y.shape, ['batch', 'seq', 3]);
    const [p, q] = b.split(y, [1, 2]);
    assert.deepEqual(q.shape, ['batch', 'seq', 2]);
    assert.deepEqual(p.shape, ['batch', 'seq', 1]);
    const h = b.cast(x, 'float16');
    assert.equal(h.dtype, 'float16');
    assert.throws(() => b.add(h, x), GraphBuildError);
    assert.throws(() => b.input('x', 'float32', [1]), /defined twice/);
    // nodes are plain data in topological order: every input is defined before use
    const seen = new Set(
      b
        .finish()
        .inputs.map((v) => v.name)
        .concat(b.initializers.map((i) => i.name)),
    );
    for (const n of b.nodes) {
      for (const i of n.inputs) assert.ok(i === '' || seen.has(i), `${n.name} uses ${i} before it is defined`);
      n.outputs.forEach((o) => seen.add(o));
    }
  });

  it('round-trips through ONNX ModelProto (nodes, attributes, opsets, initializers)', () => {
    const g = smallGraph();
    // decoded protobuf messages have every field filled; the generated typings mark them optional
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const m = parseModel(serialise(g)) as any;
    assert.deepEqual(
      m.opsetImport.map((o: { domain: string; version: number }) => [o.domain, Number(o.version)]),
      [
        ['', 21],
        ['com.microsoft', 1],
      ],
    );
    assert.deepEqual(
      m.graph.node.map((n: { opType: string }) => n.opType),
      ['MatMul', 'Add', 'SimplifiedLayerNormalization', 'Identity'],
    );
    const norm = m.graph!.node[2];
    const eps = norm.attribute.find((a: { name: string }) => a.name === 'epsilon')!;
    assert.equal(Math.fround(eps.f), Math.fround(1e-6));
    assert.equal(m.graph!.input[0].type!.tensorType!.shape!.dim[0].dimParam, 'batch');
    const w = m.graph.initializer.find((t: { name: string }) => t.name === 'w')!;
    assert.deepEqual(w.dims.map(Number), [8, 300]);
    assert.equal(w.rawData.length, 8 * 300 * 4);
    assert.equal(new Float32Array(Uint8Array.from(w.rawData).buffer)[5], Math.fround(Math.sin(5) * 0.1));
    assert.equal(m.graph!.output[0].name, 'y');
  });

  it('runs on ORT: inline and external data give the JS reference numbers', async () => {
    const x = [0.5, -1, 2, 0.25, 0, 1, -0.5, 3];
    const want = reference(x);
    const feeds = { x: new ort.Tensor('float32', Float32Array.from(x), [1, 8]) };
    const inline = await ort.InferenceSession.create(serialise(smallGraph()));
    const a = (await inline.run(feeds)).y.data as Float32Array;

    const dir = mkdtempSync(join(tmpdir(), 'arenakit-graph-'));
    try {
      const store = externalStore(join(dir, 'm.onnx.data'));
      const g = smallGraph(store);
      assert.equal(store.close(), 'm.onnx.data');
      const ext = g.initializers.find((t) => t.name === 'w')!;
      assert.ok(ext.external && !ext.data, 'w should be external');
      assert.ok(g.initializers.find((t) => t.name === 'bias')!.external, 'bias (1200 B) should be external');
      writeFileSync(join(dir, 'm.onnx'), serialise(g));
      assert.ok(statSync(join(dir, 'm.onnx')).size < 2000, 'model file should not hold the weights');
      assert.ok(statSync(join(dir, 'm.onnx.data')).size >= 8 * 300 * 4);
      const s = await ort.InferenceSession.create(join(dir, 'm.onnx'));
      const e = (await s.run(feeds)).y.data as Float32Array;
      let d = 0;
      for (let i = 0; i < 300; i++) d = Math.max(d, Math.abs(a[i] - want[i]), Math.abs(e[i] - a[i]));
      console.log(`      max abs diff vs JS reference ${d.toExponential(3)} (tolerance 1e-5)`);
      assert.ok(d < 1e-5, `diff ${d}`);
      assert.ok(readFileSync(join(dir, 'm.onnx')).includes(Buffer.from('m.onnx.data')));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes attributes of every kind and rounds float16 like IEEE', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'float32', [2]);
    b.op(
      'Custom',
      [x],
      [{ dtype: 'float32', shape: [2] }],
      { i: attr.int(3), f: attr.float(0.5), s: attr.string('tanh'), is: attr.ints([1, 2]), fs: attr.floats([0.25]) },
      { domain: 'com.microsoft' },
    );
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const n = (parseModel(serialise(b.finish())) as any).graph.node[0];
    const a = Object.fromEntries(n.attribute.map((t: { name: string }) => [t.name, t]));
    assert.equal(Number(a.i.i), 3);
    assert.equal(a.f.f, 0.5);
    assert.equal(new TextDecoder().decode(a.s.s), 'tanh');
    assert.deepEqual(a.is.ints.map(Number), [1, 2]);
    assert.deepEqual(a.fs.floats, [0.25]);
    assert.equal(n.domain, 'com.microsoft');
    assert.equal(f32ToF16(1), 0x3c00);
    assert.equal(f32ToF16(65504), 0x7bff);
    assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // tie -> even
    assert.equal(f32ToF16(2 ** -24), 0x0001);
  });
});

describe('decoder lowering: runtime fusions', () => {
  it('fused gemma2-tiny graph: residual Add + RMSNorm fused, packed q/k/v into GroupQueryAttention; explicit graph has only standard attention ops', () => {
    const dir = join(FIXTURES, 'gemma2-tiny');
    const cfg = fixtureConfig(dir);
    const ck = openCheckpoint(dir);
    const count = (g: { nodes: { op: string }[] }, op: string) => g.nodes.filter((n) => n.op === op).length;
    const fused = buildDecoderGraph(cfg, ck.get, { linear: { kind: 'float' }, activations: 'float32' });
    const explicit = buildDecoderGraph(cfg, ck.get, {
      linear: { kind: 'float' },
      activations: 'float32',
      attention: 'explicit',
    });
    ck.close();
    const L = cfg.numLayers;
    // two residual adds per layer, each followed by a norm (the MLP's, the next layer's or the final one)
    assert.equal(count(fused, 'SkipSimplifiedLayerNormalization'), 2 * L);
    assert.equal(count(fused, 'Add'), 0);
    // the first input norm + Gemma-2's post-attention and post-MLP norms
    assert.equal(count(fused, 'SimplifiedLayerNormalization'), 1 + 2 * L);
    const gqa = fused.nodes.filter((n) => n.op === 'GroupQueryAttention');
    assert.equal(gqa.length, L);
    assert.ok(
      gqa.every((n) => n.inputs[1] === '' && n.inputs[2] === ''),
      'GQA takes the packed q/k/v projection',
    );
    assert.equal(count(fused, 'Split'), 0); // q/k/v packed into GQA, gate and up two MatMuls (issue 21)
    assert.equal(count(explicit, 'GroupQueryAttention'), 0);
    assert.ok(
      explicit.nodes.every((n) => n.domain === '' || n.op === 'SkipSimplifiedLayerNormalization'),
      'explicit attention uses default-domain ops',
    );
    assert.equal(count(explicit, 'Softmax'), L);
    const used = new Set(fused.nodes.flatMap((n) => n.inputs));
    assert.ok(
      fused.initializers.every((i) => used.has(i.name)),
      'no unused initializers left by the fusions',
    );
  });
});

describe('decoder lowering: sliding window left out when no input can be longer', function () {
  this.timeout(60000);
  it('maxTokens <= window: no window in either variant, same logits on inputs of up to window tokens', async () => {
    const dir = join(FIXTURES, 'gemma2-tiny');
    const cfg = fixtureConfig(dir); // window 8 on even layers
    const ck = openCheckpoint(dir);
    const inputs = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8'));
    const short = {
      input_ids: inputs.padded.input_ids.map((r: number[]) => r.slice(0, 8)),
      attention_mask: inputs.padded.attention_mask.map((r: number[]) => r.slice(0, 8)),
    };
    for (const attention of ['fused', 'explicit'] as const) {
      const opts = { linear: { kind: 'float' as const }, activations: 'float32' as const, attention };
      const windowed = buildDecoderGraph(cfg, ck.get, opts);
      const open = buildDecoderGraph(cfg, ck.get, { ...opts, maxTokens: 8 });
      const hasWindow = (g: typeof open) =>
        g.nodes.some((n) => 'local_window_size' in n.attrs || n.name.startsWith('in_window'));
      assert.ok(
        hasWindow(windowed) && !hasWindow(open),
        `${attention}: the window should be dropped only with maxTokens <= 8`,
      );
      assert.ok(hasWindow(buildDecoderGraph(cfg, ck.get, { ...opts, maxTokens: 9 })));
      const d = maxAbsDiff(await runLogits(serialise(windowed), short), await runLogits(serialise(open), short));
      console.log(`      ${attention}: 8-token inputs, window 8 vs no window: ${d.toExponential(3)} (tolerance 1e-6)`);
      assert.ok(d <= 1e-6);
    }
    ck.close();
  });
});
