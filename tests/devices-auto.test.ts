// Issue 22 item 2 and issue 19 item 5: --devices auto puts one worker on each GPU nvidia-smi lists (two CPU
// workers when CUDA cannot load) with the same submission as one process; --ep cpu never asks nvidia-smi,
// and an nvidia-smi deaf to SIGTERM (a wedged driver) is killed at its deadline instead of hanging the run.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readDriver } from '../src/infer/runtime';
import { parseDeviceOption, resolveDevices } from '../src/infer/devices';
import { fakeNvidiaSmi } from './helpers/nvidia-smi';
import { makePeakedModel, RUNNER } from './helpers/peaked';

const SAMPLE = join(__dirname, '..', 'demo', 'arena-demo.csv'); // 48 rows: the project's own demo file

describe('--devices auto and a wedged nvidia-smi', function () {
  this.timeout(600_000);
  let tmp: string;
  before(() => (tmp = mkdtempSync(join(tmpdir(), 'arenakit-devauto-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('--devices auto: two listed GPUs -> [0, 1]; one or none, or --ep cpu -> one process', () => {
    const t4 = ['Tesla T4, 15360 MiB', 'Tesla T4, 15360 MiB'];
    assert.deepEqual(resolveDevices(parseDeviceOption(undefined), t4, 'auto').ids, [0, 1]);
    assert.deepEqual(resolveDevices(parseDeviceOption('auto'), ['NVIDIA L4, 23034 MiB'], 'cuda').ids, [0]);
    assert.deepEqual(resolveDevices(parseDeviceOption(undefined), [], 'auto').ids, [0]);
    assert.deepEqual(resolveDevices(parseDeviceOption(undefined), t4, 'cpu').ids, [0]);
  });

  it('an nvidia-smi that ignores SIGTERM is killed at the deadline; readDriver says why', () => {
    const smi = join(tmp, 'nvidia-smi-wedged');
    writeFileSync(smi, "#!/bin/sh\ntrap '' TERM\nsleep 30\n");
    chmodSync(smi, 0o755);
    const t0 = Date.now();
    const d = readDriver({ ...process.env, ARENAKIT_NVIDIA_SMI: smi, ARENAKIT_NVIDIA_SMI_TIMEOUT_MS: '1500' });
    const s = (Date.now() - t0) / 1000;
    console.log(`      ${s.toFixed(1)} s: ${d.note}`);
    assert.equal(d.found, false);
    assert.match(d.note!, /did not answer within 1\.5 s \(killed\)/);
    assert.ok(s < 10, `returned after ${s} s`);
  });

  it('predict --ep auto with two T4s listed and no CUDA: two CPU workers, devices [0, 1], byte-identical to one process; --ep cpu never runs nvidia-smi', () => {
    const weights = makePeakedModel(tmp, 'peaked');
    const smi = fakeNvidiaSmi('560.35.03', '12.6');
    const run = (out: string, extra: string[], env: Record<string, string>) => {
      const r = spawnSync(
        process.execPath,
        [
          RUNNER,
          'predict',
          '--data',
          SAMPLE,
          '--weights',
          weights,
          '--out',
          out,
          '--tta',
          'swap',
          '--self-check',
          'off',
          ...extra,
        ],
        {
          encoding: 'utf8',
          env: { ...process.env, ...env },
        },
      );
      assert.equal(r.status, 0, r.stderr);
      return { json: JSON.parse(r.stdout.trim().split('\n').at(-1)!), log: r.stderr };
    };
    const auto = run(join(tmp, 'auto.csv'), ['--ep', 'auto'], { ARENAKIT_NVIDIA_SMI: smi });
    console.log(`      ${auto.log.split('\n').find((l) => l.startsWith('devices:'))}`);
    assert.deepEqual(auto.json.devices, [0, 1]);
    const one = run(join(tmp, 'one.csv'), ['--ep', 'auto', '--devices', '0'], { ARENAKIT_NVIDIA_SMI: smi });
    assert.deepEqual(one.json.devices, [0]);
    assert.ok(
      readFileSync(join(tmp, 'auto.csv')).equals(readFileSync(join(tmp, 'one.csv'))),
      'two workers and one process write the same bytes',
    );
    // --ep cpu: a wedged nvidia-smi would hang a run that asked it; this one leaves a mark when asked.
    const marker = join(tmp, 'asked');
    const spy = join(tmp, 'nvidia-smi-spy');
    writeFileSync(spy, `#!/bin/sh\ntouch ${marker}\nexit 1\n`);
    chmodSync(spy, 0o755);
    const cpu = run(join(tmp, 'cpu.csv'), ['--ep', 'cpu'], { ARENAKIT_NVIDIA_SMI: spy });
    assert.ok(!existsSync(marker), '--ep cpu ran nvidia-smi');
    assert.deepEqual(cpu.json.devices, [0]);
  });
});
