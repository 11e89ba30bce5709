// A fake nvidia-smi for runtime-choice tests: prints what a real driver prints (the header with the
// driver and CUDA versions, and the --query-gpu CSV of two T4s).
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fake nvidia-smi printing what a real driver prints (header + --query-gpu CSV); returns its path. */
export function fakeNvidiaSmi(driver: string, cuda: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'arenakit-smi-'));
  const path = join(dir, 'nvidia-smi');
  writeFileSync(
    path,
    `#!/bin/sh
if [ "$1" = "--query-gpu=name,memory.total" ]; then echo "Tesla T4, 15360 MiB"; echo "Tesla T4, 15360 MiB"; exit 0; fi
cat <<'X'
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI ${driver}              Driver Version: ${driver}      CUDA Version: ${cuda}     |
|-----------------------------------------+------------------------+----------------------+
X
`,
  );
  chmodSync(path, 0o755);
  return path;
}
