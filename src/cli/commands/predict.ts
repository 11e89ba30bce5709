// `runner.cjs predict`: competition CSV in, submission.csv out (atomic; complete and valid or not written).
import { existsSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { dataColumns, readRows } from '../../data/rows';
import { writeSubmission } from '../../data/submission';
import { assertWritableFile } from '../../util/files';
import { parse, need, UsageError } from '../args';
import { exitOnSignals, openSpecs, prepareRuntime, SCORE_OPTIONS, scoreRows, scoreSettings } from './score';
import { fmt } from '../../util/progress';
import { parseDuration } from '../../util/duration';
import { parseStartedAt } from '../../infer/budget';
import { readDriver } from '../../infer/runtime';

const parseDurationOpt = (x: unknown) => parseDuration(String(x), '--time-budget');

const USAGE = `usage: node runner.cjs predict --data test.csv|test.parquet --weights DIR [--weights DIR2 ...] [--out submission/submission.csv] [--task lmsys|wsdm] [--time-budget 9h]
  [--ep cpu|cuda|webgpu|auto] [--runtime cu12|cu13] [--attention fused|explicit] [--gpu-precision fp16|bf16] [--self-check N|off] [--devices auto|0,1] [--started-at EPOCH_S] [--tta none|swap|swap-uncertain:F] [--token-budget N|auto] [--threads N] [--blend-weights w1,w2]
  --cache DIR: keep each scored row's logits there, so an interrupted run started again resumes where it stopped
  --devices: one model copy per GPU, rows split between them (with --ep cpu: that many CPU worker processes);
    auto (default): one per GPU nvidia-smi lists, one process without a GPU
  --started-at: when the run started (epoch seconds or ISO; also ARENAKIT_STARTED_AT): --time-budget counts from it
  --gpu-precision: the CUDA graph's activations (default: bf16 when every GPU is sm80 or newer (L4, A100, H100)
    and the weights have a cuda-bf16 graph, else fp16; import --graphs cuda,cuda-bf16 writes both)
  --token-budget: rows x padded length per batch; auto (default): sized from the GPU's free memory and the model on
    the CUDA EP (nvidia-smi), 16384 elsewhere
  --task: the competition (default: wsdm for a parquet file, else lmsys); it sets the submission format
  --time-budget: the whole run ends by then (from start): the swapped pass takes as many of the least certain rows
    as fit, and rows not reached in time get the next model's prediction, else the prior`;

const samePath = (a: string, b: string) => {
  const real = (p: string) => (existsSync(p) ? realpathSync(p) : resolve(p));
  return real(a) === real(b);
};

export async function run(argv: string[]): Promise<void> {
  const v = parse(argv, { ...SCORE_OPTIONS, out: { type: 'string', default: 'submission/submission.csv' } }, USAGE);
  const data = need(v.data, '--data', USAGE);
  // The budget counts from the notebook's start when it passes one (--started-at / ARENAKIT_STARTED_AT).
  let startedAt: number;
  try {
    startedAt = parseStartedAt(v['started-at']) ?? performance.timeOrigin;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  // One nvidia-smi call per run, and none with --ep cpu (a wedged driver cannot stall a CPU run).
  const driver = v.ep === 'cpu' ? undefined : readDriver();
  const settings = scoreSettings(v, { columns: dataColumns(data), startedAt, gpus: driver?.gpus ?? [] });
  prepareRuntime(settings, driver);
  const out = v.out as string;
  if (samePath(out, data))
    throw new UsageError(
      `--out ${out} is the input --data file; it would be overwritten. Write the submission elsewhere.`,
    );
  // Before hours of inference: the submission must be writable where asked.
  assertWritableFile(out, '--out');
  const specs = openSpecs(settings);
  const t0 = Date.now();
  const { rows, warnings } = await readRows(data);
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  process.stderr.write(`read ${rows.length} rows from ${data}\n`);
  exitOnSignals('no submission written.', settings.cacheDir);
  const { probs, runs, priorRows } = await scoreRows(rows, specs, settings, (m) =>
    process.stderr.write(`warning: ${m}\n`),
  );
  for (const r of runs)
    if (rows.length > 0 && r.failedRows.length === rows.length)
      throw new PredictError(`${r.spec.dir}: every row failed (see the warnings above); no submission written.`);
  writeSubmission(
    out,
    rows.map((r) => r.id),
    probs,
    settings.task,
  );
  const sec = (Date.now() - t0) / 1000;
  const first = runs[0].firstPass;
  const summary = {
    task: settings.task.name,
    rows: rows.length,
    out,
    seconds: Number(sec.toFixed(2)),
    rows_per_s: Number((rows.length / sec).toFixed(2)),
    devices: settings.devices,
    ep: runs.map((r) => r.ep),
    runtime: runs.map((r) => r.info?.runtime ?? null),
    attention: runs.map((r) => r.info?.variant ?? null),
    activations: runs.map((r) => r.info?.activations ?? null),
    token_budget: runs.map((r) => r.info?.tokenBudget ?? null),
    self_check_max_diff: runs.map((r) => r.info?.selfCheck?.maxDiff ?? null),
    self_check_seconds: runs.map((r) => r.info?.selfCheck?.seconds ?? null),
    tta: settings.tta.kind,
    swapped_rows: runs[0].swappedRows.length,
    padding_efficiency: first.computedTokens ? Number((first.tokens / first.computedTokens).toFixed(4)) : 1,
    failed_rows: runs.reduce((a, r) => a + r.failedRows.length, 0),
    ...(settings.deadline === Infinity
      ? {}
      : {
          time_budget_s: parseDurationOpt(v['time-budget']),
          swapped_rows_per_model: runs.map((r) => r.swappedRows.length),
          unreached_rows: runs.map((r) => r.unreachedRows.length),
          prior_rows: priorRows.length,
        }),
  };
  process.stderr.write(`wrote ${out} (${rows.length} rows) in ${fmt(sec)}\n`);
  process.stdout.write(JSON.stringify(summary) + '\n');
}

class PredictError extends Error {
  override name = 'PredictError';
}
