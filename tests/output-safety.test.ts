// Output safety (issue 19, item 4): an output that is one of the command's inputs is refused, and a folder
// is replaced only when the new one is complete, whatever point a kill -9 lands on.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertNotInput, OutputError, recoverDir, replaceDir, sameFile } from '../src/util/files';

describe('output safety', () => {
  const root = mkdtempSync(join(tmpdir(), 'arenakit-out-'));

  it('sameFile sees another spelling and a hard link of one file', () => {
    const a = join(root, 'a.csv');
    writeFileSync(a, 'x');
    linkSync(a, join(root, 'hard.csv'));
    assert.ok(sameFile(a, join(root, '.', 'sub', '..', 'a.csv')));
    assert.ok(sameFile(a, join(root, 'hard.csv')));
    assert.ok(!sameFile(a, join(root, 'other.csv')));
  });

  it('assertNotInput names both options when an output is an input (hard links included)', () => {
    const data = join(root, 'labels.csv');
    writeFileSync(data, 'id\n1\n');
    linkSync(data, join(root, 'labels-link.csv'));
    assert.throws(
      () => assertNotInput({ flag: '--out', path: join(root, 'labels-link.csv') }, [{ flag: '--labels', path: data }]),
      (e: Error) => e instanceof OutputError && /--out .*labels-link\.csv is the same file as --labels/.test(e.message),
    );
    assert.doesNotThrow(() =>
      assertNotInput({ flag: '--out', path: join(root, 'p.csv') }, [{ flag: '--labels', path: data }]),
    );
    const w = join(root, 'weights');
    mkdirSync(w);
    writeFileSync(join(w, 'manifest.json'), '{}');
    assert.throws(
      () => assertNotInput({ flag: '--report', path: join(w, 'manifest.json') }, [{ flag: '--weights', path: w }]),
      /would overwrite a file of --weights/,
    );
  });

  it('replaceDir keeps the old folder when building fails, and swaps in a complete new one', async () => {
    const dir = join(root, 'w1');
    mkdirSync(dir);
    writeFileSync(join(dir, 'manifest.json'), 'old');
    await assert.rejects(
      replaceDir(dir, (tmp) => {
        writeFileSync(join(tmp, 'manifest.json'), 'half');
        throw new Error('disk full');
      }),
      /disk full/,
    );
    assert.equal(readFileSync(join(dir, 'manifest.json'), 'utf8'), 'old');
    assert.deepEqual(
      readdirSync(root).filter((f) => f.startsWith('.w1')),
      [],
    );
    await replaceDir(dir, (tmp) => writeFileSync(join(tmp, 'manifest.json'), 'new'));
    assert.equal(readFileSync(join(dir, 'manifest.json'), 'utf8'), 'new');
  });

  it('recoverDir restores the old folder after a kill between the two renames', () => {
    const dir = join(root, 'w2');
    mkdirSync(join(root, '.w2.old'));
    writeFileSync(join(root, '.w2.old', 'manifest.json'), 'old');
    mkdirSync(join(root, '.w2.123.new'));
    recoverDir(dir);
    assert.equal(readFileSync(join(dir, 'manifest.json'), 'utf8'), 'old');
    assert.ok(!existsSync(join(root, '.w2.123.new')));
  });

  it('kill -9 at 10 points of a folder rewrite leaves the old folder or the new complete one', async function () {
    this.timeout(120_000);
    const dir = join(root, 'w3');
    mkdirSync(dir);
    for (let i = 0; i < 20; i++) writeFileSync(join(dir, `f${i}`), 'old');
    const script = `
      const { replaceDir } = require(${JSON.stringify(join(__dirname, '..', 'src', 'util', 'files.ts'))});
      const fs = require('node:fs');
      replaceDir(${JSON.stringify(dir)}, async (tmp) => {
        process.stdout.write('start');
        for (let i = 0; i < 20; i++) { fs.writeFileSync(tmp + '/f' + i, 'new'); await new Promise((r) => setTimeout(r, 15)); }
      }).then(() => process.stdout.write('done'));`;
    const seen = new Set<string>();
    for (let k = 0; k < 10; k++) {
      const child = spawn(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      const exited = new Promise((r) => child.on('exit', r));
      await new Promise((r) => child.stdout.once('data', r)); // the build has started
      await new Promise((r) => setTimeout(r, k * 35)); // 0 .. 315 ms: inside the build, at the swap, after it
      child.kill('SIGKILL');
      await exited;
      recoverDir(dir); // what the next command does first
      const files = readdirSync(dir).sort();
      const texts = new Set(files.map((f) => readFileSync(join(dir, f), 'utf8')));
      assert.equal(files.length, 20, `kill ${k}: ${files.length} files`);
      assert.equal(texts.size, 1, `kill ${k}: a mix of old and new files`);
      seen.add([...texts][0]);
      for (let i = 0; i < 20; i++) writeFileSync(join(dir, `f${i}`), 'old');
    }
    console.log(`      10 kills: outcomes seen ${[...seen].join(', ')}`);
  });
});
