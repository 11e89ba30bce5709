// Runtime choice from the NVIDIA driver (src/infer/runtime.ts), with fake nvidia-smi scripts that
// print what real drivers print: 560.35.03 / CUDA 12.6 (the last public Kaggle T4 report) and
// 580 / CUDA 13.0. The driver decides the CUDA major, so it decides which ONNX Runtime core can run.
import assert from 'node:assert/strict';
import { fakeNvidiaSmi } from './helpers/nvidia-smi';
import { chooseAttention, chooseRuntime, parseNvidiaSmi, readDriver, RuntimeError } from '../src/infer/runtime';

describe('runtime choice from the driver (fake nvidia-smi)', () => {
  it('parses the header of nvidia-smi', () => {
    assert.deepEqual(parseNvidiaSmi('| NVIDIA-SMI 560.35.03   Driver Version: 560.35.03   CUDA Version: 12.6 |'), {
      driver: '560.35.03',
      cuda: '12.6',
    });
  });

  it('driver 560 / CUDA 12.6 (Kaggle T4) -> cu12; 580 / CUDA 13.0 -> cu13', () => {
    const both = ['cu13', 'cu12'] as const;
    const d560 = readDriver({ ...process.env, ARENAKIT_NVIDIA_SMI: fakeNvidiaSmi('560.35.03', '12.6') });
    assert.equal(d560.driver, '560.35.03');
    assert.deepEqual(d560.gpus, ['Tesla T4, 15360 MiB', 'Tesla T4, 15360 MiB']);
    const c560 = chooseRuntime(d560, [...both]);
    console.log(`      560/12.6: ${c560.runtime} (${c560.reason})`);
    assert.equal(c560.runtime, 'cu12');
    const c580 = chooseRuntime(
      readDriver({ ...process.env, ARENAKIT_NVIDIA_SMI: fakeNvidiaSmi('580.65.06', '13.0') }),
      [...both],
    );
    console.log(`      580/13.0: ${c580.runtime} (${c580.reason})`);
    assert.equal(c580.runtime, 'cu13');
    // A build without the CUDA 12 core says so instead of picking a core the driver cannot run on the GPU.
    assert.equal(chooseRuntime(d560, ['cu13']).runtime, 'cu13');
    assert.match(chooseRuntime(d560, ['cu13']).reason, /too old/);
  });

  it('no nvidia-smi -> the bundled core for the CPU; --runtime forces a core', () => {
    const none = readDriver({ ...process.env, ARENAKIT_NVIDIA_SMI: '/nonexistent/nvidia-smi' });
    assert.equal(none.found, false);
    const c = chooseRuntime(none, ['cu13', 'cu12']);
    assert.equal(c.runtime, 'cu13');
    assert.match(c.reason, /not found/);
    assert.equal(chooseRuntime(none, ['cu13', 'cu12'], 'cu12').runtime, 'cu12');
    assert.throws(() => chooseRuntime(none, ['cu13'], 'cu12'), RuntimeError);
  });

  it('attention variant from the capability table: WebGPU and ORT 1.19 run the explicit graph', () => {
    assert.equal(chooseAttention('cu13', 'cuda', ['fused', 'explicit']).variant, 'fused');
    assert.equal(chooseAttention('cu13', 'webgpu', ['fused', 'explicit']).variant, 'explicit');
    assert.equal(chooseAttention('cu12', 'cpu', ['fused', 'explicit']).variant, 'explicit');
    assert.equal(chooseAttention('cu12', 'cuda', ['fused', 'explicit']).variant, 'explicit');
    assert.throws(() => chooseAttention('cu12', 'cuda', ['fused']), /explicit attention graph/);
    assert.equal(chooseAttention('cu13', 'webgpu', ['fused', 'explicit'], 'fused').variant, 'fused');
  });
});
