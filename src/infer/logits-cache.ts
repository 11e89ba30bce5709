// Resumable passes: each finished batch's raw logits are appended to a cache file keyed by the graph's
// content (sha256 of its files), the execution provider, and each row's exact token ids. A run that
// is interrupted (Ctrl-C, a killed notebook, a crash) and started again skips every row already
// scored; other weights, template or truncation change the key, so stale logits are never reused.
// Post-processing (calibration, tie model) is applied after the cache, so editing it keeps the cache.
//
// Line format: `<row key>\t<float32 logits, base64>\t<checksum>`. Raw float32 bytes keep NaN and
// Inf exactly; the checksum makes a line cut short or edited count as absent (the row is scored again).
import { createHash } from 'node:crypto';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertWritableDir, fsReason } from '../util/files';

export class CacheError extends Error {
  override name = 'CacheError';
}

export interface LogitsCache {
  get(ids: Int32Array): Float32Array | undefined;
  /** Appends entries; a write failure (full disk ...) throws CacheError, which stops the run. */
  put(entries: { ids: Int32Array; logits: Float32Array }[]): void;
  readonly size: number;
  readonly file: string;
  /** Lines ignored at open because their checksum did not match. */
  readonly corrupted: number;
}

export function rowKey(ids: Int32Array): string {
  return createHash('sha1')
    .update(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength))
    .digest('base64url');
}

const checksum = (key: string, data: string) =>
  createHash('sha1').update(key).update('\t').update(data).digest('hex').slice(0, 12);

export function cacheLine(key: string, logits: Float32Array): string {
  const data = Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength).toString('base64');
  return `${key}\t${data}\t${checksum(key, data)}`;
}

/** Parses one line; undefined when it is cut short, edited or otherwise not what cacheLine wrote. */
function parseCacheLine(line: string): { key: string; logits: Float32Array } | undefined {
  const parts = line.split('\t');
  if (parts.length !== 3 || checksum(parts[0], parts[1]) !== parts[2]) return undefined;
  const bytes = Buffer.from(parts[1], 'base64');
  if (bytes.length % 4 !== 0) return undefined;
  const logits = new Float32Array(bytes.length / 4);
  new Uint8Array(logits.buffer).set(bytes);
  return { key: parts[0], logits };
}

/**
 * Opens (or creates) the cache of one model identity under `dir`. The identity is what makes two
 * runs' logits interchangeable: the graph content hash and the execution provider.
 */
export function openLogitsCache(dir: string, modelIdentity: string): LogitsCache {
  try {
    assertWritableDir(dir, '--cache');
  } catch (e) {
    throw new CacheError(`${(e as Error).message} (--cache must be a folder)`);
  }
  const file = join(dir, `${createHash('sha256').update(modelIdentity).digest('hex').slice(0, 16)}.logits`);
  const map = new Map<string, Float32Array>();
  let corrupted = 0;
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new CacheError(`--cache ${file}: cannot be read (${fsReason(e)})`);
  }
  // A line cut short by an interruption has no newline: the next append starts on a fresh line.
  let prefix = text && !text.endsWith('\n') ? '\n' : '';
  for (const line of text.split('\n')) {
    if (!line) continue;
    const entry = parseCacheLine(line);
    if (entry) map.set(entry.key, entry.logits);
    else corrupted++;
  }
  return {
    file,
    corrupted,
    get size() {
      return map.size;
    },
    get: (ids) => map.get(rowKey(ids)),
    put(entries) {
      if (!entries.length) return;
      const lines = entries.map(({ ids, logits }) => cacheLine(rowKey(ids), logits));
      try {
        appendFileSync(file, prefix + lines.join('\n') + '\n');
        prefix = '';
      } catch (e) {
        throw new CacheError(
          `--cache ${file}: cannot be written (${fsReason(e)}); the run stops so no row is lost. Free space or point --cache elsewhere, then run the same command again to resume.`,
        );
      }
      entries.forEach(({ ids, logits }) => map.set(rowKey(ids), logits));
    },
  };
}
