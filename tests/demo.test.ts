// The README's first command (`npm run demo` = build/demo.sh) end to end: a seeded tiny Gemma-2 as a
// Hugging Face folder, LoRA-trained by the kit on demo/arena-demo-train.csv, imported, blended with the
// feature model, and validated on the held-out demo/arena-demo.csv (whose questions the training file
// never asks). And `tiny --hf` is the same model as `tiny`: importing the folder gives the weights
// directory `tiny` writes (same probabilities, diff 0).
import { TASKS } from '../src/task/task';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRows } from '../src/data/rows';
import { checkSubmissionText } from '../src/data/submission';
import { ensureBuilt, maxDiff, ok, ROOT, RUNNER, submissionProbs, TRAINER } from './helpers/peaked';

const UNIFORM = Math.log(3);
const HELD_OUT = join(ROOT, 'demo', 'arena-demo.csv');

describe('README demo: train, import, blend, validate on held-out rows', function () {
  this.timeout(300000);
  let tmp: string;
  before(() => {
    ensureBuilt();
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-demo-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('npm run demo: training loss falls, each model and the blend beat uniform on the held-out file, the submission is valid', async () => {
    const sub = join(tmp, 'submission.csv');
    const r = spawnSync('bash', [join(ROOT, 'build', 'demo.sh')], {
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      env: { ...process.env, DEMO_SKIP_BUILD: '1', DEMO_WEIGHTS: join(tmp, 'w'), DEMO_SUBMISSION: sub },
    });
    assert.equal(r.status, 0, `build/demo.sh exited ${r.status}\n${r.stderr.slice(-3000)}`);
    const train = JSON.parse(r.stdout.split('\n').find((l) => l.startsWith('{"out"'))!);
    const figures = Object.fromEntries(
      [...r.stdout.matchAll(/^ {2}(trained tiny model|feature model|blend 0\.5 \/ 0\.5)\s+([0-9.]+)/gm)].map((m) => [
        m[1],
        Number(m[2]),
      ]),
    );
    const steps: { loss: number }[] = readFileSync(join(tmp, 'w', 'lora', 'train_log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((x) => 'loss' in x);
    const mean = (xs: { loss: number }[]) => xs.reduce((a, x) => a + x.loss, 0) / xs.length;
    const [first, last] = [mean(steps.slice(0, 20)), mean(steps.slice(-20))];
    console.log(
      `      ${train.steps} steps (${train.seconds_per_step} s/step): training loss ${first.toFixed(3)} (first 20) -> ${last.toFixed(3)} (last 20); ` +
        `held-out log loss: tiny ${figures['trained tiny model']}, features ${figures['feature model']}, blend ${figures['blend 0.5 / 0.5']} (uniform ${UNIFORM.toFixed(4)})`,
    );
    assert.ok(last < first - 0.1, 'the training loss falls');
    for (const k of ['trained tiny model', 'feature model', 'blend 0.5 / 0.5'])
      assert.ok(figures[k] < UNIFORM - 0.02, `${k}: ${figures[k]} is not below uniform`);
    assert.ok(train.valid.at(-1).logLoss < train.valid[0].logLoss, 'the per-epoch validation log loss improves');
    const ids = (await readRows(HELD_OUT)).rows.map((x) => x.id);
    assert.deepEqual(checkSubmissionText(readFileSync(sub, 'utf8'), ids, TASKS.lmsys), []);
  });

  it('tiny --hf imports to the same model as tiny (probabilities diff 0)', () => {
    ok(TRAINER, ['tiny', '--hf', '--out', join(tmp, 'hf')]);
    ok(TRAINER, [
      'import',
      '--base',
      join(tmp, 'hf'),
      '--quant',
      'fp32',
      '--max-tokens',
      '512',
      '--out',
      join(tmp, 'imported'),
    ]);
    ok(TRAINER, ['tiny', '--quant', 'fp32', '--out', join(tmp, 'direct')]);
    const probs = (w: string) => {
      const out = join(tmp, `${w}.csv`);
      ok(RUNNER, [
        'predict',
        '--data',
        HELD_OUT,
        '--weights',
        join(tmp, w),
        '--out',
        out,
        '--ep',
        'cpu',
        '--tta',
        'none',
      ]);
      return submissionProbs(out);
    };
    const d = maxDiff(probs('imported'), probs('direct'));
    console.log(`      tiny --hf -> import vs tiny: max probability diff ${d} (tolerance 0)`);
    assert.equal(d, 0);
  });
});
