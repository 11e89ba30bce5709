// Import throughput and memory on a checkpoint with Gemma-2-2B's real shapes: writes the synthetic
// bf16 checkpoint (bench/make-synthetic.ts) under os.tmpdir(), imports it to int4 (CPU graph), and
// reports source MB/s and peak RSS (kernel VmHWM, reset before the import, and sampled rss). Every
// generated file is deleted afterwards. Run directly: `npx tsx bench/import-bench.ts [--layers N]`.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importCheckpoint } from '../src/weights/import';
import { readManifest } from '../src/weights/manifest';
import { makeSynthetic } from './make-synthetic';

/** Peak resident set (MB) the kernel recorded since the last reset, or null off Linux. */
function vmHwmMb(): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** Resets VmHWM to the current RSS (Linux >= 4.0), so the peak covers the import only. */
function resetHwm(): void {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // not Linux or not permitted: the peak then also covers the checkpoint generation, which streams.
  }
}

export interface ImportBenchOptions {
  /** Fewer layers for a quick check (default: the real 26). */
  layers?: number;
  log?: (line: string) => void;
}

export async function importBench(opts: ImportBenchOptions = {}): Promise<{ mbPerS: number; peakRssMb: number; seconds: number }> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const root = mkdtempSync(join(tmpdir(), 'arenakit-import-bench-'));
  try {
    const t0 = Date.now();
    const syn = makeSynthetic({ dir: join(root, 'hf'), layers: opts.layers });
    log(`import-bench: synthetic Gemma-2-2B-shaped checkpoint, ${syn.shards.length} shards, ${(syn.bytes / 1e9).toFixed(2)} GB bf16, written in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const out = join(root, 'weights');
    resetHwm();
    let sampled = process.memoryUsage().rss;
    const timer = setInterval(() => (sampled = Math.max(sampled, process.memoryUsage().rss)), 200);
    const t1 = Date.now();
    const r = await importCheckpoint({
      base: syn.dir,
      quant: 'int4',
      blockSize: 32,
      graphs: ['cpu'],
      template: 'gemma-chat',
      maxTokens: 2048,
      out,
      command: 'bench/import-bench.ts',
      log,
    }).finally(() => clearInterval(timer));
    const seconds = (Date.now() - t1) / 1000;
    sampled = Math.max(sampled, process.memoryUsage().rss);
    const peakRssMb = Math.max(vmHwmMb() ?? 0, sampled / 2 ** 20);
    const m = readManifest(out);
    const outBytes = Object.keys(m.files).reduce((a, f) => a + (existsSync(join(out, f)) ? statSync(join(out, f)).size : 0), 0);
    const mbPerS = r.sourceBytes / 1e6 / seconds;
    log(
      `import-bench: ${(r.sourceBytes / 1e9).toFixed(2)} GB -> ${(outBytes / 1e9).toFixed(2)} GB int4 in ${seconds.toFixed(1)} s: ` +
        `${mbPerS.toFixed(1)} MB/s, peak RSS ${peakRssMb.toFixed(0)} MB (limit 4096)`,
    );
    return { mbPerS: Number(mbPerS.toFixed(1)), peakRssMb: Math.round(peakRssMb), seconds: Number(seconds.toFixed(1)) };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[1] && /import-bench\.ts$/.test(process.argv[1])) {
  const i = process.argv.indexOf('--layers');
  importBench({ layers: i > 0 ? Number(process.argv[i + 1]) : undefined }).then(
    (r) => console.log(JSON.stringify(r)),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
