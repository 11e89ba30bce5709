// findCudaLibraries / describeCudaStatus / cudaEnv against fake site-packages trees laid out as
// NVIDIA's pip wheels do (nvidia/<pkg>/lib), with the system search switched off so the machine's
// own CUDA install cannot leak in. Sonames are those readelf shows for the pinned ORT 1.29 provider.
import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CUDA_ENV_MARKER,
  CUDA_RUNTIME_SONAMES,
  ORT_PROVIDER_LIBS,
  cudaEnv,
  describeCudaStatus,
  findCudaLibraries,
  needsReexec,
} from '../src/infer/cuda-libs';

function touch(dir: string, ...names: string[]): void {
  mkdirSync(dir, { recursive: true });
  for (const n of names) writeFileSync(join(dir, n), '');
}

describe('cuda-libs', () => {
  let root: string;
  let ortDir: string;
  let site: string;
  let driverDir: string;

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'arenakit-cudalibs-'));
    ortDir = join(root, 'kit', 'ort');
    site = join(root, 'py', 'lib', 'python3.11', 'site-packages');
    driverDir = join(root, 'driver');
    touch(ortDir, 'libonnxruntime.so.1');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('finds every library in a complete tree and adds exactly the folders that hold them', () => {
    touch(ortDir, ...ORT_PROVIDER_LIBS);
    touch(
      join(site, 'nvidia', 'cu13', 'lib'),
      'libcudart.so.13',
      'libcublas.so.13',
      'libcublasLt.so.13',
      'libcurand.so.10',
    );
    touch(join(site, 'nvidia', 'cudnn', 'lib'), 'libcudnn.so.9', 'libcudnn_graph.so.9');
    touch(driverDir, 'libcuda.so.1');
    const env = { LD_LIBRARY_PATH: '/opt/other' };
    const r = findCudaLibraries({ ortDir, searchDirs: [site, driverDir], env, defaults: false });
    assert.deepEqual(r.missing, []);
    assert.equal(r.found['libonnxruntime_providers_cuda.so'], join(ortDir, 'libonnxruntime_providers_cuda.so'));
    assert.equal(r.found['libcublas.so.13'], join(site, 'nvidia', 'cu13', 'lib', 'libcublas.so.13'));
    assert.equal(r.found['libcudnn.so.9'], join(site, 'nvidia', 'cudnn', 'lib', 'libcudnn.so.9'));
    assert.equal(r.found['libcuda.so.1'], join(driverDir, 'libcuda.so.1'));
    assert.deepEqual(r.dirs, [join(site, 'nvidia', 'cu13', 'lib'), join(site, 'nvidia', 'cudnn', 'lib'), driverDir]);
    const childEnv = cudaEnv(r, env);
    assert.equal(childEnv.LD_LIBRARY_PATH, ['/opt/other', ...r.dirs].join(':'));
    assert.equal(childEnv[CUDA_ENV_MARKER], '1');
    assert.equal(needsReexec(r, env), true);
    assert.equal(needsReexec(r, childEnv), false, "a re-exec'ed child must not re-exec again");
    const msg = describeCudaStatus(r);
    assert.match(msg, /all found/);
    for (const so of CUDA_RUNTIME_SONAMES) assert.ok(msg.includes(so), `message names ${so}`);
  });

  it('prefers LD_LIBRARY_PATH over site-packages and does not add folders already on it', () => {
    const ldDir = join(root, 'ld');
    touch(ldDir, 'libcudart.so.13');
    touch(join(site, 'nvidia', 'cuda_runtime', 'lib'), 'libcudart.so.13');
    const env = { LD_LIBRARY_PATH: ldDir };
    const r = findCudaLibraries({ ortDir, searchDirs: [site], env, defaults: false });
    assert.equal(r.found['libcudart.so.13'], join(ldDir, 'libcudart.so.13'));
    assert.deepEqual(r.dirs, []);
    assert.equal(cudaEnv(r, env).LD_LIBRARY_PATH, ldDir);
  });

  it('lists what a partial (CUDA 12) tree lacks, names the version it found and the fallback', () => {
    touch(ortDir, ...ORT_PROVIDER_LIBS);
    touch(join(site, 'nvidia', 'cublas', 'lib'), 'libcublas.so.12', 'libcublasLt.so.12');
    touch(join(site, 'nvidia', 'cuda_runtime', 'lib'), 'libcudart.so.13');
    touch(join(site, 'nvidia', 'curand', 'lib'), 'libcurand.so.10');
    touch(driverDir, 'libcuda.so.1');
    const r = findCudaLibraries({ ortDir, searchDirs: [site, driverDir], env: {}, defaults: false });
    assert.deepEqual(r.missing, ['libcublasLt.so.13', 'libcublas.so.13', 'libcudnn.so.9']);
    assert.deepEqual(r.otherVersions['libcublas.so.13'], [join(site, 'nvidia', 'cublas', 'lib', 'libcublas.so.12')]);
    assert.equal(r.found['libcudart.so.13'], join(site, 'nvidia', 'cuda_runtime', 'lib', 'libcudart.so.13'));
    assert.equal(needsReexec(r, {}), false, 'nothing to re-exec for when CUDA cannot start anyway');
    const msg = describeCudaStatus(r);
    console.log(`      message:\n${msg.replace(/^/gm, '        ')}`);
    assert.match(msg, /3 missing/);
    assert.match(msg, /missing libcublas\.so\.13: .*found only .*libcublas\.so\.12/);
    assert.match(msg, /missing libcudnn\.so\.9: cuDNN 9/);
    assert.match(msg, /--ep auto: FALLS BACK TO THE CPU/);
    assert.match(msg, /--ep cuda: stops with this error/);
    assert.doesNotMatch(msg, /missing libcudart/);
  });

  it('reports everything missing on a machine with nothing installed', () => {
    const r = findCudaLibraries({ ortDir, searchDirs: [join(root, 'nope')], env: {}, defaults: false });
    assert.deepEqual(r.missing, [...ORT_PROVIDER_LIBS, ...CUDA_RUNTIME_SONAMES, 'libcuda.so.1']);
    assert.deepEqual(r.found, {});
    assert.deepEqual(r.dirs, []);
    const msg = describeCudaStatus(r);
    assert.match(msg, /missing libonnxruntime_providers_cuda\.so: .*npm run pack -- --cuda/);
    assert.match(msg, /missing libcuda\.so\.1: NVIDIA driver/);
  });

  it('accepts a library the loader cache knows without adding its folder', () => {
    const cache = join(root, 'ld.so.cache');
    writeFileSync(
      cache,
      Buffer.from(
        'glibc-ld.so.cache1.1\0\0libcuda.so.1\0/usr/lib/fake-driver/libcuda.so.1\0libz.so.1\0/lib/libz.so.1\0',
        'latin1',
      ),
    );
    const r = findCudaLibraries({ ortDir, env: {}, defaults: false, ldCache: cache });
    assert.equal(r.found['libcuda.so.1'], '/usr/lib/fake-driver/libcuda.so.1');
    assert.ok(!r.missing.includes('libcuda.so.1'));
    assert.deepEqual(r.dirs, []);
  });
});
