// Heartbeats of --devices workers (issue 19 item 5): a stopped (SIGSTOP), frozen or vanished worker must
// not stall the parent. Each worker runs a small thread that writes one byte to an extra pipe
// (fd HEARTBEAT_FD) every heartbeatMs(); a thread, so a long synchronous ONNX Runtime batch on the
// worker's main thread does not silence it, while a stopped process does. The parent
// (src/infer/shards.ts) kills a worker that stays silent for silentLimitMs() and deals its rows to the
// others. Intervals from the environment (tests shorten them).
import { Worker } from 'node:worker_threads';

/** The worker's extra pipe: stdio index 4 (0-2 std, 3 the IPC channel). */
export const HEARTBEAT_FD = 4;

const envMs = (name: string, dflt: number): number => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : dflt;
};

/** How often a worker beats (ARENAKIT_HEARTBEAT_MS, default 1 s). */
export const heartbeatMs = (): number => envMs('ARENAKIT_HEARTBEAT_MS', 1000);

/** How long the parent waits for a beat before it ends the worker (ARENAKIT_WORKER_SILENT_MS, default 15 s). */
export const silentLimitMs = (): number => envMs('ARENAKIT_WORKER_SILENT_MS', Math.max(15_000, 10 * heartbeatMs()));

const BEAT = `
const { writeSync } = require('node:fs');
const { workerData } = require('node:worker_threads');
const t = setInterval(() => {
  try { writeSync(workerData.fd, '.'); } catch { clearInterval(t); } // the parent is gone
}, workerData.ms);
try { writeSync(workerData.fd, '.'); } catch {}
`;

/** In a worker process: beats on HEARTBEAT_FD from a thread of its own until the process ends. */
export function startHeartbeat(ms = heartbeatMs()): void {
  const t = new Worker(BEAT, { eval: true, workerData: { fd: HEARTBEAT_FD, ms } });
  t.unref();
  t.on('error', () => {}); // no pipe (started by hand): nothing to beat on
}
