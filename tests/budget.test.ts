// Issue 22, items 1-2: the budget counts from the notebook's start (--started-at / ARENAKIT_STARTED_AT),
// doctor only advises (its estimate counts load, self-check, devices and TTA), --devices auto puts one
// worker on each GPU nvidia-smi lists (two CPU workers here, where CUDA cannot load) with results
// identical to one process, and predict always writes a complete submission.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStartedAt } from '../src/infer/budget';
import { parseDeviceOption, resolveDevices } from '../src/infer/devices';
import { runEstimate } from '../src/infer/estimate';
import { FIXTURES } from './helpers/fixtures';
import { fakeNvidiaSmi } from './helpers/nvidia-smi';
import { ensureBuilt, makePeakedModel, node, RUNNER, submissionProbs } from './helpers/peaked';

const T4 = ['Tesla T4, 15360 MiB', 'Tesla T4, 15360 MiB'];

describe('devices, run start and doctor estimate (pure)', () => {
  it('--devices auto: one per listed GPU, one process without a GPU or with --ep cpu; lists as given; bad lists named', () => {
    assert.deepEqual(resolveDevices(parseDeviceOption(undefined), T4, 'auto').ids, [0, 1]);
    assert.deepEqual(resolveDevices(parseDeviceOption('auto'), [], 'auto').ids, [0]);
    assert.deepEqual(resolveDevices(parseDeviceOption('auto'), T4, 'cpu').ids, [0]);
    assert.deepEqual(resolveDevices(parseDeviceOption('1,0'), [], 'cpu').ids, [1, 0]);
    for (const bad of ['0,0', '-1', 'x', '0,'])
      assert.throws(() => parseDeviceOption(bad), /--devices needs "auto" or distinct GPU ids.*got "/);
  });

  it('--started-at / ARENAKIT_STARTED_AT: epoch seconds or ISO, the option first; nonsense and the future refused', () => {
    const now = Date.parse('2026-01-01T12:00:00Z');
    assert.equal(parseStartedAt(undefined, {}, now), undefined);
    assert.equal(parseStartedAt('1767268800.5', {}, now), 1767268800500);
    assert.equal(parseStartedAt(undefined, { ARENAKIT_STARTED_AT: '2026-01-01T11:00:00Z' }, now), now - 3600_000);
    assert.equal(parseStartedAt('1767268800', { ARENAKIT_STARTED_AT: 'junk' }, now), 1767268800000);
    assert.throws(
      () => parseStartedAt(undefined, { ARENAKIT_STARTED_AT: 'soon' }, now),
      /ARENAKIT_STARTED_AT: "soon" is not a time/,
    );
    assert.throws(() => parseStartedAt(String(now / 1000 + 3600), {}, now), /--started-at: .* is in the future/);
  });

  it('the estimate counts time already spent, load + self-check, the device count and the TTA passes', () => {
    const base = {
      tokens: 3_600_000,
      tokensPerSecond: 1000,
      ttaPasses: 2,
      devices: 1,
      loadSeconds: 100,
      elapsedSeconds: 50,
      budgetSeconds: 9 * 3600,
    };
    const one = runEstimate(base);
    assert.equal(one.seconds, 50 + 100 + 7200);
    const two = runEstimate({ ...base, devices: 2 });
    assert.equal(two.seconds, 50 + 100 + 3600);
    assert.equal(runEstimate({ ...base, ttaPasses: 1 }).seconds, 50 + 100 + 3600);
    assert.ok(one.fits && /to spare/.test(one.advice));
    // Over budget: advice, with the swap fraction that fits or the share of rows reached.
    const tight = runEstimate({ ...base, budgetSeconds: 150 + 3600 + 1800 });
    assert.ok(!tight.fits);
    assert.match(tight.advice, /swap-uncertain:0\.5\b/);
    const short = runEstimate({ ...base, budgetSeconds: 150 + 1800 });
    assert.match(short.advice, /reaches about 50% of the rows/);
  });
});

describe('predict --devices auto and a spent budget (fake 2 x T4 nvidia-smi, CPU EP)', function () {
  this.timeout(600000);
  let tmp: string, model: string, data: string, smi: string;
  before(() => {
    ensureBuilt();
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-budget-'));
    model = makePeakedModel(tmp, 'peaked');
    data = join(tmp, 'rows.csv');
    writeFileSync(
      data,
      readFileSync(join(FIXTURES, '..', '..', 'data', 'arena-sample-999.csv'), 'utf8')
        .split('\n')
        .slice(0, 25)
        .join('\n') + '\n',
    );
    smi = fakeNvidiaSmi('560.35.03', '12.6');
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const last = (s: string) => JSON.parse(s.trim().split('\n').pop()!);

  it('no --devices with two GPUs listed: two workers (CPU, as CUDA cannot load), devices [0, 1], byte-identical to one process', () => {
    const auto = node(
      RUNNER,
      ['predict', '--data', data, '--weights', model, '--ep', 'auto', '--tta', 'swap', '--out', join(tmp, 'auto.csv')],
      { ARENAKIT_NVIDIA_SMI: smi },
    );
    assert.equal(auto.status, 0, auto.stderr);
    const one = node(
      RUNNER,
      [
        'predict',
        '--data',
        data,
        '--weights',
        model,
        '--ep',
        'auto',
        '--tta',
        'swap',
        '--devices',
        '0',
        '--out',
        join(tmp, 'one.csv'),
      ],
      { ARENAKIT_NVIDIA_SMI: smi },
    );
    assert.equal(one.status, 0, one.stderr);
    const a = last(auto.stdout),
      o = last(one.stdout);
    console.log(
      `      auto: devices ${JSON.stringify(a.devices)} ep ${JSON.stringify(a.ep)}; one: devices ${JSON.stringify(o.devices)}`,
    );
    assert.deepEqual(a.devices, [0, 1]);
    assert.deepEqual(o.devices, [0]);
    assert.equal(
      readFileSync(join(tmp, 'auto.csv'), 'utf8'),
      readFileSync(join(tmp, 'one.csv'), 'utf8'),
      'byte-identical submissions',
    );
  });

  it('a budget already spent before predict (--started-at an hour ago, --time-budget 1h): complete valid submission, every row the prior, exit 0', () => {
    const out = join(tmp, 'spent.csv');
    const r = node(
      RUNNER,
      [
        'predict',
        '--data',
        data,
        '--weights',
        model,
        '--ep',
        'cpu',
        '--tta',
        'swap',
        '--time-budget',
        '1h',
        '--out',
        out,
      ],
      { ARENAKIT_STARTED_AT: String(Date.now() / 1000 - 3600) },
    );
    assert.equal(r.status, 0, r.stderr);
    const s = last(r.stdout);
    console.log(
      `      spent budget: rows ${s.rows}, prior_rows ${s.prior_rows}, unreached ${JSON.stringify(s.unreached_rows)}`,
    );
    assert.equal(s.rows, 24);
    assert.equal(s.prior_rows, 24);
    const probs = submissionProbs(out);
    assert.equal(probs.length, 24);
    for (const p of probs) assert.ok(Math.abs(p[0] + p[1] + p[2] - 1) < 1e-6 && p.every((x) => x > 0 && x < 1));
    assert.match(r.stderr, /no model reached 24 of 24 row\(s\) in time/);
  });

  it('doctor over budget: exit 0, fits_budget false with advice; estimate for the two listed devices includes load and self-check', () => {
    const r = node(RUNNER, ['doctor', '--weights', model, '--data', data, '--sample', '8', '--budget', '0.001s'], {
      ARENAKIT_NVIDIA_SMI: smi,
      ARENAKIT_STARTED_AT: String(Date.now() / 1000 - 5),
    });
    assert.equal(r.status, 0, r.stderr);
    const s = last(r.stdout);
    console.log(
      `      doctor: devices ${JSON.stringify(s.devices)}, load ${s.load_seconds}s (self-check ${s.self_check_seconds}s), estimate ${s.estimate_seconds}s, fits ${s.fits_budget}; advice: ${s.advice}`,
    );
    assert.deepEqual(s.devices, [0, 1]);
    assert.equal(s.fits_budget, false);
    assert.ok(s.estimate_seconds >= 5, 'counts the 5 s spent before doctor');
    assert.ok(s.load_seconds > 0);
    assert.match(s.advice, /predict --time-budget/);
  });
});
