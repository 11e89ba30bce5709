// Issue 19: training that cannot go silently wrong. Hyperparameters torch / transformers would refuse are
// refused by name; a run whose loss or weights stop being finite stops with the step and writes no adapter.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeByteTokenizer } from './helpers/byte-tokenizer';
import { ROOT, TRAINER } from './helpers/peaked';
import { fixtureBatch, GEMMA2_TINY } from './helpers/train-fixtures';

describe('train refuses what would train silently wrong (issue 19)', function () {
  this.timeout(300_000);
  let tmp: string;
  let rows: string;
  before(() => {
    if (!existsSync(TRAINER)) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-trefuse-'));
    rows = join(tmp, 'rows.jsonl');
    const batch = [...fixtureBatch('padded', [0, 1, 2]), ...fixtureBatch('single', [2])];
    writeFileSync(
      rows,
      batch.map((r) => JSON.stringify({ input_ids: Array.from(r.inputIds), label: r.label })).join('\n') + '\n',
    );
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const train = (out: string, extra: string[]) =>
    spawnSync(
      process.execPath,
      [
        TRAINER,
        'train',
        '--base',
        GEMMA2_TINY,
        '--tokenized',
        rows,
        '--out',
        join(tmp, out),
        '--max-steps',
        '2',
        '--batch-size',
        '2',
        ...extra,
      ],
      { encoding: 'utf8' },
    );

  for (const [args, re] of [
    [['--lr=-1e-4'], /--lr must be a finite number > 0, got -1e-4/],
    [['--weight-decay=-0.1'], /--weight-decay must be a finite number >= 0/],
    [['--adam-eps', '0'], /--adam-eps must be a finite number > 0, got 0/],
    [['--max-grad-norm=-1'], /--max-grad-norm must be a finite number >= 0/],
    [['--layers-to-transform', '3-1'], /"3-1" is an empty range; write it low-high, e\.g\. 1-3/],
  ] as const) {
    it(`refuses ${args.join(' ')}`, () => {
      const r = train(`bad-${args[0].slice(2).split('=')[0]}`, [...args]);
      console.log(`      exit ${r.status}: ${r.stderr.trim().split('\n').at(-1)}`);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, re);
      assert.ok(!existsSync(join(tmp, `bad-${args[0].slice(2).split('=')[0]}`, 'adapter_model.safetensors')));
    });
  }

  it('lr 1e30 stops with the step and writes no adapter', () => {
    const r = train('diverged', ['--lr', '1e30', '--max-steps', '3']);
    console.log(`      exit ${r.status}: ${r.stderr.trim().split('\n').at(-1)}`);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /TrainDivergedError|step \d+ \(epoch 1, rows \d+\): .*no adapter written/);
    assert.ok(!existsSync(join(tmp, 'diverged', 'adapter_model.safetensors')));
  });
});

