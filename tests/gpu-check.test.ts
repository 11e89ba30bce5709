// The prepared GPU check (bench/gpu-check.sh + bench/gpu-check.ts, issue 22 item 9), run here as the GPU
// machine would run it, on the CPU EP at a tiny width: the upload is built (compressed node + the ORT
// core + the bundle, under 60 MiB), unpacked into a temp folder, and the check writes its JSON report:
// the runner's self-check, parity with the fp32 CPU graph and throughput per EP and attention variant,
// and every EP that cannot load (CUDA here) recorded with its reason.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { checkConfig } from '../bench/gpu-check';

const repo = join(__dirname, '..');

describe('GPU check script (bench/gpu-check.sh local, CPU EP, tiny width)', function () {
  this.timeout(600_000);

  it('Gemma-2-2B widths by default', () => {
    const c = checkConfig('2b', 4, 32768);
    assert.deepEqual(
      [c.hiddenSize, c.intermediateSize, c.numHeads, c.numKvHeads, c.headDim, c.numLayers, c.vocabSize],
      [2304, 9216, 8, 4, 256, 4, 32768],
    );
  });

  it('packs under 60 MiB, runs from the unpacked upload and reports self-check, parity and throughput per EP', () => {
    const r = spawnSync(
      join(repo, 'bench', 'gpu-check.sh'),
      ['local', '--', '--width', 'tiny', '--eps', 'cpu,cuda', '--seq', '128', '--reps', '2'],
      { encoding: 'utf8', cwd: repo, timeout: 540_000, maxBuffer: 64 << 20 },
    );
    assert.equal(r.status, 0, `gpu-check.sh local failed:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
    const size = /gpu-check pack: .* total ([\d.]+) MiB \(limit 60\)/.exec(r.stdout);
    assert.ok(size, r.stdout.slice(0, 2000));
    console.log(`      upload ${size![1]} MiB`);
    assert.ok(Number(size![1]) < 60);
    const report = JSON.parse(r.stdout.slice(r.stdout.indexOf('\n{') + 1));
    assert.deepEqual(report.ran, ['cpu fused float16', 'cpu explicit float16']);
    assert.ok(Object.keys(report.model.files).includes('model.onnx.data'), 'the t4 layout: one shared data file');
    for (const x of report.results.filter((x: { ep: string }) => x.ep === 'cpu')) {
      console.log(
        `      cpu ${x.variant}: self-check ${x.self_check.maxDiff.toExponential(2)} (tolerance ${x.self_check.tolerance}), parity ${x.parity_max_abs.toExponential(2)}, ${x.throughput.tokens_per_s.toFixed(0)} tokens/s`,
      );
      assert.equal(x.loaded, true);
      assert.ok(x.self_check.rows > 0 && x.self_check.maxDiff <= x.self_check.tolerance);
      assert.ok(x.parity_max_abs < 0.05, `parity ${x.parity_max_abs}`);
      assert.ok(x.throughput.tokens_per_s > 0);
      // IO binding (issue 21): the same logits, bit for bit, and a rate.
      assert.equal(x.io_binding.max_abs_vs_unbound, 0, JSON.stringify(x.io_binding));
      assert.ok(x.io_binding.tokens_per_s > 0);
    }
    const cuda = report.results.find((x: { ep: string }) => x.ep === 'cuda');
    assert.equal(cuda.loaded, false);
    assert.match(cuda.error, /missing libonnxruntime_providers_cuda\.so/);
  });
});
