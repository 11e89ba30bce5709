// `npm run pack -- --weights DIR [--weights NAME=DIR2 ...] [--with-node] [--cuda] [--out dist/kaggle]`
// Lays out one folder to upload as a Kaggle dataset: the built bundles and native files from dist/,
// the weights directories (only the files their manifests list), optionally a Node.js binary and the
// ONNX Runtime CUDA provider libraries (both pinned npm-registry packages, fetched here at pack time,
// never at run time), pack.json describing it all, dataset-metadata.json and a README for the page.
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  chmodSync,
} from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { CUDA_PIN, CUDA12_PIN, NODE_PIN, PackError, cacheDir, checkCudaPairing, fetchPinned } from './pack-fetch.mjs';
import { packAdapter, parseAdapterArg, parseImportArgs } from './pack-adapters.mjs';
import { datasetReadme, writeKernels } from './pack-docs.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const dist = join(root, 'dist');

const USAGE = `usage: npm run pack -- --weights DIR [--weights NAME=DIR ...] [--with-node] [--cuda] [--out dist/kaggle]
  [--user KAGGLE_USER] [--slug arenakit] [--title TITLE] [--license other]
  --weights     a weights directory (manifest.json); copied to weights/<NAME> (default NAME: the folder's name).
                Repeat for a blend; the order is kept in pack.json and the notebooks pass them in that order.
  --adapter     [NAME=]DIR, a PEFT adapter folder carried instead of merged weights (repeatable; after the --weights
                in pack.json): the notebooks import it onto its base model, attached from Kaggle Models, into
                /kaggle/working before predicting (trainer.cjs prepare: base found by the adapter's tensors, disk checked)
  --import=ARGS the import flags for the adapters (default "--target t4"; give them after =), e.g.
                --import="--target t4 --quant int8 --labels winner_model_a,winner_model_b,winner_tie"
  --with-node   add Node.js ${NODE_PIN.version} for linux-x64 (npm package ${NODE_PIN.pkg}) as node/bin/node
  --cuda [cu12|cu13|both]  the CUDA runtimes to add (bare --cuda: both; the sizes are printed):
                cu13: ONNX Runtime ${CUDA_PIN.ort} CUDA 13 provider (${CUDA_PIN.pkg}@${CUDA_PIN.version}) to ort/ (driver >= 580);
                cu12: the ONNX Runtime ${CUDA12_PIN.ort} core + CUDA 12 provider (${CUDA12_PIN.pkg}@${CUDA12_PIN.version}) as ort-cu12/
                (driver >= 525: Kaggle's T4 image has 560 / CUDA 12.x). The runner picks one from the driver's CUDA
                version (--runtime cu12|cu13 forces one)
  --user        Kaggle user for the dataset id (default $KAGGLE_USERNAME); the id is <user>/<slug>. The notebooks
                (kernels/*) are written to --kernels-out with every id and dataset source set to it, ready for
                \`kaggle kernels push -p DIR\`
  --kernels-out where the notebooks go (default: <out>-kernels)
Downloads are cached in ${cacheDir()} (override with ARENAKIT_CACHE).`;

/** `--cuda` alone (last, or before another option) means both runtimes. */
function cudaArgs(args) {
  return args.flatMap((a, i) =>
    a === '--cuda' && (i === args.length - 1 || args[i + 1].startsWith('--')) ? ['--cuda=both'] : [a],
  );
}

function fail(msg) {
  process.stderr.write(`error: ${msg}\n`);
  process.exit(1);
}