describe('features and import settings that would fit silently wrong (issue 19)', function () {
  this.timeout(120_000);
  const SAMPLE = join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');
  let tmp: string;
  before(() => (tmp = mkdtempSync(join(tmpdir(), 'arenakit-frefuse-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  for (const [flag, value, re] of [
    ['--eta', '0', /--eta must be a number in \(0, 1\], got "0"/],
    ['--eta', '-0.1', /--eta must be a number in \(0, 1\], got "-0.1"/],
    ['--rounds', '0', /--rounds must be an integer >= 1, got "0"/],
  ] as const) {
    it(`features refuses ${flag} ${value}`, () => {
      const r = spawnSync(
        process.execPath,
        [TRAINER, 'features', '--data', SAMPLE, '--out', join(tmp, `f${flag}${value}`), `${flag}=${value}`],
        { encoding: 'utf8' },
      );
      console.log(`      exit ${r.status}: ${r.stderr.trim().split('\n').at(-1)}`);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, re);
      assert.ok(!existsSync(join(tmp, `f${flag}${value}`, 'manifest.json')));
    });
  }

  it('import refuses --label-tokens naming one token twice', () => {
    const judge = join(__dirname, '..', '..', 'shared', 'fixtures', 'hf-reference', 'gemma2-judge-tiny');
    const tok = join(tmp, 'tok');
    writeByteTokenizer(tok);
    const r = spawnSync(
      process.execPath,
      [
        TRAINER,
        'import',
        '--base',
        judge,
        '--tokenizer',
        tok,
        '--quant',
        'fp32',
        '--label-tokens',
        'A,A',
        '--out',
        join(tmp, 'judge'),
      ],
      { encoding: 'utf8' },
    );
    console.log(`      exit ${r.status}: ${r.stderr.trim().split('\n').at(-1)}`);
    assert.notEqual(r.status, 0);
    assert.match(
      r.stderr,
      /--label-tokens A,A: "A" is the same token \(id \d+\) as "A"; each outcome needs its own token/,
    );
  });
});

describe('validate on WSDM rows labelled tie (issue 19)', function () {
  this.timeout(180_000);
  it('excludes them with a count instead of a NaN or wrong log loss', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'arenakit-wtie-'));
    try {
      const csv = join(tmp, 'wsdm.csv');
      const rows: string[] = ['id,prompt,response_a,response_b,winner'];
      for (let i = 0; i < 60; i++) {
        const long = 'word '.repeat(5 + (i % 7) * 9);
        const a = i % 2 ? long : 'short';
        const b = i % 2 ? 'short' : long;
        rows.push(`w${i},"question ${i}","${a}","${b}",${i === 7 || i === 8 ? 'tie' : i % 2 ? 'model_a' : 'model_b'}`);
      }
      writeFileSync(csv, rows.join('\n') + '\n');
      const f = spawnSync(
        process.execPath,
        [TRAINER, 'features', '--data', csv, '--out', join(tmp, 'feat'), '--folds', '0'],
        { encoding: 'utf8' },
      );
      assert.equal(f.status, 0, f.stderr);
      const RUNNER = join(ROOT, 'dist', 'runner.cjs');
      const r = spawnSync(process.execPath, [RUNNER, 'validate', '--data', csv, '--weights', join(tmp, 'feat')], {
        encoding: 'utf8',
      });
      console.log(`      exit ${r.status}: ${r.stderr.split('\n').find((l) => /excluded/.test(l))}`);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /2 rows labelled tie excluded: the wsdm task has only the outcomes a, b \(ids w7, w8\)/);
      const last = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
      const figures = JSON.stringify(last);
      assert.ok(!/null|NaN/.test(figures), figures);
      assert.equal(last.rows ?? last.n ?? 58, 58);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('calibrate --apply checks the parameters it reads (issue 19)', function () {
  this.timeout(60_000);
  it('a negative temperature is refused, naming the file and the parameter', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'arenakit-calneg-'));
    try {
      const cal = join(tmp, 'cal.json');
      writeFileSync(
        cal,
        JSON.stringify({ method: 'temperature', params: { temperature: -1.3 }, fittedOn: 'single-pass' }),
      );
      const preds = join(tmp, 'p.csv');
      writeFileSync(preds, 'id,winner_model_a,winner_model_b,winner_tie\n1,0.6,0.3,0.1\n');
      const r = spawnSync(
        process.execPath,
        [
          join(ROOT, 'dist', 'runner.cjs'),
          'calibrate',
          '--apply',
          cal,
          '--predictions',
          preds,
          '--out',
          join(tmp, 'q.csv'),
        ],
        { encoding: 'utf8' },
      );
      console.log(`      exit ${r.status}: ${r.stderr.trim().split('\n').at(-1)}`);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /params\.temperature must be > 0, got -1\.3/);
      assert.ok(!existsSync(join(tmp, 'q.csv')));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('--tokenized JSON lines (issue 19)', () => {
  const { readTokenized } = require('../src/train/data') as typeof import('../src/train/data');
  it('keeps a BOM-prefixed first row, names and skips a null line, cuts rows past --max-tokens, refuses a folder', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'arenakit-jsonl-'));
    try {
      const f = join(tmp, 'rows.jsonl');
      const long = Array.from({ length: 300_000 }, (_, i) => (i % 500) + 1);
      writeFileSync(
        f,
        '\uFEFF{"input_ids":[2,5,6],"label":0}\nnull\n' +
          JSON.stringify({ input_ids: long, label: 1 }) +
          '\n{"input_ids":[2,7],"label":2}',
      );
      const r = readTokenized(f, 3, 512, 256);
      for (const w of r.warnings) console.log(`      warning: ${w}`);
      assert.equal(r.rows.length, 3);
      assert.deepEqual(Array.from(r.rows[0].inputIds), [2, 5, 6]);
      assert.equal(r.rows[1].inputIds.length, 256);
      assert.deepEqual(Array.from(r.rows[2].inputIds), [2, 7]);
      assert.ok(r.warnings.some((w) => /rows\.jsonl:2: expected an object .* got null; line skipped/.test(w)));
      assert.ok(r.warnings.some((w) => /1 rows longer than --max-tokens 256 cut/.test(w)));
      assert.throws(() => readTokenized(tmp, 3, 512), /is a folder; --tokenized takes a \.jsonl file/);
      assert.throws(
        () => readTokenized(join(tmp, 'missing.jsonl'), 3, 512),
        /missing\.jsonl: cannot be read \(no such file or directory \(ENOENT\)\)/,
      );
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('refuses rows past the memory limit clearly, naming the line reached (a 545 MB file reads: RELIABILITY.md)', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'arenakit-jsonl-'));
    try {
      const f = join(tmp, 'rows.jsonl');
      const line = JSON.stringify({ input_ids: Array.from({ length: 500 }, (_, i) => i), label: 1 });
      writeFileSync(f, Array(100).fill(line).join('\n'));
      // 100 rows of 500 ids: about 210 KB as 4-byte ids; a 100 KB limit stops at the row that crosses it
      assert.throws(
        () => readTokenized(f, 3, 512, 512, 100_000),
        (e: Error) => {
          console.log(`      ${e.name}: ${e.message}`);
          return (
            e.name === 'TrainDataError' &&
            /rows\.jsonl:48: the 47 rows read so far take 0\.1 MB as token ids, past the 0\.1 MB/.test(e.message) &&
            /lower --max-tokens/.test(e.message)
          );
        },
      );
      assert.equal(readTokenized(f, 3, 512, 512, 1e6).rows.length, 100);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
