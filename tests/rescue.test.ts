// Non-finite logits in a batch (fp16 overflow on a GPU, a runtime bug) are rescored on a safer graph
// (src/infer/pass.ts `rescue`: the explicit variant, then the fp32 CPU graph) instead of becoming
// failed rows; only rows that stay non-finite count as failed.
import assert from 'node:assert/strict';
import type * as Ort from 'onnxruntime-node';
import { runPass } from '../src/infer/pass';
import type { ArenaRow } from '../src/types';

const rows: ArenaRow[] = Array.from({ length: 6 }, (_, i) => ({
  id: `r${i}`,
  line: i + 2,
  prompt: ['p'],
  responseA: ['a'.repeat(i + 1)],
  responseB: ['b'],
}));

/** A session whose logits are [i, -i, 0] per row, NaN for rows whose first token id is odd. */
function fakeSession(nanOdd: boolean): Ort.InferenceSession {
  return {
    async run(feeds: Record<string, Ort.Tensor>) {
      const ids = feeds.input_ids.data as BigInt64Array;
      const [n, L] = feeds.input_ids.dims as number[];
      const out = new Float32Array(n * 3);
      for (let b = 0; b < n; b++) {
        const first = Number(ids[b * L]);
        out.set(nanOdd && first % 2 === 1 ? [NaN, NaN, NaN] : [first, -first, 0], b * 3);
      }
      return { logits: { data: out, dims: [n, 3] } as unknown as Ort.Tensor };
    },
  } as unknown as Ort.InferenceSession;
}

const base = {
  tokenBudget: 64,
  swap: false,
  label: 'test',
  numLabels: 3,
  padId: 0,
  dir: 'x',
  encode: (r: ArenaRow) => Int32Array.of(Number(r.id.slice(1)) + 1, 7, 7),
};

describe('non-finite batches are rescored on a safer graph', () => {
  it("rows with NaN logits take the rescue graph's logits and are not failed; without a rescue they fail", async () => {
    const warnings: string[] = [];
    const good = fakeSession(false);
    const rescued = await runPass(fakeSession(true), rows, {
      ...base,
      warn: (m) => warnings.push(m),
      rescue: async (ids, mask, n, L) => ({
        logits: (
          await good.run({
            input_ids: { data: ids, dims: [n, L] },
            attention_mask: { data: mask, dims: [n, L] },
          } as never)
        ).logits.data as Float32Array,
        by: 'the explicit cpu graph',
      }),
    });
    assert.deepEqual(rescued.failedRows, []);
    assert.ok(Array.from(rescued.logits).every(Number.isFinite));
    assert.equal(rescued.logits[1 * 3], 2, 'row r1 (first id 2) keeps its own logits');
    assert.match(warnings.join('\n'), /rescored with the explicit cpu graph/);
    const plain = await runPass(fakeSession(true), rows, { ...base, warn: () => {} });
    assert.deepEqual(plain.failedRows, [0, 2, 4], 'first ids 1, 3, 5 are NaN rows');
  });
});
