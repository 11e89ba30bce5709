// Adapters in a pack (`npm run pack -- --adapter [NAME=]DIR --import "--target t4"`): the pack carries
// the kit and small PEFT adapter folders instead of merged weights; the notebook imports each one onto
// its base model (attached from Kaggle Models) with `trainer.cjs prepare` before predicting.
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { PackError } from './pack-fetch.mjs';

/** The files of an adapter folder a pack ships: PEFT's two, and the kit trainer's settings and labels when present. */
export const ADAPTER_FILES = ['adapter_config.json', 'adapter_model.safetensors'];
export const ADAPTER_OPTIONAL = ['training.json', 'arenakit_labels.json'];

/** Import flags the notebook decides (paths), so a pack may not record them. */
const PATH_FLAGS = ['--base', '--adapter', '--out', '--tokenizer'];

/** `[NAME=]DIR` -> { name, dir }, checked like --weights. */
export function parseAdapterArg(s) {
  const eq = s.indexOf('=');
  const dir = resolve(eq > 0 ? s.slice(eq + 1) : s);
  const name = eq > 0 ? s.slice(0, eq) : basename(dir);
  if (!/^[A-Za-z0-9._-]+$/.test(name))
    throw new PackError(`--adapter ${s}: name "${name}" must be letters, digits, ".", "_" or "-" (use NAME=DIR)`);
  for (const f of ADAPTER_FILES)
    if (!existsSync(join(dir, f)))
      throw new PackError(
        `--adapter ${s}: ${join(dir, f)} is missing; give a PEFT adapter folder (adapter_config.json + adapter_model.safetensors, as trainer.cjs train or peft save_pretrained writes it)`,
      );
  return { name, dir };
}

/** The import arguments recorded for the notebook (`--import "..."`, default `--target t4`), checked. */
export function parseImportArgs(s) {
  const args = (s ?? '--target t4').split(/\s+/).filter(Boolean);
  const bad = args.filter((a) => PATH_FLAGS.includes(a));
  if (bad.length)
    throw new PackError(
      `--import "${s}": ${bad.join(', ')} ${bad.length > 1 ? 'are' : 'is'} chosen by the notebook (the base found under /kaggle/input, the adapter in the pack, /kaggle/working); drop ${bad.length > 1 ? 'them' : 'it'}`,
    );
  if (!args.includes('--target') && !args.includes('--quant'))
    throw new PackError(
      `--import "${s}": give --target (t4, l4, a100, cpu) or --quant so the notebook knows what to write`,
    );
  return args;
}

/** Copies one adapter into <out>/adapters/<name>; returns its pack.json entry. */
export function packAdapter(out, { name, dir }, importArgs) {
  const dest = join(out, 'adapters', name);
  mkdirSync(dest, { recursive: true });
  const files = [...ADAPTER_FILES, ...ADAPTER_OPTIONAL.filter((f) => existsSync(join(dir, f)))];
  let bytes = 0;
  for (const f of files) {
    copyFileSync(join(dir, f), join(dest, f));
    bytes += statSync(join(dest, f)).size;
  }
  let base = null;
  try {
    base = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')).base_model_name_or_path ?? null;
  } catch (e) {
    throw new PackError(`${join(dir, 'adapter_config.json')}: not valid JSON (${e.message})`);
  }
  return {
    name,
    adapter: `adapters/${name}`,
    import: importArgs,
    base,
    kind: 'adapter',
    architecture: null,
    labels: null,
    quantization: null,
    graphs: [],
    files,
    bytes,
  };
}
