// `npm run bench`: the project's speed and quality figures, each measured in one run against its
// baseline on the same machine. Sections: predict (tiny model, 999 sample rows: rows/s and padding
// efficiency of length-sorted vs unsorted batches), import / import9b (2B-shaped synthetic checkpoint,
// 9B-shaped with 2 layers -> int4: MB/s and peak RSS), features (5-fold CV log loss vs XGBoost),
// read (25k-row test CSV, a 30 MB cell, parquet: time and peak RSS), attention (fused vs explicit, CPU,
// 2B widths), train (opt-in), cpu-prefill (opt-in: bench/cpu-prefill-bench.ts, issue 21; its flags only
// when run with tsx). `--only a,b` runs a subset.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readRows } from '../src/data/rows';
import { loadTokenizer, encodeRow } from '../src/format/encode';
import { openSpec } from '../src/infer/model';
import { localRunner } from '../src/infer/local';
import { predictModel, type Tta } from '../src/infer/tta';
import { textLength } from '../src/util/text';
import { planBatches, planUnsorted, paddingEfficiency } from '../src/infer/batching';
import { readManifest } from '../src/weights/manifest';
import { importBench, importBench9b } from './import-bench';
import { featuresBench } from './features-bench';
import { attentionBench } from './attention-bench';
import { cpuPrefillBench } from './cpu-prefill-bench';
import { readBench, readChild, READ_CHILD_ENV } from './read-bench';
import { trainBench } from './train-bench';
import { TASKS } from '../src/task/task';

const root = resolve(__dirname, '..');
const sample = resolve(root, '..', 'shared', 'data', 'arena-sample-999.csv');

async function predictSection(): Promise<Record<string, unknown>> {
  const dir = join(root, '.bench', 'tiny');
  if (!existsSync(join(dir, 'manifest.json'))) {
    mkdirSync(dir, { recursive: true });
    execFileSync(process.execPath, [join(root, 'dist', 'trainer.cjs'), 'tiny', '--out', dir], { stdio: 'inherit' });
  }
  const { rows } = await readRows(sample);
  const m = readManifest(dir);
  const tok = loadTokenizer(dir);
  const t0 = Date.now();
  const lengths = rows.map(
    (r) => encodeRow(tok, r, { template: m.template, maxTokens: m.maxTokens, swap: false }).length,
  );
  const encodeSec = (Date.now() - t0) / 1000;
  const tokenBudget = 16384;
  const sorted = planBatches(lengths, { tokenBudget });
  const unsorted = planUnsorted(
    lengths,
    sorted.map((b) => b.rows.length),
  );
  // Same batch sizes as the sorted plan, in input order: the padding baseline.
  const spec = openSpec(dir, { calibrate: true, needTie: true, task: TASKS.lmsys });
  const runner = localRunner([spec], rows, { ep: 'cpu', tokenBudget, warn: () => {} });
  const textLengths = rows.map(textLength);
  const out: Record<string, unknown> = { rows: rows.length, max_tokens: m.maxTokens, token_budget: tokenBudget };
  const ttas: [string, Tta][] = [
    ['none', { kind: 'none' }],
    ['swap', { kind: 'swap' }],
    ['swap_uncertain_0.33', { kind: 'swap-uncertain', fraction: 0.33 }],
  ];
  const secs: Record<string, number> = {};
  for (const [name, tta] of ttas) {
    const t = Date.now();
    await predictModel(0, spec, rows, textLengths, tta, runner);
    secs[name] = (Date.now() - t) / 1000;
    out[`rows_per_s_tta_${name}`] = Number((rows.length / secs[name]).toFixed(2));
  }
  // Selective TTA: share of the full-swap run time saved by swapping only the least-certain third.
  out.swap_uncertain_time_saved_vs_swap = Number((1 - secs['swap_uncertain_0.33'] / secs.swap).toFixed(3));
  out.tokenize_rows_per_s = Number((rows.length / encodeSec).toFixed(1));
  out.padding_efficiency_sorted = Number(paddingEfficiency(lengths, sorted).toFixed(4));
  out.padding_efficiency_unsorted = Number(paddingEfficiency(lengths, unsorted).toFixed(4));
  out.batches = sorted.length;
  return out;
}

async function mainBench(): Promise<void> {
  // read-bench measures each read in a fresh copy of this process (its own peak RSS).
  if (process.env[READ_CHILD_ENV]) return readChild(process.env[READ_CHILD_ENV]);
  const { values } = parseArgs({ options: { only: { type: 'string' } } });
  const only = values.only
    ? values.only.split(',')
    : ['predict', 'features', 'read', 'import', 'import9b', 'attention'];
  const results: Record<string, unknown> = { node: process.version, cpus: require('node:os').cpus().length };
  if (only.includes('predict')) results.predict = await predictSection();
  if (only.includes('features')) results.features = await featuresBench();
  if (only.includes('read')) results.read = await readBench();
  if (only.includes('import')) results.import = await importBench();
  if (only.includes('import9b')) results.import9b = await importBench9b();
  if (only.includes('attention')) results.attention = await attentionBench();
  if (only.includes('train')) results.train = await trainBench();
  if (only.includes('cpu-prefill')) results.cpuPrefill = await cpuPrefillBench();
  console.log(JSON.stringify(results, null, 2));
}

mainBench().catch((e) => {
  console.error(e);
  process.exit(1);
});
