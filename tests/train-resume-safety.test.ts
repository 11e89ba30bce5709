// Issue 19 item 3: one atomic checkpoint carrying the run's fingerprint. --resume refuses another run's
// checkpoint naming the differing fields, a checkpoint.json that is not JSON or null, a NaN state; a
// kill -9 at 10 points of a checkpointing run, then --resume, gives the uninterrupted run's adapter byte for byte.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, TRAINER } from './helpers/peaked';
import { fixtureBatch, GEMMA2_TINY, writeTokenizedRows } from './helpers/train-fixtures';

describe('train checkpoints and --resume (issue 19)', function () {
  this.timeout(600_000);
  let tmp: string;
  let rows: string;
  before(() => {
    if (!existsSync(TRAINER)) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-resume-'));
    rows = writeTokenizedRows(
      join(tmp, 'rows.jsonl'),
      [...fixtureBatch('padded', [0, 1, 2]), ...fixtureBatch('single', [2])],
      4,
    );
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const args = (out: string, extra: string[] = []) => [
    TRAINER,
    'train',
    '--base',
    GEMMA2_TINY,
    '--tokenized',
    rows,
    '--out',
    out,
    '--max-steps',
    '8',
    '--batch-size',
    '2',
    '--lora-r',
    '4',
    '--checkpoint-every',
    '1',
    '--seed',
    '3',
    ...extra,
  ];
  const train = (out: string, extra: string[] = []) =>
    spawnSync(process.execPath, args(out, extra), { encoding: 'utf8' });

  it('refuses a checkpoint of another run (lr, seed) naming the fields, and a checkpoint.json that is not JSON or null', () => {
    const out = join(tmp, 'a');
    assert.equal(train(out).status, 0);
    for (const [extra, re] of [
      [['--lr', '2e-4'], /lr 0\.00005 there, 0\.0002 now/],
      [['--seed', '4'], /seed 3 there, 4 now/],
    ] as const) {
      const r = train(out, ['--resume', ...extra]);
      console.log(`      exit ${r.status}: ${r.stderr.trim().split('\n').at(-1)}`);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, re);
    }
    const ckJson = join(out, 'checkpoint', 'checkpoint.json');
    const saved = readFileSync(ckJson, 'utf8');
    for (const bad of ['{not json', 'null']) {
      writeFileSync(ckJson, bad);
      const r = train(out, ['--resume']);
      console.log(`      exit ${r.status}: ${r.stderr.trim().split('\n').at(-1)}`);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /checkpoint\.json (is not valid JSON|holds no step)/);
    }
    writeFileSync(ckJson, saved);
  });

  it('kill -9 at 10 points, then --resume: the adapter equals the uninterrupted run byte for byte', async () => {
    const ref = join(tmp, 'ref');
    const r0 = train(ref, ['--lr', '1e-3']);
    assert.equal(r0.status, 0, r0.stderr);
    const want = readFileSync(join(ref, 'adapter_model.safetensors'));
    let killedMidway = 0;
    for (let k = 0; k < 10; k++) {
      const out = join(tmp, `k${k}`);
      const child = spawn(process.execPath, args(out, ['--lr', '1e-3']), { stdio: ['ignore', 'ignore', 'pipe'] });
      const exited = new Promise((r) => child.on('exit', r));
      await new Promise<void>((resolve) => {
        let seen = 0;
        child.stderr.on('data', (d: Buffer) => {
          seen += (String(d).match(/train: step /g) ?? []).length;
          if (seen >= 1 + (k % 6)) resolve();
        });
        child.on('exit', () => resolve());
      });
      await new Promise((r) => setTimeout(r, (k * 7) % 30));
      child.kill('SIGKILL');
      await exited;
      if (!existsSync(join(out, 'adapter_model.safetensors'))) killedMidway++;
      const ck = existsSync(join(out, 'checkpoint')) || existsSync(join(out, '.checkpoint.old'));
      const r = train(out, ['--lr', '1e-3', ...(ck ? ['--resume'] : [])]);
      assert.equal(r.status, 0, `kill ${k}: ${r.stderr}`);
      assert.ok(
        readFileSync(join(out, 'adapter_model.safetensors')).equals(want),
        `kill ${k}: the resumed adapter differs`,
      );
    }
    console.log(
      `      10 kills (${killedMidway} before the adapter was written): every resumed adapter equals the uninterrupted one`,
    );
  });
});
