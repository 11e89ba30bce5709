// The --out folder of a training run (issue 19 item 4): a previous run's output stays whole until the
// new one is complete. While a run goes, it writes only its checkpoint folder (swapped in whole,
// checkpoint.ts) and a hidden running log; the adapter, training.json and train_log.jsonl are built in a
// folder beside --out, with the checkpoint hard-linked in, and swapped in at the end
// (util/files.ts replaceDir). A kill -9 at any point leaves the old output or the new complete one. A
// write that fails (ENOSPC, EROFS, EACCES) is one OutputError naming the path, and leaves no partial file.
import { appendFileSync, copyFileSync, existsSync, linkSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { recoverDir, replaceDir, writeFailure } from '../util/files';

export { writeFailure };

/** The log of the run in progress (hidden: assertOutDir ignores it), renamed train_log.jsonl when the run ends. */
export const RUNNING_LOG = '.train_log.running.jsonl';
export const FINAL_LOG = 'train_log.jsonl';

/** Creates --out (and puts back a folder a killed swap left aside) before the run writes anything. */
export function prepareOut(out: string): void {
  try {
    recoverDir(out);
    mkdirSync(out, { recursive: true });
  } catch (e) {
    throw writeFailure(e, out);
  }
}

/** Appends one line to the running log, naming the file when the disk refuses. */
export function appendLog(out: string, line: string): void {
  const file = join(out, RUNNING_LOG);
  try {
    appendFileSync(file, line + '\n');
  } catch (e) {
    throw writeFailure(e, file);
  }
}

/**
 * Writes the run's final files into a new folder beside `out` (`write` gets its path), adds the running
 * log as train_log.jsonl and the checkpoint (hard links, else copies), and swaps it in for `out`.
 */
export async function finishOut(out: string, write: (dir: string) => void): Promise<void> {
  try {
    await replaceDir(resolve(out), (tmp) => {
      write(tmp);
      if (existsSync(join(out, RUNNING_LOG))) copyFileSync(join(out, RUNNING_LOG), join(tmp, FINAL_LOG));
      const ck = join(out, 'checkpoint');
      if (existsSync(ck)) {
        mkdirSync(join(tmp, 'checkpoint'));
        for (const f of readdirSync(ck))
          try {
            linkSync(join(ck, f), join(tmp, 'checkpoint', f));
          } catch {
            copyFileSync(join(ck, f), join(tmp, 'checkpoint', f));
          }
      }
    });
  } catch (e) {
    throw writeFailure(e, out);
  }
}
