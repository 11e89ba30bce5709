// The one-process PassRunner: opens model k's handle on its first pass, keeps it for the swapped
// pass, and releases it when the model is done (one model's weights in memory at a time).
import type { ArenaRow } from '../types';
import { openHandle, type HandleOptions, type ModelHandle, type ModelSpec } from './model';
import type { PassRunner } from './tta';

export function localRunner(specs: ModelSpec[], rows: ArenaRow[], opts: HandleOptions): PassRunner {
  const open = new Map<number, ModelHandle>();
  const eps = new Map<number, string>();
  const infos = new Map<number, ModelHandle['info']>();
  const handle = async (k: number) => {
    let h = open.get(k);
    if (!h) {
      h = await openHandle(specs[k], opts);
      open.set(k, h);
      eps.set(k, h.ep);
      infos.set(k, h.info);
    }
    return h;
  };
  return {
    async pass(k, idx, swap, label) {
      const h = await handle(k);
      const all = idx.length === rows.length && idx.every((r, j) => r === j);
      return h.score(all ? rows : idx.map((i) => rows[i]), swap, label);
    },
    async release(k) {
      await open.get(k)?.close();
      open.delete(k);
    },
    ep: (k) => eps.get(k) ?? '?',
    info: (k) => infos.get(k),
  };
}
