// Interruption: predict with --cache is stopped with SIGINT after its first batches; it writes no
// submission, says how to resume, and the same command started again takes the scored rows from the
// cache and writes a submission identical to an uninterrupted run without a cache (the reference).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..');
const DATA = join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');
const RUNNER = join(ROOT, 'dist', 'runner.cjs');

describe('interrupted predict resumes from its logits cache', function () {
  this.timeout(600_000);
  let tmp: string;
  before(() => {
    if (!existsSync(RUNNER)) spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-resume-'));
    const r = spawnSync(process.execPath, [join(ROOT, 'dist', 'trainer.cjs'), 'tiny', '--out', join(tmp, 'tiny')], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const args = (out: string, extra: string[]) => [
    RUNNER,
    'predict',
    '--data',
    DATA,
    '--weights',
    join(tmp, 'tiny'),
    '--out',
    out,
    '--ep',
    'cpu',
    '--tta',
    'swap',
    ...extra,
  ];

  let ref = '';
  it('SIGINT leaves no submission; the rerun resumes and matches the uninterrupted reference exactly', async () => {
    ref = join(tmp, 'ref.csv');
    const r0 = spawnSync(process.execPath, args(ref, []), { encoding: 'utf8' });
    assert.equal(r0.status, 0, r0.stderr);

    const out = join(tmp, 'sub', 'submission.csv');
    const cache = join(tmp, 'cache');
    const stderr = await new Promise<{ code: number | null; text: string }>((resolve) => {
      const child = spawn(process.execPath, args(out, ['--cache', cache]), {
        env: { ...process.env, ARENAKIT_PROGRESS_MS: '0' },
      });
      let text = '';
      let sent = false;
      child.stderr.on('data', (d: Buffer) => {
        text += d.toString();
        const done = [...text.matchAll(/predict: (\d+)\/\d+ rows/g)].map((m) => Number(m[1]));
        if (!sent && done.length && done[done.length - 1] >= 100) {
          sent = true;
          child.kill('SIGINT');
        }
      });
      child.on('exit', (code) => resolve({ code, text }));
    });
    assert.equal(stderr.code, 130, stderr.text);
    assert.match(stderr.text, /SIGINT: stopped; no submission written\. Rows scored so far are kept in/);
    assert.ok(!existsSync(out), 'no submission after an interruption');
    assert.deepEqual(existsSync(join(tmp, 'sub')) ? readdirSync(join(tmp, 'sub')) : [], []);
    // A line cut short by the interruption must not break the resume.
    const cacheFile = join(cache, readdirSync(cache)[0]);
    appendFileSync(cacheFile, '{"k":"cut-sho');

    const r1 = spawnSync(process.execPath, args(out, ['--cache', cache]), { encoding: 'utf8' });
    assert.equal(r1.status, 0, r1.stderr);
    const reused = Number(/predict: (\d+) rows taken from the logits cache/.exec(r1.stderr)?.[1] ?? 0);
    console.log(`      interrupted after >= 100 rows; rerun reused ${reused} cached rows of 999`);
    assert.ok(reused >= 100 && reused < 999, `reused ${reused}`);
    assert.equal(readFileSync(out, 'utf8'), readFileSync(ref, 'utf8'));
  });

  it('kill -9 in the first pass and again in the swapped pass: the rerun still matches the reference exactly', async () => {
    assert.ok(ref, 'needs the reference of the test above');
    const out = join(tmp, 'kill9', 'submission.csv');
    const cache = join(tmp, 'cache-kill9');
    // Rows scored across both passes (999 each) before the kill: one stop in each pass.
    for (const at of [150, 999 + 300]) {
      const code = await new Promise<string | null>((resolve) => {
        const child = spawn(process.execPath, args(out, ['--cache', cache]), {
          env: { ...process.env, ARENAKIT_PROGRESS_MS: '0' },
        });
        let text = '';
        child.stderr.on('data', (d: Buffer) => {
          text += d.toString();
          const first = Math.max(0, ...[...text.matchAll(/predict: (\d+)\/\d+ rows/g)].map((m) => Number(m[1])));
          const second = Math.max(
            0,
            ...[...text.matchAll(/predict \(swapped\): (\d+)\/\d+ rows/g)].map((m) => Number(m[1])),
          );
          if (first + second >= at) child.kill('SIGKILL');
        });
        child.on('exit', (_c, sig) => resolve(sig));
      });
      assert.equal(code, 'SIGKILL');
      assert.ok(!existsSync(out), 'no submission after kill -9');
    }
    const r = spawnSync(process.execPath, args(out, ['--cache', cache]), { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const reused = [...r.stderr.matchAll(/(\d+) rows taken from the logits cache/g)].map((m) => Number(m[1]));
    console.log(`      killed after 150 and 1299 scored rows; rerun reused ${reused.join(' + ')} cached rows`);
    assert.equal(readFileSync(out, 'utf8'), readFileSync(ref, 'utf8'));
  });
});
