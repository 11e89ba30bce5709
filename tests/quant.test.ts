// MatMulNBits graphs (int4 / int8, symmetric / zero points) vs the float graph built from the same
// weights dequantized by the JS reference: checks the packing layout, scales and zero points as ORT
// reads them. Also a hand-made block to pin the ORT conventions.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialise } from '../src/graph/serialise';
import { buildDecoderGraph } from '../src/model/lower';
import {
  dequantizeNBits,
  formatErrorReport,
  quantizeNBits,
  type NBitsSpec,
  type ReconstructionError,
} from '../src/quant/nbits';
import type { WeightSource } from '../src/types';
import { openCheckpoint } from '../src/weights/safetensors';
import { tokenizerAssetsDir } from '../src/cli/commands/tiny';
import { tinyConfig, tinyWeights } from '../src/model/tiny';
import { LABEL_COLUMNS } from '../src/task/task';
import { readManifest } from '../src/weights/manifest';
import { linearFormat, writeWeightsDir } from '../src/weights/write';
import { run as importCli } from '../src/cli/commands/import';
import { FIXTURES, fixtureConfig, maxAbsDiff, runLogits } from './helpers/fixtures';

const LINEAR = /\.(q|k|v|o|gate|up|down)_proj\.weight$/;

describe('quantization (MatMulNBits vs JS dequantize reference)', function () {
  this.timeout(60000);

  it('dequantize inverts the packing on a hand-made block', () => {
    // one row, K = 16: values are exact multiples of the scale, so 4-bit RTN reproduces them.
    const w = Float32Array.from([-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7].map((v) => v * 0.25));
    for (const spec of [
      { bits: 4, blockSize: 16, symmetric: true },
      { bits: 4, blockSize: 16, symmetric: false },
      { bits: 8, blockSize: 16, symmetric: true },
      { bits: 8, blockSize: 16, symmetric: false },
    ] as NBitsSpec[]) {
      const q = quantizeNBits(w, 1, 16, spec);
      const d = maxAbsDiff(dequantizeNBits(q), w);
      // int8 with zero points: scale 3.75 / 255 is rounded to fp16, so the codes are exact only to half a step
      const tol = spec.bits === 8 && !spec.symmetric ? 0.5 * q.scales[0] : 1e-6;
      assert.ok(d <= tol, `${JSON.stringify(spec)}: diff ${d}`);
    }
    const q = quantizeNBits(w, 1, 16, { bits: 4, blockSize: 16, symmetric: true });
    assert.equal(q.scales[0], 0.25); // the largest magnitude (-2) maps to code 0 = -8 * scale
    assert.equal(q.b[0], 0x10); // element 0 (code 0) in the low nibble, element 1 (code 1) in the high nibble
  });

  const specs: NBitsSpec[] = [
    { bits: 4, blockSize: 32, symmetric: true },
    { bits: 4, blockSize: 16, symmetric: false },
    { bits: 8, blockSize: 32, symmetric: true },
    { bits: 8, blockSize: 64, symmetric: false },
  ];
  for (const spec of specs) {
    it(`int${spec.bits} block ${spec.blockSize} ${spec.symmetric ? 'symmetric' : 'zero points'}: gemma2-tiny matches the dequantized float graph`, async () => {
      const dir = join(FIXTURES, 'gemma2-tiny');
      const cfg = fixtureConfig(dir);
      const ckpt = openCheckpoint(dir);
      const dequant: WeightSource = (name) => {
        const t = ckpt.get(name);
        if (!LINEAR.test(name)) return t;
        const [N, K] = t.shape;
        return { shape: t.shape, data: dequantizeNBits(quantizeNBits(t.data, N, K, spec)) };
      };
      const report: ReconstructionError[] = [];
      const qGraph = serialise(
        buildDecoderGraph(cfg, ckpt.get, {
          linear: { kind: 'nbits', ...spec } as never,
          activations: 'float32',
          quantReport: report,
        }),
      );
      const fGraph = serialise(buildDecoderGraph(cfg, dequant, { linear: { kind: 'float' }, activations: 'float32' }));
      ckpt.close();
      console.log(formatErrorReport(report.filter((r) => /layers\.0\./.test(r.name))).replace(/^/gm, '      '));
      const worst = report.reduce((a, r) => (r.relRmse > a.relRmse ? r : a));
      console.log(
        `      ${report.length} weights; worst relative rmse ${(100 * worst.relRmse).toFixed(2)}% (${worst.name})`,
      );
      assert.equal(report.length, cfg.numLayers * 7);
      const inputs = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8'));
      const hf = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).base_logits;
      for (const which of ['padded', 'single']) {
        const q = await runLogits(qGraph, inputs[which]);
        const f = await runLogits(fGraph, inputs[which]);
        const d = maxAbsDiff(q, f);
        const vsHf = maxAbsDiff(q, (hf[which] as number[][]).flat());
        console.log(
          `      ${which}: MatMulNBits vs dequantized float graph ${d.toExponential(3)} (tolerance 1e-4); vs HF fp32 ${vsHf.toExponential(3)} (quantization error, not checked)`,
        );
        assert.ok(d <= 1e-4, `${which}: ${d}`);
      }
    });
  }
});

