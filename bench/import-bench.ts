// Import throughput and memory on checkpoints with Gemma-2's real shapes: writes a synthetic bf16
// checkpoint (bench/make-synthetic.ts) under os.tmpdir(), imports it to int4 (CPU graph) in a child
// process running `trainer import`, and reports source MB/s and the child's peak RSS (kernel VmHWM,
// read by a preload script as the child exits, so nothing of the generator or the parent counts).
// importBench: Gemma-2-2B shapes, all 26 layers. importBench9b: Gemma-2-9B shapes (256000 x 3584
// embedding, 14336 x 3584 MLP), few layers: the per-tensor peak of a 9B import without 18 GB of disk.
// Every generated file is deleted afterwards.
// Run directly: `npx tsx bench/import-bench.ts [--9b] [--layers N]`.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readManifest } from '../src/weights/manifest';
import { makeSynthetic } from './make-synthetic';

export interface ImportBenchOptions {
  /** Fewer layers for a quick check (default: 26 for importBench, 2 for importBench9b). */
  layers?: number;
  log?: (line: string) => void;
}

export interface ImportBenchResult {
  mbPerS: number;
  /** Peak resident set of the importing process (MB); 0 where /proc/self/status is unavailable. */
  peakRssMb: number;
  seconds: number;
  layers: number;
}

/** Written next to the checkpoint and loaded with `node -r`: records VmHWM when the child exits. */
const HWM_PRELOAD = `const fs = require('node:fs');
process.on('exit', () => {
  try {
    const m = /VmHWM:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    fs.writeFileSync(process.env.ARENAKIT_HWM_FILE, m ? m[1] : '');
  } catch {}
});
`;

/** `trainer import` as a child command: the bundled dist/trainer.cjs next to a bundled bench, else the TypeScript source through tsx. */
function trainerCommand(): { args: string[]; cwd: string } {
  if (/\.ts$/.test(__filename)) {
    const root = resolve(__dirname, '..');
    return { args: ['--import', 'tsx', join(root, 'src', 'cli', 'trainer.ts')], cwd: root };
  }
  return { args: [join(__dirname, 'trainer.cjs')], cwd: resolve(__dirname, '..') };
}

function runChild(args: string[], cwd: string, env: NodeJS.ProcessEnv, log: (l: string) => void): Promise<string> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'inherit', 'pipe'] });
    let err = '';
    let pending = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      err += d;
      pending += d;
      const lines = pending.split(/[\r\n]/);
      pending = lines.pop() ?? '';
      for (const l of lines) if (l.trim()) log(l.trim());
    });
    child.on('error', fail);
    child.on('close', (code) => {
      if (pending.trim()) log(pending.trim());
      if (code === 0) ok(err);
      else fail(new Error(`import-bench: trainer import exited with ${code}: ${err.slice(-2000)}`));
    });
  });
}

async function benchModel(
  model: '2b' | '9b',
  layers: number | undefined,
  logOpt?: (l: string) => void,
): Promise<ImportBenchResult> {
  const log = logOpt ?? ((l: string) => process.stderr.write(`${l}\n`));
  const root = mkdtempSync(join(tmpdir(), 'arenakit-import-bench-'));
  try {
    const t0 = Date.now();
    const syn = makeSynthetic({ dir: join(root, 'hf'), model, layers });
    const nLayers = JSON.parse(readFileSync(join(syn.dir, 'config.json'), 'utf8')).num_hidden_layers as number;
    log(
      `import-bench: synthetic Gemma-2-${model.toUpperCase()}-shaped checkpoint, ${nLayers} layers, ${syn.shards.length} shards, ` +
        `${(syn.bytes / 1e9).toFixed(2)} GB bf16, written in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
    const out = join(root, 'weights');
    const preload = join(root, 'hwm.cjs');
    const hwmFile = join(root, 'hwm.txt');
    writeFileSync(preload, HWM_PRELOAD);
    const cmd = trainerCommand();
    const args = [
      '-r',
      preload,
      ...cmd.args,
      'import',
      '--base',
      syn.dir,
      '--quant',
      'int4',
      '--block-size',
      '32',
      '--out',
      out,
    ];
    const t1 = Date.now();
    const stderr = await runChild(args, cmd.cwd, { ...process.env, ARENAKIT_HWM_FILE: hwmFile }, log);
    const wall = (Date.now() - t1) / 1000;
    // The importer's own time (excludes node / tsx start-up); the child's wall time as a fallback.
    const m = /MB source in ([\d.]+) s/.exec(stderr);
    const seconds = m ? Number(m[1]) : wall;
    const hwmKb = existsSync(hwmFile) ? Number(readFileSync(hwmFile, 'utf8') || 0) : 0;
    const peakRssMb = hwmKb / 1024;
    const manifest = readManifest(out);
    const outBytes = Object.keys(manifest.files).reduce(
      (a, f) => a + (existsSync(join(out, f)) ? statSync(join(out, f)).size : 0),
      0,
    );
    const srcMb = /\(([\d.]+) MB source/.exec(stderr);
    const sourceBytes = srcMb ? Number(srcMb[1]) * 1e6 : syn.bytes;
    const mbPerS = sourceBytes / 1e6 / seconds;
    log(
      `import-bench (${model}, ${nLayers} layers): ${(sourceBytes / 1e9).toFixed(2)} GB -> ${(outBytes / 1e9).toFixed(2)} GB int4 in ${seconds.toFixed(1)} s: ` +
        `${mbPerS.toFixed(1)} MB/s, peak RSS ${peakRssMb ? peakRssMb.toFixed(0) : 'n/a'} MB (limit 4096)`,
    );
    return {
      mbPerS: Number(mbPerS.toFixed(1)),
      peakRssMb: Math.round(peakRssMb),
      seconds: Number(seconds.toFixed(1)),
      layers: nLayers,
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** Gemma-2-2B shapes, all 26 layers unless `layers` says fewer (5.2 GB of bf16 on disk while it runs). */
export function importBench(opts: ImportBenchOptions = {}): Promise<ImportBenchResult> {
  return benchModel('2b', opts.layers, opts.log);
}

/** Gemma-2-9B shapes with 2 layers unless `layers` says otherwise (2.6 GB of bf16 on disk at 2 layers). */
export function importBench9b(opts: ImportBenchOptions = {}): Promise<ImportBenchResult> {
  return benchModel('9b', opts.layers ?? 2, opts.log);
}

if (process.argv[1] && /import-bench\.ts$/.test(process.argv[1])) {
  const i = process.argv.indexOf('--layers');
  const layers = i > 0 ? Number(process.argv[i + 1]) : undefined;
  (process.argv.includes('--9b') ? importBench9b({ layers }) : importBench({ layers })).then(
    (r) => console.log(JSON.stringify(r)),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
