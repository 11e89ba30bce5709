// Issue 21: the int8-rows CPU linear (src/graph/builder.ts quantizeRows + matmulInt8Rows, the CPU-only int8
// import's kernel): int8 weights per output feature x int8 activations per token through ORT's MatMulInteger
// (MLAS u8 x s8 GEMM: AMX / VNNI). Checked against a JS reference of the same arithmetic, and for the property
// that makes resumed runs bit-identical: a row's logits do not depend on the rows batched with it.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../src/graph/builder';
import { serialise } from '../src/graph/serialise';
import { quantizeInt8Columns, dequantizeInt8Columns } from '../src/quant/nbits';
import { createSession, runLogits } from '../src/infer/session';
import { importCheckpoint } from '../src/weights/import';
import { readManifest } from '../src/weights/manifest';
import { FIXTURES } from './helpers/fixtures';
import { writeByteTokenizer } from './helpers/byte-tokenizer';

/** ONNX Round: halves to even. */
const roundEven = (x: number) => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/** The JS reference of one int8-rows linear: x [M, K], w [N, K] (HF layout) -> y [M, N], in float32 steps. */
function reference(x: Float32Array, M: number, K: number, w: Float32Array, N: number): Float32Array {
  const q = quantizeInt8Columns(w, N, K);
  const f = Math.fround;
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    let mx = 0;
    for (let k = 0; k < K; k++) mx = Math.max(mx, Math.abs(x[m * K + k]));
    mx = Math.max(mx, f(1e-30));
    const inv = f(127 / mx);
    const xq = new Int32Array(K);
    for (let k = 0; k < K; k++) xq[k] = roundEven(f(x[m * K + k] * inv));
    const rowScale = f(mx * f(1 / 127));
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += xq[k] * q.b[k * N + n];
      y[m * N + n] = f(f(f(acc) * rowScale) * q.scales[n]);
    }
  }
  return y;
}

describe('int8-rows CPU linear (MatMulInteger, per-token int8 activations)', function () {
  this.timeout(120_000);

  it('one linear equals the JS reference of its arithmetic; its weights round-trip within half a step', async () => {
    const [M, K, N] = [37, 96, 80];
    let s = 7;
    const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 2;
    const x = Float32Array.from({ length: M * K }, (_, i) => rnd() * (i % K === 5 ? 40 : 1)); // one outlier channel
    const w = Float32Array.from({ length: N * K }, () => rnd() * 0.05);
    const q = quantizeInt8Columns(w, N, K);
    const back = dequantizeInt8Columns(q);
    let worst = 0;
    for (let n = 0; n < N; n++)
      for (let k = 0; k < K; k++) worst = Math.max(worst, Math.abs(back[n * K + k] - w[n * K + k]) / q.scales[n]);
    assert.ok(worst <= 0.5 + 1e-6, `weight round-trip ${worst} steps`);

    const b = new GraphBuilder('int8rows');
    const xin = b.input('x', 'float32', ['batch', K]);
    const y = b.matmulInt8Rows(
      b.quantizeRows(xin, 'xq'),
      {
        b: b.initializer('w', 'int8', [K, N], new Uint8Array(q.b.buffer)),
        scales: b.constFloat('ws', q.scales, [N]),
      },
      N,
      'lin',
    );
    b.output(y, 'y');
    const sess = await ort.InferenceSession.create(serialise(b.finish()), {
      executionProviders: ['cpu'],
      intraOpNumThreads: 1,
    });
    const got = (await sess.run({ x: new ort.Tensor('float32', x, [M, K]) })).y.data as Float32Array;
    await sess.release();
    const want = reference(x, M, K, w, N);
    let d = 0;
    let scale = 0;
    for (let i = 0; i < want.length; i++) {
      d = Math.max(d, Math.abs(got[i] - want[i]));
      scale = Math.max(scale, Math.abs(want[i]));
    }
    console.log(
      `      ${M}x${K} @ ${K}x${N}: ORT vs JS reference max abs diff ${d.toExponential(2)} (tolerance ${(1e-6 * scale).toExponential(2)}, outputs up to ${scale.toFixed(2)})`,
    );
    assert.ok(d <= 1e-6 * scale);
  });

  it('an imported int8-rows graph scores a row the same alone and in a batch (bit for bit)', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'arenakit-int8rows-'));
    try {
      writeByteTokenizer(join(tmp, 'tok'));
      const out = join(tmp, 'w');
      await importCheckpoint({
        base: join(FIXTURES, 'gemma2-tiny'),
        adapter: join(FIXTURES, 'gemma2-tiny', 'adapter'),
        tokenizer: join(tmp, 'tok'),
        quant: 'int8',
        graphs: ['cpu'],
        template: 'gemma-chat',
        maxTokens: 256,
        labels: ['winner_model_a', 'winner_model_b', 'winner_tie'],
        out,
      });
      const m = readManifest(out);
      assert.equal(m.quantization?.linear, 'int8-rows');
      const o = await createSession(out, m.graphs.cpu!, 'fused', 'cpu', { ep: 'cpu', threads: 1 });
      const S = 48;
      const rows = 5;
      const ids = BigInt64Array.from({ length: rows * S }, (_, i) => BigInt(3 + ((i * 131 + (i % 7)) % 500)));
      const mask = new BigInt64Array(rows * S).fill(1n);
      const batch = await runLogits(o.session, ids, mask, rows, S);
      let d = 0;
      for (let r = 0; r < rows; r++) {
        const one = await runLogits(o.session, ids.slice(r * S, (r + 1) * S), mask.slice(r * S, (r + 1) * S), 1, S);
        for (let c = 0; c < 3; c++) d = Math.max(d, Math.abs(one[c] - batch[r * 3 + c]));
      }
      await o.session.release();
      console.log(
        `      ${rows} rows x ${S} tokens: alone vs batched max abs diff ${d} (tolerance 0); logits ${Array.from(batch.slice(0, 3)).map((v) => v.toFixed(3))}`,
      );
      assert.equal(d, 0);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
