// Parquet input (issue 12 item 2): the real WSDM-layout sample files in ../shared/data, checked
// against what their README states, plus files written here with hyparquet-writer (several row
// groups, list<string> turns, missing columns, duplicate ids, nulls) read through the same readRows.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { parquetWriteFile } from 'hyparquet-writer';
import { loadParquetBase, parquetCase } from '../bench/fuzz';
import { TIMEOUT_ENV } from '../src/data/parquet';
import { readRows } from '../src/data/rows';
import { rejectsRows } from './helpers/rows-error';

const DATA = path.join(__dirname, '..', '..', 'shared', 'data');
const TRAIN = path.join(DATA, 'wsdm-sample-train.parquet');
const TEST = path.join(DATA, 'wsdm-sample-test.parquet');
const CSV = path.join(DATA, 'arena-sample-999.csv');
const FIRST = '749b5952c3cec143a112f313f44b67da906ada1a9c3aa69257e8c86e5fbd0cc1';
const LAST = '05a8f606b109b11694c7f366e5db5bb5df2192e0f1c1cb3e3e55881da85b5ed9';

describe('parquet: the WSDM sample files', () => {
  it('train: 704 rows, first/last ids, labels 352/352, languages as the README states, null cells counted', async () => {
    const r = await readRows(TRAIN, { requireLabels: true });
    assert.equal(r.rows.length, 704);
    assert.equal(r.hasLabels, true);
    assert.equal(r.rows[0].id, FIRST);
    assert.equal(r.rows[703].id, LAST);
    assert.deepEqual(
      [0, 1, 2].map((l) => r.rows.filter((x) => x.label === l).length),
      [352, 352, 0],
    );
    const langs: Record<string, number> = {};
    for (const x of r.rows) langs[x.language!] = (langs[x.language!] ?? 0) + 1;
    console.log(`      languages ${JSON.stringify(langs)}; warnings: ${r.warnings.join(' | ').slice(0, 160)}...`);
    assert.equal(langs.English, 694);
    for (const l of ['Chinese', 'Russian', 'German', 'French', 'Spanish', 'Arabic']) assert.ok(langs[l] >= 1, l);
    // A null cell (be63c339..., response_b) is one empty turn, counted in the warning.
    const nullRow = r.rows.find((x) => x.id.startsWith('be63c3398cf759be'))!;
    assert.deepEqual(nullRow.responseB, ['']);
    assert.ok(nullRow.responseA[0].length > 0);
    assert.match(r.warnings.join('\n'), /8 null item\(s\) in 8 row\(s\) read as '' \(ids be63c3398cf759be/);
    // Plain strings are one turn each; lines are data row + 1, as for a CSV with its header.
    assert.ok(r.rows.every((x) => x.prompt.length === 1 && x.responseA.length === 1 && x.responseB.length === 1));
    assert.deepEqual([r.rows[0].line, r.rows[703].line], [2, 705]);
  });

  it('train: the same rows and texts as the CSV sample they were made from (ties dropped, turns joined by a blank line)', async () => {
    const pq = await readRows(TRAIN);
    const csv = await readRows(CSV);
    // Parquet ids are hashes, not the CSV's: rows are matched by position (same order, ties dropped).
    let compared = 0;
    const csvNoTies = csv.rows.filter((x) => x.label !== 2);
    assert.equal(csvNoTies.length, pq.rows.length);
    for (let i = 0; i < pq.rows.length; i++) {
      const a = pq.rows[i];
      const b = csvNoTies[i];
      if (a.prompt[0] === '' || a.responseA[0] === '' || a.responseB[0] === '') continue;
      assert.equal(a.prompt[0], b.prompt.join('\n\n'), `row ${i} prompt`);
      assert.equal(a.responseA[0], b.responseA.join('\n\n'), `row ${i} response_a`);
      assert.equal(a.label, b.label, `row ${i} label`);
      compared++;
    }
    console.log(`      ${compared} of ${pq.rows.length} rows equal the CSV rows (rows with a null cell skipped)`);
    assert.ok(compared >= 690);
  });

  it('test: 704 rows, no labels, same ids; requireLabels names the missing winner column', async () => {
    const r = await readRows(TEST);
    assert.equal(r.rows.length, 704);
    assert.equal(r.hasLabels, false);
    assert.deepEqual([r.rows[0].id, r.rows[703].id], [FIRST, LAST]);
    assert.ok(r.rows.every((x) => x.label === undefined && x.language === undefined));
    await rejectsRows(readRows(TEST, { requireLabels: true }), TEST, 'winner');
  });
});

describe('parquet: files written here', () => {
  let dir = '';
  let n = 0;
  before(() => (dir = mkdtempSync(path.join(tmpdir(), 'arenakit-parquet-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (columns: { name: string; data: unknown[]; type?: string }[], rowGroupSize?: number): string => {
    const p = path.join(dir, `p${n++}.parquet`);
    parquetWriteFile({ filename: p, columnData: columns as never, rowGroupSize });
    return p;
  };
  const ids = (k: number) => Array.from({ length: k }, (_, i) => `r${i}`);

  it('several row groups are read in order, every row once', async () => {
    const k = 1000;
    const p = write(
      [
        { name: 'id', data: ids(k), type: 'STRING' },
        { name: 'prompt', data: ids(k).map((i) => `prompt ${i}`), type: 'STRING' },
        { name: 'response_a', data: ids(k).map((i) => `a ${i}`), type: 'STRING' },
        { name: 'response_b', data: ids(k).map((i) => (i === 'r700' ? null : `b ${i}`)), type: 'STRING' },
        { name: 'winner', data: ids(k).map((_, i) => (i % 2 ? 'model_b' : 'model_a')), type: 'STRING' },
      ],
      128,
    );
    const r = await readRows(p, { requireLabels: true });
    assert.deepEqual(
      r.rows.map((x) => x.id),
      ids(k),
    );
    assert.deepEqual(r.rows[999].responseA, ['a r999']);
    assert.deepEqual(r.rows[700].responseB, ['']);
    assert.deepEqual(
      r.rows.slice(0, 4).map((x) => x.label),
      [0, 1, 0, 1],
    );
    assert.match(r.warnings.join('\n'), /1 null item\(s\) in 1 row\(s\) read as '' \(ids r700\)/);
  });

  it('missing columns and duplicate ids are errors naming them, as for CSV', async () => {
    const noB = write([
      { name: 'id', data: ['1'], type: 'STRING' },
      { name: 'prompt', data: ['p'], type: 'STRING' },
      { name: 'response_a', data: ['a'], type: 'STRING' },
    ]);
    await rejectsRows(readRows(noB), noB, 'missing required column response_b');
    const dup = write([
      { name: 'id', data: ['x', 'y', 'x'], type: 'STRING' },
      { name: 'prompt', data: ['p', 'p', 'p'], type: 'STRING' },
      { name: 'response_a', data: ['a', 'a', 'a'], type: 'STRING' },
      { name: 'response_b', data: ['b', 'b', 'b'], type: 'STRING' },
    ]);
    await rejectsRows(readRows(dup), dup, '1 duplicate id(s)', 'x (lines 2 and 4)');
    const nullId = write([
      { name: 'id', data: ['x', null], type: 'STRING' },
      { name: 'prompt', data: ['p', 'p'], type: 'STRING' },
      { name: 'response_a', data: ['a', 'a'], type: 'STRING' },
      { name: 'response_b', data: ['b', 'b'], type: 'STRING' },
    ]);
    await rejectsRows(readRows(nullId), 'line 3 has an empty id');
  });

  it('integer ids, one-hot label columns and list<string> turns (an LMSYS table saved as parquet)', async () => {
    const p = write([
      { name: 'id', data: [BigInt(30192), BigInt(53567)], type: 'INT64' },
      { name: 'prompt', data: [['hi', 'again'], ['q']] },
      { name: 'response_a', data: [['a1', null], ['a']] },
      { name: 'response_b', data: [['b1', 'b2'], ['b']] },
      { name: 'winner_model_a', data: [BigInt(1), BigInt(0)], type: 'INT64' },
      { name: 'winner_model_b', data: [BigInt(0), BigInt(0)], type: 'INT64' },
      { name: 'winner_tie', data: [BigInt(0), BigInt(1)], type: 'INT64' },
    ]);
    const r = await readRows(p, { requireLabels: true });
    assert.deepEqual(
      r.rows.map((x) => x.id),
      ['30192', '53567'],
    );
    assert.deepEqual(r.rows[0].prompt, ['hi', 'again']);
    assert.deepEqual(r.rows[0].responseA, ['a1', '']);
    assert.deepEqual(
      r.rows.map((x) => x.label),
      [0, 2],
    );
  });

  it('a footer whose column chunk names a column the schema lacks (found by npm run fuzz: the read never settled)', async () => {
    const p = write([
      { name: 'id', data: ['a', 'b', 'c'], type: 'STRING' },
      { name: 'prompt', data: ['p', null, 'p3'], type: 'STRING' },
      { name: 'response_a', data: ['ra', 'rb', 'rc'], type: 'STRING' },
      { name: 'response_b', data: ['xa', 'xb', 'xc'], type: 'STRING' },
    ]);
    const b = readFileSync(p);
    // The last "prompt" in the file is the column chunk's path_in_schema (the schema comes first).
    b[b.lastIndexOf('prompt') + 1] = '('.charCodeAt(0);
    writeFileSync(p, b);
    await rejectsRows(readRows(p), p, 'column chunk for "p(ompt"', 'not in the schema');
  });

  it('rows equal hyparquet decoding the file on the main thread (the worker-thread reader changes no cell), also two reads at once', async () => {
    const k = 300;
    const multi = write(
      [
        { name: 'id', data: ids(k), type: 'STRING' },
        { name: 'prompt', data: ids(k).map((i) => `prompt ${i} \u00e9\u4e2d\ud83d\ude00`), type: 'STRING' },
        { name: 'response_a', data: ids(k).map((i) => (i === 'r7' ? null : `a ${i}`)), type: 'STRING' },
        { name: 'response_b', data: ids(k).map((i) => `b ${i}`.repeat(1 + (i.length % 5))), type: 'STRING' },
      ],
      64,
    );
    const [train, test, many] = await Promise.all([readRows(TRAIN), readRows(TEST), readRows(multi)]);
    let cells = 0;
    for (const [file, got] of [
      [TRAIN, train],
      [TEST, test],
      [multi, many],
    ] as const) {
      const ref = (await parquetReadObjects({ file: await asyncBufferFromFile(file), compressors })) as Record<
        string,
        string | null
      >[];
      assert.equal(got.rows.length, ref.length, file);
      ref.forEach((o, i) => {
        assert.equal(got.rows[i].id, o.id, `${file} row ${i} id`);
        for (const [col, key] of [
          ['prompt', 'prompt'],
          ['response_a', 'responseA'],
          ['response_b', 'responseB'],
        ] as const) {
          assert.deepEqual(got.rows[i][key], [o[col] ?? ''], `${file} row ${i} ${col}`);
          cells++;
        }
      });
    }
    console.log(
      `      ${cells} text cells equal to hyparquet's own main-thread read (3 files, ${train.rows.length + test.rows.length + many.rows.length} rows)`,
    );
  });

  it('a file named .parquet that is not parquet names the file', async () => {
    const p = path.join(dir, 'fake.parquet');
    writeFileSync(p, 'id,prompt\n1,2\n');
    await rejectsRows(readRows(p), p, 'not a readable parquet file');
  });
});

describe('parquet: a damaged data page that makes the decoder loop (npm run fuzz, seed 1 cases 4626 and 6798)', () => {
  // hyparquet 1.31.5 loops without end in readRleBitPackedHybrid on these pages: the reader decodes in
  // a worker thread and ends it after the row group's time limit (shortened here).
  const LIMIT_MS = 1500;
  let dir = '';
  let saved: string | undefined;
  const cases: Record<number, string> = {};
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'arenakit-parquet-hang-'));
    saved = process.env[TIMEOUT_ENV];
    process.env[TIMEOUT_ENV] = String(LIMIT_MS);
    const base = await loadParquetBase();
    for (const i of [4626, 6798]) {
      cases[i] = path.join(dir, `fuzz-seed1-case${i}.parquet`);
      writeFileSync(cases[i], parquetCase(base, 1, i).bytes);
    }
  });
  after(() => {
    if (saved === undefined) delete process.env[TIMEOUT_ENV];
    else process.env[TIMEOUT_ENV] = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  for (const i of [4626, 6798])
    it(`case ${i}: a RowsError naming the file, the row group and the fix once the limit is reached; the next read works`, async () => {
      const t0 = Date.now();
      await rejectsRows(
        readRows(cases[i]),
        cases[i],
        '(row group 1 of 1)',
        `did not finish in ${(LIMIT_MS / 1000).toFixed(1)} s`,
        're-download it or re-export it',
        TIMEOUT_ENV,
      );
      const ms = Date.now() - t0;
      console.log(`      ended after ${ms} ms (limit ${LIMIT_MS} ms)`);
      assert.ok(ms >= LIMIT_MS, 'the decoder really was stuck: the error came from the time limit');
      // The stuck worker was ended; a new one reads the next file.
      assert.equal((await readRows(TEST)).rows.length, 704);
    });

  it('the bundled trainer (dist/trainer.cjs features, copied out of the repository) stops on case 4626 with the same error', function () {
    const bundle = path.join(__dirname, '..', 'dist', 'trainer.cjs');
    const src = ['parquet.ts', 'parquet-worker.ts'].map((f) => path.join(__dirname, '..', 'src', 'data', f));
    if (!existsSync(bundle) || src.some((f) => statSync(f).mtimeMs > statSync(bundle).mtimeMs)) {
      console.log('      SKIPPED: dist/trainer.cjs is missing or older than src/data/parquet*.ts; run `npm run build`');
      return this.skip();
    }
    // Copied out of the repository: the worker's code must travel inside the bundle.
    const solo = path.join(dir, 'trainer.cjs');
    copyFileSync(bundle, solo);
    const r = spawnSync(
      process.execPath,
      [solo, 'features', '--data', cases[4626], '--out', path.join(dir, 'f.json')],
      {
        cwd: dir,
        env: { PATH: process.env.PATH, [TIMEOUT_ENV]: String(LIMIT_MS) },
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    console.log(`      exit ${r.status}: ${r.stderr.trim().split('\n').pop()?.slice(0, 200)}`);
    assert.notEqual(r.status, 0);
    assert.equal(r.signal, null, 'ended by the reader, not by the test timeout');
    assert.match(
      r.stderr,
      /fuzz-seed1-case4626\.parquet: rows 1-2 \(row group 1 of 1\): decoding did not finish in 1\.5 s.*re-download it or re-export it/,
    );
  });
});
