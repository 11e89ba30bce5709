// A few hundred seeded cases of `npm run fuzz` (bench/fuzz.ts) in CI: mutated sample CSVs, WSDM
// parquet files and safetensors headers must read, or fail with the kit's named errors only (RowsError,
// SafetensorsError, naming the file). The full run (10,000+ cases each) is recorded in RELIABILITY.md.
import assert from 'node:assert/strict';
import { fuzzCsv, fuzzParquet, fuzzSafetensors, type FuzzResult } from '../bench/fuzz';
import { fuzzAdapterConfig, fuzzJsonl, fuzzTrainCheckpoint } from '../bench/fuzz-train';
import { fuzzTrainBase } from '../bench/fuzz-train-base';

function report(r: FuzzResult): void {
  console.log(
    `      ${r.target}: ${r.cases} cases (seed ${r.seed}) in ${r.seconds.toFixed(1)} s: ${r.ok} read, ${JSON.stringify(r.errors)}, ${r.failures.length} failures`,
  );
  for (const f of r.failures.slice(0, 5))
    console.log(`      FAIL case ${f.case} [${f.mutations.join(', ')}]: ${f.error}`);
}

describe('fuzz (CI slice of npm run fuzz)', () => {
  it('300 mutated CSV files: rows that keep the invariants, or a RowsError naming the file', async function () {
    this.timeout(120_000);
    const r = await fuzzCsv({ seed: 7, cases: 300, seconds: 100 });
    report(r);
    assert.equal(r.cases, 300);
    assert.deepEqual(r.failures, []);
    assert.ok(r.ok > 30 && (r.errors.RowsError ?? 0) > 30, 'both outcomes are exercised');
  });

  it('200 mutated parquet files (WSDM rows): rows that keep the invariants, or a RowsError naming the file', async function () {
    this.timeout(120_000);
    const r = await fuzzParquet({ seed: 7, cases: 200, seconds: 100 });
    report(r);
    assert.equal(r.cases, 200);
    assert.deepEqual(r.failures, []);
    assert.ok(r.ok > 20 && (r.errors.RowsError ?? 0) > 20, 'both outcomes are exercised');
  });

  it('1,000 mutated safetensors files: tensors that read, or a SafetensorsError naming the file', async function () {
    this.timeout(120_000);
    const r = await fuzzSafetensors({ seed: 7, cases: 1000, seconds: 100 });
    report(r);
    assert.equal(r.cases, 1000);
    assert.deepEqual(r.failures, []);
    assert.ok(r.ok > 50 && (r.errors.SafetensorsError ?? 0) > 50, 'both outcomes are exercised');
  });

  // The trainer's inputs (issue 19 item 7; bench/fuzz-train.ts).
  for (const [name, run, allowed] of [
    ['--tokenized JSONL files', fuzzJsonl, 'TrainDataError'],
    ['adapter_config.json files (continued training)', fuzzAdapterConfig, 'AdapterError'],
    ['--resume checkpoints (checkpoint.json + state.safetensors)', fuzzTrainCheckpoint, 'LoraSetupError'],
    ["base config.json files (train's loadBase and the checks shared with import)", fuzzTrainBase, 'HfConfigError'],
  ] as const)
    it(`300 mutated ${name}: they load, or a named error naming the file`, async function () {
      this.timeout(120_000);
      const r = await run({ seed: 7, cases: 300, seconds: 100 });
      report(r);
      assert.equal(r.cases, 300);
      assert.deepEqual(r.failures, []);
      assert.ok(r.ok > 5 && (r.errors[allowed] ?? 0) > 30, 'both outcomes are exercised');
    });
});
