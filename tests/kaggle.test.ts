// The Kaggle path end to end: build, make a tiny model, pack it, lay out a fake /kaggle tree
// (competition test.csv from real sample rows with the labels dropped, the pack as a dataset, an
// empty working folder), then run the notebooks' code cells in order with python3: no network
// (a fresh network namespace where `unshare` allows it), no node_modules, a minimal PATH, cwd outside
// the repository. Checks the submission Kaggle would score and the validation figures.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import { cacheDir, checkCudaPairing, CUDA_PIN, NODE_PIN } from '../build/pack-fetch.mjs';
import { readRows } from '../src/data/rows';
import { fakeNvidiaSmi } from './helpers/nvidia-smi';
import {
  checkSubmission,
  checkWsdmSubmission,
  must,
  newestMtime,
  notebookScript,
  parseCsv,
  sh,
  toCsv,
} from './helpers/kaggle-sim';

const repo = join(__dirname, '..');
const dist = join(repo, 'dist');
const sample = join(repo, '..', 'shared', 'data', 'arena-sample-999.csv');
const wsdmTrain = join(repo, '..', 'shared', 'data', 'wsdm-sample-train.parquet');
const WSDM_COMPETITION = 'wsdm-cup-multilingual-chatbot-arena';
const kernels = join(repo, 'kernels');
const ROWS = 40;

