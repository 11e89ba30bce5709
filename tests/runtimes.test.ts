// The two ONNX Runtime cores a --cuda pack ships, run on their CPU EPs (no GPU here): the CUDA 12 core
// (onnxruntime-node 1.19.2) runs the explicit-attention graph its capability table assigns, and gives
// the same probabilities as the bundled 1.29 core on the real sample rows; it rejects the fused graph.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES } from './helpers/fixtures';
import { fakeNvidiaSmi } from './helpers/nvidia-smi';
import { makePeakedModel, maxDiff, node, ok, ROOT, RUNNER, submissionProbs } from './helpers/peaked';

describe('ONNX Runtime cores: cu12 (ORT 1.19.2) and cu13 (ORT 1.29) on their CPU EPs', function () {
  this.timeout(600000);
  let tmp: string, model: string, data: string;
  before(() => {
    assert.ok(
      existsSync(join(ROOT, 'dist', 'ort-cu12', 'ort.cjs')),
      'npm run build bundles the cu12 core into dist/ort-cu12 (dev dependency onnxruntime-node-cu12)',
    );
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-cores-'));
    model = makePeakedModel(tmp, 'peaked', { attention: 'fused,explicit' });
    data = join(tmp, 'rows.csv');
    writeFileSync(
      data,
      readFileSync(join(FIXTURES, '..', '..', 'data', 'arena-sample-999.csv'), 'utf8')
        .split('\n')
        .slice(0, 61)
        .join('\n') + '\n',
    );
  });

  it('predict --runtime cu12 --ep cpu equals --runtime cu13 --ep cpu within 1e-4 (swap TTA)', () => {
    const out: Record<string, string> = {};
    for (const r of ['cu12', 'cu13']) {
      out[r] = join(tmp, `${r}.csv`);
      const res = ok(RUNNER, [
        'predict',
        '--data',
        data,
        '--weights',
        model,
        '--ep',
        'cpu',
        '--runtime',
        r,
        '--tta',
        'swap',
        '--out',
        out[r],
      ]);
      const s = JSON.parse(res.stdout.trim().split('\n').pop()!);
      assert.deepEqual(s.runtime, [r]);
      assert.deepEqual(s.attention, [r === 'cu12' ? 'explicit' : 'fused']);
    }
    const d = maxDiff(submissionProbs(out.cu12), submissionProbs(out.cu13));
    console.log(
      `      cu12 (ORT 1.19.2, explicit) vs cu13 (ORT 1.29, fused): max prob diff ${d.toExponential(3)} on 60 rows (tolerance 1e-4)`,
    );
    assert.ok(d <= 1e-4);
    const probs = submissionProbs(out.cu13).flat();
    assert.ok(Math.max(...probs) > 0.9, 'the peaked model is far from uniform');
  });

  it('the 1.19.2 core rejects the fused GroupQueryAttention graph, and says which graph and core', () => {
    const r = node(RUNNER, [
      'predict',
      '--data',
      data,
      '--weights',
      model,
      '--ep',
      'cpu',
      '--runtime',
      'cu12',
      '--attention',
      'fused',
      '--out',
      join(tmp, 'x.csv'),
    ]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /ONNX Runtime 1\.19\.2 cannot load the fused graph on cpu/);
    assert.ok(!existsSync(join(tmp, 'x.csv')));
  });

  // Issue 22: the core is chosen by driver AND libraries; here no CUDA library resolves, so both run the
  // bundled core on the CPU, and doctor's library list and hints are those of the core the driver supports.
  it("doctor with a fake driver: 560 / CUDA 12.6 names cu12's libraries, 580 / 13.0 cu13's; nothing loads here (no libcuda): the CPU, exit 0", () => {
    for (const [driver, cuda, want] of [
      ['560.35.03', '12.6', 'cu12'],
      ['580.65.06', '13.0', 'cu13'],
    ]) {
      const r = node(RUNNER, ['doctor', '--weights', model, '--data', data, '--sample', '8'], {
        ARENAKIT_NVIDIA_SMI: fakeNvidiaSmi(driver, cuda),
      });
      assert.equal(r.status, 0, r.stderr);
      const s = JSON.parse(r.stdout.trim().split('\n').pop()!);
      console.log(
        `      driver ${driver} / CUDA ${cuda}: runtime ${s.runtime} (${s.runtime_reason}); ep ${s.ep} ${s.attention}; estimate ${s.estimate_seconds}s`,
      );
      assert.equal(s.libraries_for, want);
      assert.equal(s.runtime, 'cu13');
      assert.match(
        s.runtime_reason,
        new RegExp(
          `${want}: driver ${driver.replace(/\./g, '\\.')} .*do not resolve.*no CUDA core can load, cu13 core`,
        ),
      );
      assert.match(
        r.stderr,
        new RegExp(
          `missing libcublas\\.so\\.${want === 'cu12' ? '12: pip: nvidia-cublas-cu12' : '13: pip: nvidia-cublas \\(13'}`,
        ),
      );
      assert.equal(s.driver, driver);
      assert.equal(s.ep, 'cpu');
      assert.ok(s.libraries_missing.includes('libcuda.so.1'));
      assert.match(r.stderr, /FALLING BACK TO THE CPU/);
    }
  });

  // The bundled core is held to the issue's 1e-5 (also in train-grad.test.ts); ORT 1.19's CPU kernels land at
  // 9.5e-6 here, too close to 1e-5 to hold on another CPU's SIMD path, so that core gets 2e-5.
  it("the training graph on both cores (the T4 image needs cu12): one batch's 57 gradients vs HF (gemma2-tiny/grads.safetensors)", () => {
    for (const [core, tol] of [
      ['onnxruntime-node-cu12', 2e-5],
      ['onnxruntime-node', 1e-5],
    ] as const) {
      // a process per core: both libonnxruntime.so.1 share a soname
      const r = spawnSync(
        process.execPath,
        [
          join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'),
          join(ROOT, 'tests', 'helpers', 'train-on-core.ts'),
          core,
        ],
        { cwd: ROOT, encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
      console.log(
        `      ${core}: gradients max abs diff ${j.grad_max_abs_diff.toExponential(2)}, loss ${j.loss_diff.toExponential(2)} (tolerance ${tol})`,
      );
      assert.ok(j.grad_max_abs_diff < tol && j.loss_diff < tol);
    }
  });
});
