// readRows / parseCell: every documented data quirk on small fixtures written to os.tmpdir(), plus the
// real 999-row sample against the label counts its README states.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { parse as fastCsvParse } from 'fast-csv';
import { dataColumns, MAX_CELL_CHARS, parseCell, readRows } from '../src/data/rows';
import { rejectsRows } from './helpers/rows-error';
import { CsvParser, Utf8Decoder, BAD_BYTE } from '../src/data/csv';
import { demoCsv, demoTrainCsv } from '../demo/make-demo';

const DEMO = path.join(__dirname, '..', 'demo', 'arena-demo.csv');
const SAMPLE = path.join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');
const TRAIN_HEADER = 'id,model_a,model_b,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie';
const TEST_HEADER = 'id,prompt,response_a,response_b';

/** One CSV field, quoted the way pandas writes it. */
const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
const list = (...items: (string | null)[]) => q(JSON.stringify(items));
const trainLine = (id: string, p: string, a: string, b: string, label = '1,0,0') =>
  `${id},m1,m2,${p},${a},${b},${label}`;

let dir = '';
let n = 0;
function fixture(content: string | Buffer): string {
  const p = path.join(dir, `f${n++}.csv`);
  writeFileSync(p, content);
  return p;
}

/** All records of a CSV text fed to CsvParser in pieces cut at the given offsets. */
function parsePieces(text: string, cuts: number[]): string[][] {
  const out: string[][] = [];
  const p = new CsvParser('x.csv', (r) => out.push(r.fields));
  let from = 0;
  for (const c of [...cuts, text.length]) {
    p.write(text.slice(from, c));
    from = c;
  }
  p.end();
  return out;
}

describe('rows: parseCell', () => {
  it('decodes a JSON list, one item per turn', () => {
    assert.deepEqual(parseCell('["hi", "again"]'), {
      items: ['hi', 'again'],
      raw: false,
      nulls: 0,
      surrogates: 0,
      badBytes: 0,
      nuls: 0,
    });
  });
  it('turns null items into empty strings and counts them', () => {
    assert.deepEqual(parseCell('[null, "x", null]'), {
      items: ['', 'x', ''],
      raw: false,
      nulls: 2,
      surrogates: 0,
      badBytes: 0,
      nuls: 0,
    });
  });
  it('keeps a non-JSON cell whole as one raw item', () => {
    for (const cell of ['just text, with a comma', '["unterminated', '{"a": 1}', '[1, 2]', '"quoted"', '']) {
      const c = parseCell(cell);
      assert.deepEqual(c.items, [cell], cell);
      assert.equal(c.raw, true, cell);
    }
  });
  it('replaces lone surrogates (from JSON escapes) with U+FFFD and keeps valid pairs', () => {
    const c = parseCell('["a\\ud800b", "\\udc00", "ok \\ud83d\\ude00"]');
    assert.deepEqual(c.items, ['a\uFFFDb', '\uFFFD', 'ok \u{1F600}']);
    assert.equal(c.surrogates, 2);
  });
  it('keeps empty responses', () => {
    assert.deepEqual(parseCell('[""]').items, ['']);
    assert.deepEqual(parseCell('[]').items, []);
  });
});

