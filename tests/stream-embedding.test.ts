// Row-range reads and the streamed embedding: SafetensorsFile.readRows / WeightSource.rows against
// the whole-tensor read (F32, F16, BF16, random bit patterns, a last partial chunk), the LoRA merge
// of a row range against the whole merge, and a graph whose embedding is streamed chunk by chunk
// (into memory and into an appended external-data file) against one built from the whole tensor.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialise, writeModel } from '../src/graph/serialise';
import { externalStore } from '../src/graph/store';
import { buildDecoderGraph } from '../src/model/lower';
import type { HostTensor, WeightSource } from '../src/types';
import { mergedSource, openAdapter } from '../src/weights/peft';
import { openCheckpoint, openSafetensors, SafetensorsError } from '../src/weights/safetensors';
import { FIXTURES, fixtureConfig, maxAbsDiff, runLogits } from './helpers/fixtures';

const WIDTH = { F32: 4, F16: 2, BF16: 2 } as const;

/** A safetensors file with a small tensor first (so the table does not start at offset 0) and a [rows, cols] table of random bits. */
function writeFile(path: string, dtype: keyof typeof WIDTH, rows: number, cols: number, seed: number): void {
  const w = WIDTH[dtype];
  const pre = Buffer.alloc(3 * w);
  const table = Buffer.alloc(rows * cols * w);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < table.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    table[i] = s & 0xff;
  }
  const header = JSON.stringify({
    pre: { dtype, shape: [3], data_offsets: [0, pre.length] },
    table: { dtype, shape: [rows, cols], data_offsets: [pre.length, pre.length + table.length] },
  });
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  writeFileSync(path, Buffer.concat([len, Buffer.from(header), pre, table]));
}

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

