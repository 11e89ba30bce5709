// File-system edges shared by every writer: the atomic writer (a temporary file in the same
// directory, then rename, so a file is complete or absent) and the up-front check that an output
// location can be written, so a bad --out fails before hours of inference, naming the path.
import { accessSync, closeSync, constants, mkdirSync, openSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

export class OutputError extends Error {
  override name = 'OutputError';
}

/** The first `bytes` bytes of a file (fewer when it is shorter; empty when it cannot be read: the full read then says why). */
export function readHead(path: string, bytes: number): Buffer {
  try {
    const fd = openSync(path, 'r');
    try {
      const b = Buffer.alloc(bytes);
      return b.subarray(0, readSync(fd, b, 0, bytes, 0));
    } finally {
      closeSync(fd);
    }
  } catch {
    return Buffer.alloc(0);
  }
}

export function writeFileAtomic(path: string, text: string): void {
  mkdirSync(dirname(path) || '.', { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Human wording of a Node fs error code (EACCES -> permission denied ...), for messages. */
export function fsReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const why: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on device',
    EDQUOT: 'disk quota exceeded',
    EFBIG: 'file too large for the file system or the file size limit',
    ENOENT: 'no such file or directory',
    ENOTDIR: 'a parent is a file, not a directory',
    EISDIR: 'is a directory',
    EEXIST: 'already exists',
  };
  return err?.code && why[err.code] ? `${why[err.code]} (${err.code})` : (err?.message ?? String(e));
}

/**
 * Checks that `path` can be written as a file: not a directory, its folder creatable and writable
 * (probed by writing and removing a temporary file). `what` names the option in the message.
 */
export function assertWritableFile(path: string, what: string): void {
  try {
    if (statSync(path).isDirectory()) throw new OutputError(`${what} ${path}: is a directory; give a file path`);
  } catch (e) {
    if (e instanceof OutputError) throw e;
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new OutputError(`${what} ${path}: cannot be written (${fsReason(e)})`);
  }
  const dir = dirname(path) || '.';
  assertWritableDir(dir, `${what} ${path}: its folder`);
}

/** Creates `dir` when needed and probes that files can be written in it. */
export function assertWritableDir(dir: string, what: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    if (!statSync(dir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    accessSync(dir, constants.W_OK);
    const probe = join(dir, `.arenakit-probe.${process.pid}.tmp`);
    writeFileSync(probe, 'x');
    rmSync(probe, { force: true });
  } catch (e) {
    throw new OutputError(`${what} ${resolve(dir)} cannot be written (${fsReason(e)}); choose a writable location`);
  }
}
