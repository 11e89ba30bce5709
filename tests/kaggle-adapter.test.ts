// Base + adapter at run time (issue 22 item 8), in the Kaggle simulation of tests/kaggle.test.ts: the
// pack carries the kit and a PEFT adapter (no merged weights); /kaggle/input holds the competition and
// base models laid out as Kaggle Models mounts them (<model>/transformers/<variation>/<version>/: the
// hf-reference tiny fixtures with a byte tokenizer, plus a model the adapter does not fit). The inference
// notebook imports base + adapter into /kaggle/working (progress, time since the notebook's start) and
// predicts; its submission must be byte-identical to importing and predicting by hand. A disk too small
// and a missing base stop the notebook with a message naming the fix, before any submission is written.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { FIXTURES } from './helpers/fixtures';
import { writeByteTokenizer } from './helpers/byte-tokenizer';
import { checkSubmission, must, newestMtime, notebookScript, parseCsv, sh, toCsv } from './helpers/kaggle-sim';

const repo = join(__dirname, '..');
const dist = join(repo, 'dist');
const sample = join(repo, '..', 'shared', 'data', 'arena-sample-999.csv');
const ROWS = 20;
const LABELS = 'winner_model_a,winner_model_b,winner_tie';
const IMPORT = `--target t4 --labels ${LABELS} --template gemma-chat --max-tokens 256`;