describe('rows: readRows', () => {
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'arenakit-rows-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('missing column: names the column and the file, before any row is looked at', async () => {
    // The data row has an invalid label: the column error must still be the one raised.
    const f = fixture(
      [
        'id,model_a,model_b,prompt,response_a,winner_model_a,winner_model_b,winner_tie',
        `1,m,m,${list('p')},${list('a')},9,9,9`,
      ].join('\n'),
    );
    await rejectsRows(readRows(f), 'missing required column response_b', f);
    const g = fixture('id,text\n1,hello\n');
    await rejectsRows(readRows(g), 'prompt, response_a, response_b', g);
  });

  it('an empty file, or a header without rows, is an error naming the file', async () => {
    const f = fixture('');
    await rejectsRows(readRows(f), 'empty file', f);
    const g = fixture(TRAIN_HEADER + '\n\n');
    await rejectsRows(readRows(g), 'no rows', g);
  });

  it('duplicate ids: names them with lines and the count', async () => {
    const lines = [TRAIN_HEADER];
    for (const id of ['10', '11', '10', '12', '12', '12']) lines.push(trainLine(id, list('p'), list('a'), list('b')));
    const f = fixture(lines.join('\n'));
    await rejectsRows(
      readRows(f),
      '3 duplicate id(s)',
      '10 (lines 2 and 4)',
      '12 (lines 5 and 6)',
      '12 (lines 5 and 7)',
    );
  });

  it('a non-JSON cell is one raw item, counted in a warning with the row id', async () => {
    const f = fixture(
      [
        TRAIN_HEADER,
        trainLine('1', list('p'), q('plain, "text"'), list('b')),
        trainLine('2', list('p'), list('a'), list('b')),
      ].join('\n'),
    );
    const r = await readRows(f);
    assert.deepEqual(r.rows[0].responseA, ['plain, "text"']);
    assert.deepEqual(r.rows[1].responseA, ['a']);
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0], /1 cell\(s\) in 1 row\(s\) were not JSON lists.*ids 1\)/);
  });

  it('null items become empty strings, counted in a warning', async () => {
    const f = fixture([TRAIN_HEADER, trainLine('7', list('p', 'p2'), list('a', null), list(null, null))].join('\n'));
    const r = await readRows(f);
    assert.deepEqual(r.rows[0].responseA, ['a', '']);
    assert.deepEqual(r.rows[0].responseB, ['', '']);
    assert.match(r.warnings.join('\n'), /3 null item\(s\) in 1 row\(s\) read as '' \(ids 7\)/);
  });

  it('a lone surrogate becomes U+FFFD, counted in a warning', async () => {
    const f = fixture([TEST_HEADER, `5,${q('["x\\ud83d y"]')},${list('a')},${list('b')}`].join('\n'));
    const r = await readRows(f);
    assert.deepEqual(r.rows[0].prompt, ['x\uFFFD y']);
    assert.match(r.warnings.join('\n'), /1 lone UTF-16 surrogate\(s\) in 1 row\(s\).*ids 5/);
  });

  it('an empty response is a valid row', async () => {
    const f = fixture(
      [
        TRAIN_HEADER,
        trainLine('1', list('p'), list(''), list('b'), '0,1,0'),
        trainLine('2', list('p'), q('[]'), list('b')),
      ].join('\n'),
    );
    const r = await readRows(f, { requireLabels: true });
    assert.equal(r.rows.length, 2);
    assert.deepEqual(r.rows[0].responseA, ['']);
    assert.equal(r.rows[0].label, 1);
    assert.deepEqual(r.rows[1].responseA, []);
    assert.deepEqual(r.warnings, []);
  });

  it('a 200,000-character response is read whole', async () => {
    const long = 'word '.repeat(40_000) + 'END';
    const f = fixture([TEST_HEADER, `1,${list('p')},${list(long)},${list('b')}`].join('\n'));
    const r = await readRows(f);
    assert.equal(r.rows[0].responseA[0].length, 200_003);
    assert.ok(r.rows[0].responseA[0].endsWith('word END'));
    assert.equal(r.hasLabels, false);
  });

  it('BOM + CRLF (and a CRLF inside a quoted cell) are accepted', async () => {
    const lines = [
      TRAIN_HEADER,
      trainLine('1', list('p'), list('line1\r\nline2'), list('b'), '0,0,1'),
      trainLine('2', list('p'), list('a'), list('b'), '0,1,0'),
    ];
    const f = fixture('\uFEFF' + lines.join('\r\n') + '\r\n');
    const r = await readRows(f, { requireLabels: true });
    assert.equal(r.rows.length, 2);
    assert.equal(r.rows[0].id, '1');
    assert.deepEqual(r.rows[0].responseA, ['line1\r\nline2']);
    assert.deepEqual(
      r.rows.map((x) => x.label),
      [2, 1],
    );
    assert.deepEqual(
      r.rows.map((x) => x.line),
      [2, 3],
    );
  });

  it('a one-hot that is not exactly one 1 names the row line and id', async () => {
    const f = fixture(
      [
        TRAIN_HEADER,
        trainLine('1', list('p'), list('a'), list('b')),
        trainLine('abc', list('p'), list('a'), list('b'), '1,1,0'),
      ].join('\n'),
    );
    await rejectsRows(readRows(f), 'line 3 (id abc)', 'exactly one 1');
    const g = fixture([TRAIN_HEADER, trainLine('1', list('p'), list('a'), list('b'), '0,0,')].join('\n'));
    await rejectsRows(readRows(g), 'line 2 (id 1)');
  });

  it('requireLabels on a test file names the missing label columns', async () => {
    const f = fixture([TEST_HEADER, `1,${list('p')},${list('a')},${list('b')}`].join('\n'));
    await rejectsRows(readRows(f, { requireLabels: true }), 'winner_model_a, winner_model_b, winner_tie', f);
    const g = fixture(
      ['id,prompt,response_a,response_b,winner_model_a', `1,${list('p')},${list('a')},${list('b')},1`].join('\n'),
    );
    await rejectsRows(readRows(g), 'missing label column(s) winner_model_b, winner_tie');
  });

  it('WSDM-style plain-string cells and a winner column', async () => {
    const f = fixture(
      [
        'id,prompt,response_a,response_b,winner,language',
        'w1,What is 2+2?,4,Five,model_a,English',
        'w2,Bonjour,Salut,Coucou,model_b,French',
      ].join('\n'),
    );
    const r = await readRows(f, { requireLabels: true });
    assert.deepEqual(r.rows[0].prompt, ['What is 2+2?']);
    assert.deepEqual(r.rows[1].responseB, ['Coucou']);
    assert.deepEqual(
      r.rows.map((x) => x.label),
      [0, 1],
    );
    assert.match(r.warnings[0], /6 cell\(s\) in 2 row\(s\) were not JSON lists/);
  });

  it('a missing file names the path', async () => {
    const f = path.join(dir, 'nope.csv');
    await rejectsRows(readRows(f), f, 'cannot read');
  });

  it('reads the 999-row sample: label counts A 352 / B 352 / tie 295 as its README states', async function () {
    this.timeout(60_000);
    const r = await readRows(SAMPLE, { requireLabels: true });
    assert.equal(r.rows.length, 999);
    assert.equal(r.hasLabels, true);
    const counts = [0, 1, 2].map((l) => r.rows.filter((x) => x.label === l).length);
    console.log(`      sample label counts ${counts.join('/')}; warnings: ${r.warnings.join(' | ')}`);
    assert.deepEqual(counts, [352, 352, 295]);
    assert.equal(new Set(r.rows.map((x) => x.id)).size, 999);
    // The README: items can be null, about 1 row in 8 is multi-turn.
    assert.match(r.warnings.join('\n'), /null item/);
    const multi = r.rows.filter((x) => x.prompt.length > 1).length;
    assert.ok(multi > 60 && multi < 200, `multi-turn rows ${multi}`);
    assert.ok(r.rows.every((x) => x.prompt.length >= 1 && x.responseA.length >= 1));
  });

  it('the demo CSV is what demo/make-demo.ts writes, labelled, with its probes', async () => {
    assert.equal(readFileSync(DEMO, 'utf8'), demoCsv(), 'demo/arena-demo.csv is stale: run npx tsx demo/make-demo.ts');
    const trainFile = DEMO.replace('arena-demo.csv', 'arena-demo-train.csv');
    assert.equal(
      readFileSync(trainFile, 'utf8'),
      demoTrainCsv(),
      'demo/arena-demo-train.csv is stale: run npx tsx demo/make-demo.ts',
    );
    // the demo validates on held-out questions: the training file never asks one of arena-demo.csv's
    const held = new Set((await readRows(DEMO)).rows.map((x) => x.prompt.join('\n')));
    const train = await readRows(trainFile, { requireLabels: true });
    assert.ok(train.rows.length >= 100, `${train.rows.length} training rows`);
    assert.deepEqual(
      train.rows.filter((x) => held.has(x.prompt.join('\n'))).map((x) => x.id),
      [],
    );
    const r = await readRows(DEMO, { requireLabels: true });
    assert.ok(r.rows.length >= 40 && r.rows.length <= 60);
    assert.match(r.warnings.join('\n'), /1 null item/);
    const same = r.rows.filter((x) => x.responseA.join() === x.responseB.join());
    assert.ok(same.length >= 4 && same.every((x) => x.label === 2), 'position probes are ties');
    assert.ok(r.rows.some((x) => x.prompt.length > 1));
    assert.ok(r.rows.some((x) => /[^\x00-\x7f]/.test(x.prompt[0])));
    assert.ok(r.rows.some((x) => /best model|most advanced/.test(x.responseA.join() + x.responseB.join())));
  });
});

