// `runner.cjs doctor`: what this machine can run before a 9-hour notebook commits to it. Driver and
// CUDA versions, every CUDA library found or missing for the chosen core, the core and attention
// variant it would use, an EP probe with the self-check, and a time estimate for the data set from
// measured throughput. Ends with one JSON line; exits 0 on a machine without a GPU (and says so).
import { dataColumns, readRows } from '../../data/rows';
import { findCudaLibraries, wheelHint } from '../../infer/cuda-libs';
import { openHandle, openSpec } from '../../infer/model';
import { parseTta, type Tta } from '../../infer/tta';
import { readDriver, runtimeDir, RUNTIMES } from '../../infer/runtime';
import { ortNativeDir, parseAttention, parseEp, parseRuntime, processRuntime } from '../../infer/session';
import type { ArenaRow } from '../../types';
import { uniform } from '../../util/rng';
import { textLength } from '../../util/text';
import { fmt } from '../../util/progress';
import { parseDuration } from '../../util/duration';
import { detectTask } from '../../task/task';
import { num, parse, need, UsageError } from '../args';
import { parseDeviceOption, resolveDevices } from '../../infer/devices';
import { parseStartedAt } from '../../infer/budget';
import { runEstimate } from '../../infer/estimate';
import { resolveGpuPrecision } from '../../infer/gpu-precision';
import { readGpuFreeMemory } from '../../infer/gpu-levers';
import { parseTokenBudget } from './score';

const USAGE = `usage: node runner.cjs doctor --weights DIR [--data test.csv] [--budget 9h] [--ep auto|cuda|webgpu|cpu] [--runtime cu12|cu13]
  [--attention fused|explicit] [--tta none|swap|swap-uncertain:F] [--sample N] [--token-budget N|auto]
  [--devices auto|0,1] [--started-at EPOCH_S] [--gpu-precision fp16|bf16]
  Checks the GPU runtime, runs the self-check, and estimates the time for --data against --budget
  (counted from --started-at / ARENAKIT_STARTED_AT when given): model load, self-check and the passes
  over the devices. Advice only: it exits 0 whatever the estimate (predict keeps to its --time-budget).`;

/** Passes per row for a TTA setting (the swapped pass on all rows, or on a fraction). */
export function ttaFactor(tta: Tta): number {
  return tta.kind === 'none' ? 1 : tta.kind === 'swap' ? 2 : 1 + tta.fraction;
}

