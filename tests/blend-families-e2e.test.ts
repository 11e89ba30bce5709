// End to end through the built bundles on the 999 real sample rows (issue 11): a Gemma-2 and a
// Llama-3 weights directory (the hf-reference fixtures + their LoRA adapters, int4, each with its own
// template) blended in one predict, and a Gemma-2 causal-LM judge (label tokens) through predict with
// swap TTA. The fixtures' 512-row vocabularies take the small byte tokenizer.
import { TASKS } from '../src/task/task';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRows } from '../src/data/rows';
import { checkSubmissionText } from '../src/data/submission';
import { writeByteTokenizer } from './helpers/byte-tokenizer';
import { FIXTURES } from './helpers/fixtures';
import { ensureBuilt, ok, RUNNER, submissionProbs, TRAINER } from './helpers/peaked';

const DATA = join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');
const KAGGLE = 'winner_model_a,winner_model_b,winner_tie';

describe('families end to end: Gemma-2 + Llama-3 blend, Gemma-2 judge (built bundles, 999 sample rows)', function () {
  this.timeout(600_000);
  let tmp: string;
  let ids: string[];
  before(async () => {
    ensureBuilt();
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-fam-e2e-'));
    ids = (await readRows(DATA)).rows.map((r) => r.id);
    const tok = join(tmp, 'tokenizer');
    writeByteTokenizer(tok);
    const imp = (model: string, out: string, extra: string[]) =>
      ok(TRAINER, [
        'import',
        '--base',
        join(FIXTURES, model),
        '--adapter',
        join(FIXTURES, model, 'adapter'),
        '--tokenizer',
        tok,
        '--quant',
        'int4',
        '--max-tokens',
        '256',
        '--out',
        join(tmp, out),
        ...extra,
      ]);
    imp('gemma2-tiny', 'gemma2', ['--labels', KAGGLE, '--template', 'gemma-chat']);
    imp('llama3-tiny', 'llama3', ['--labels', KAGGLE, '--template', 'plain']);
    imp('gemma2-judge-tiny', 'judge', ['--label-tokens', '65,66,67', '--template', 'gemma-judge']);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const predict = (name: string, weights: string[], extra: string[] = []) => {
    const out = join(tmp, `${name}.csv`);
    const args = [
      'predict',
      '--data',
      DATA,
      '--out',
      out,
      '--ep',
      'cpu',
      ...weights.flatMap((w) => ['--weights', join(tmp, w)]),
      ...extra,
    ];
    const summary = JSON.parse(ok(RUNNER, args).stdout.trim().split('\n').pop()!);
    assert.deepEqual(checkSubmissionText(readFileSync(out, 'utf8'), ids, TASKS.lmsys), []);
    return { summary, probs: submissionProbs(out) };
  };

  it('a blend of a Gemma-2 and a Llama-3 directory writes a valid submission equal to the weighted mean of the two', () => {
    const g = predict('gemma2', ['gemma2']);
    const l = predict('llama3', ['llama3']);
    const blend = predict('blend', ['gemma2', 'llama3'], ['--blend-weights', '0.5,0.5']);
    assert.equal(blend.summary.rows, 999);
    let d = 0;
    let apart = 0;
    for (let i = 0; i < 999; i++)
      for (let c = 0; c < 3; c++) {
        d = Math.max(d, Math.abs(blend.probs[i][c] - 0.5 * (g.probs[i][c] + l.probs[i][c])));
        apart = Math.max(apart, Math.abs(g.probs[i][c] - l.probs[i][c]));
      }
    console.log(
      `      blend vs (gemma2 + llama3) / 2: max abs diff ${d.toExponential(2)} (tolerance 1e-6); the two models differ by up to ${apart.toFixed(3)}`,
    );
    assert.ok(d < 1e-6);
    assert.ok(apart > 0.05, 'the two families should disagree somewhere');
  });

  it('a causal-LM judge directory runs through predict with swap TTA', () => {
    const j = predict('judge', ['judge'], ['--tta', 'swap']);
    assert.equal(j.summary.rows, 999);
    const spread = Math.max(...j.probs.map((p) => Math.max(...p))) - Math.min(...j.probs.map((p) => Math.min(...p)));
    console.log(`      judge probabilities span ${spread.toFixed(3)}`);
    assert.ok(spread > 0.1, 'judge probabilities should depend on the rows');
  });
});
