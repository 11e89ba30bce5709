// `--devices 0,1`: every pass dealt to one worker process per device and merged back in input order.
// Checked on CPU workers against the single-process run of the same model (the reference), on the
// demo CSV, with swap TTA so both passes are merged.
import { TASKS } from '../src/task/task';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { shardRows } from '../src/infer/shards';
import { readRows } from '../src/data/rows';
import { checkSubmissionText } from '../src/data/submission';
import { textLength } from '../src/util/text';
import { ensureBuilt, ok, RUNNER, TRAINER } from './helpers/peaked';

const ROOT = join(__dirname, '..');
const DEMO = join(ROOT, 'demo', 'arena-demo.csv');

describe('several devices: sharded workers', function () {
  this.timeout(300_000);

  it('deals every row to exactly one shard with balanced text length', async () => {
    const { rows } = await readRows(join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv'));
    const lengths = rows.map(textLength);
    const shards = shardRows(
      lengths,
      rows.map((_, i) => i),
      2,
    );
    assert.deepEqual(
      shards.flat().sort((a, b) => a - b),
      rows.map((_, i) => i),
    );
    const load = shards.map((s) => s.reduce((a, i) => a + lengths[i], 0));
    const ratio = Math.min(...load) / Math.max(...load);
    console.log(`      text length per shard ${load.join(' / ')} (min/max ${ratio.toFixed(3)}, need > 0.95)`);
    assert.ok(ratio > 0.95);
  });

  it('predict --devices 0,1 (CPU workers) equals the single-process run, in input order', () => {
    ensureBuilt();
    const tmp = mkdtempSync(join(tmpdir(), 'arenakit-shards-test-'));
    try {
      ok(TRAINER, ['tiny', '--out', join(tmp, 'tiny')]);
      const predict = (out: string, extra: string[]) =>
        ok(RUNNER, [
          'predict',
          '--data',
          DEMO,
          '--weights',
          join(tmp, 'tiny'),
          '--out',
          out,
          '--ep',
          'cpu',
          '--tta',
          'swap',
          ...extra,
        ]);
      predict(join(tmp, 'one.csv'), []);
      predict(join(tmp, 'two.csv'), ['--devices', '0,1']);
      const one = readFileSync(join(tmp, 'one.csv'), 'utf8');
      const two = readFileSync(join(tmp, 'two.csv'), 'utf8');
      const ids = one
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => l.split(',')[0]);
      assert.deepEqual(checkSubmissionText(two, ids, TASKS.lmsys), []);
      const vals = (t: string) =>
        t
          .trim()
          .split('\n')
          .slice(1)
          .flatMap((l) => l.split(',').slice(1).map(Number));
      const a = vals(one);
      const b = vals(two);
      const diff = Math.max(...a.map((x, i) => Math.abs(x - b[i])));
      console.log(`      2 workers vs 1 process: max abs diff ${diff.toExponential(2)} (tol 1e-6)`);
      assert.ok(diff < 1e-6);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