function walk(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

const shown = (p) => (relative(process.cwd(), p).startsWith('..') ? p : relative(process.cwd(), p) || p);
const mb = (n) => `${(n / 1024 / 1024).toFixed(1)} MB`;

/** The files a weights directory must ship, from its manifest (checked like the runner checks it). */
function weightsFiles(dir) {
  const path = join(dir, 'manifest.json');
  if (!existsSync(path))
    throw new PackError(
      `${dir}: no manifest.json; make a weights directory with \`node dist/trainer.cjs tiny|import --out DIR\``,
    );
  let m;
  try {
    m = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new PackError(`${path}: not valid JSON (${e.message})`);
  }
  if (m.format !== 'arenakit-weights')
    throw new PackError(`${path}: format is ${JSON.stringify(m.format)}, expected "arenakit-weights"`);
  const files = new Set(['manifest.json', ...Object.keys(m.files ?? {}), ...(m.tokenizer?.files ?? [])]);
  for (const g of Object.values(m.graphs ?? {})) {
    if (!g) continue;
    files.add(g.file);
    for (const x of g.externalData ?? []) files.add(x);
  }
  const problems = [];
  for (const f of files) {
    const p = join(dir, f);
    if (!existsSync(p)) problems.push(`missing ${f}`);
    else if (m.files?.[f] && statSync(p).size !== m.files[f].bytes)
      problems.push(`${f} is ${statSync(p).size} bytes, manifest says ${m.files[f].bytes}`);
  }
  if (problems.length)
    throw new PackError(`${dir}: weights directory does not match its manifest (${problems.join('; ')})`);
  return { manifest: m, files: [...files] };
}

function parseWeightsArg(s) {
  const eq = s.indexOf('=');
  const dir = resolve(eq > 0 ? s.slice(eq + 1) : s);
  const name = eq > 0 ? s.slice(0, eq) : basename(dir);
  if (!/^[A-Za-z0-9._-]+$/.test(name))
    throw new PackError(`--weights ${s}: name "${name}" must be letters, digits, ".", "_" or "-" (use NAME=DIR)`);
  return { name, dir };
}

async function main() {
  let v;
  try {
    ({ values: v } = parseArgs({
      args: cudaArgs(process.argv.slice(2)),
      options: {
        weights: { type: 'string', multiple: true },
        adapter: { type: 'string', multiple: true },
        import: { type: 'string' },
        'with-node': { type: 'boolean', default: false },
        cuda: { type: 'string' },
        out: { type: 'string', default: join('dist', 'kaggle') },
        user: { type: 'string' },
        'kernels-out': { type: 'string' },
        slug: { type: 'string', default: 'arenakit' },
        title: { type: 'string', default: 'arenakit - offline Gemma-2 arena runner' },
        license: { type: 'string', default: 'other' },
        help: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    fail(`${e.message}\n\n${USAGE}`);
  }
  if (v.help) return void process.stdout.write(USAGE + '\n');
  const CUDA_CHOICES = { none: [], cu12: ['cu12'], cu13: ['cu13'], both: ['cu13', 'cu12'] };
  const cudaSet = Object.hasOwn(CUDA_CHOICES, v.cuda ?? 'none') ? CUDA_CHOICES[v.cuda ?? 'none'] : null;
  if (!cudaSet || v.cuda === 'none')
    fail(`--cuda takes cu12, cu13 or both (bare --cuda: both), got "${v.cuda}"\n\n${USAGE}`);
  v.cuda = cudaSet.length ? cudaSet : null;
  if (!v.weights?.length && !v.adapter?.length) fail(`missing --weights DIR (or --adapter DIR)\n\n${USAGE}`);
  const weights = (v.weights ?? []).map(parseWeightsArg);
  const adapters = (v.adapter ?? []).map(parseAdapterArg);
  const importArgs = adapters.length ? parseImportArgs(v.import) : null;
  if (!adapters.length && v.import) fail('--import applies to --adapter folders; there are none');
  const names = [...weights, ...adapters].map((w) => w.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new PackError(`two --weights / --adapter are named "${twice}"; name them with NAME=DIR`);
  // Check every weights directory before touching --out.
  for (const w of weights) Object.assign(w, weightsFiles(w.dir));
  const user = v.user ?? process.env.KAGGLE_USERNAME ?? 'YOUR_KAGGLE_USERNAME';
  if (!/^[a-z0-9-]{3,50}$/.test(v.slug))
    throw new PackError(`--slug "${v.slug}" must be 3-50 lowercase letters, digits or "-"`);
  if (v.title.length < 6 || v.title.length > 50)
    throw new PackError(`--title must be 6-50 characters (Kaggle's rule), got ${v.title.length}`);

  // The bundles and native files come from `npm run build`.
  const need = ['runner.cjs', 'trainer.cjs', 'ort/onnxruntime_binding.node', 'ort/libonnxruntime.so.1'];
  const absent = need.filter((f) => !existsSync(join(dist, f)));
  if (absent.length) throw new PackError(`dist/ lacks ${absent.join(', ')}; run \`npm run build\` first`);
  const ortVersion = require('onnxruntime-node/package.json').version;
  const ortNative = join(
    dirname(require.resolve('onnxruntime-node/package.json')),
    'bin',
    'napi-v6',
    'linux',
    'x64',
    'libonnxruntime.so.1',
  );
  if (existsSync(ortNative) && statSync(ortNative).size !== statSync(join(dist, 'ort', 'libonnxruntime.so.1')).size)
    throw new PackError(
      `dist/ort/libonnxruntime.so.1 differs from onnxruntime-node ${ortVersion}'s copy; run \`npm run build\` again`,
    );
  if (v.cuda?.includes('cu13')) checkCudaPairing(ortVersion);
  if (v.cuda?.includes('cu12')) {
    const cu12 = ['ort-cu12/ort.cjs', 'ort-cu12/onnxruntime_binding.node', 'ort-cu12/libonnxruntime.so.1'].filter(
      (f) => !existsSync(join(dist, f)),
    );
    if (cu12.length)
      throw new PackError(
        `--cuda: dist/ lacks ${cu12.join(', ')} (the CUDA 12 core); run \`npm ci\` (dev dependency onnxruntime-node-cu12) and \`npm run build\``,
      );
    checkCudaPairing(require('onnxruntime-node-cu12/package.json').version, CUDA12_PIN);
  }

  const out = resolve(v.out);
  if (existsSync(out)) {
    const entries = readdirSync(out);
    if (entries.length && !entries.includes('pack.json'))
      throw new PackError(`${out} exists and is not a previous pack (no pack.json); choose another --out or empty it`);
    rmSync(out, { recursive: true, force: true });
  }
  mkdirSync(out, { recursive: true });

  for (const f of ['runner.cjs', 'trainer.cjs']) copyFileSync(join(dist, f), join(out, f));
  cpSync(join(dist, 'ort'), join(out, 'ort'), { recursive: true, dereference: true });
  // The runner reads tokenizers from the weights directories; only `trainer.cjs tiny` needs the assets.
  if (existsSync(join(dist, 'assets')))
    cpSync(join(dist, 'assets'), join(out, 'assets'), { recursive: true, dereference: true });
  else
    console.log(
      "pack: warning: dist/assets is missing (npm run build did not finish?); the pack's trainer.cjs tiny will lack the Gemma-2 tokenizer, the runner is unaffected",
    );

  let node = null;
  if (v['with-node']) {
    const src = await fetchPinned(NODE_PIN);
    mkdirSync(join(out, 'node', 'bin'), { recursive: true });
    copyFileSync(join(src, 'package', 'bin', 'node'), join(out, 'node', 'bin', 'node'));
    chmodSync(join(out, 'node', 'bin', 'node'), 0o755);
    copyFileSync(join(src, 'package', 'LICENSE'), join(out, 'node', 'LICENSE'));
    node = { package: NODE_PIN.pkg, version: NODE_PIN.version, file: 'node/bin/node' };
  }
  let cuda = null;
  if (v.cuda) {
    const runtimes = {};
    const sizes = {};
    if (v.cuda.includes('cu13')) {
      const src = await fetchPinned(CUDA_PIN);
      sizes.cu13 = 0;
      for (const f of CUDA_PIN.files.filter((x) => x.endsWith('.so'))) {
        copyFileSync(join(src, f), join(out, 'ort', basename(f)));
        sizes.cu13 += statSync(join(out, 'ort', basename(f))).size;
      }
      copyFileSync(join(src, 'package', 'LICENSE'), join(out, 'ort', 'LICENSE-onnxruntime-gpu-package'));
      runtimes.cu13 = {
        dir: 'ort',
        ort: CUDA_PIN.ort,
        provider: `${CUDA_PIN.pkg}@${CUDA_PIN.version}`,
        cuda: '13',
        minDriver: 580,
      };
    }
    if (v.cuda.includes('cu12')) {
      cpSync(join(dist, 'ort-cu12'), join(out, 'ort-cu12'), { recursive: true, dereference: true });
      const src12 = await fetchPinned(CUDA12_PIN);
      for (const f of CUDA12_PIN.files.filter((x) => x.endsWith('.so')))
        copyFileSync(join(src12, f), join(out, 'ort-cu12', basename(f)));
      copyFileSync(join(src12, 'package', 'LICENSE'), join(out, 'ort-cu12', 'LICENSE-onnxruntime-gpu-package'));
      sizes.cu12 = walk(join(out, 'ort-cu12')).reduce((a, p) => a + statSync(p).size, 0);
      runtimes.cu12 = {
        dir: 'ort-cu12',
        ort: CUDA12_PIN.ort,
        provider: `${CUDA12_PIN.pkg}@${CUDA12_PIN.version}`,
        cuda: '12',
        minDriver: 525,
      };
    }
    const first = runtimes.cu13 ? CUDA_PIN : CUDA12_PIN;
    cuda = {
      package: first.pkg,
      version: first.version,
      ort: first.ort,
      cuda: runtimes.cu13 ? '13' : '12',
      cudnn: '9',
      choice: v.cuda,
      runtimes,
    };
    for (const [k, b] of Object.entries(sizes))
      console.log(
        `pack: --cuda ${k}: ${k === 'cu13' ? 'CUDA 13 provider libraries in ort/' : 'CUDA 12 core + provider in ort-cu12/'} ${mb(b)}`,
      );
  }

  const packedWeights = [];
  for (const w of weights) {
    const { manifest, files } = w;
    const dest = join(out, 'weights', w.name);
    let bytes = 0;
    for (const f of files) {
      mkdirSync(dirname(join(dest, f)), { recursive: true });
      copyFileSync(join(w.dir, f), join(dest, f));
      bytes += statSync(join(dest, f)).size;
    }
    const skipped = walk(w.dir)
      .map((p) => relative(w.dir, p))
      .filter((f) => !files.includes(f));
    if (skipped.length)
      console.log(
        `pack: ${w.dir}: left out ${skipped.length} file(s) its manifest does not list (${skipped.slice(0, 5).join(', ')}${skipped.length > 5 ? ', ...' : ''})`,
      );
    if (v.cuda && !manifest.graphs?.cuda)
      console.log(
        `pack: note: ${w.name} has no CUDA (fp16) graph; on a GPU the runner uses its CPU graph on the CUDA provider`,
      );
    packedWeights.push({
      name: w.name,
      path: `weights/${w.name}`,
      kind: manifest.kind,
      architecture: manifest.architecture,
      labels: manifest.labels,
      quantization: manifest.quantization?.kind ?? null,
      graphs: Object.keys(manifest.graphs ?? {}).filter((k) => manifest.graphs[k]),
      bytes,
    });
  }

  for (const a of adapters) {
    const entry = packAdapter(out, a, importArgs);
    console.log(
      `pack: adapter ${a.name} (${mb(entry.bytes)}; base ${entry.base ?? 'not named'}): the notebook imports it with ${importArgs.join(' ')}`,
    );
    packedWeights.push(entry);
  }

  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const pack = {
    kind: 'arenakit-kaggle-pack',
    version: 1,
    arenakit: pkg.version,
    created: new Date().toISOString(),
    onnxruntime: ortVersion,
    node,
    cuda,
    entry: { runner: 'runner.cjs', trainer: 'trainer.cjs' },
    assets: existsSync(join(out, 'assets')),
    weights: packedWeights,
    files: {},
  };
  writeFileSync(join(out, 'README.md'), datasetReadme({ pack, user, slug: v.slug }));
  const files = Object.fromEntries(
    walk(out)
      .map((p) => [relative(out, p), { bytes: statSync(p).size }])
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );
  pack.files = files;
  writeFileSync(join(out, 'pack.json'), JSON.stringify(pack, null, 2) + '\n');
  const readme = readFileSync(join(out, 'README.md'), 'utf8');
  const meta = {
    title: v.title,
    subtitle: 'Offline Gemma-2 preference classifier runner on ONNX Runtime (Node.js)',
    description: readme,
    id: `${user}/${v.slug}`,
    licenses: [{ name: v.license }],
    keywords: ['nlp', 'text classification'],
  };
  writeFileSync(join(out, 'dataset-metadata.json'), JSON.stringify(meta, null, 2) + '\n');

  // Size report: total and per top-level entry.
  const all = walk(out).map((p) => ({ rel: relative(out, p), bytes: statSync(p).size }));
  const total = all.reduce((a, f) => a + f.bytes, 0);
  const byTop = new Map();
  for (const f of all) {
    const top = f.rel.split('/')[0];
    byTop.set(top, (byTop.get(top) ?? 0) + f.bytes);
  }
  console.log(`pack: wrote ${shown(out)} (${all.length} files, ${mb(total)}; id ${meta.id})`);
  for (const [k, b] of [...byTop].sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(24)} ${mb(b).padStart(10)}`);
  const kernelsOut = resolve(v['kernels-out'] ?? `${out}-kernels`);
  const kernels = writeKernels(join(root, 'kernels'), kernelsOut, user, v.slug);
  console.log(`pack: notebooks for ${user}: ${kernels.map((k) => shown(join(kernelsOut, k))).join(', ')}`);
  if (user === 'YOUR_KAGGLE_USERNAME')
    console.log('pack: set --user (or KAGGLE_USERNAME) so dataset-metadata.json and the notebooks have your id');
  console.log(
    `upload: kaggle datasets create -p ${shown(out)} --dir-mode tar   (new version: kaggle datasets version -p ... --dir-mode tar -m MSG)`,
  );
  for (const k of kernels) console.log(`push:   kaggle kernels push -p ${shown(join(kernelsOut, k))}`);
}

main().catch((e) => {
  if (e instanceof PackError) fail(e.message);
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exit(1);
});