describe('pack checks', () => {
  it('pairs the CUDA provider package only with its own ONNX Runtime version', () => {
    const ortNode = (
      JSON.parse(readFileSync(join(repo, 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8')) as {
        version: string;
      }
    ).version;
    assert.equal(CUDA_PIN.ort, ortNode, 'the pinned provider package matches the installed onnxruntime-node');
    checkCudaPairing(CUDA_PIN.ort);
    assert.throws(
      () => checkCudaPairing('1.30.0'),
      (e: Error) => {
        console.log(`      ${e.name}: ${e.message}`);
        return (
          e.name === 'PackError' &&
          /onnxruntime-node is 1\.30\.0/.test(e.message) &&
          e.message.includes(`built from ONNX Runtime ${CUDA_PIN.ort}`)
        );
      },
    );
  });

  it('refuses a weights folder without a manifest and an --out that is not a previous pack', () => {
    const t = mkdtempSync(join(tmpdir(), 'arenakit-packcheck-'));
    try {
      mkdirSync(join(t, 'empty'));
      const r = sh(
        process.execPath,
        [join(repo, 'build', 'pack.mjs'), '--weights', join(t, 'empty'), '--out', join(t, 'out')],
        { cwd: repo },
      );
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /no manifest\.json/);
      writeFileSync(join(t, 'precious.txt'), 'x');
      mkdirSync(join(t, 'w'));
      writeFileSync(
        join(t, 'w', 'manifest.json'),
        JSON.stringify({ format: 'arenakit-weights', files: {}, graphs: {} }),
      );
      if (existsSync(join(dist, 'runner.cjs')) && existsSync(join(dist, 'ort', 'libonnxruntime.so.1'))) {
        const r2 = sh(process.execPath, [join(repo, 'build', 'pack.mjs'), '--weights', join(t, 'w'), '--out', t], {
          cwd: repo,
        });
        assert.notEqual(r2.status, 0);
        assert.match(r2.stderr, /is not a previous pack/);
        assert.ok(existsSync(join(t, 'precious.txt')), 'nothing deleted');
      }
    } finally {
      rmSync(t, { recursive: true, force: true });
    }
  });
});

describe('Kaggle pack and notebooks (end to end)', function () {
  this.timeout(900_000);
  let tmp: string;
  let tiny: string;
  let ids: string[];
  let wsdmIds: string[];
  let python: string;
  let offline: string[] = [];

  before(async function () {
    const fresh =
      ['runner.cjs', 'trainer.cjs', 'ort/libonnxruntime.so.1'].every((f) => existsSync(join(dist, f))) &&
      statSync(join(dist, 'runner.cjs')).mtimeMs >= newestMtime(join(repo, 'src'));
    if (!fresh) {
      const b = sh('npm', ['run', 'build'], { cwd: repo });
      if (!existsSync(join(dist, 'runner.cjs'))) {
        console.log(
          `      SKIPPED: dist/runner.cjs is missing after \`npm run build\` (the runner does not build yet):\n${b.stderr.slice(-2000)}`,
        );
        this.skip();
      }
      // A build that fails after writing the bundles and ort/ (e.g. in another entry) still lets the pack be tested.
      if (b.status !== 0)
        console.log(
          `      warning: \`npm run build\` exited with ${b.status}; testing the dist/ it left:\n${b.stderr.slice(-600)}`,
        );
    }
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-kaggle-'));
    tiny = join(tmp, 'tiny');
    must(sh(process.execPath, [join(dist, 'trainer.cjs'), 'tiny', '--out', tiny], { cwd: tmp }), 'trainer tiny');
    python = must(sh('python3', ['-c', 'import sys; print(sys.executable)']), 'python3').trim();
    // A private network namespace: the notebooks must not need a network. Not every machine allows one.
    const unshare = ['/usr/bin/unshare', '/bin/unshare'].find((p) => existsSync(p));
    if (unshare && spawnSync(unshare, ['-rn', 'true']).status === 0) offline = [unshare, '-rn'];
    console.log(
      `      network: ${offline.length ? 'none (unshare -rn)' : 'NOT isolated (unshare unavailable); the run still uses no node_modules and a minimal PATH'}`,
    );

    const table = parseCsv(readFileSync(sample, 'utf8'));
    const header = table[0];
    const keep = ['id', 'prompt', 'response_a', 'response_b'].map((c) => header.indexOf(c));
    const rows = table.slice(1, ROWS + 1);
    ids = rows.map((r) => r[keep[0]]);
    const comp = join(tmp, 'kaggle', 'input', 'lmsys-chatbot-arena');
    mkdirSync(comp, { recursive: true });
    writeFileSync(
      join(comp, 'test.csv'),
      toCsv([keep.map((i) => header[i]), ...rows.map((r) => keep.map((i) => r[i]))]),
    );
    writeFileSync(join(comp, 'train.csv'), toCsv([header, ...table.slice(1, ROWS + 1)]));
    mkdirSync(join(tmp, 'kaggle', 'working'), { recursive: true });

    // The WSDM competition folder: its first ROWS sample rows as test.parquet (no labels) and train.parquet.
    const wsdm = (await readRows(wsdmTrain, { requireLabels: true })).rows.slice(0, ROWS);
    wsdmIds = wsdm.map((r) => r.id);
    const wdir = join(tmp, 'kaggle', 'input', WSDM_COMPETITION);
    mkdirSync(wdir, { recursive: true });
    const text = (k: 'prompt' | 'responseA' | 'responseB') => wsdm.map((r) => r[k].join('\n\n'));
    const common = [
      { name: 'id', data: wsdmIds, type: 'STRING' },
      { name: 'prompt', data: text('prompt'), type: 'STRING' },
      { name: 'response_a', data: text('responseA'), type: 'STRING' },
      { name: 'response_b', data: text('responseB'), type: 'STRING' },
    ];
    parquetWriteFile({
      filename: join(wdir, 'test.parquet'),
      columnData: [...common, { name: 'scored', data: wsdm.map(() => true), type: 'BOOLEAN' }] as never,
    });
    parquetWriteFile({
      filename: join(wdir, 'train.parquet'),
      columnData: [
        ...common,
        { name: 'winner', data: wsdm.map((r) => (r.label === 1 ? 'model_b' : 'model_a')), type: 'STRING' },
        { name: 'language', data: wsdm.map((r) => r.language ?? ''), type: 'STRING' },
      ] as never,
    });
  });

  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  function pack(name: string, extra: string[]): string {
    const out = join(tmp, 'kaggle', 'input', name);
    const log = must(
      sh(
        process.execPath,
        [join(repo, 'build', 'pack.mjs'), '--weights', tiny, '--out', out, '--user', 'testuser', ...extra],
        { cwd: repo },
      ),
      'pack',
    );
    console.log(log.replace(/^/gm, '      ').trimEnd());
    return out;
  }

  function runNotebook(nb: string, env: Record<string, string>, expectFailure = false): string {
    const script = join(tmp, `${nb}.py`);
    writeFileSync(script, notebookScript(join(kernels, nb, `${nb}.ipynb`)));
    const baseEnv = {
      PATH: '/usr/bin:/bin',
      HOME: tmp,
      KAGGLE_INPUT: join(tmp, 'kaggle', 'input'),
      KAGGLE_WORKING: join(tmp, 'kaggle', 'working'),
      ARENAKIT_STAGE: join(tmp, 'stage'),
      ...env,
    };
    const [cmd, ...pre] = offline.length ? offline : [python];
    const r = sh(cmd, [...pre, ...(offline.length ? [python] : []), script], { cwd: tmp, env: baseEnv });
    if (expectFailure) assert.notEqual(r.status, 0, `notebook ${nb} should have stopped:\n${r.stdout}`);
    else must(r, `notebook ${nb}`);
    return r.stdout + r.stderr;
  }

  it('kernel metadata: offline, GPU, competition + dataset sources, code file present', () => {
    for (const nb of ['arenakit-inference', 'arenakit-validate']) {
      const meta = JSON.parse(readFileSync(join(kernels, nb, 'kernel-metadata.json'), 'utf8'));
      assert.equal(meta.enable_internet, false);
      assert.equal(meta.enable_gpu, true);
      assert.equal(meta.machine_shape, 'NvidiaTeslaT4', `${nb}: a T4 (enable_gpu alone has landed on a P100)`);
      assert.deepEqual(meta.competition_sources, ['lmsys-chatbot-arena']);
      assert.ok(meta.dataset_sources.some((d: string) => d.endsWith('/arenakit')));
      assert.equal(meta.kernel_type, 'notebook');
      assert.ok(existsSync(join(kernels, nb, meta.code_file)), `${nb}: ${meta.code_file} exists`);
    }
  });

  it('pack without node: metadata, files, and the inference notebook on the system node writes a valid submission', () => {
    const kit = pack('arenakit', []);
    const meta = JSON.parse(readFileSync(join(kit, 'dataset-metadata.json'), 'utf8'));
    assert.equal(meta.id, 'testuser/arenakit');
    assert.equal(meta.licenses.length, 1);
    const pj = JSON.parse(readFileSync(join(kit, 'pack.json'), 'utf8'));
    assert.equal(pj.kind, 'arenakit-kaggle-pack');
    assert.deepEqual(
      pj.weights.map((w: { path: string }) => w.path),
      ['weights/tiny'],
    );
    for (const f of [
      'runner.cjs',
      'trainer.cjs',
      'ort/onnxruntime_binding.node',
      'ort/libonnxruntime.so.1',
      'weights/tiny/manifest.json',
      'README.md',
    ])
      assert.ok(existsSync(join(kit, f)), `pack has ${f}`);
    assert.ok(!existsSync(join(kit, 'node')), 'no node without --with-node');
    for (const [f, { bytes }] of Object.entries(pj.files as Record<string, { bytes: number }>))
      assert.equal(statSync(join(kit, f)).size, bytes, f);
    // --user rewrites every id: the dataset's and the notebooks' (written next to the pack), no placeholder left.
    const kout = `${kit}-kernels`;
    for (const nb of ['arenakit-inference', 'arenakit-validate', 'arenakit-wsdm-inference']) {
      const m = JSON.parse(readFileSync(join(kout, nb, 'kernel-metadata.json'), 'utf8'));
      assert.equal(m.id, `testuser/${nb}`);
      assert.deepEqual(m.dataset_sources, ['testuser/arenakit']);
      assert.equal(m.machine_shape, 'NvidiaTeslaT4');
      assert.ok(existsSync(join(kout, nb, m.code_file)));
    }
    const placeholders = sh('grep', ['-rl', 'YOUR_KAGGLE_USERNAME', kit, kout]).stdout.trim();
    assert.equal(placeholders, '', `placeholder left in: ${placeholders}`);
    rmSync(kout, { recursive: true, force: true });

    // System node only: its folder on an otherwise minimal PATH.
    const log = runNotebook('arenakit-inference', { PATH: `${dirname(process.execPath)}:/usr/bin:/bin` });
    assert.match(log, /node: \S*node v20\./);
    assert.match(log, /--ep auto --tta swap/);
    // Saved (not a competition rerun): a printed validation on the first train rows, then the visible test file.
    assert.match(log, /mode: saved/);
    assert.match(log, new RegExp(`validation on the first ${ROWS} rows of train\\.csv: log_loss \\d`));
    assert.doesNotMatch(log, /--time-budget/);
    checkSubmission(join(tmp, 'kaggle', 'working', 'submission.csv'), ids);
  });

  it('WSDM notebook, saved: validation (accuracy) on a train slice, then id,winner for the visible test.parquet', () => {
    const meta = JSON.parse(readFileSync(join(kernels, 'arenakit-wsdm-inference', 'kernel-metadata.json'), 'utf8'));
    assert.deepEqual(meta.competition_sources, [WSDM_COMPETITION]);
    assert.equal(meta.enable_internet, false);
    assert.ok(existsSync(join(kernels, 'arenakit-wsdm-inference', meta.code_file)));
    const sub = join(tmp, 'kaggle', 'working', 'submission.csv');
    rmSync(sub, { force: true });
    const log = runNotebook('arenakit-wsdm-inference', {
      PATH: `${dirname(process.execPath)}:/usr/bin:/bin`,
      ARENAKIT_VALIDATE_ROWS: '20',
    });
    assert.match(
      log,
      /validation on the first 20 rows of train\.parquet: accuracy [\d.]+, log_loss [\d.]+, accuracy_by_language \{/,
    );
    checkWsdmSubmission(sub, wsdmIds);
  });

  it('WSDM notebook, competition rerun on a fake 2 x T4: doctor advises, predict on both devices within --time-budget, byte-identical to one process; a budget far too small still submits', () => {
    const sub = join(tmp, 'kaggle', 'working', 'submission.csv');
    const smi = fakeNvidiaSmi('560.35.03', '12.6');
    const env = {
      PATH: `${dirname(process.execPath)}:/usr/bin:/bin`,
      KAGGLE_IS_COMPETITION_RERUN: 'Batch',
      ARENAKIT_NVIDIA_SMI: smi,
    };
    rmSync(sub, { force: true });
    const log = runNotebook('arenakit-wsdm-inference', env);
    assert.match(log, /mode: competition rerun/);
    assert.match(log, /runner\.cjs doctor --weights \S+ --data \S+test\.parquet --budget 9h --tta swap --devices auto/);
    assert.match(log, /--tta swap --devices auto --time-budget 8h30m/);
    assert.doesNotMatch(log, /runner\.cjs validate/);
    const closing = JSON.parse(
      log
        .split('\n')
        .filter((l) => l.startsWith('{"task"'))
        .pop()!,
    );
    console.log(
      `      rerun: devices ${JSON.stringify(closing.devices)}, ep ${JSON.stringify(closing.ep)}, ${closing.rows} rows in ${closing.seconds}s`,
    );
    assert.deepEqual(closing.devices, [0, 1], 'both listed GPUs used (two CPU workers: CUDA cannot load here)');
    checkWsdmSubmission(sub, wsdmIds);
    // The same model in one process gives the same bytes.
    const one = join(tmp, 'one-process.csv');
    must(
      sh(
        process.execPath,
        [
          join(dist, 'runner.cjs'),
          'predict',
          '--data',
          join(tmp, 'kaggle', 'input', WSDM_COMPETITION, 'test.parquet'),
          '--weights',
          tiny,
          '--out',
          one,
          '--ep',
          'auto',
          '--tta',
          'swap',
          '--devices',
          '0',
        ],
        { cwd: tmp },
      ),
      'one-process predict',
    );
    assert.equal(
      readFileSync(sub, 'utf8'),
      readFileSync(one, 'utf8'),
      'two-device rerun submission byte-identical to one process',
    );

    // A doctor budget and a time budget far too small for the data: the notebook never raises, and writes a complete submission.
    rmSync(sub, { force: true });
    const tight = runNotebook('arenakit-wsdm-inference', {
      ...env,
      ARENAKIT_DOCTOR_BUDGET: '0.001s',
      ARENAKIT_TIME_BUDGET: '0.5s',
    });
    const advice = tight.split('\n').find((l) => l.startsWith('doctor: estimate'));
    console.log(`      ${advice}`);
    assert.match(
      tight,
      /doctor: estimate [\d.]+ s over the 0\.001s budget on cpu x 2; predict still runs within 0\.5s/,
    );
    assert.match(tight, /runner\.cjs predict/);
    assert.doesNotMatch(tight, /Traceback|stopping early/);
    checkWsdmSubmission(sub, wsdmIds);
  });

  it('a dataset that arrived as a .tar (--dir-mode tar): the notebook unpacks it into /kaggle/working and submits', () => {
    const input = join(tmp, 'kaggle', 'input');
    const aside = join(tmp, 'arenakit-aside');
    const tarDir = join(input, 'arenakit-tar');
    renameSync(join(input, 'arenakit'), aside);
    try {
      mkdirSync(tarDir, { recursive: true });
      must(sh('tar', ['-cf', join(tarDir, 'arenakit.tar'), '-C', aside, '.']), 'tar');
      const sub = join(tmp, 'kaggle', 'working', 'submission.csv');
      rmSync(sub, { force: true });
      const log = runNotebook('arenakit-inference', { PATH: `${dirname(process.execPath)}:/usr/bin:/bin` });
      assert.match(log, /kit: unpacking \S+arenakit\.tar into \S+working\/arenakit-unpacked\/arenakit/);
      checkSubmission(sub, ids);
    } finally {
      rmSync(tarDir, { recursive: true, force: true });
      rmSync(join(tmp, 'kaggle', 'working', 'arenakit-unpacked'), { recursive: true, force: true });
      renameSync(aside, join(input, 'arenakit'));
    }
  });

  it("the validation notebook writes the runner's figures", () => {
    const log = runNotebook('arenakit-validate', {
      PATH: `${dirname(process.execPath)}:/usr/bin:/bin`,
      ARENAKIT_VALIDATE_ROWS: '30',
    });
    const fig = JSON.parse(readFileSync(join(tmp, 'kaggle', 'working', 'validation.json'), 'utf8'));
    console.log(`      validation: ${JSON.stringify(fig)}`);
    assert.equal(fig.rows, 30);
    assert.ok(Number.isFinite(fig.log_loss) && fig.log_loss > 0, 'log loss is a positive number');
    assert.match(log, /validate --data/);
    checkSubmission(join(tmp, 'kaggle', 'working', 'validation-predictions.csv'), ids.slice(0, 30));
  });

  it("pack --with-node: the notebook uses the pack's node with no node on PATH, and the runner runs under env -i", function () {
    const cached =
      existsSync(join(cacheDir(), `${NODE_PIN.pkg}-${NODE_PIN.version}.tgz`)) ||
      existsSync(join(cacheDir(), `${NODE_PIN.pkg}-${NODE_PIN.version}`, '.complete'));
    if (!cached && process.env.ARENAKIT_TEST_FETCH !== '1') {
      console.log(
        `      SKIPPED: ${NODE_PIN.pkg}@${NODE_PIN.version} is not in ${cacheDir()}; tests do not download it. Run \`npm run pack -- --weights DIR --with-node\` once (or set ARENAKIT_TEST_FETCH=1).`,
      );
      this.skip();
    }
    rmSync(join(tmp, 'kaggle', 'input', 'arenakit'), { recursive: true, force: true });
    const kit = pack('arenakit-node', ['--with-node']);
    const working = join(tmp, 'kaggle', 'working');
    rmSync(join(working, 'submission.csv'), { force: true });
    const log = runNotebook('arenakit-inference', { PATH: '/nonexistent' });
    assert.match(
      log,
      new RegExp(`node: ${join(tmp, 'stage', 'node', 'bin', 'node')} v${NODE_PIN.version.replace(/\./g, '\\.')}`),
    );
    checkSubmission(join(working, 'submission.csv'), ids);

    // The kit as uploaded (not staged), with an empty environment, from outside the repository.
    const out = join(tmp, 'envi-submission.csv');
    const r = sh(
      'env',
      [
        '-i',
        join(kit, 'node', 'bin', 'node'),
        join(kit, 'runner.cjs'),
        'predict',
        '--data',
        join(tmp, 'kaggle', 'input', 'lmsys-chatbot-arena', 'test.csv'),
        '--weights',
        join(kit, 'weights', 'tiny'),
        '--out',
        out,
        '--ep',
        'auto',
        '--tta',
        'swap',
      ],
      { cwd: tmp },
    );
    must(r, 'env -i node runner.cjs predict');
    console.log(`      env -i run: ${r.stdout.trim()}`);
    checkSubmission(out, ids);
  });
});
