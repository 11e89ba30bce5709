// A fake nvidia-smi that answers the compute-capability query as a real driver does (one "M.m" line per GPU).
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Path of a fake nvidia-smi whose `--query-gpu=compute_cap --format=csv,noheader` prints `caps`, one per line. */
export function fakeComputeCapSmi(caps: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'arenakit-smi-cc-'));
  const path = join(dir, 'nvidia-smi');
  writeFileSync(
    path,
    `#!/bin/sh\nif [ "$1" = "--query-gpu=compute_cap" ]; then\n${caps.map((c) => `echo "${c}"`).join('\n')}\nexit 0; fi\nexit 9\n`,
  );
  chmodSync(path, 0o755);
  return path;
}
