// Several devices (`--devices 0,1`: one model copy per GPU, as on Kaggle's 2 x T4): one long-lived
// worker process per device (`runner.cjs _shard-worker`), each holding the model, and every PASS
// dealt out over them (rows balanced by text length) and merged back in input order. Because passes,
// not whole predictions, are sharded, TTA's choice of rows happens over all rows in this process
// (src/infer/tta.ts), so results do not depend on the number of devices. Workers are processes, not
// threads, because onnxruntime-node runs a session synchronously on its calling thread.
// Workers die with the parent (IPC disconnect, and killed on exit/signals); temporary files go too.
import type { TaskName } from '../task/task';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArenaRow } from '../types';
import type { PassResult } from './pass';
import type { PassRunner } from './tta';
import type { HandleOptions, RunInfo } from './model';
import { processRuntime } from './session';

export class ShardError extends Error {
  override name = 'ShardError';
}

/** Row indices per shard: longest rows first, dealt round-robin, so every device gets a similar token load. */
export function shardRows(lengths: ArrayLike<number>, rows: number[], n: number): number[][] {
  const order = [...rows].sort((a, b) => lengths[b] - lengths[a] || a - b);
  const shards: number[][] = Array.from({ length: n }, () => []);
  order.forEach((r, k) => shards[k % n].push(r));
  return shards.map((s) => s.sort((a, b) => a - b));
}

/** What a worker is started with (sent as its first IPC message). */
export interface WorkerInit {
  rowsFile: string;
  dirs: string[];
  label: string;
  handle: Omit<HandleOptions, 'warn'>;
  /** The task of the rows (the worker checks each model's labels against it). */
  task: TaskName;
}
export type ToWorker =
  | { type: 'init'; init: WorkerInit }
  | { type: 'pass'; id: number; model: number; rows: number[]; swap: boolean; label: string }
  | { type: 'release'; model: number };
export type FromWorker =
  | { type: 'result'; id: number; result: PassResult; ep: string; info: RunInfo }
  | { type: 'error'; name: string; message: string };

interface Worker {
  child: ChildProcess;
  label: string;
  pending: Map<
    number,
    { resolve: (r: { result: PassResult; ep: string; info: RunInfo }) => void; reject: (e: Error) => void }
  >;
}

const live = new Set<ChildProcess>();
const tmpDirs = new Set<string>();
/** Synchronous cleanup: runs on normal exit and on process.exit from a signal handler. */
function cleanup(): void {
  for (const c of live) c.kill('SIGKILL');
  live.clear();
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
  tmpDirs.clear();
}
process.on('exit', cleanup);

export interface ShardedRunner extends PassRunner {
  close(): void;
}

export function shardedRunner(
  dirs: string[],
  rows: ArenaRow[],
  lengths: ArrayLike<number>,
  devices: number[],
  opts: HandleOptions & { task: TaskName },
  script = process.argv[1],
): ShardedRunner {
  const tmp = mkdtempSync(join(tmpdir(), 'arenakit-shards-'));
  tmpDirs.add(tmp);
  const rowsFile = join(tmp, 'rows.json');
  writeFileSync(rowsFile, JSON.stringify(rows));
  const eps = new Map<number, string>();
  const infos = new Map<number, RunInfo>();
  let failure: Error | null = null;
  let nextId = 0;
  const workers: Worker[] = devices.map((device) => {
    const label = `${opts.ep === 'cpu' ? 'cpu worker' : 'device'} ${device}`;
    const child = fork(script, ['_shard-worker'], {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'advanced',
      env: { ...process.env, ARENAKIT_RUNTIME: processRuntime().runtime },
    });
    live.add(child);
    const w: Worker = { child, label, pending: new Map() };
    const failAll = (e: Error) => {
      failure ??= e;
      for (const p of w.pending.values()) p.reject(e);
      w.pending.clear();
    };
    child.on('message', (m: FromWorker) => {
      if (m.type === 'result') {
        w.pending.get(m.id)?.resolve({ result: m.result, ep: m.ep, info: m.info });
        w.pending.delete(m.id);
      } else
        failAll(
          Object.assign(new ShardError(`${label}: ${m.message}`), {
            name: m.name === 'Error' || m.name === 'TypeError' ? 'ShardError' : m.name,
          }),
        );
    });
    child.on('error', (e) => failAll(new ShardError(`${label}: ${e.message}`)));
    child.on('exit', (code, signal) => {
      live.delete(child);
      if (w.pending.size || code !== 0)
        failAll(
          new ShardError(
            `${label} stopped with ${signal ?? `exit code ${code}`}; see its messages above. Nothing was written.`,
          ),
        );
    });
    const init: WorkerInit = {
      rowsFile,
      dirs,
      label,
      task: opts.task,
      handle: {
        ep: opts.ep,
        attention: opts.attention,
        gpuPrecision: opts.gpuPrecision,
        selfCheckRows: opts.selfCheckRows,
        tokenBudget: opts.tokenBudget,
        cacheDir: opts.cacheDir,
        deviceId: device,
        threads: opts.threads ?? (opts.ep === 'cpu' ? 1 : undefined),
      },
    };
    child.send({ type: 'init', init } satisfies ToWorker);
    return w;
  });
  const ask = (w: Worker, msg: Omit<Extract<ToWorker, { type: 'pass' }>, 'id'>) =>
    new Promise<{ result: PassResult; ep: string; info: RunInfo }>((resolve, reject) => {
      if (failure) return reject(failure);
      const id = nextId++;
      w.pending.set(id, { resolve, reject });
      w.child.send({ ...msg, id } satisfies ToWorker);
    });
  return {
    async pass(model, idx, swap, label) {
      const shards = shardRows(lengths, idx, workers.length);
      shards.forEach((s, k) => process.stderr.write(`${workers[k].label}: ${s.length} rows (${label})\n`));
      const parts = await Promise.all(
        shards.map((s, k) =>
          s.length
            ? ask(workers[k], { type: 'pass', model, rows: s, swap, label: `${label} [${workers[k].label}]` })
            : null,
        ),
      );
      const pos = new Map(idx.map((r, j) => [r, j]));
      // No rows in any shard: an empty result (no row, so no width).
      const numLabels = parts.find((p) => p)?.result.numLabels ?? 0;
      const logits = new Float64Array(idx.length * numLabels).fill(NaN);
      const failedRows: number[] = [];
      let tokens = 0,
        computedTokens = 0,
        seconds = 0;
      parts.forEach((p, k) => {
        if (!p) return;
        eps.set(model, p.ep);
        infos.set(model, p.info);
        const r = p.result;
        shards[k].forEach((row, j) =>
          logits.set(r.logits.subarray(j * numLabels, (j + 1) * numLabels), pos.get(row)! * numLabels),
        );
        for (const j of r.failedRows) failedRows.push(pos.get(shards[k][j])!);
        tokens += r.tokens;
        computedTokens += r.computedTokens;
        seconds = Math.max(seconds, r.seconds);
      });
      return { logits, numLabels, tokens, computedTokens, seconds, failedRows: failedRows.sort((a, b) => a - b) };
    },
    async release(model) {
      for (const w of workers) if (w.child.connected) w.child.send({ type: 'release', model } satisfies ToWorker);
    },
    ep: (k) => eps.get(k) ?? '?',
    info: (k) => infos.get(k),
    close() {
      for (const w of workers) {
        live.delete(w.child);
        if (w.child.connected) w.child.disconnect();
      }
      rmSync(tmp, { recursive: true, force: true });
      tmpDirs.delete(tmp);
    },
  };
}