describe('rows: dataColumns (the task is chosen from them before the rows are read)', () => {
  it('a CSV header: BOM, quoted names, CRLF; [] for a missing file or a header longer than the first 64 KB', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'arenakit-cols-'));
    try {
      writeFileSync(
        path.join(dir, 'a.csv'),
        '\uFEFFid,"prompt",response_a,response_b, winner \r\n1,"x",a,b,model_a\r\n',
      );
      assert.deepEqual(dataColumns(path.join(dir, 'a.csv')), ['id', 'prompt', 'response_a', 'response_b', 'winner']);
      assert.deepEqual(dataColumns(DEMO).slice(-3), ['winner_model_a', 'winner_model_b', 'winner_tie']);
      assert.deepEqual(dataColumns(path.join(dir, 'missing.csv')), []);
      writeFileSync(path.join(dir, 'long.csv'), `id,${'x'.repeat(70000)}\n1,2\n`);
      assert.deepEqual(dataColumns(path.join(dir, 'long.csv')), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('rows: CSV reader against references', () => {
  it('splits the 999-row sample into exactly the records fast-csv (the reader it replaces) gives', async function () {
    this.timeout(60_000);
    const text = readFileSync(SAMPLE, 'utf8');
    const ours: string[][] = [];
    const p = new CsvParser(SAMPLE, (r) => ours.push(r.fields));
    p.write(text);
    p.end();
    const ref: string[][] = [];
    await new Promise<void>((resolve, reject) =>
      fastCsvParse({ headers: false })
        .on('data', (r: string[]) => ref.push(r))
        .on('end', resolve)
        .on('error', reject)
        .end(text),
    );
    console.log(`      ${ours.length} records (header included), fast-csv ${ref.length}`);
    assert.equal(ours.length, 1000);
    assert.deepEqual(ours, ref);
  });

  it('gives the same records whatever the chunk boundaries (quotes, "" pairs and CRLF cut in two)', () => {
    const text = 'id,a,b\r\n1,"x ""q"" y","line1\r\nline2"\r\n2,,"""quoted"""\r\n3,"a,b",c\n';
    const whole = parsePieces(text, []);
    assert.deepEqual(whole, [
      ['id', 'a', 'b'],
      ['1', 'x "q" y', 'line1\r\nline2'],
      ['2', '', '"quoted"'],
      ['3', 'a,b', 'c'],
    ]);
    for (let i = 1; i < text.length; i++)
      for (const j of [i + 1, i + 3])
        if (j < text.length) assert.deepEqual(parsePieces(text, [i, j]), whole, `cut at ${i}, ${j}`);
  });

  it("UTF-8 decoding: equals Node's decoder for valid text cut anywhere, marks each invalid byte", () => {
    const buf = Buffer.from('aé€𝄞 \u00fc\u4e2d\ud83d\ude00!', 'utf8');
    for (let i = 0; i <= buf.length; i++) {
      const d = new Utf8Decoder();
      assert.equal(d.decode(buf.subarray(0, i)) + d.decode(buf.subarray(i), true), buf.toString('utf8'), `cut at ${i}`);
    }
    const bad = Buffer.from([0x61, 0xff, 0x62, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0x63, 0xe2, 0x82]);
    const s = new Utf8Decoder().decode(bad, true);
    assert.equal(s, `a${BAD_BYTE}b${BAD_BYTE}(${BAD_BYTE}${BAD_BYTE}${BAD_BYTE}c${BAD_BYTE}${BAD_BYTE}`);
  });
});

describe('rows: issue 9 defect 7 (bad input found by attacking the runner)', () => {
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'arenakit-rows7-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('defect 7, huge cell: a cell over MAX_CELL_CHARS keeps its first and last halves, counted in a warning naming the id', async function () {
    this.timeout(120_000);
    const long = 'head ' + 'x'.repeat(MAX_CELL_CHARS) + ' tail';
    const f = fixture(
      [TEST_HEADER, `big1,${list('p')},${list(long)},${list('b')}`, `2,${list('p')},${list('a')},${list('b')}`].join(
        '\n',
      ),
    );
    const r = await readRows(f);
    assert.equal(r.rows.length, 2);
    const a = r.rows[0].responseA.join('');
    console.log(`      cell of ${long.length} chars read as ${a.length} chars; cap ${MAX_CELL_CHARS}`);
    assert.ok(a.length <= MAX_CELL_CHARS, `${a.length}`);
    assert.ok(a.startsWith('head x') && a.endsWith('x tail'));
    assert.match(
      r.warnings.join('\n'),
      /1 cell\(s\) longer than 4,000,000 characters in 1 row\(s\) cut to their first and last 2,000,000 \(ids big1\)/,
    );
    assert.deepEqual(r.rows[1].responseA, ['a']);
  });

  it('defect 7, UTF-16 file: says UTF-16 and how to convert, naming the file (with and without a BOM)', async () => {
    const text = [TEST_HEADER, `1,${list('p')},${list('a')},${list('b')}`].join('\r\n');
    const le = fixture(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]));
    await rejectsRows(readRows(le), le, 'UTF-16', 'convert it to UTF-8');
    const be = Buffer.from(text, 'utf16le').swap16();
    await rejectsRows(readRows(fixture(Buffer.concat([Buffer.from([0xfe, 0xff]), be]))), 'UTF-16');
    const noBom = fixture(Buffer.from(text, 'utf16le'));
    await rejectsRows(readRows(noBom), noBom, 'UTF-16', 'NUL bytes');
  });

  it('defect 7, invalid UTF-8 or NUL in an id: refused naming the line, never copied into a submission', async () => {
    const row = (id: Buffer) => Buffer.concat([id, Buffer.from(`,${list('p')},${list('a')},${list('b')}\n`)]);
    const head = Buffer.from(TEST_HEADER + '\n');
    const ok = row(Buffer.from('1'));
    const badUtf8 = fixture(Buffer.concat([head, ok, row(Buffer.from([0x32, 0xff, 0x33]))]));
    await rejectsRows(readRows(badUtf8), badUtf8, 'line 3', 'invalid UTF-8');
    const nul = fixture(Buffer.concat([head, ok, ok.subarray(0, 0), row(Buffer.from([0x34, 0x00, 0x35]))]));
    await rejectsRows(readRows(nul), 'line 3', 'NUL');
  });

  it('defect 7, invalid UTF-8 or NUL in text: U+FFFD / removed, counted in warnings naming the ids', async () => {
    const head = Buffer.from(TEST_HEADER + '\n');
    const body = Buffer.concat([
      Buffer.from('7,"[""caf'),
      Buffer.from([0xe9]),
      Buffer.from('""]",'),
      Buffer.from(`${list('a\u0000b')},${list('b')}\n`),
    ]);
    const r = await readRows(fixture(Buffer.concat([head, body])));
    assert.deepEqual(r.rows[0].prompt, ['caf\uFFFD']);
    assert.deepEqual(r.rows[0].responseA, ['ab']);
    const w = r.warnings.join('\n');
    assert.match(w, /1 invalid UTF-8 byte\(s\) in 1 row\(s\) replaced with U\+FFFD \(ids 7\)/);
    assert.match(w, /1 NUL character\(s\) in 1 row\(s\) removed \(ids 7\)/);
  });

  it('defect 7, test CSV with empty label columns: a test file (hasLabels false), not a broken labelled file', async () => {
    const lines = [
      TRAIN_HEADER,
      trainLine('1', list('p'), list('a'), list('b'), ',,'),
      trainLine('2', list('p'), list('a'), list('b'), ',,'),
    ];
    const f = fixture(lines.join('\n'));
    const r = await readRows(f);
    assert.equal(r.hasLabels, false);
    assert.equal(r.rows.length, 2);
    assert.ok(r.rows.every((x) => x.label === undefined));
    await rejectsRows(readRows(f, { requireLabels: true }), f, 'empty in every row', 'test file');
    const w = fixture(['id,prompt,response_a,response_b,winner', 'w1,a,b,c,', 'w2,a,b,c,'].join('\n'));
    assert.equal((await readRows(w)).hasLabels, false);
    // Some rows labelled and some not is a broken file: the unlabelled lines are named.
    const mixed = fixture(
      [
        TRAIN_HEADER,
        trainLine('1', list('p'), list('a'), list('b')),
        trainLine('2', list('p'), list('a'), list('b'), ',,'),
      ].join('\n'),
    );
    await rejectsRows(readRows(mixed), '1 row(s) have empty label column(s)', 'lines 3');
  });

  it('a row with too many or too few cells, and a quote that never closes, name the line', async () => {
    const more = fixture(
      [TEST_HEADER, `1,${list('p')},${list('a')},${list('b')}`, `2,${list('p')},${list('a')},${list('b')},extra`].join(
        '\n',
      ),
    );
    await rejectsRows(readRows(more), more, 'line 3', '5 cells but the header has 4');
    const fewer = fixture([TEST_HEADER, `1,${list('p')},${list('a')}`].join('\n'));
    await rejectsRows(readRows(fewer), 'line 2', '3 cells');
    const open = fixture(
      [TEST_HEADER, `1,${list('p')},${list('a')},${list('b')}`, `2,"[""p""]",${list('a')},"[""b`, `3,x,y,z`].join('\n'),
    );
    await rejectsRows(readRows(open), open, 'physical line 3', 'never closes');
  });
});
