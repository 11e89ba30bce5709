// Base + adapter at run time (`trainer.cjs prepare`, issue 22 item 8): a pack may carry PEFT adapters
// instead of merged weights; the notebook finds each adapter's base model among the attached inputs
// (a Hugging Face folder, as Kaggle Models mounts it: /kaggle/input/<model>/<framework>/<variation>/<version>),
// checks the disk, and imports base + adapter into a working folder before predicting. Here: finding
// the bases (I/O: a bounded walk), which one an adapter fits (its tensors' names and shapes), and the
// size of the import's output (pure) against the free space.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GraphKind, Quantization } from './manifest';
import { checkAdapter, openAdapter } from './peft';
import { openCheckpoint } from './safetensors';

export class PrepareError extends Error {
  override name = 'PrepareError';
}

/** A folder holding config.json and safetensors weights (single file or a sharded index). */
export function isHfModelDir(dir: string): boolean {
  if (!existsSync(join(dir, 'config.json'))) return false;
  try {
    return readdirSync(dir).some((f) => f === 'model.safetensors' || f === 'model.safetensors.index.json');
  } catch {
    return false;
  }
}

/** Hugging Face model folders under `root`, at most `depth` levels down, skipping `exclude` (the kit itself). */
export function findModelDirs(root: string, exclude: string[] = [], depth = 6): string[] {
  const out: string[] = [];
  const walk = (dir: string, d: number) => {
    if (exclude.includes(dir)) return;
    if (isHfModelDir(dir)) return void out.push(dir);
    if (d === 0) return;
    let entries: string[];
    try {
      entries = readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name)
        .sort();
    } catch {
      return;
    }
    for (const e of entries) walk(join(dir, e), d - 1);
  };
  walk(root, depth);
  return out;
}

/**
 * The candidates `adapterDir` fits: every LoRA and modules_to_save tensor names a base tensor of the
 * right shape (checkAdapter, reading headers and the small adapter only). Returns the fitting folders
 * and, for the others, why not (for the error that lists them).
 */
export function fittingBases(
  adapterDir: string,
  candidates: string[],
  relabelled?: number,
): { fits: string[]; misfits: { dir: string; why: string }[] } {
  const fits: string[] = [];
  const misfits: { dir: string; why: string }[] = [];
  for (const dir of candidates) {
    let adapter: ReturnType<typeof openAdapter> | null = null;
    let ck: ReturnType<typeof openCheckpoint> | null = null;
    try {
      adapter = openAdapter(adapterDir);
      ck = openCheckpoint(dir);
      const c = ck;
      const newHead = [...adapter.saved.keys()].filter((n) => /^score\./.test(n));
      checkAdapter(adapter, { names: c.names, shape: (n) => c.info(n).shape }, newHead, relabelled);
      fits.push(dir);
    } catch (e) {
      misfits.push({ dir, why: (e as Error).message.split('\n')[0] });
    } finally {
      adapter?.close();
      ck?.close();
    }
  }
  return { fits, misfits };
}

/** The base model the adapter names (adapter_config.json base_model_name_or_path), or ''. */
export function adapterBaseName(adapterDir: string): string {
  try {
    const j = JSON.parse(readFileSync(join(adapterDir, 'adapter_config.json'), 'utf8'));
    return typeof j.base_model_name_or_path === 'string' ? j.base_model_name_or_path : '';
  } catch {
    return '';
  }
}

/** Whether `dir` carries the name of the adapter's base (a path component equal to its last part, any case). */
function named(dir: string, baseName: string): boolean {
  const last = baseName.replace(/\/+$/, '').split('/').pop()?.toLowerCase() ?? '';
  return last !== '' && dir.toLowerCase().split('/').includes(last);
}

/**
 * One base for the adapter. Shapes alone cannot tell models apart (Llama-3-8B and Mistral-7B, a base and
 * its -it variation have the same tensors), so among the folders it fits, the one carrying the name of
 * the base it was trained on (adapter_config.json base_model_name_or_path: Kaggle Models mounts
 * google/gemma-2-9b-it as .../gemma-2/transformers/gemma-2-9b-it/N) wins. A single fitting folder is
 * taken without a name only when the adapter names no hub model (no name, or a local path). Anything
 * else is an error listing the folders and the fix (attach the base, or name it with --base / ARENAKIT_BASE).
 */
