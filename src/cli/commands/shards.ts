// Several devices (`--devices 0,1`: one model copy per GPU, as on Kaggle's 2 x T4): the rows are
// dealt to one worker process per device, balanced by text length, and the results merged back in
// input order. Workers are processes, not threads, because onnxruntime-node runs a session's
// inference synchronously on its calling thread. A failed worker stops the run (no submission).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArenaRow } from '../../types';
import type { PassResult, PredictResult } from '../../infer/predict';
import { readManifest } from '../../weights/manifest';
import { textLength } from '../../features/extract';
import { writeFileAtomic } from '../../data/submission';
import { parse, need } from '../args';
import { scoreRows, type ModelRun, type ScoreSettings } from './score';

/** Row indices per shard: longest rows first, dealt round-robin, so every device gets a similar token load. */
export function shardRows(rows: ArenaRow[], n: number): number[][] {
  const len = rows.map(textLength);
  const order = rows.map((_, i) => i).sort((a, b) => len[b] - len[a] || a - b);
  const shards: number[][] = Array.from({ length: n }, () => []);
  order.forEach((r, k) => shards[k % n].push(r));
  return shards.map((s) => s.sort((a, b) => a - b));
}

interface ShardJob {
  settings: ScoreSettings;
  rowsFile: string;
  out: string;
  label: string;
}

type Arr = (number | null)[];
interface ShardRun {
  dir: string;
  ep: string;
  probs: Arr;
  first: Arr;
  swappedFlipped?: Arr;
  swappedRaw?: Arr;
  swappedRows: number[];
  pass: Omit<PassResult, 'logits'>;
}

const toArr = (a: Float64Array): Arr => Array.from(a, (x) => (Number.isFinite(x) ? x : null));
const fromArr = (a: Arr): Float64Array => Float64Array.from(a, (x) => (x === null ? NaN : x));

export async function scoreSharded(rows: ArenaRow[], s: ScoreSettings): Promise<ModelRun[]> {
  const shards = shardRows(rows, s.devices.length);
  const tmp = mkdtempSync(join(tmpdir(), 'arenakit-shards-'));
  try {
    const workers = s.devices.map((device, k) => {
      const job: ShardJob = {
        settings: { ...s, devices: [device], threads: s.threads ?? (s.ep === 'cpu' ? 1 : undefined) },
        rowsFile: join(tmp, `rows-${k}.json`),
        out: join(tmp, `out-${k}.json`),
        label: `${s.ep === 'cpu' ? 'cpu worker' : 'device'} ${device}`,
      };
      writeFileSync(job.rowsFile, JSON.stringify(shards[k].map((i) => rows[i])));
      writeFileSync(join(tmp, `job-${k}.json`), JSON.stringify(job));
      process.stderr.write(`${job.label}: ${shards[k].length} rows\n`);
      return new Promise<ShardRun[]>((resolve, reject) => {
        const child = spawn(process.execPath, [process.argv[1], '_shard', '--job', join(tmp, `job-${k}.json`)], { stdio: ['ignore', 'ignore', 'inherit'] });
        child.on('error', reject);
        child.on('exit', (code, signal) => {
          if (code === 0) resolve(JSON.parse(readFileSync(job.out, 'utf8')));
          else reject(new ShardError(`${job.label} (rows ${shards[k].length}) failed with ${signal ?? `exit code ${code}`}; see its messages above. Nothing was written.`));
        });
      });
    });
    const results = await Promise.all(workers);
    return s.weights.map((dir, m) => mergeRuns(dir, rows.length, shards, results.map((r) => r[m])));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function mergeRuns(dir: string, n: number, shards: number[][], parts: ShardRun[]): ModelRun {
  const full = (pick: (r: ShardRun) => Arr | undefined): Float64Array | undefined => {
    if (parts.some((p) => !pick(p))) return undefined;
    const out = new Float64Array(n * 3).fill(NaN);
    parts.forEach((p, k) => {
      const src = fromArr(pick(p)!);
      shards[k].forEach((row, i) => out.set(src.subarray(i * 3, i * 3 + 3), row * 3));
    });
    return out;
  };
  const global = (local: (p: ShardRun) => number[]) => parts.flatMap((p, k) => local(p).map((i) => shards[k][i])).sort((a, b) => a - b);
  const firstPass: PassResult = {
    logits: new Float32Array(0),
    numLabels: parts[0].pass.numLabels,
    tokens: parts.reduce((a, p) => a + p.pass.tokens, 0),
    computedTokens: parts.reduce((a, p) => a + p.pass.computedTokens, 0),
    seconds: Math.max(...parts.map((p) => p.pass.seconds)),
    failedRows: global((p) => p.pass.failedRows),
  };
  const result: PredictResult = {
    probs: full((p) => p.probs)!,
    first: full((p) => p.first)!,
    swappedFlipped: full((p) => p.swappedFlipped),
    swappedRaw: full((p) => p.swappedRaw),
    swappedRows: global((p) => p.swappedRows),
    firstPass,
  };
  return { dir, ep: parts[0].ep, manifest: readManifest(dir), result };
}

class ShardError extends Error {
  override name = 'ShardError';
}

/** Internal command `_shard --job FILE`: one worker of scoreSharded. */
export async function run(argv: string[]): Promise<void> {
  const v = parse(argv, { job: { type: 'string' } }, 'usage: runner.cjs _shard --job FILE (internal)');
  const job: ShardJob = JSON.parse(readFileSync(need(v.job, '--job', ''), 'utf8'));
  const rows: ArenaRow[] = JSON.parse(readFileSync(job.rowsFile, 'utf8'));
  const settings: ScoreSettings = { ...job.settings, tta: job.settings.tta };
  const { runs } = await scoreRows(rows, settings, (m) => process.stderr.write(`warning [${job.label}]: ${m}\n`));
  const out: ShardRun[] = runs.map((r) => ({
    dir: r.dir,
    ep: r.ep,
    probs: toArr(r.result.probs),
    first: toArr(r.result.first),
    ...(r.result.swappedFlipped ? { swappedFlipped: toArr(r.result.swappedFlipped), swappedRaw: toArr(r.result.swappedRaw!) } : {}),
    swappedRows: r.result.swappedRows,
    pass: { numLabels: r.result.firstPass.numLabels, tokens: r.result.firstPass.tokens, computedTokens: r.result.firstPass.computedTokens, seconds: r.result.firstPass.seconds, failedRows: r.result.firstPass.failedRows },
  }));
  writeFileAtomic(job.out, JSON.stringify(out));
}
