// Resumable passes: each finished batch's logits are appended to a cache file keyed by the model
// (manifest + graph + execution provider) and the row's exact token ids. A run that is interrupted
// (Ctrl-C, a killed notebook, a crash) and started again skips every row already scored; a changed
// model, template or truncation changes the key, so stale logits are never reused.
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface LogitsCache {
  get(ids: Int32Array): Float32Array | undefined;
  put(entries: { ids: Int32Array; logits: Float32Array }[]): void;
  readonly size: number;
  readonly file: string;
}

export function rowKey(ids: Int32Array): string {
  return createHash('sha1').update(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength)).digest('base64url');
}

/** Opens (or creates) the cache of one model identity under `dir`. */
export function openLogitsCache(dir: string, modelIdentity: string): LogitsCache {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${createHash('sha1').update(modelIdentity).digest('hex').slice(0, 16)}.jsonl`);
  const map = new Map<string, Float32Array>();
  if (existsSync(file)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line) continue;
      try {
        const { k, l } = JSON.parse(line) as { k: string; l: number[] };
        if (typeof k === 'string' && Array.isArray(l)) map.set(k, Float32Array.from(l));
      } catch {
        // A line cut short by an interruption: that row is simply scored again.
      }
    }
  }
  return {
    file,
    get size() {
      return map.size;
    },
    get: (ids) => map.get(rowKey(ids)),
    put(entries) {
      const lines = entries.map(({ ids, logits }) => {
        const k = rowKey(ids);
        map.set(k, logits);
        return JSON.stringify({ k, l: Array.from(logits) });
      });
      if (lines.length) appendFileSync(file, lines.join('\n') + '\n');
    },
  };
}
