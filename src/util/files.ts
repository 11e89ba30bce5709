// File-system edges shared by every writer: the atomic writer (a temporary file in the same
// directory, then rename, so a file is complete or absent) and the up-front check that an output
// location can be written, so a bad --out fails before hours of inference, naming the path.
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
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
    throw writeFailure(e, path); // ENOSPC, EROFS, EACCES: one error naming the file, no .tmp left
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

/** Error codes of a write the disk or the permissions refused. */
const WRITE_FAILURES = new Set([
  'ENOSPC',
  'EROFS',
  'EACCES',
  'EPERM',
  'EDQUOT',
  'EFBIG',
  'EIO',
  'ENOTDIR',
  'EISDIR',
  'EEXIST',
]);

/** An fs error while writing `path` as one OutputError naming it (other errors pass through). */
export function writeFailure(e: unknown, path: string): Error {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (e instanceof OutputError || !WRITE_FAILURES.has(String(code))) return e as Error;
  const at = (e as NodeJS.ErrnoException).path;
  return new OutputError(
    `${path}: cannot be written (${fsReason(e)}${at && resolve(at) !== resolve(path) ? ` at ${at}` : ''}); ` +
      'nothing partial was left there. Free space or choose a writable location',
  );
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

/** True when `a` and `b` name one file: the same resolved path, or the same inode (a hard link or another spelling). */
export function sameFile(a: string, b: string): boolean {
  if (resolve(a) === resolve(b)) return true;
  try {
    const x = statSync(a);
    const y = statSync(b);
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

export interface PathOption {
  flag: string;
  path: string | undefined;
}

/**
 * Refuses an output that is one of the command's own inputs (resolved paths and hard links compared),
 * or that lies inside an input folder (a --weights or --adapter directory), before any work starts.
 */
export function assertNotInput(out: PathOption, inputs: PathOption[]): void {
  if (!out.path) return;
  for (const inp of inputs) {
    if (!inp.path) continue;
    if (sameFile(out.path, inp.path))
      throw new OutputError(
        `${out.flag} ${out.path} is the same file as ${inp.flag} ${inp.path}; it would be overwritten. Write to another path.`,
      );
    let isDir = false;
    try {
      isDir = statSync(inp.path).isDirectory();
    } catch {
      /* a missing input is the reader's error */
    }
    if (isDir && sameFile(dirname(resolve(out.path)), inp.path) && existsSync(out.path))
      throw new OutputError(
        `${out.flag} ${out.path} would overwrite a file of ${inp.flag} ${inp.path}. Write to another path.`,
      );
  }
}

/**
 * Replaces the folder `dir` only once a complete new one exists: `build` writes into a sibling
 * temporary folder, which is then swapped in (old folder renamed aside, new renamed in, old removed).
 * A kill while building leaves the old folder as it was; `recoverDir` restores it if a kill lands
 * between the two renames. A failure removes the temporary folder and names `dir`.
 */
export async function replaceDir<T>(dir: string, build: (tmp: string) => Promise<T> | T): Promise<T> {
  const tmp = newDirBeside(dir);
  let result: T;
  try {
    result = await build(tmp);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw inFinalPlace(e, tmp, dir);
  }
  swapInDir(dir, tmp);
  return result;
}

/** replaceDir for a synchronous build (a training checkpoint: state and metadata in one swap). */
export function replaceDirSync(dir: string, build: (tmp: string) => void): void {
  const tmp = newDirBeside(dir);
  try {
    build(tmp);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw inFinalPlace(e, tmp, dir);
  }
  swapInDir(dir, tmp);
}

/** An error of a build in `tmp` (which is gone) names the path the file would have had in `dir`. */
function inFinalPlace(e: unknown, tmp: string, dir: string): unknown {
  const out = writeFailure(e, dir);
  if (out instanceof OutputError) out.message = out.message.split(tmp).join(resolve(dir));
  return out;
}

function newDirBeside(dir: string): string {
  recoverDir(dir);
  const parent = dirname(resolve(dir));
  mkdirSync(parent, { recursive: true });
  const tmp = join(parent, `.${basename(resolve(dir))}.${process.pid}.new`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  return tmp;
}

function swapInDir(dir: string, tmp: string): void {
  const old = join(dirname(resolve(dir)), `.${basename(resolve(dir))}.old`);
  try {
    if (existsSync(dir)) renameSync(dir, old);
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    recoverDir(dir);
    throw new OutputError(`${dir}: the new folder could not be moved into place (${fsReason(e)}); the old one is kept`);
  }
  rmSync(old, { recursive: true, force: true });
}

/** Puts back a folder that `replaceDir` renamed aside when the process died before the new one moved in. */
export function recoverDir(dir: string): void {
  const parent = dirname(resolve(dir));
  const old = join(parent, `.${basename(resolve(dir))}.old`);
  if (existsSync(old)) {
    if (existsSync(dir)) rmSync(old, { recursive: true, force: true });
    else renameSync(old, dir);
  }
  // Temporary folders of killed runs.
  if (!existsSync(parent)) return;
  for (const f of readdirSync(parent))
    if (f.startsWith(`.${basename(resolve(dir))}.`) && f.endsWith('.new'))
      rmSync(join(parent, f), { recursive: true, force: true });
}

/**
 * Checks an output folder before any work: it is not one of the input folders, does not hold one
 * (replacing it would delete the input), and, when it exists and is not empty, holds a previous run
 * of the same command (`marker`, e.g. manifest.json): a folder of other files is refused, not cleared.
 */
export function assertOutDir(
  out: PathOption & { path: string },
  inputs: PathOption[],
  marker: string | string[],
): void {
  const markers = typeof marker === 'string' ? [marker] : marker;
  const o = resolve(out.path);
  for (const inp of inputs) {
    if (!inp.path) continue;
    const i = resolve(inp.path);
    if (sameFile(o, i) || i.startsWith(o + '/'))
      throw new OutputError(
        `${out.flag} ${out.path} ${sameFile(o, i) ? 'is' : 'holds'} ${inp.flag} ${inp.path}; writing there would destroy it. Write to a new folder.`,
      );
  }
  let entries: string[] = [];
  try {
    if (!statSync(o).isDirectory()) throw new OutputError(`${out.flag} ${out.path} is a file; give a folder path`);
    entries = readdirSync(o).filter((f) => !f.startsWith('.'));
  } catch (e) {
    if (e instanceof OutputError) throw e;
    return; // does not exist yet
  }
  if (entries.length && !markers.some((m) => entries.includes(m)))
    throw new OutputError(
      `${out.flag} ${out.path} holds other files (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''}) ` +
        `and no ${markers.join(' or ')} of a previous run; write to a new or empty folder`,
    );
}