export function chooseBase(
  adapterName: string,
  baseName: string,
  found: { fits: string[]; misfits: { dir: string; why: string }[] },
  input: string,
): string {
  const byName = found.fits.filter((d) => named(d, baseName));
  if (byName.length === 1) return byName[0];
  const hubId = baseName !== '' && !baseName.startsWith('/') && !baseName.startsWith('.');
  if (found.fits.length === 1 && !hubId) return found.fits[0];
  const tried = found.misfits.map((m) => `\n  ${m.dir}: ${m.why}`).join('');
  const fix = 'name the right folder with --base DIR (notebook: ARENAKIT_BASE)';
  if (byName.length > 1)
    throw new PrepareError(`adapter ${adapterName}: ${byName.length} model folders under ${input} fit it and carry its base's name ${baseName} (${byName.join(', ')}); ${fix}`);
  if (found.fits.length)
    throw new PrepareError(
      `adapter ${adapterName}: it was trained on ${baseName || 'an unnamed base'}, and no model folder under ${input} carries that name; ` +
        `its tensors fit ${found.fits.join(', ')} (shapes alone cannot tell models apart); attach the base it was trained on ` +
        `(Kaggle: Add Input > Models) or, if one of these is it, ${fix}`,
    );
  throw new PrepareError(
    `adapter ${adapterName}: no Hugging Face model folder under ${input} fits it` +
      `${baseName ? ` (it was trained on ${baseName})` : ''}; attach that base model to the notebook ` +
      `(Kaggle: Add Input > Models, the Transformers variation)` +
      (tried ? `. Folders found that do not fit:${tried}` : '. No model folder (config.json + model.safetensors) was found at all'),
  );
}

/** Stored bytes per weight element of a projection, for the graphs an import writes (shared data file). */
function linearBytesPerElement(q: Quantization, kinds: GraphKind[]): number {
  const block = q.blockSize ?? 32;
  // Scales: fp32 in the CPU graph, fp16 / bf16 in a GPU graph; the packed weights are shared.
  const scales = kinds.reduce((a, k) => a + (k === 'cpu' ? 4 : 2), 0) / block;
  const zeros = q.symmetric === false ? 1 / block : 0;
  if (q.kind === 'int4') return 0.5 + scales + zeros;
  if (q.kind === 'int8') return 1 + scales + zeros;
  // Float weights are stored in each graph's activation dtype: nothing to share.
  return kinds.reduce((a, k) => a + (k === 'cpu' ? 4 : 2), 0);
}

/**
 * Bytes an import will write for a checkpoint whose tensors are `shapes`: 2-D projections
 * (`*_proj.weight`) quantized, the embedding in fp16 (fp32 for fp32 weights), anything else fp32;
 * plus `extra` (tokenizer files). An estimate for the free-space check, within a few per cent.
 */
export function estimateImportBytes(
  shapes: Map<string, number[]>,
  q: Quantization,
  kinds: GraphKind[],
  extra = 0,
): number {
  let bytes = extra;
  const per = linearBytesPerElement(q, kinds);
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, d) => a * d, 1);
    if (/_proj\.weight$/.test(name) && shape.length === 2) bytes += n * per;
    else if (/embed_tokens\.weight$/.test(name)) bytes += n * (q.kind === 'fp32' ? 4 : 2);
    else if (!/^lm_head\./.test(name)) bytes += n * 4;
  }
  return Math.ceil(bytes);
}

const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;

/** Refuses an import that would not fit: `free` bytes at `dir` against `need` plus a 5% + 64 MB margin. */
export function checkFreeSpace(o: { dir: string; free: number; need: number; what: string }): void {
  const want = o.need * 1.05 + 64e6;
  if (o.free >= want) return;
  throw new PrepareError(
    `${o.dir}: ${gb(o.free)} free, but ${o.what} needs about ${gb(want)} (${gb(o.need)} of weights + margin); ` +
      'free space there (delete earlier outputs) or import onto a larger disk (--out, notebook: ARENAKIT_IMPORT_DIR, e.g. /tmp), ' +
      'or pack merged weights (`npm run pack -- --weights DIR`) instead of the adapter',
  );
}