describe('tiny weights directory (writeWeightsDir, int4 vs fp32)', function () {
  this.timeout(120000);
  it('writes a directory readManifest accepts; int4 logits track fp32 and depend on the input', async () => {
    const root = mkdtempSync(join(tmpdir(), 'arenakit-tiny-'));
    try {
      const config = tinyConfig();
      const logits: Record<string, Float32Array> = {};
      // 3 rows of 80 tokens (longer than the 32-token window), one right-padded to 50
      const ids = [0, 1, 2].map((r) =>
        Array.from({ length: 80 }, (_, i) =>
          r < 2 && i >= (r === 1 ? 50 : 80) ? 0 : 2 + ((i * 7919 + r * 104729) % 255990),
        ),
      );
      const mask = ids.map((row, r) => row.map((_, i) => (r === 1 && i >= 50 ? 0 : 1)));
      const report: ReconstructionError[] = [];
      for (const kind of ['fp32', 'int4'] as const) {
        const dir = join(root, kind);
        await writeWeightsDir({
          dir,
          config,
          weights: tinyWeights(config, 7),
          quant: kind === 'int4' ? { kind, blockSize: 32, symmetric: true } : { kind },
          graphs: ['cpu'],
          tokenizerDir: tokenizerAssetsDir(),
          maxTokens: 512,
          labels: [...LABEL_COLUMNS],
          provenance: { test: 'quant.test.ts' },
          embedding: 'float16',
          quantReport: kind === 'int4' ? report : undefined,
        });
        const m = readManifest(dir);
        assert.equal(m.graphs.cpu!.file, 'model.cpu.onnx');
        logits[kind] = await runLogits(join(dir, 'model.cpu.onnx'), { input_ids: ids, attention_mask: mask }, {});
      }
      console.log(formatErrorReport(report.slice(0, 7)).replace(/^/gm, '      '));
      const d = maxAbsDiff(logits.int4, logits.fp32);
      const spread = maxAbsDiff(logits.fp32.subarray(0, 3), logits.fp32.subarray(6, 9));
      console.log(`      fp32 logits ${Array.from(logits.fp32, (x) => x.toFixed(3)).join(' ')}`);
      console.log(
        `      int4 vs fp32 max abs diff ${d.toExponential(3)} (tolerance 0.2: int4 RTN moves weights by ~8% rms, exactness is checked above); row 0 vs row 2 ${spread.toExponential(3)} (must be > 1e-3)`,
      );
      assert.ok(
        logits.fp32.every((x) => Number.isFinite(x) && Math.abs(x) < 2),
        'near-uniform logits',
      );
      assert.ok(spread > 1e-3, 'logits must depend on the input');
      assert.ok(d < 0.2, `int4 vs fp32 ${d}`);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('the block-size rule (issue 17: one rule for the CLI, the writer and the quantizer)', () => {
  it('every size the import accepts quantizes, and every size it refuses (48, 256, 8) is refused by the quantizer and the writer too', async () => {
    const w = Float32Array.from({ length: 2 * 256 }, (_, i) => Math.sin(i));
    for (const bs of [16, 32, 64, 128]) {
      const q = quantizeNBits(w, 2, 256, { bits: 4, blockSize: bs, symmetric: true });
      const d = maxAbsDiff(dequantizeNBits(q), w);
      console.log(
        `      block ${bs}: int4 round trip max abs diff ${d.toExponential(3)} (tolerance 0.126: one step of a block whose largest weight is 1)`,
      );
      assert.ok(d <= 0.126);
      const lf = linearFormat({ kind: 'int4', blockSize: bs });
      assert.ok(lf.kind === 'nbits' && lf.blockSize === bs);
    }
    for (const bs of [48, 256, 8]) {
      assert.throws(
        () => quantizeNBits(w, 2, 256, { bits: 4, blockSize: bs, symmetric: true }),
        (e: Error) => e.name === 'QuantError' && e.message.includes(String(bs)),
      );
      assert.throws(
        () => linearFormat({ kind: 'int8', blockSize: bs }),
        (e: Error) => e.name === 'WeightsWriteError' && e.message.includes(String(bs)),
      );
      await assert.rejects(
        importCli(['--base', 'x', '--out', 'y', '--quant', 'int4', '--block-size', String(bs)]),
        (e: Error) => e.name === 'UsageError' && e.message.includes(String(bs)),
      );
    }
  });
});
