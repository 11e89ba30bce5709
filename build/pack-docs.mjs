// The pack's documents: the dataset page's README (datasetReadme) and the notebooks with the user's
// ids filled in (writeKernels). Used by build/pack.mjs.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CUDA_PIN, CUDA12_PIN } from './pack-fetch.mjs';

const mb = (n) => `${(n / 1024 / 1024).toFixed(1)} MB`;

export function datasetReadme({ pack, user, slug }) {
  const w = pack.weights
    .map((x) =>
      x.adapter
        ? `| \`${x.adapter}\` | PEFT adapter for ${x.base ?? 'its base'} (imported in the notebook: ${x.import.join(' ')}) | - | - | ${mb(x.bytes)} |`
        : `| \`weights/${x.name}\` | ${x.architecture} | ${x.quantization ?? '-'} | ${x.graphs.join(', ')} | ${mb(x.bytes)} |`,
    )
    .join('\n');
  return `# arenakit: offline Gemma-2 preference runner for Chatbot Arena competitions

Everything a Kaggle notebook needs to score \`test.csv\` of the LMSYS Chatbot Arena competition with
no internet: the runner (a single-file Node.js bundle), ONNX Runtime ${pack.onnxruntime} native libraries,
${pack.node ? `Node.js ${pack.node.version} for linux-x64, ` : ''}${pack.cuda ? `the ONNX Runtime CUDA provider (${Object.keys(pack.cuda.runtimes).join(', ')}), ` : ''}and the model weights.

## Use it in a notebook
Attach this dataset (\`${user}/${slug}\`) and the competition, then run the \`arenakit-inference\` notebook
(kernels/arenakit-inference in the arenakit repository). It does only this:

\`\`\`
node runner.cjs predict --data /kaggle/input/lmsys-chatbot-arena/test.csv \\
${pack.weights.map((x) => `  --weights /kaggle/input/${slug}/weights/${x.name} \\`).join('\n')}
  --out /kaggle/working/submission.csv --ep auto --tta swap
\`\`\`

\`--ep auto\` uses the GPU when a CUDA provider and its CUDA / cuDNN 9 libraries can be loaded (the runner reads the
driver's CUDA version and picks the CUDA 12 or CUDA 13 runtime, and says which and why) and
otherwise says loudly that it falls back to the CPU; \`--ep cuda\` makes a missing GPU runtime an error.
\`validate --data labelled.csv --weights DIR\` scores a labelled file (log loss, accuracy, swap consistency).

## Contents
| path | what |
|---|---|
| \`runner.cjs\` | predict / validate / calibrate (no node_modules needed) |
| \`trainer.cjs\` | tiny / import / features (makes weights directories) |
| \`ort/\` | onnxruntime-node ${pack.onnxruntime}: \`onnxruntime_binding.node\`, \`libonnxruntime.so.1\`${pack.cuda?.runtimes.cu13 ? `, CUDA provider libraries from ${CUDA_PIN.pkg}@${CUDA_PIN.version} (ORT ${CUDA_PIN.ort}, built for CUDA 13)` : ''} |
${pack.cuda?.runtimes.cu12 ? `| \`ort-cu12/\` | the CUDA 12 runtime: onnxruntime-node ${CUDA12_PIN.ort} core (\`ort.cjs\`, binding, \`libonnxruntime.so.1\`) + CUDA 12 provider from ${CUDA12_PIN.pkg}@${CUDA12_PIN.version}; used when the driver is older than 580 |\n` : ''}
${pack.assets ? '| \`assets/\` | Gemma-2 tokenizer files (for `trainer.cjs tiny`) |\n' : ''}${pack.node ? `| \`node/bin/node\` | Node.js ${pack.node.version} linux-x64 (from npm package ${pack.node.package}) |\n` : ''}| \`pack.json\` | versions, weights order and every file's size |

| weights | architecture | quantization | graphs | size |
|---|---|---|---|---|
${w}

Kaggle may mount datasets without the executable bit: the notebooks copy the code (not the weights) to
a local folder and mark \`node\` executable before running it.

## Licenses
arenakit code: Apache-2.0. ONNX Runtime: MIT. Node.js: MIT and bundled third-party licenses (node/LICENSE).
Model weights derived from Gemma are subject to the Gemma Terms of Use. Competition data is not included.

Packed ${pack.created} with arenakit ${pack.arenakit}.
`;
}

/**
 * Copies each notebook folder of `src` (kernel-metadata.json + its code file) to `dest`, with the
 * placeholder user replaced everywhere (id, dataset_sources) and the dataset source pointing at
 * <user>/<slug>. Returns the folder names written.
 */
export function writeKernels(src, dest, user, slug) {
  const names = readdirSync(src, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(src, e.name, 'kernel-metadata.json')))
    .map((e) => e.name)
    .sort();
  for (const name of names) {
    const meta = JSON.parse(readFileSync(join(src, name, 'kernel-metadata.json'), 'utf8'));
    const fix = (s) =>
      s.replace(/^YOUR_KAGGLE_USERNAME\/arenakit$/, `${user}/${slug}`).replace(/^YOUR_KAGGLE_USERNAME\//, `${user}/`);
    meta.id = fix(meta.id);
    meta.dataset_sources = (meta.dataset_sources ?? []).map(fix);
    const to = join(dest, name);
    rmSync(to, { recursive: true, force: true });
    mkdirSync(to, { recursive: true });
    copyFileSync(join(src, name, meta.code_file), join(to, meta.code_file));
    writeFileSync(join(to, 'kernel-metadata.json'), JSON.stringify(meta, null, 2) + '\n');
  }
  return names;
}
