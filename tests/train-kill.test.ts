// Issue 19 Done-when: a kill -9 at random points of a training run that writes over a previous run's
// --out leaves either the old output or the new complete one, never a mix. The output is the adapter
// (adapter_config.json, adapter_model.safetensors, arenakit_labels.json), training.json and
// train_log.jsonl; the run's checkpoint/ is its resumable state (tests/train-resume-safety.test.ts).
// Before src/train/output.ts, train rewrote training.json and train_log.jsonl when it started and wrote
// the adapter's files one by one at the end: a kill mid-run left the old adapter beside the new run's
// training.json and a partial log.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { recoverDir } from '../src/util/files';
import { ROOT, TRAINER } from './helpers/peaked';
import { fixtureBatch, GEMMA2_TINY, writeTokenizedRows } from './helpers/train-fixtures';

const ADAPTER = ['adapter_config.json', 'adapter_model.safetensors', 'arenakit_labels.json'];

describe('kill -9 during train (issue 19)', function () {
  this.timeout(600_000);
  let tmp: string;
  let rows: string;
  before(() => {
    if (!existsSync(TRAINER)) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-trainkill-'));
    rows = writeTokenizedRows(
      join(tmp, 'rows.jsonl'),
      [...fixtureBatch('padded', [0, 1, 2]), ...fixtureBatch('single', [2])],
      4,
    );
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const args = (out: string, seed: number) => [
    TRAINER,
    'train',
    '--base',
    GEMMA2_TINY,
    '--tokenized',
    rows,
    '--out',
    out,
    '--max-steps',
    '10',
    '--batch-size',
    '2',
    '--lora-r',
    '4',
    '--checkpoint-every',
    '2',
    '--seed',
    String(seed),
  ];
  const files = (dir: string) =>
    Object.fromEntries(ADAPTER.map((f) => [f, existsSync(join(dir, f)) ? readFileSync(join(dir, f)) : null]));
  const same = (a: Record<string, Buffer | null>, b: Record<string, Buffer | null>) =>
    ADAPTER.every((f) => a[f] !== null && b[f] !== null && a[f]!.equals(b[f]!));
  const logSteps = (dir: string) =>
    existsSync(join(dir, 'train_log.jsonl'))
      ? readFileSync(join(dir, 'train_log.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l).step)
      : null;

  it("10 kill points of a re-run into a previous run's --out: old output or the new complete one", async () => {
    const prev = join(tmp, 'prev');
    assert.equal(spawnSync(process.execPath, args(prev, 1)).status, 0);
    const ref = join(tmp, 'ref');
    assert.equal(spawnSync(process.execPath, args(ref, 2)).status, 0);
    const old = files(prev);
    const oldTraining = readFileSync(join(prev, 'training.json'));
    const oldLog = readFileSync(join(prev, 'train_log.jsonl'));
    const fresh = files(ref);
    assert.ok(!same(old, fresh), 'the two runs must differ for the test to mean anything');
    const seen: string[] = [];
    let x = 12345;
    const rnd = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let k = 0; k < 10; k++) {
      const dir = join(tmp, `k${k}`);
      cpSync(prev, dir, { recursive: true });
      // Kill points tied to the run's own progress lines: after its setup line, after step j of 10 (j random;
      // 10 = while the new output is built and swapped in), each with a random delay of 0-30 ms.
      const j = k === 0 ? 0 : k >= 7 ? 10 : 1 + Math.floor(9 * rnd());
      const at = Math.round(30 * rnd());
      const mark = j === 0 ? /steps per epoch/ : new RegExp(`step ${j}/10 `);
      const child = spawn(process.execPath, args(dir, 2), { stdio: ['ignore', 'ignore', 'pipe'] });
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      let timer: NodeJS.Timeout | undefined;
      let text = '';
      child.stderr.on('data', (d: Buffer) => {
        text += d.toString();
        if (!timer && mark.test(text)) timer = setTimeout(() => child.kill('SIGKILL'), at);
      });
      const code = await exited;
      clearTimeout(timer);
      recoverDir(dir); // what the next command does first
      const now = files(dir);
      let verdict: string;
      if (same(now, old)) {
        assert.ok(
          readFileSync(join(dir, 'training.json')).equals(oldTraining),
          `k${k}: old adapter, new training.json`,
        );
        assert.ok(readFileSync(join(dir, 'train_log.jsonl')).equals(oldLog), `k${k}: old adapter, new log`);
        verdict = 'old';
      } else if (same(now, fresh)) {
        const t = JSON.parse(readFileSync(join(dir, 'training.json'), 'utf8'));
        assert.equal(t.options.seed, 2);
        assert.equal(t.steps, 10);
        assert.deepEqual(logSteps(dir), logSteps(ref));
        verdict = 'new';
      } else verdict = 'MIX';
      seen.push(`${j ? `step ${j}` : 'setup'} + ${at} ms: ${code === null ? 'killed' : `exit ${code}`}, ${verdict}`);
      assert.notEqual(verdict, 'MIX', `k${k}: killed at ${at} ms left a mix of the two runs`);
    }
    console.log(`      kill points: ${seen.join('; ')}`);
  });
});
