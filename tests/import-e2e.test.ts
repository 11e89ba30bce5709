// End to end through the built bundles: `trainer.cjs import` of the hf-reference gemma2-tiny fixture
// (+ its PEFT adapter, int4) with a small byte-fallback tokenizer whose ids fit the fixture's
// 512-row embedding, then `runner.cjs predict` (no TTA and swap TTA) and `validate` on real arena rows.
// Checks the submission against the input CSV: header, ids in input order, finite rows summing to 1.
import { TASKS } from '../src/task/task';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { format, parse } from 'fast-csv';
import { readRows } from '../src/data/rows';
import { checkSubmissionText } from '../src/data/submission';
import { loadTokenizer } from '../src/format/encode';
import { BYTE_TOKENIZER_VOCAB, writeByteTokenizer } from './helpers/byte-tokenizer';
import { ok as node, ROOT, RUNNER, TRAINER } from './helpers/peaked';

const SHARED = join(__dirname, '..', '..', 'shared');
const FIXTURE = join(SHARED, 'fixtures', 'hf-reference', 'gemma2-tiny');
const DATA = join(SHARED, 'data', 'arena-sample-999.csv');

/** The first n records of a CSV (quoted multi-line cells kept intact), written to `out`. */
function headCsv(src: string, n: number, out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const records: string[][] = [];
    createReadStream(src)
      .pipe(parse({ headers: false }))
      .on('error', reject)
      .on('data', (r: string[]) => {
        if (records.length <= n) records.push(r);
      })
      .on('end', () => {
        const chunks: string[] = [];
        const f = format({ quoteColumns: true });
        f.on('data', (c: Buffer) => chunks.push(c.toString()));
        f.on('end', () => {
          writeFileSync(out, chunks.join('') + '\n');
          resolve();
        });
        f.on('error', reject);
        for (const r of records) f.write(r);
        f.end();
      });
  });
}

describe('import -> predict -> validate (built bundles, gemma2-tiny fixture)', function () {
  this.timeout(600_000);
  let tmp: string;
  let weights: string;
  let ids: string[];
  let tokenizerDir: string;
  let maxId: number;

  before(async function () {
    if (!existsSync(FIXTURE) || !existsSync(DATA)) this.skip();
    if (!existsSync(TRAINER) || !existsSync(RUNNER))
      execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-e2e-'));
    weights = join(tmp, 'weights');
    tokenizerDir = join(tmp, 'tokenizer');
    maxId = writeByteTokenizer(tokenizerDir);
    ids = (await readRows(DATA)).rows.map((r) => r.id);
  });

  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('the byte tokenizer loads with loadTokenizer and keeps every id below the fixture vocab', () => {
    const dir = tokenizerDir;
    const vocab = JSON.parse(readFileSync(join(FIXTURE, 'config.json'), 'utf8')).vocab_size;
    assert.equal(vocab, BYTE_TOKENIZER_VOCAB);
    assert.ok(maxId < vocab, `max id ${maxId} >= vocab ${vocab}`);
    const tok = loadTokenizer(dir);
    assert.deepEqual(tok.prefixIds, [2]);
    assert.deepEqual(tok.suffixIds, []);
    assert.equal(tok.bosId, 2);
    assert.equal(tok.eosId, 1);
    assert.equal(tok.padId, 0);
    assert.equal(tok.hardBoundaries, true);
    const text = '<start_of_turn>user\nHello  the world\n\n日本語 😀 é<end_of_turn>';
    const enc = tok.encode(text);
    assert.equal(tok.decode(enc), text);
    assert.ok(
      enc.every((i) => i >= 0 && i < vocab),
      `ids out of range: ${enc}`,
    );
    assert.equal(enc[0], 260); // <start_of_turn> as one special token
    console.log(`      byte tokenizer: max id ${maxId} < ${vocab}; ${text.length} chars -> ${enc.length} ids`);
  });

  it('trainer import writes an int4 weights directory', () => {
    const r = node(TRAINER, [
      'import',
      '--base',
      FIXTURE,
      '--adapter',
      join(FIXTURE, 'adapter'),
      '--tokenizer',
      tokenizerDir,
      '--quant',
      'int4',
      '--max-tokens',
      '256',
      '--labels',
      'winner_model_a,winner_model_b,winner_tie',
      '--out',
      weights,
    ]);
    assert.match(r.stderr, /import: wrote /);
    const manifest = JSON.parse(readFileSync(join(weights, 'manifest.json'), 'utf8'));
    assert.equal(manifest.maxTokens, 256);
    assert.equal(manifest.quantization.kind, 'int4');
    for (const f of ['tokenizer.json', 'tokenizer_config.json'])
      assert.ok(existsSync(join(weights, f)), `${f} not copied into ${weights}`);
  });

  for (const tta of ['none', 'swap']) {
    it(`runner predict --tta ${tta} writes a valid 999-row submission in input order`, () => {
      const out = join(tmp, `submission-${tta}.csv`);
      const r = node(RUNNER, [
        'predict',
        '--data',
        DATA,
        '--weights',
        weights,
        '--out',
        out,
        '--ep',
        'cpu',
        '--tta',
        tta,
      ]);
      const text = readFileSync(out, 'utf8');
      assert.equal(ids.length, 999);
      const problems = checkSubmissionText(text, ids, TASKS.lmsys);
      assert.deepEqual(problems, [], problems.join('\n'));
      // Not a constant: the model reads the rows.
      const lines = text.trimEnd().split('\n').slice(1);
      const pa = lines.map((l) => Number(l.split(',').at(-3)));
      const spread = Math.max(...pa) - Math.min(...pa);
      assert.ok(spread > 1e-3, `P(model_a) spread ${spread} over 999 rows: looks constant`);
      const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
      assert.equal(summary.rows, 999);
      assert.equal(summary.failed_rows, 0);
      assert.equal(summary.tta, tta);
      console.log(
        `      ${tta}: ${summary.seconds} s, ${summary.rows_per_s} rows/s, P(a) spread ${spread.toFixed(4)}, swapped ${summary.swapped_rows}`,
      );
    });
  }

  it('runner validate on the first 200 rows prints a JSON line of figures', async () => {
    const small = join(tmp, 'first200.csv');
    await headCsv(DATA, 200, small);
    const { rows } = await readRows(small, { requireLabels: true });
    assert.deepEqual(
      rows.map((r) => r.id),
      ids.slice(0, 200),
    );
    const r = node(RUNNER, ['validate', '--data', small, '--weights', weights, '--ep', 'cpu']);
    const last = r.stdout.trim().split('\n').at(-1)!;
    const fig = JSON.parse(last);
    assert.equal(fig.rows, 200);
    for (const k of ['log_loss', 'accuracy', 'log_loss_no_tta', 'log_loss_swap_tta', 'swap_agreement'])
      assert.ok(Number.isFinite(fig[k]), `${k} = ${fig[k]} in ${last}`);
    assert.ok(fig.accuracy >= 0 && fig.accuracy <= 1);
    console.log(`      validate: ${last}`);
  });
});
