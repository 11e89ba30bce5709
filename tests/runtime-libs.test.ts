// Issue 22 item 4: the core is chosen by driver AND libraries: cu13, then cu12, each when the driver
// supports its CUDA major and its provider + CUDA libraries resolve (fake folders holding files with
// the right sonames), else the bundled core on the CPU; a reason at each step; hints name the chosen
// core's wheels.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findCudaLibraries, ORT_PROVIDER_LIBS, wheelHint } from '../src/infer/cuda-libs';
import { chooseRuntimeByLibraries, RUNTIMES, type DriverInfo, type RuntimeName } from '../src/infer/runtime';

const drv = (driver: string, cuda: string): DriverInfo => ({
  found: true,
  driver,
  cuda,
  gpus: ['Tesla T4, 15360 MiB', 'Tesla T4, 15360 MiB'],
});

describe('runtime choice by driver and libraries (fake library folders)', () => {
  let tmp: string;
  const folder = (name: string, files: readonly string[]) => {
    const d = join(tmp, name);
    mkdirSync(d, { recursive: true });
    for (const f of files) writeFileSync(join(d, f), 'fake ELF');
    return d;
  };
  /** Missing libraries of each core, as the runner resolves them, in the fake folders given. */
  const prober = (cores: Partial<Record<RuntimeName, string>>, libDirs: string[]) => (r: RuntimeName) =>
    cores[r]
      ? findCudaLibraries({
          ortDir: cores[r]!,
          sonames: RUNTIMES[r].cudaSonames,
          searchDirs: libDirs,
          defaults: false,
          env: { LD_LIBRARY_PATH: '' },
        }).missing
      : [`the ${r} core`];

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-rtlibs-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('driver 560 / CUDA 12.6 with CUDA 12 libraries -> cu12 (cu13 skipped: the driver)', () => {
    const cores = { cu13: folder('a/ort', ORT_PROVIDER_LIBS), cu12: folder('a/ort-cu12', ORT_PROVIDER_LIBS) };
    const libs = folder('a/lib12', [...RUNTIMES.cu12.cudaSonames, 'libcuda.so.1']);
    const c = chooseRuntimeByLibraries(drv('560.35.03', '12.6'), ['cu13', 'cu12'], prober(cores, [libs]));
    console.log(`      560: ${c.runtime}: ${c.reason}`);
    assert.equal(c.runtime, 'cu12');
    assert.equal(c.target, 'cu12');
    assert.match(c.steps[0], /^cu13: driver 560\.35\.03 \(CUDA 12\.6\) does not support CUDA 13/);
    assert.match(c.steps[1], /^cu12: .* its libraries resolve/);
  });

  it('driver 580 / CUDA 13.0 with only CUDA 12 sonames present -> cu12 (cu13 skipped: libcublas.so.13 etc. do not resolve)', () => {
    const cores = { cu13: folder('b/ort', ORT_PROVIDER_LIBS), cu12: folder('b/ort-cu12', ORT_PROVIDER_LIBS) };
    const libs = folder('b/lib12', [...RUNTIMES.cu12.cudaSonames, 'libcuda.so.1']);
    const c = chooseRuntimeByLibraries(drv('580.65.06', '13.0'), ['cu13', 'cu12'], prober(cores, [libs]));
    console.log(`      580 + CUDA 12 libs: ${c.runtime}: ${c.reason}`);
    assert.equal(c.runtime, 'cu12');
    assert.equal(c.target, 'cu13');
    assert.match(
      c.steps[0],
      /^cu13: driver 580\.65\.06 \(CUDA 13\.0\) supports CUDA 13, but libcudart\.so\.13, libcublasLt\.so\.13, libcublas\.so\.13 do not resolve/,
    );
    assert.match(c.steps[1], /^cu12: .*supports CUDA 12 and its libraries resolve/);
  });

  it('driver 580 with CUDA 13 libraries -> cu13', () => {
    const cores = { cu13: folder('c/ort', ORT_PROVIDER_LIBS), cu12: folder('c/ort-cu12', ORT_PROVIDER_LIBS) };
    const libs = folder('c/lib13', [...RUNTIMES.cu13.cudaSonames, 'libcuda.so.1']);
    const c = chooseRuntimeByLibraries(drv('580.65.06', '13.0'), ['cu13', 'cu12'], prober(cores, [libs]));
    assert.equal(c.runtime, 'cu13');
    assert.equal(c.steps.length, 1);
  });

  it("nothing loads (no provider libraries, no CUDA libraries) -> the bundled cu13 core on the CPU, each core's reason given", () => {
    const cores = { cu13: folder('d/ort', []), cu12: folder('d/ort-cu12', []) };
    const c = chooseRuntimeByLibraries(drv('560.35.03', '12.6'), ['cu13', 'cu12'], prober(cores, []));
    console.log(`      nothing loads: ${c.runtime}: ${c.reason}`);
    assert.equal(c.runtime, 'cu13');
    assert.match(
      c.reason,
      /cu12: .*libonnxruntime_providers_shared\.so, libonnxruntime_providers_cuda\.so, libcudart\.so\.12.* do not resolve: no CUDA core can load, cu13 core \(ORT 1\.29\.0\) for the CPU/,
    );
    // No driver at all: the CPU, saying so.
    const none = chooseRuntimeByLibraries(
      { found: false, gpus: [], note: 'nvidia-smi not found' },
      ['cu13', 'cu12'],
      prober(cores, []),
    );
    assert.equal(none.runtime, 'cu13');
    assert.equal(none.target, null);
    assert.match(none.reason, /nvidia-smi not found.*for the CPU/);
    // --runtime forces.
    assert.equal(
      chooseRuntimeByLibraries(drv('580.65.06', '13.0'), ['cu13', 'cu12'], prober(cores, []), 'cu12').runtime,
      'cu12',
    );
  });

  it('hints name the wheels of the core: CUDA 12 wheels for cu12, CUDA 13 for cu13', () => {
    assert.equal(wheelHint('libcublas.so.12', 12), 'pip: nvidia-cublas-cu12');
    assert.equal(wheelHint('libcudnn.so.9', 12), 'pip: nvidia-cudnn-cu12');
    assert.equal(wheelHint('libcudnn.so.9', 13), 'pip: nvidia-cudnn-cu13');
    assert.match(wheelHint('libonnxruntime_providers_cuda.so', 12), /--cuda cu12/);
  });
});