describe('row-range reads (safetensors, checkpoint, PEFT merge)', () => {
  let tmp: string;
  before(() => (tmp = mkdtempSync(join(tmpdir(), 'arenakit-rows-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  for (const dtype of ['F32', 'F16', 'BF16'] as const)
    it(`${dtype}: chunks of 8 rows (last one partial) and odd ranges equal the whole-tensor read bit for bit`, () => {
      const dir = join(tmp, dtype);
      require('node:fs').mkdirSync(dir);
      const rows = 37;
      const cols = 5;
      writeFile(join(dir, 'model.safetensors'), dtype, rows, cols, 77 + rows);
      const ck = openCheckpoint(dir);
      try {
        const whole = ck.get('table');
        assert.deepEqual(ck.get.shape!('table'), [rows, cols]);
        const wb = bits(whole.data);
        let r0 = 0;
        let chunks = 0;
        for (; r0 < rows; r0 += 8, chunks++) {
          const n = Math.min(8, rows - r0);
          const t = ck.get.rows!('table', r0, n);
          assert.deepEqual(t.shape, [n, cols]);
          assert.deepEqual(bits(t.data), wb.subarray(r0 * cols, (r0 + n) * cols), `rows ${r0}..${r0 + n - 1}`);
        }
        assert.equal(chunks, 5); // 4 full chunks + the partial one of 5 rows
        for (const [s, n] of [
          [0, rows],
          [36, 1],
          [13, 0],
          [3, 17],
        ])
          assert.deepEqual(
            bits(ck.get.rows!('table', s, n).data),
            wb.subarray(s * cols, (s + n) * cols),
            `rows [${s}, ${s + n})`,
          );
        assert.throws(() => ck.get.rows!('table', 30, 8), SafetensorsError);
        assert.throws(() => ck.get.rows!('table', -1, 2), SafetensorsError);
        // A 1-D tensor reads by elements.
        assert.deepEqual(bits(ck.get.rows!('pre', 1, 2).data), bits(ck.get('pre').data).subarray(1, 3));
        console.log(`      ${dtype}: ${rows} x ${cols}, ${chunks} chunks of <= 8 rows, identical to the whole read`);
      } finally {
        ck.close();
      }
      const f = openSafetensors(join(dir, 'model.safetensors'));
      try {
        assert.deepEqual(bits(f.readRows('table', 36, 1).data), bits(f.read('table').data).subarray(36 * cols));
      } finally {
        f.close();
      }
    });

  it('the PEFT merged source reads row ranges of LoRA targets, saved modules and plain tensors exactly', () => {
    const dir = join(FIXTURES, 'gemma2-tiny');
    const ck = openCheckpoint(dir);
    const ad = openAdapter(join(dir, 'adapter'));
    try {
      const m = mergedSource(ck.get, ad);
      assert.ok(m.rows && m.shape, 'merged source over a row-reading checkpoint reads rows');
      const target = [...ad.lora.keys()][0];
      const names = [target, 'model.embed_tokens.weight', ...ad.saved.keys()];
      for (const name of names) {
        const whole = m(name);
        const [R] = whole.shape;
        assert.deepEqual(m.shape!(name), whole.shape, name);
        const cols = whole.data.length / R;
        const step = Math.max(1, Math.ceil(R / 3) - 1);
        const parts: HostTensor[] = [];
        for (let r0 = 0; r0 < R; r0 += step) parts.push(m.rows!(name, r0, Math.min(step, R - r0)));
        const joined = new Float32Array(whole.data.length);
        let off = 0;
        for (const p of parts) {
          joined.set(p.data, off);
          off += p.data.length;
        }
        assert.equal(off, R * cols);
        assert.deepEqual(bits(joined), bits(whole.data), name);
      }
      console.log(`      merged rows identical for ${names.join(', ')}`);
      const plain: WeightSource = (n) => ck.get(n);
      assert.equal(mergedSource(plain, ad).rows, undefined, 'no rows without a row-reading base');
    } finally {
      ad.close();
      ck.close();
    }
  });
});

describe('streamed embedding: graph built from row chunks equals the whole-tensor graph', () => {
  let tmp: string;
  before(() => (tmp = mkdtempSync(join(tmpdir(), 'arenakit-stream-emb-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  for (const embedding of ['float16', 'float32'] as const)
    it(`gemma2-tiny, ${embedding} table: identical initializers in memory, identical external data file, identical logits`, async () => {
      const dir = join(FIXTURES, 'gemma2-tiny');
      const cfg = fixtureConfig(dir);
      const ck = openCheckpoint(dir);
      try {
        const whole: WeightSource = (n) => ck.get(n); // no rows: the whole-tensor path
        assert.equal(whole.rows, undefined);
        let rowCalls = 0;
        const streamed: WeightSource = Object.assign((n: string) => ck.get(n), {
          shape: ck.get.shape,
          rows: (n: string, s: number, c: number) => (rowCalls++, ck.get.rows!(n, s, c)),
        });
        const opts = {
          linear: { kind: 'nbits', bits: 4, blockSize: 32, symmetric: true } as const,
          activations: 'float32' as const,
          embedding,
        };
        const chunkRows = 100; // vocab 512: 5 full chunks + 12 rows
        const memWhole = serialise(buildDecoderGraph(cfg, whole, opts));
        const memStreamed = serialise(buildDecoderGraph(cfg, streamed, { ...opts, embedChunkRows: chunkRows }));
        assert.equal(rowCalls, Math.ceil(cfg.vocabSize / chunkRows));
        assert.ok(Buffer.from(memWhole).equals(Buffer.from(memStreamed)), 'in-memory ONNX bytes differ');

        // External data: the original store with the whole tensor vs the chunked store with appended chunks.
        const a = join(tmp, `whole-${embedding}`);
        const b = join(tmp, `streamed-${embedding}`);
        require('node:fs').mkdirSync(a);
        require('node:fs').mkdirSync(b);
        const sa = externalStore(join(a, 'model.onnx.data'));
        const ga = buildDecoderGraph(cfg, whole, { ...opts, store: sa });
        sa.close();
        const sb = externalStore(join(b, 'model.onnx.data'));
        rowCalls = 0;
        const gb = buildDecoderGraph(cfg, streamed, { ...opts, store: sb, embedChunkRows: chunkRows });
        sb.close();
        assert.equal(rowCalls, Math.ceil(cfg.vocabSize / chunkRows));
        const emb = gb.initializers.find((i) => i.name === 'model.embed_tokens.weight')!;
        assert.ok(emb.external, 'embedding went to the data file');
        assert.equal(emb.external!.length, cfg.vocabSize * cfg.hiddenSize * (embedding === 'float16' ? 2 : 4));
        writeModel(join(a, 'model.onnx'), ga);
        writeModel(join(b, 'model.onnx'), gb);
        const da = readFileSync(join(a, 'model.onnx.data'));
        const db = readFileSync(join(b, 'model.onnx.data'));
        assert.ok(da.equals(db), `external data differs (${da.length} vs ${db.length} bytes)`);
        assert.ok(
          readFileSync(join(a, 'model.onnx')).equals(readFileSync(join(b, 'model.onnx'))),
          'model.onnx differs',
        );

        const inputs = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8'));
        const la = await runLogits(join(a, 'model.onnx'), inputs.padded);
        const lb = await runLogits(join(b, 'model.onnx'), inputs.padded);
        const d = maxAbsDiff(la, lb);
        console.log(`      ${embedding}: ${da.length} data bytes identical; logits max abs diff ${d} (tolerance 0)`);
        assert.equal(d, 0);
      } finally {
        ck.close();
      }
    });

  it('a source whose rows disagree with the config is refused with the tensor name', () => {
    const dir = join(FIXTURES, 'gemma2-tiny');
    const cfg = fixtureConfig(dir);
    const ck = openCheckpoint(dir);
    try {
      const short: WeightSource = Object.assign((n: string) => ck.get(n), {
        shape: (n: string) =>
          n === 'model.embed_tokens.weight' ? [cfg.vocabSize - 1, cfg.hiddenSize] : ck.get.shape!(n),
        rows: ck.get.rows,
      });
      assert.throws(
        () => buildDecoderGraph(cfg, short, { linear: { kind: 'float' }, activations: 'float32' }),
        /model\.embed_tokens\.weight.*shape/,
      );
    } finally {
      ck.close();
    }
  });
});