describe('Kaggle: base + adapter at run time (pack --adapter, notebook prepare)', function () {
  this.timeout(900_000);
  let tmp: string;
  let input: string;
  let ids: string[];
  let python: string;
  let offline: string[] = [];
  const base = () => join(input, 'gemma-2', 'transformers', 'gemma2-tiny', '1');

  before(function () {
    const fresh =
      ['runner.cjs', 'trainer.cjs', 'ort/libonnxruntime.so.1'].every((f) => existsSync(join(dist, f))) &&
      statSync(join(dist, 'trainer.cjs')).mtimeMs >= newestMtime(join(repo, 'src'));
    if (!fresh) sh('npm', ['run', 'build'], { cwd: repo });
    if (!existsSync(join(dist, 'trainer.cjs'))) {
      console.log('      SKIPPED: dist/trainer.cjs is missing after `npm run build`');
      this.skip();
    }
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-kaggle-adapter-'));
    input = join(tmp, 'kaggle', 'input');
    python = must(sh('python3', ['-c', 'import sys; print(sys.executable)']), 'python3').trim();
    const unshare = ['/usr/bin/unshare', '/bin/unshare'].find((p) => existsSync(p));
    if (unshare && spawnSync(unshare, ['-rn', 'true']).status === 0) offline = [unshare, '-rn'];

    const table = parseCsv(readFileSync(sample, 'utf8'));
    const header = table[0];
    const keep = ['id', 'prompt', 'response_a', 'response_b'].map((c) => header.indexOf(c));
    const rows = table.slice(1, ROWS + 1);
    ids = rows.map((r) => r[keep[0]]);
    const comp = join(input, 'lmsys-chatbot-arena');
    mkdirSync(comp, { recursive: true });
    writeFileSync(
      join(comp, 'test.csv'),
      toCsv([keep.map((i) => header[i]), ...rows.map((r) => keep.map((i) => r[i]))]),
    );
    writeFileSync(join(comp, 'train.csv'), toCsv([header, ...rows]));
    mkdirSync(join(tmp, 'kaggle', 'working'), { recursive: true });
    // Kaggle Models: the base the adapter was trained on, a model with the same tensor shapes (llama3-tiny:
    // only the name tells them apart) and one the adapter does not fit (phi3-tiny: fused qkv_proj).
    for (const [model, dir] of [
      ['gemma2-tiny', base()],
      ['llama3-tiny', join(input, 'llama-3', 'transformers', 'llama3-tiny', '1')],
      ['phi3-tiny', join(input, 'phi-3', 'transformers', 'phi3-tiny', '1')],
    ]) {
      mkdirSync(dir, { recursive: true });
      for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(FIXTURES, model, f), join(dir, f));
      writeByteTokenizer(dir);
    }
  });

  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  function runNotebook(env: Record<string, string>, expectFailure = false): string {
    const script = join(tmp, 'inference.py');
    writeFileSync(script, notebookScript(join(repo, 'kernels', 'arenakit-inference', 'arenakit-inference.ipynb')));
    const fullEnv = {
      PATH: `${dirname(process.execPath)}:/usr/bin:/bin`,
      HOME: tmp,
      KAGGLE_INPUT: input,
      KAGGLE_WORKING: join(tmp, 'kaggle', 'working'),
      ARENAKIT_STAGE: join(tmp, 'stage'),
      ARENAKIT_VALIDATE_ROWS: String(ROWS),
      ...env,
    };
    const [cmd, ...pre] = offline.length ? offline : [python];
    const r = sh(cmd, [...pre, ...(offline.length ? [python] : []), script], { cwd: tmp, env: fullEnv });
    if (expectFailure) assert.notEqual(r.status, 0, `the notebook should have stopped:\n${r.stdout}`);
    else must(r, 'notebook');
    return r.stdout + r.stderr;
  }

  it('packs the kit and the adapter only; the notebook imports it onto the Kaggle Models base and submits what a hand import predicts', () => {
    const kit = join(input, 'arenakit');
    const adapter = join(FIXTURES, 'gemma2-tiny', 'adapter');
    const log = must(
      sh(
        process.execPath,
        [
          join(repo, 'build', 'pack.mjs'),
          '--adapter',
          `gemma2=${adapter}`,
          `--import=${IMPORT}`,
          '--out',
          kit,
          '--user',
          'testuser',
        ],
        { cwd: repo },
      ),
      'pack --adapter',
    );
    console.log(log.replace(/^/gm, '      ').trimEnd());
    const pj = JSON.parse(readFileSync(join(kit, 'pack.json'), 'utf8'));
    assert.equal(pj.weights.length, 1);
    assert.equal(pj.weights[0].adapter, 'adapters/gemma2');
    assert.deepEqual(pj.weights[0].import, IMPORT.split(' '));
    assert.ok(!existsSync(join(kit, 'weights')), 'no merged weights in an adapter pack');
    assert.deepEqual(readdirSync(join(kit, 'adapters', 'gemma2')).sort(), [
      'adapter_config.json',
      'adapter_model.safetensors',
    ]);

    const sub = join(tmp, 'kaggle', 'working', 'submission.csv');
    const out = runNotebook({});
    assert.match(out, /weights: gemma2 \(adapter\)/);
    assert.match(out, /trainer\.cjs prepare --pack \S+ --input \S+ --out \S+working\/arenakit-weights/);
    assert.match(
      out,
      new RegExp(`prepare: gemma2: base ${base().replace(/[.]/g, '\\.')}, adapter \\S+, import --target t4`),
    );
    assert.match(out, /import: 100\.0% \(/, 'import progress lines');
    assert.match(
      out,
      /prepare: gemma2 imported in [\d.]+ s; [\d.]+ s since the notebook started \(counted in predict's --time-budget\)/,
    );
    assert.match(out, /runner\.cjs validate --data \S+ --weights \S+working\/arenakit-weights\/gemma2/);
    console.log(`      ${out.split('\n').find((l) => l.startsWith('prepare: gemma2 imported'))}`);
    checkSubmission(sub, ids);
    const imported = JSON.parse(
      readFileSync(join(tmp, 'kaggle', 'working', 'arenakit-weights', 'gemma2', 'manifest.json'), 'utf8'),
    );
    assert.deepEqual(Object.keys(imported.graphs).sort(), ['cpu', 'cuda'], 'imported for the T4 (--target t4)');

    // By hand: the same import and predict give the same bytes.
    const ref = join(tmp, 'by-hand');
    must(
      sh(
        process.execPath,
        [
          join(dist, 'trainer.cjs'),
          'import',
          '--base',
          base(),
          '--adapter',
          adapter,
          ...IMPORT.split(' '),
          '--out',
          ref,
        ],
        { cwd: tmp },
      ),
      'import by hand',
    );
    const refSub = join(tmp, 'by-hand.csv');
    must(
      sh(
        process.execPath,
        [
          join(dist, 'runner.cjs'),
          'predict',
          '--data',
          join(input, 'lmsys-chatbot-arena', 'test.csv'),
          '--weights',
          ref,
          '--out',
          refSub,
          '--ep',
          'auto',
          '--tta',
          'swap',
        ],
        { cwd: tmp },
      ),
      'predict by hand',
    );
    assert.equal(
      readFileSync(sub, 'utf8'),
      readFileSync(refSub, 'utf8'),
      'notebook submission = hand import + predict',
    );
  });

  it('a disk too small, or no base that fits, stops the notebook before predicting, naming the fix', () => {
    const sub = join(tmp, 'kaggle', 'working', 'submission.csv');
    rmSync(sub, { force: true });
    const disk = runNotebook({ ARENAKIT_DISK_FREE: '1000' }, true);
    const msg = disk.split('\n').find((l) => l.startsWith('error:'));
    console.log(`      ${msg}`);
    assert.match(
      msg ?? '',
      /working\/arenakit-weights: 0\.00 GB free, but importing \S+gemma2-tiny\/1 with adapter gemma2 needs about [\d.]+ GB/,
    );
    assert.match(msg ?? '', /ARENAKIT_IMPORT_DIR/);
    assert.doesNotMatch(disk, /runner\.cjs (validate|predict)/);
    assert.ok(!existsSync(sub), 'no submission written');

    const aside = join(tmp, 'gemma-2-aside');
    renameSync(join(input, 'gemma-2'), aside);
    try {
      const none = runNotebook({}, true);
      const m = none.split('\n').find((l) => l.startsWith('error:'));
      console.log(`      ${m}`);
      assert.match(
        m ?? '',
        /adapter gemma2: it was trained on gemma2-tiny, and no model folder under \S+input carries that name; its tensors fit \S+llama3-tiny\/1 \(shapes alone cannot tell models apart\)/,
      );
      assert.match(
        m ?? '',
        /Add Input > Models\) or, if one of these is it, name the right folder with --base DIR \(notebook: ARENAKIT_BASE\)/,
      );
      // Only the model nothing fits: the error lists it with why.
      const llamaAside = join(tmp, 'llama-3-aside');
      renameSync(join(input, 'llama-3'), llamaAside);
      try {
        const none2 = runNotebook({}, true);
        console.log(`      ${none2.split('\n').find((l) => l.startsWith('error:'))}`);
        assert.match(
          none2,
          /error: adapter gemma2: no Hugging Face model folder under \S+input fits it \(it was trained on gemma2-tiny\)/,
        );
        assert.match(
          none2,
          /phi3-tiny\/1: \S+adapter_model\.safetensors: .*matches no base tensor/,
          'the misfit is listed with why',
        );
      } finally {
        renameSync(llamaAside, join(input, 'llama-3'));
      }
      assert.ok(!existsSync(sub), 'no submission written');
    } finally {
      renameSync(aside, join(input, 'gemma-2'));
    }
  });
});
