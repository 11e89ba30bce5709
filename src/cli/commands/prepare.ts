// `trainer prepare`: the weights directories a pack's notebook runs. Merged weights in the pack are
// used as they are; each packed adapter is imported onto its base model, found among the notebook's
// inputs (Kaggle Models), after a free-disk check, with import's progress lines. Ends with one JSON
// line: the weights directories in the pack's order, each import's base and time, and the seconds since
// the notebook's start (ARENAKIT_STARTED_AT): predict's --time-budget counts from that start, so the
// import's time comes out of the run's budget.
import { existsSync, readFileSync, statfsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parse, UsageError, need } from '../args';
import { parseStartedAt } from '../../infer/budget';
import { readAdapterLabels } from '../../weights/peft';
import { openCheckpoint } from '../../weights/safetensors';
import { planTarget } from '../../weights/targets';
import type { GraphKind } from '../../weights/manifest';
import {
  adapterBaseName,
  checkFreeSpace,
  chooseBase,
  estimateImportBytes,
  findModelDirs,
  fittingBases,
  PrepareError,
} from '../../weights/prepare';
import { run as importRun } from './import';

const USAGE = `usage: node dist/trainer.cjs prepare --pack KIT --input DIR --out DIR [--base HF_DIR]
  --pack DIR    an arenakit pack (pack.json): its merged weights are used as they are, its adapters imported
  --input DIR   where the base models are attached (Kaggle: /kaggle/input); searched 6 levels deep for
                Hugging Face folders (config.json + model.safetensors or a sharded index) the adapter fits
  --base DIR    the base model folder (skips the search; notebook: ARENAKIT_BASE)
  --out DIR     where imported weights directories go (one folder per adapter; Kaggle: /kaggle/working/...)
Ends with one JSON line: {"weights": [...], "imported": [...], "seconds": ..., "since_start_seconds": ...}.
ARENAKIT_DISK_FREE (bytes) replaces the free space measured at --out (tests).`;

interface PackEntry {
  name: string;
  path?: string;
  adapter?: string;
  import?: string[];
}

/** The value of `flag` in an argv list (the import arguments the pack recorded). */
const flagValue = (argv: string[], flag: string) => {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
};

/** Free bytes where `dir` is (or would be created). */
function freeBytes(dir: string): number {
  const env = process.env.ARENAKIT_DISK_FREE;
  if (env !== undefined && /^\d+$/.test(env)) return Number(env);
  let d = resolve(dir);
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  const s = statfsSync(d);
  return s.bavail * s.bsize;
}

export async function run(argv: string[]): Promise<void> {
  const v = parse(
    argv,
    { pack: { type: 'string' }, input: { type: 'string' }, out: { type: 'string' }, base: { type: 'string' } },
    USAGE,
  );
  const t0 = Date.now();
  const kit = resolve(need(v.pack, '--pack', USAGE));
  const out = resolve(need(v.out, '--out', USAGE));
  const input = resolve(String(v.input ?? (v.base ? dirname(String(v.base)) : need(v.input, '--input', USAGE))));
  const packFile = join(kit, 'pack.json');
  let pack: { kind?: string; weights?: PackEntry[] };
  try {
    pack = JSON.parse(readFileSync(packFile, 'utf8'));
  } catch (e) {
    throw new UsageError(
      `${packFile}: cannot read the pack (${(e as Error).message}); --pack must be a folder made by npm run pack`,
    );
  }
  if (pack.kind !== 'arenakit-kaggle-pack' || !Array.isArray(pack.weights))
    throw new UsageError(`${packFile}: not an arenakit pack (kind ${JSON.stringify(pack.kind)})`);
  const startedAt = parseStartedAt(undefined);
  const weights: string[] = [];
  const imported: Record<string, unknown>[] = [];
  let candidates: string[] | null = null;
  for (const w of pack.weights) {
    if (!w.adapter) {
      weights.push(join(kit, w.path ?? `weights/${w.name}`));
      continue;
    }
    const adapterDir = join(kit, w.adapter);
    const args = w.import ?? ['--target', 't4'];
    let base: string;
    if (v.base) base = resolve(String(v.base));
    else {
      candidates ??= findModelDirs(input, [kit]);
      const labels = readAdapterLabels(adapterDir);
      base = chooseBase(
        w.name,
        adapterBaseName(adapterDir),
        fittingBases(adapterDir, candidates, labels?.length),
        input,
      );
    }
    // The free-space check, from the base's tensor shapes and the import's quantization and graphs.
    const target = flagValue(args, '--target');
    const quantFlag = flagValue(args, '--quant') as 'int4' | 'int8' | 'fp16' | 'fp32' | undefined;
    const plan = target ? planTarget(target, quantFlag) : undefined;
    const kind = plan?.quantKind ?? quantFlag ?? 'int4';
    const kinds = plan?.graphs ?? ((flagValue(args, '--graphs') ?? 'cpu').split(',') as GraphKind[]);
    const block = Number(flagValue(args, '--block-size') ?? 32);
    const ck = openCheckpoint(base);
    let need_: number;
    try {
      const shapes = new Map(ck.names.map((n) => [n, ck.info(n).shape]));
      const tok = ['tokenizer.json', 'tokenizer_config.json'].filter((f) => existsSync(join(base, f)));
      need_ = estimateImportBytes(
        shapes,
        { kind, blockSize: block, symmetric: !args.includes('--asymmetric') },
        kinds,
        tok.reduce((a, f) => a + statSync(join(base, f)).size, 0),
      );
    } finally {
      ck.close();
    }
    const dest = join(out, w.name);
    checkFreeSpace({ dir: out, free: freeBytes(out), need: need_, what: `importing ${base} with adapter ${w.name}` });
    process.stderr.write(
      `prepare: ${w.name}: base ${base}, adapter ${adapterDir}, import ${args.join(' ')} -> ${dest} (about ${(need_ / 1e9).toFixed(2)} GB)\n`,
    );
    const t = Date.now();
    await importRun(['--base', base, '--adapter', adapterDir, ...args, '--out', dest]);
    const seconds = (Date.now() - t) / 1000;
    const since = startedAt !== undefined ? (Date.now() - startedAt) / 1000 : null;
    process.stderr.write(
      `prepare: ${w.name} imported in ${seconds.toFixed(1)} s` +
        (since !== null
          ? `; ${since.toFixed(1)} s since the notebook started (counted in predict's --time-budget)`
          : '') +
        '\n',
    );
    weights.push(dest);
    imported.push({ name: w.name, base, adapter: adapterDir, out: dest, seconds, estimated_bytes: need_ });
  }
  if (!weights.length) throw new PrepareError(`${packFile}: the pack lists no weights and no adapters`);
  const since = startedAt !== undefined ? (Date.now() - startedAt) / 1000 : null;
  process.stdout.write(
    JSON.stringify({ weights, imported, seconds: (Date.now() - t0) / 1000, since_start_seconds: since }) + '\n',
  );
}
