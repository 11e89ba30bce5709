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
import { HEARTBEAT_FD, heartbeatMs, silentLimitMs } from './heartbeat';
import type { Readable } from 'node:stream';

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
  /** Date.now() of the last heartbeat byte. */
  lastBeat: number;
  /** False once it exited or was ended for silence: its rows go to the others. */
  alive: boolean;
}

/** A worker that stopped answering (no heartbeat) or exited: its rows can be dealt to the others. */
class WorkerLost extends ShardError {}

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

type Answer = { result: PassResult; ep: string; info: RunInfo };

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
  const say = (m: string) => process.stderr.write(`${m}\n`);
  let failure: Error | null = null;
  let nextId = 0;
  const silent = silentLimitMs();
  const lose = (w: Worker, e: Error) => {
    if (!w.alive) return;
    w.alive = false;
    live.delete(w.child);
    w.child.kill('SIGKILL');
    for (const p of w.pending.values()) p.reject(e);
    w.pending.clear();
  };
  const workers: Worker[] = devices.map((device) => {
    const label = `${opts.ep === 'cpu' ? 'cpu worker' : 'device'} ${device}`;
    const child = fork(script, ['_shard-worker'], {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc', 'pipe'],
      serialization: 'advanced',
      env: { ...process.env, ARENAKIT_RUNTIME: processRuntime().runtime, ARENAKIT_HEARTBEAT_MS: String(heartbeatMs()) },
    });
    live.add(child);
    const w: Worker = { child, label, pending: new Map(), lastBeat: Date.now(), alive: true };
    const beats = child.stdio[HEARTBEAT_FD] as Readable | null;
    beats?.on('data', () => (w.lastBeat = Date.now()));
    beats?.on('error', () => {});
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
      if (w.alive && (w.pending.size || code !== 0))
        lose(w, new WorkerLost(`${label} stopped with ${signal ?? `exit code ${code}`}; see its messages above`));
      w.alive = false;
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
        gpuFreeBytes: opts.gpuFreeBytes,
        cacheDir: opts.cacheDir,
        deviceId: device,
        threads: opts.threads ?? (opts.ep === 'cpu' ? 1 : undefined),
      },
    };
    child.send({ type: 'init', init } satisfies ToWorker);
    return w;
  });
  // The parent's watch: a worker silent past the limit (stopped, frozen) is ended; its rows go to the others.
  const watch = setInterval(
    () => {
      for (const w of workers)
        if (w.alive && Date.now() - w.lastBeat > silent)
          lose(
            w,
            new WorkerLost(
              `${w.label} sent no heartbeat for ${((Date.now() - w.lastBeat) / 1000).toFixed(1)} s (stopped or hung); it was killed`,
            ),
          );
    },
    Math.min(1000, silent / 4),
  );
  watch.unref();
  const ask = (w: Worker, msg: Omit<Extract<ToWorker, { type: 'pass' }>, 'id'>) =>
    new Promise<Answer>((resolve, reject) => {
      if (failure) return reject(failure);
      if (!w.alive) return reject(new WorkerLost(`${w.label} is gone`));
      const id = nextId++;
      w.pending.set(id, { resolve, reject });
      w.child.send({ ...msg, id } satisfies ToWorker);
    });
  /** Rows dealt over the live workers; a worker lost on the way has its rows dealt again over the others. */
  const score = async (
    model: number,
    idx: number[],
    swap: boolean,
    label: string,
    over: { late: boolean },
  ): Promise<{ rows: number[]; answer: Answer }[]> => {
    const pool = workers.filter((w) => w.alive);
    if (!pool.length) throw failure ?? new ShardError(`every --devices worker stopped; nothing was written`);
    const shards = shardRows(lengths, idx, pool.length);
    const parts = await Promise.all(
      shards.map(async (s, k) => {
        if (!s.length) return [];
        say(`${pool[k].label}: ${s.length} rows (${label})`);
        try {
          return [
            {
              rows: s,
              answer: await ask(pool[k], { type: 'pass', model, rows: s, swap, label: `${label} [${pool[k].label}]` }),
            },
          ];
        } catch (e) {
          if (!(e instanceof WorkerLost) || failure || over.late) throw e;
          const left = workers.filter((w) => w.alive);
          if (!left.length)
            throw new ShardError(`${e.message}; no worker is left to score its ${s.length} rows. Nothing was written.`);
          say(`warning: ${e.message}; its ${s.length} rows are scored again on ${left.map((w) => w.label).join(', ')}`);
          return score(model, s, swap, label, over);
        }
      }),
    );
    return parts.flat();
  };
  return {
    async pass(model, idx, swap, label, msLeft = Infinity) {
      // The parent's clock ends the pass at the deadline whatever the workers do: rows not answered by then are unreached.
      const answered: { rows: number[]; answer: Answer }[] = [];
      const over = { late: false };
      const run = score(model, idx, swap, label, over).then((parts) => void answered.push(...parts));
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => {
        if (msLeft !== Infinity) timer = setTimeout(() => r('late'), Math.max(0, msLeft));
      });
      const how = await Promise.race([run.then(() => 'done' as const), late]).finally(() => clearTimeout(timer));
      if (how === 'late') {
        over.late = true;
        run.catch(() => {}); // the stragglers are ended below; their answers or errors no longer matter
        for (const w of workers)
          if (w.pending.size)
            lose(w, new WorkerLost(`${w.label} had not answered when the time budget ran out; it was killed`));
        say(`warning: the time budget ran out during ${label}: the workers' unanswered rows are left unreached`);
      }
      const pos = new Map(idx.map((r, j) => [r, j]));
      // No rows answered: an empty result (no row, so no width).
      const numLabels = answered.find((p) => p)?.answer.result.numLabels ?? 0;
      const logits = new Float64Array(idx.length * numLabels).fill(NaN);
      const failedRows: number[] = [];
      const reached = new Set<number>();
      let tokens = 0,
        computedTokens = 0,
        seconds = 0;
      for (const { rows: part, answer } of answered) {
        eps.set(model, answer.ep);
        infos.set(model, answer.info);
        const r = answer.result;
        part.forEach((row, j) => {
          logits.set(r.logits.subarray(j * numLabels, (j + 1) * numLabels), pos.get(row)! * numLabels);
          reached.add(pos.get(row)!);
        });
        for (const j of r.failedRows) failedRows.push(pos.get(part[j])!);
        tokens += r.tokens;
        computedTokens += r.computedTokens;
        seconds = Math.max(seconds, r.seconds);
      }
      const unreached = how === 'late' ? idx.map((_, j) => j).filter((j) => !reached.has(j)) : [];
      return {
        logits,
        numLabels,
        tokens,
        computedTokens,
        seconds,
        failedRows: failedRows.sort((a, b) => a - b),
        ...(unreached.length ? { unreached } : {}),
      };
    },
    async release(model) {
      for (const w of workers)
        if (w.alive && w.child.connected) w.child.send({ type: 'release', model } satisfies ToWorker);
    },
    ep: (k) => eps.get(k) ?? '?',
    info: (k) => infos.get(k),
    close() {
      clearInterval(watch);
      for (const w of workers) {
        (w.child.stdio[HEARTBEAT_FD] as Readable | null)?.destroy();
        if (!w.alive) continue;
        // idle workers exit on disconnect; a stopped or busy one is killed (now, or by the exit cleanup)
        if (w.pending.size || Date.now() - w.lastBeat > 3 * heartbeatMs()) lose(w, new WorkerLost(`${w.label} closed`));
        else if (w.child.connected) w.child.disconnect();
      }
      rmSync(tmp, { recursive: true, force: true });
      tmpDirs.delete(tmp);
    },
  };
}
