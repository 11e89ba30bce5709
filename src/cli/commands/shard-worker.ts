// Internal command `_shard-worker`: one worker of src/infer/shards.ts. Reads the rows once, opens
// each model's handle on demand, answers pass requests over IPC with raw outputs (post-processing
// happens in the parent), and exits when the parent goes away.
import { getTask } from '../../task/task';
import { readFileSync } from 'node:fs';
import type { ArenaRow } from '../../types';
import { openHandle, openSpec, type ModelHandle } from '../../infer/model';
import type { FromWorker, ToWorker, WorkerInit } from '../../infer/shards';
import { startHeartbeat } from '../../infer/heartbeat';

export async function run(): Promise<void> {
  if (!process.send) throw new Error('_shard-worker is started by predict/validate --devices, not by hand');
  const send = (m: FromWorker) => process.send!(m);
  // The parent is gone (killed, crashed): stop at once instead of scoring for nobody.
  process.on('disconnect', () => process.exit(0));
  // Heartbeats from a thread of their own: the parent ends a worker that falls silent (src/infer/heartbeat.ts).
  startHeartbeat();
  let init: WorkerInit | undefined;
  let rows: ArenaRow[] = [];
  const handles = new Map<number, ModelHandle>();
  let queue = Promise.resolve();
  const handle = async (k: number) => {
    let h = handles.get(k);
    if (!h) {
      const spec = openSpec(init!.dirs[k], { calibrate: false, needTie: false, task: getTask(init!.task) });
      h = await openHandle(spec, {
        ...init!.handle,
        checkRows: rows,
        warn: (m) => process.stderr.write(`warning [${init!.label}]: ${m}\n`),
      });
      handles.set(k, h);
    }
    return h;
  };
  const serve = async (m: ToWorker) => {
    if (m.type === 'init') {
      init = m.init;
      rows = JSON.parse(readFileSync(init.rowsFile, 'utf8'));
    } else if (m.type === 'pass') {
      const h = await handle(m.model);
      const result = await h.score(
        m.rows.map((i) => rows[i]),
        m.swap,
        m.label,
      );
      send({ type: 'result', id: m.id, result, ep: h.ep, info: h.info });
    } else if (m.type === 'release') {
      await handles.get(m.model)?.close();
      handles.delete(m.model);
    }
  };
  process.on('message', (m: ToWorker) => {
    // One request at a time, in order: a session runs one pass at a time anyway.
    queue = queue
      .then(() => serve(m))
      .catch((e: Error) => {
        process.send!(
          { type: 'error', name: e?.name ?? 'Error', message: e?.message ?? String(e) } satisfies FromWorker,
          undefined,
          {},
          () => process.exit(1),
        );
      });
  });
  await new Promise<never>(() => {});
}
