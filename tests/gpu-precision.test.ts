// GPU activation precision from nvidia-smi's compute capability (issue 20): a fake nvidia-smi prints what a
// T4 / L4 / A100 / H100 driver prints for --query-gpu=compute_cap.
import assert from 'node:assert/strict';
import { chooseGpuPrecision, GpuPrecisionError, parseComputeCaps, readComputeCaps } from '../src/infer/gpu-precision';
import { fakeComputeCapSmi } from './helpers/nvidia-smi-cc';

describe('GPU precision from the compute capability', () => {
  const via = (caps: string[], forced?: string) =>
    chooseGpuPrecision(readComputeCaps({ ...process.env, ARENAKIT_NVIDIA_SMI: fakeComputeCapSmi(caps) }).caps, forced);
  it('T4 7.5 -> fp16; L4 8.9, A100 8.0, H100 9.0 -> bf16 (through a fake nvidia-smi)', () => {
    for (const [cap, want] of [
      ['7.5', 'float16'],
      ['8.9', 'bfloat16'],
      ['8.0', 'bfloat16'],
      ['9.0', 'bfloat16'],
      ['8.6', 'bfloat16'],
      ['7.0', 'float16'],
    ] as const) {
      const r = via([cap]);
      console.log(`      ${cap}: ${r.precision} (${r.reason})`);
      assert.equal(r.precision, want, cap);
    }
  });
  it('the oldest GPU decides; --gpu-precision overrides; unknown -> fp16', () => {
    assert.equal(via(['8.9', '7.5']).precision, 'float16');
    assert.equal(via(['7.5'], 'bf16').precision, 'bfloat16');
    assert.equal(via(['8.9'], 'fp16').precision, 'float16');
    assert.throws(
      () => via(['8.9'], 'fp8'),
      (e: Error) => e instanceof GpuPrecisionError && /--gpu-precision fp8: expected fp16 or bf16/.test(e.message),
    );
    const none = readComputeCaps({ ...process.env, ARENAKIT_NVIDIA_SMI: '/nonexistent/nvidia-smi' });
    assert.deepEqual(none.caps, []);
    assert.match(none.note!, /nonexistent\/nvidia-smi --query-gpu=compute_cap failed/);
    assert.equal(chooseGpuPrecision(none.caps).precision, 'float16');
  });
  it('refuses a line that is not MAJOR.MINOR, quoting it', () => {
    assert.deepEqual(parseComputeCaps('7.5\n8.9\n'), [7.5, 8.9]);
    assert.throws(() => parseComputeCaps('[N/A]\n'), /compute_cap printed "\[N\/A\]"/);
  });
});