export async function run(argv: string[]): Promise<void> {
  const v = parse(
    argv,
    {
      weights: { type: 'string' },
      data: { type: 'string' },
      budget: { type: 'string', default: '9h' },
      ep: { type: 'string', default: 'auto' },
      runtime: { type: 'string' },
      attention: { type: 'string' },
      tta: { type: 'string', default: 'swap' },
      sample: { type: 'string', default: '64' },
      'token-budget': { type: 'string' },
      threads: { type: 'string' },
      devices: { type: 'string' },
      'started-at': { type: 'string' },
      'gpu-precision': { type: 'string' },
    },
    USAGE,
  );
  const dir = need(v.weights, '--weights', USAGE);
  const wrap = <T>(f: () => T): T => {
    try {
      return f();
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  };
  const budget = wrap(() => parseDuration(v.budget as string, '--budget'));
  const ep = wrap(() => parseEp(v.ep as string));
  const tta = wrap(() => parseTta(v.tta as string));
  const attention = wrap(() => parseAttention(v.attention as string | undefined));
  const sampleN = num(v.sample, '--sample', 64);
  const startedAt = wrap(() => parseStartedAt(v['started-at'])) ?? performance.timeOrigin;
  const deviceOpt = wrap(() => parseDeviceOption(v.devices as string | undefined));
  const say = (s: string) => process.stderr.write(s + '\n');

  const driver = readDriver();
  say(
    driver.found
      ? `driver: ${driver.driver} (CUDA ${driver.cuda ?? '?'}); GPUs: ${driver.gpus.join('; ') || 'none listed'}`
      : `driver: ${driver.note}. No GPU here: everything below runs on the CPU.`,
  );
  const precision = wrap(() => resolveGpuPrecision(ep, v['gpu-precision'] as string | undefined));
  if (precision) say(`gpu precision: ${precision.precision} (${precision.reason})`);
  const devices = resolveDevices(deviceOpt, driver.gpus, ep);
  say(`devices: ${devices.ids.join(', ')} (${devices.reason})`);
  const tokenBudget = parseTokenBudget(v['token-budget'] as string | undefined);
  const free = tokenBudget === 'auto' && ep !== 'cpu' && ep !== 'webgpu' ? readGpuFreeMemory(devices.ids) : {};
  const gpuFreeBytes = free.bytes;
  if (free.bytes !== undefined)
    say(`gpu memory free: ${(free.bytes / 2 ** 30).toFixed(1)} GiB (the smallest of the GPUs used)`);
  else if (free.note) say(`gpu memory free: unknown (${free.note})`);
  const { runtime, reason, target } = processRuntime(wrap(() => parseRuntime(v.runtime as string | undefined)));
  // The libraries (and their wheels) of the core the driver asks for; the chosen core when there is no driver.
  const hintCore = target ?? runtime;
  const rt = RUNTIMES[hintCore];
  const libs = findCudaLibraries({ ortDir: runtimeDir(hintCore) ?? ortNativeDir(), sonames: rt.cudaSonames });
  say(
    `CUDA libraries for ${hintCore} (ORT ${rt.ort}, CUDA ${rt.cudaMajor})${hintCore === runtime ? '' : `, the core this driver supports (running: ${runtime})`}:`,
  );
  for (const [so, p] of Object.entries(libs.found)) say(`  found   ${so}: ${p}`);
  for (const so of libs.missing)
    say(
      `  missing ${so}: ${wheelHint(so, rt.cudaMajor)}${libs.otherVersions[so] ? ` (other majors: ${libs.otherVersions[so].join(', ')})` : ''}`,
    );

  let rows: ArenaRow[] = [];
  if (v.data) {
    const r = await readRows(v.data as string);
    rows = r.rows;
    say(`data: ${rows.length} rows from ${v.data}`);
  }
  // The task of --data: a two-label (WSDM) model is checked against WSDM columns.
  const spec = openSpec(dir, {
    calibrate: true,
    needTie: false,
    task: detectTask(String(v.data ?? ''), dataColumns(String(v.data ?? ''))),
  });
  const warn = (m: string) => say(`warning: ${m}`);
  const tLoad = Date.now();
  const handle = await openHandle(spec, {
    ep,
    attention,
    gpuPrecision: precision?.precision,
    threads: v.threads ? num(v.threads, '--threads', 0) : undefined,
    tokenBudget,
    gpuFreeBytes,
    checkRows: rows,
    selfCheckRows: 8,
    warn,
  });
  const loadSeconds = (Date.now() - tLoad) / 1000;
  const selfCheckSeconds = handle.info.selfCheck?.seconds ?? 0;
  say(`model load: ${loadSeconds.toFixed(2)} s (self-check ${selfCheckSeconds.toFixed(2)} s of it)`);
  // Throughput on a seeded sample spread over the data (tokens/s of real, unpadded tokens).
  let estimate: (ReturnType<typeof runEstimate> & { tokensPerSecond: number; sampleRows: number }) | null = null;
  if (rows.length && spec.manifest.kind === 'neural') {
    const rnd = uniform(7);
    const idx = [
      ...new Set(Array.from({ length: Math.min(sampleN, rows.length) }, () => Math.floor(rnd() * rows.length))),
    ].sort((a, b) => a - b);
    const sample = idx.map((i) => rows[i]);
    const pass = await handle.score(sample, false, 'doctor: throughput sample');
    const tps = pass.tokens / Math.max(pass.seconds, 1e-3);
    // Tokens of the whole file from the sample's tokens per character (tokenizing 25k rows would take minutes).
    const chars = sample.reduce((a, r) => a + textLength(r), 0);
    const perChar = pass.tokens / Math.max(chars, 1);
    const maxTokens = spec.manifest.maxTokens;
    let total = 0;
    for (const r of rows) total += Math.min(maxTokens, textLength(r) * perChar);
    const padEff = pass.computedTokens ? pass.tokens / pass.computedTokens : 1;
    const e = runEstimate({
      tokens: total,
      tokensPerSecond: tps,
      ttaPasses: ttaFactor(tta),
      devices: devices.ids.length,
      loadSeconds,
      elapsedSeconds: (tLoad - startedAt) / 1000,
      budgetSeconds: budget,
    });
    estimate = { ...e, tokensPerSecond: tps, sampleRows: sample.length };
    say(
      `throughput: ${tps.toFixed(0)} tokens/s on ${sample.length} sample rows (padding efficiency ${padEff.toFixed(3)}, ${handle.ep})`,
    );
    say(
      `estimate: ${fmt(e.seconds)} for ${rows.length} rows with --tta ${v.tta} on ${devices.ids.length} device(s), from the run's start (spent before doctor ${fmt(e.elapsedSeconds)}, load + self-check ${fmt(loadSeconds)}) (budget ${fmt(budget)}): ${e.fits ? 'fits' : 'DOES NOT FIT'}`,
    );
    say(`advice: ${e.advice}`);
  }
  await handle.close();
  const info = handle.info;
  const summary = {
    gpu: driver.found,
    driver: driver.driver ?? null,
    cuda: driver.cuda ?? null,
    runtime,
    runtime_reason: reason,
    libraries_for: hintCore,
    libraries_missing: libs.missing,
    ep: info.ep,
    attention: info.variant ?? null,
    self_check_max_diff: info.selfCheck?.maxDiff ?? null,
    self_check_rejected: info.selfCheck?.rejected ?? [],
    self_check_seconds: Number(selfCheckSeconds.toFixed(3)),
    load_seconds: Number(loadSeconds.toFixed(3)),
    devices: devices.ids,
    rows: rows.length,
    estimate_seconds: estimate ? Math.round(estimate.seconds) : null,
    tokens_per_second: estimate ? Math.round(estimate.tokensPerSecond) : null,
    budget_seconds: budget,
    fits_budget: estimate ? estimate.fits : null,
    advice: estimate ? estimate.advice : null,
  };
  if (!driver.found) say('doctor: no GPU on this machine; the checks above ran on the CPU.');
  process.stdout.write(JSON.stringify(summary) + '\n');
}
