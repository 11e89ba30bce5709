import { strict as assert } from 'node:assert';
import { planBatches, planUnsorted, paddingEfficiency, padBatch } from '../src/infer/batching';
import { mulberry } from './helpers/rand';

describe('length-sorted batching', () => {
  it('covers every row exactly once and respects the token budget', () => {
    const rnd = mulberry(7);
    const lengths = Array.from({ length: 500 }, () => 1 + Math.floor(rnd() * 900));
    const budget = 4096;
    const batches = planBatches(lengths, { tokenBudget: budget });
    const seen = batches.flatMap((b) => b.rows).sort((a, b) => a - b);
    assert.deepEqual(
      seen,
      lengths.map((_, i) => i),
    );
    for (const b of batches) {
      assert.equal(b.seqLen, Math.max(...b.rows.map((r) => lengths[r])));
      assert.ok(
        b.rows.length === 1 || b.rows.length * b.seqLen <= budget,
        `batch ${b.rows.length} x ${b.seqLen} over ${budget}`,
      );
    }
  });

  it('a row longer than the budget still runs, alone', () => {
    const batches = planBatches([10, 5000, 20], { tokenBudget: 1000 });
    assert.deepEqual(batches[0], { rows: [1], seqLen: 5000 });
  });

  it('pads less than unsorted batches of the same sizes', () => {
    const rnd = mulberry(3);
    const lengths = Array.from({ length: 300 }, () => 5 + Math.floor(rnd() ** 2 * 1000));
    const sorted = planBatches(lengths, { tokenBudget: 8192 });
    const unsorted = planUnsorted(
      lengths,
      sorted.map((b) => b.rows.length),
    );
    const es = paddingEfficiency(lengths, sorted);
    const eu = paddingEfficiency(lengths, unsorted);
    console.log(`      padding efficiency: sorted ${es.toFixed(3)}, unsorted ${eu.toFixed(3)}`);
    assert.ok(es > eu);
  });

  it('exactLength (the CPU EP): every batch holds one length, no padding, every row once, within the budget', () => {
    const rnd = mulberry(11);
    const lengths = Array.from({ length: 400 }, () => 1 + Math.floor(rnd() * 60));
    const budget = 512;
    const batches = planBatches(lengths, { tokenBudget: budget, exactLength: true });
    assert.deepEqual(
      batches.flatMap((b) => b.rows).sort((a, b) => a - b),
      lengths.map((_, i) => i),
    );
    for (const b of batches) {
      assert.ok(b.rows.every((r) => lengths[r] === b.seqLen));
      assert.ok(b.rows.length === 1 || b.rows.length * b.seqLen <= budget);
    }
    const loose = planBatches(lengths, { tokenBudget: budget });
    console.log(
      `      exact-length: ${batches.length} batches, padding efficiency ${paddingEfficiency(lengths, batches)}; length-sorted ${loose.length} batches, ${paddingEfficiency(lengths, loose).toFixed(4)}`,
    );
    assert.equal(paddingEfficiency(lengths, batches), 1);
    assert.ok(paddingEfficiency(lengths, loose) < 1, 'the plain plan pads here, so the test can tell them apart');
  });

  it('right-pads with the pad id and a 0 mask', () => {
    const { inputIds, attentionMask } = padBatch(
      [Int32Array.of(5, 6, 7), Int32Array.of(8)],
      { rows: [1, 0], seqLen: 3 },
      0,
    );
    assert.deepEqual([...inputIds].map(Number), [8, 0, 0, 5, 6, 7]);
    assert.deepEqual([...attentionMask].map(Number), [1, 0, 0, 1, 1, 1]);
  });
});
