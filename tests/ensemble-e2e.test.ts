// End to end through the built bundles on the 999 real sample rows: a blend of two weights
// directories (the seeded tiny Gemma-2 and the feature model trained by `trainer.cjs features`)
// with selective swap TTA. The blend must equal the weighted mean of each model's own run (each
// model picks its own least-certain rows), and every submission must be valid and in input order.
import { TASKS } from '../src/task/task';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRows } from '../src/data/rows';
import { checkSubmissionText } from '../src/data/submission';

const ROOT = join(__dirname, '..');
const DATA = join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');

function node(script: string, args: string[]): string {
  const r = spawnSync(process.execPath, [join(ROOT, 'dist', script), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  assert.equal(r.status, 0, `node ${script} ${args.join(' ')} exited ${r.status}\n${r.stderr}`);
  return r.stdout;
}

function probsOf(path: string): number[][] {
  return readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split(',').slice(-3).map(Number));
}

describe('blend of two weights directories + swap-uncertain TTA (built bundles, 999 sample rows)', function () {
  this.timeout(600_000);
  let tmp: string;
  let ids: string[];
  before(async () => {
    if (!existsSync(join(ROOT, 'dist', 'runner.cjs')))
      spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-blend-'));
    ids = (await readRows(DATA)).rows.map((r) => r.id);
    node('trainer.cjs', ['tiny', '--out', join(tmp, 'tiny')]);
    node('trainer.cjs', ['features', '--data', DATA, '--out', join(tmp, 'feat'), '--folds', '2']);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('blends with the given weights, swaps only the uncertain fraction, and writes valid submissions', () => {
    const run = (name: string, weights: string[], extra: string[] = []) => {
      const out = join(tmp, `${name}.csv`);
      const args = [
        'predict',
        '--data',
        DATA,
        '--out',
        out,
        '--ep',
        'cpu',
        '--tta',
        'swap-uncertain:0.3',
        ...weights.flatMap((w) => ['--weights', join(tmp, w)]),
        ...extra,
      ];
      const summary = JSON.parse(node('runner.cjs', args).trim().split('\n').pop()!);
      assert.deepEqual(checkSubmissionText(readFileSync(out, 'utf8'), ids, TASKS.lmsys), []);
      return { summary, probs: probsOf(out) };
    };
    const tiny = run('tiny', ['tiny']);
    const feat = run('feat', ['feat']);
    const blend = run('blend', ['tiny', 'feat'], ['--blend-weights', '0.4,0.6']);
    assert.equal(tiny.summary.swapped_rows, Math.round(0.3 * 999));
    assert.equal(blend.summary.rows, 999);
    let maxDiff = 0;
    for (let i = 0; i < 999; i++)
      for (let c = 0; c < 3; c++)
        maxDiff = Math.max(maxDiff, Math.abs(blend.probs[i][c] - (0.4 * tiny.probs[i][c] + 0.6 * feat.probs[i][c])));
    console.log(
      `      blend vs 0.4*tiny + 0.6*features: max abs diff ${maxDiff.toExponential(2)} (tol 1e-6); swapped rows ${tiny.summary.swapped_rows}/999`,
    );
    assert.ok(maxDiff < 1e-6);
    // The feature model is informative on its own training rows; the blend must differ from either model.
    assert.ok(blend.probs.some((p, i) => Math.abs(p[0] - feat.probs[i][0]) > 1e-3));
  });
});
