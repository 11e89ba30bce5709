// Issue 9, runner side, end to end through the built bundles with the PEAKED model (the gemma2-tiny
// fixture + adapter: probabilities far from uniform, so a column, calibration or TTA mix-up shows).
// Each `it` names the defect it guards; each failed on the runner before the fix (see the report).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { format, parse } from 'fast-csv';
import { makePeakedModel, maxDiff, node, ok, ROOT, RUNNER, submissionProbs, TRAINER } from './helpers/peaked';

const DEMO = join(ROOT, 'demo', 'arena-demo.csv');
const DATA = join(ROOT, '..', 'shared', 'data', 'arena-sample-999.csv');

/** The CSV with responses A and B (and their labels) exchanged: what a swapped pass shows the model. */
function swapCsv(src: string, out: string): Promise<void> {
  const swap: Record<string, string> = {
    model_a: 'model_b',
    model_b: 'model_a',
    response_a: 'response_b',
    response_b: 'response_a',
    winner_model_a: 'winner_model_b',
    winner_model_b: 'winner_model_a',
  };
  return new Promise((resolve, reject) => {
    const rows: Record<string, string>[] = [];
    let headers: string[] = [];
    createReadStream(src)
      .pipe(parse({ headers: true }))
      .on('headers', (h: string[]) => (headers = h))
      .on('data', (r: Record<string, string>) =>
        rows.push(Object.fromEntries(headers.map((h) => [h, r[swap[h] ?? h]]))),
      )
      .on('error', reject)
      .on('end', () => {
        const chunks: string[] = [];
        const f = format({ headers, quoteColumns: true });
        f.on('data', (c: Buffer) => chunks.push(c.toString()));
        f.on('end', () => (writeFileSync(out, chunks.join('') + '\n'), resolve()));
        for (const r of rows) f.write(r);
        f.end();
      });
  });
}

const manifestOf = (dir: string) => JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
const editManifest = (dir: string, edit: (m: any) => void) => {
  const m = manifestOf(dir);
  edit(m);
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(m, null, 2));
};
const flip = (p: number[][]) => p.map((r) => [r[1], r[0], r[2]]);
/** A scored row printed by the progress line: any means inference started. */
const SCORED = /predict: \d+\/\d+ rows/;
const STACK = /\n\s+at [^\n]+:\d+:\d+/;

/** A strong asymmetric calibration (B boosted, tie cut): applying it in the wrong frame changes the TTA result by far more than 1e-6. */
const VECTOR_CAL = {
  method: 'vector',
  params: { temperature: 0.7, bias: [0, 1.5, -0.5] },
  fittedOn: { rows: 48, requested: 'vector', logLossBefore: 1, logLossAfter: 1, frame: 'scored', tta: 'none' },
};

describe('issue 9 runner defects (built bundles, peaked gemma2-tiny model)', function () {
  this.timeout(900_000);
  let tmp: string;
  let peaked: string;
  let feat: string;
  let demoSwapped: string;
  let n = 0;
  const copy = (dir: string) => {
    const out = join(tmp, `copy${n++}`);
    cpSync(dir, out, { recursive: true });
    return out;
  };
  const predict = (weights: string, data: string, extra: string[] = []) => {
    const out = join(tmp, `p${n++}.csv`);
    const r = ok(RUNNER, ['predict', '--data', data, '--weights', weights, '--out', out, '--ep', 'cpu', ...extra]);
    return {
      out,
      probs: submissionProbs(out),
      summary: JSON.parse(r.stdout.trim().split('\n').pop()!),
      stderr: r.stderr,
    };
  };

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-defects-'));
    peaked = makePeakedModel(tmp, 'peaked');
    feat = join(tmp, 'feat');
    ok(TRAINER, ['features', '--data', DATA, '--out', feat, '--folds', '2']);
    demoSwapped = join(tmp, 'demo-swapped.csv');
    await swapCsv(DEMO, demoSwapped);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('the peaked model is far from uniform (so the checks below can see mix-ups)', () => {
    const p = predict(peaked, DEMO).probs;
    const meanMax = p.reduce((s, r) => s + Math.max(...r), 0) / p.length;
    const spreadA = Math.max(...p.map((r) => r[0])) - Math.min(...p.map((r) => r[0]));
    console.log(
      `      mean largest probability ${meanMax.toFixed(3)} (uniform 0.333); P(A) spread ${spreadA.toFixed(3)}`,
    );
    assert.ok(meanMax > 0.8 && spreadA > 0.05);
  });

  it('defect 2: a checkpoint whose id2label is {0: winner_tie, 1: winner_model_a, 2: winner_model_b} gives the identical submission', () => {
    const perm = makePeakedModel(tmp, 'perm', { permuteLabels: true });
    assert.deepEqual(manifestOf(perm).labels, ['winner_tie', 'winner_model_a', 'winner_model_b']);
    const a = predict(peaked, DEMO, ['--tta', 'swap']).probs;
    const b = predict(perm, DEMO, ['--tta', 'swap']).probs;
    const d = maxDiff(a, b);
    console.log(`      permuted-label checkpoint vs original: max abs diff ${d.toExponential(2)} (tol 1e-6)`);
    assert.ok(d < 1e-6);
  });

  for (const kind of ['neural', 'features'] as const) {
    it(`defect 3: ${kind} model: each pass calibrated in the frame it was scored in, then flipped and merged`, () => {
      const dir = copy(kind === 'neural' ? peaked : feat);
      editManifest(dir, (m) => (m.calibration = VECTOR_CAL));
      const tta = predict(dir, DEMO, ['--tta', 'swap']).probs;
      const first = predict(dir, DEMO, ['--tta', 'none']).probs;
      const swapped = flip(predict(dir, demoSwapped, ['--tta', 'none']).probs);
      const expected = first.map((r, i) => r.map((x, c) => (x + swapped[i][c]) / 2));
      const d = maxDiff(tta, expected);
      const uncal = maxDiff(tta, predict(dir, DEMO, ['--tta', 'swap', '--no-calibration']).probs);
      console.log(
        `      ${kind}: swap TTA vs mean(cal(first), flip(cal(swapped input))): max abs diff ${d.toExponential(2)} (tol 1e-6); calibration moves it by ${uncal.toFixed(3)}`,
      );
      assert.ok(uncal > 0.01, 'the calibration must matter for this check to mean anything');
      assert.ok(d < 1e-6);
    });
  }

  it('defect 3: validate --predictions-out writes the uncalibrated single pass calibrate fits on, and calibrate records it', () => {
    const dir = copy(peaked);
    editManifest(dir, (m) => (m.calibration = VECTOR_CAL));
    const pout = join(tmp, 'val-pred.csv');
    ok(RUNNER, ['validate', '--data', DEMO, '--weights', dir, '--ep', 'cpu', '--predictions-out', pout]);
    const single = predict(dir, DEMO, ['--tta', 'none', '--no-calibration']).probs;
    const d = maxDiff(submissionProbs(pout), single);
    console.log(
      `      validate --predictions-out vs predict --tta none --no-calibration: max abs diff ${d.toExponential(2)} (tol 1e-6)`,
    );
    assert.ok(d < 1e-6);
    ok(RUNNER, [
      'calibrate',
      '--predictions',
      pout,
      '--labels',
      DEMO,
      '--method',
      'temperature',
      '--out',
      join(tmp, 'cal.json'),
      '--weights',
      dir,
    ]);
    const fitted = manifestOf(dir).calibration.fittedOn;
    assert.equal(fitted.frame, 'scored');
    assert.equal(fitted.tta, 'none');
    predict(dir, DEMO, ['--tta', 'swap']);
  });

  it('defect 3: a calibration fitted on swap-TTA merged predictions is refused before any row is scored', () => {
    const dir = copy(peaked);
    editManifest(dir, (m) => (m.calibration = { ...VECTOR_CAL, fittedOn: { ...VECTOR_CAL.fittedOn, tta: 'swap' } }));
    const r = node(RUNNER, [
      'predict',
      '--data',
      DEMO,
      '--weights',
      dir,
      '--out',
      join(tmp, 'x.csv'),
      '--ep',
      'cpu',
      '--tta',
      'swap',
    ]);
    console.log(`      ${r.stderr.trim().split('\n').pop()}`);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /swap-TTA merged/);
    assert.doesNotMatch(r.stderr, SCORED);
  });

  it('defect 4: calibrate --predictions P1 --predictions P2 --weights DIR is refused and leaves the manifest as it was', () => {
    const dir = copy(peaked);
    const p1 = join(tmp, 'p1.csv');
    const p2 = join(tmp, 'p2.csv');
    ok(RUNNER, ['validate', '--data', DEMO, '--weights', dir, '--ep', 'cpu', '--predictions-out', p1]);
    ok(RUNNER, ['validate', '--data', DEMO, '--weights', feat, '--ep', 'cpu', '--predictions-out', p2]);
    const before = readFileSync(join(dir, 'manifest.json'), 'utf8');
    const r = node(RUNNER, [
      'calibrate',
      '--predictions',
      p1,
      '--predictions',
      p2,
      '--labels',
      DEMO,
      '--out',
      join(tmp, 'blend.json'),
      '--weights',
      dir,
    ]);
    console.log(`      ${r.stderr.trim().split('\n').pop()}`);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /blend/);
    assert.equal(readFileSync(join(dir, 'manifest.json'), 'utf8'), before);
  });

  it('defect 4: a stored blend calibration, or one without parameters, fails when the model is opened, before any row is scored', () => {
    for (const [cal, says] of [
      [{ ...VECTOR_CAL, blend: { weights: [0.5, 0.5] } }, /blend/],
      [{ method: 'temperature', fittedOn: VECTOR_CAL.fittedOn }, /no parameters/],
    ] as const) {
      const dir = copy(peaked);
      editManifest(dir, (m) => (m.calibration = cal));
      const r = node(RUNNER, ['predict', '--data', DEMO, '--weights', dir, '--out', join(tmp, 'x.csv'), '--ep', 'cpu']);
      console.log(`      ${r.stderr.trim().split('\n').pop()}`);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, says);
      assert.doesNotMatch(r.stderr, SCORED);
      assert.doesNotMatch(r.stderr, STACK);
    }
  });

  it('defect 5: predict --tta swap-uncertain:0.3 --devices 0,1 --ep cpu equals the single-process result exactly', () => {
    const one = predict(peaked, DATA, ['--tta', 'swap-uncertain:0.3']);
    const two = predict(peaked, DATA, ['--tta', 'swap-uncertain:0.3', '--devices', '0,1']);
    const same = readFileSync(one.out, 'utf8') === readFileSync(two.out, 'utf8');
    console.log(
      `      999 rows, swapped ${one.summary.swapped_rows} / ${two.summary.swapped_rows}; max abs diff ${maxDiff(one.probs, two.probs).toExponential(2)}; byte-identical: ${same}`,
    );
    assert.equal(two.summary.swapped_rows, Math.round(0.3 * 999));
    assert.ok(same);
  });

  it('defect 6: calibrate --weights keeps the logits cache (keyed on the graph, not the manifest text)', () => {
    const dir = copy(peaked);
    const cache = join(tmp, 'cache6');
    const ref = predict(dir, DEMO, ['--cache', cache]);
    const p = join(tmp, 'p6.csv');
    ok(RUNNER, ['validate', '--data', DEMO, '--weights', dir, '--ep', 'cpu', '--predictions-out', p]);
    ok(RUNNER, [
      'calibrate',
      '--predictions',
      p,
      '--labels',
      DEMO,
      '--method',
      'temperature',
      '--out',
      join(tmp, 'c6.json'),
      '--weights',
      dir,
    ]);
    const again = predict(dir, DEMO, ['--cache', cache, '--no-calibration']);
    const reused = Number(/predict: (\d+) rows taken from the logits cache/.exec(again.stderr)?.[1] ?? 0);
    console.log(`      after calibrate --weights: ${reused}/48 rows from the cache`);
    assert.equal(reused, 48);
    assert.ok(maxDiff(ref.probs, again.probs) < 1e-9);
  });

  it('defect 6: an edited cache line is not reused; that row is scored again', () => {
    const dir = copy(peaked);
    const cache = join(tmp, 'cache6b');
    const ref = readFileSync(predict(dir, DEMO, ['--cache', cache]).out, 'utf8');
    const file = join(cache, readdirSync(cache)[0]);
    const lines = readFileSync(file, 'utf8').split('\n');
    const parts = lines[0].split('\t');
    parts[1] = (parts[1][0] === 'A' ? 'B' : 'A') + parts[1].slice(1);
    lines[0] = parts.join('\t');
    writeFileSync(file, lines.join('\n'));
    const again = predict(dir, DEMO, ['--cache', cache]);
    // The edited row's whole batch is scored again (a resumed run scores the batches an uninterrupted one would).
    const reused = Number(/predict: (\d+) rows taken from the logits cache/.exec(again.stderr)?.[1] ?? -1);
    assert.ok(reused >= 1 && reused <= 47, `reused ${reused}`);
    assert.match(again.stderr, /1 line\(s\) cut short or corrupted/);
    assert.equal(readFileSync(again.out, 'utf8'), ref);
  });

  it('defect 7: a cache write failure (file size limit) stops the run with a clear message; no row becomes uniform', () => {
    const out = join(tmp, 'efbig.csv');
    const args = [
      RUNNER,
      'predict',
      '--data',
      DATA,
      '--weights',
      peaked,
      '--out',
      out,
      '--ep',
      'cpu',
      '--cache',
      join(tmp, 'cache7'),
    ];
    const r = spawnSync('bash', ['-c', 'ulimit -f 16; exec "$@"', 'bash', process.execPath, ...args], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    console.log(`      ${r.stderr.trim().split('\n').pop()}`);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--cache .* cannot be written/);
    assert.doesNotMatch(r.stderr, /uniform prediction/);
    assert.ok(!existsSync(out));
  });

  it('defect 7: non-finite logits count as failed rows, and the run fails when every row is non-finite', () => {
    const dir = copy(peaked);
    const data = manifestOf(dir).graphs.cpu.externalData[0];
    writeFileSync(join(dir, data), Buffer.alloc(readFileSync(join(dir, data)).length, 0xff));
    const r = node(RUNNER, ['predict', '--data', DEMO, '--weights', dir, '--out', join(tmp, 'nan.csv'), '--ep', 'cpu']);
    console.log(
      `      ${r.stderr
        .trim()
        .split('\n')
        .filter((l) => /non-finite|every row/.test(l))
        .join(' | ')}`,
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /48 row\(s\) got non-finite logits/);
    assert.match(r.stderr, /every row failed/);
    assert.ok(!existsSync(join(tmp, 'nan.csv')));
  });

  it('defect 7: --out equal to --data is refused and the input is untouched', () => {
    const input = join(tmp, 'in.csv');
    copyFileSync(DEMO, input);
    const r = node(RUNNER, ['predict', '--data', input, '--weights', peaked, '--out', input, '--ep', 'cpu']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /is the input --data file/);
    assert.equal(readFileSync(input, 'utf8'), readFileSync(DEMO, 'utf8'));
  });

  it('defect 7: an unusable --out (a directory, a parent that is a file) fails before any row is scored, naming the path', () => {
    const file = join(tmp, 'plain-file');
    writeFileSync(file, 'x');
    for (const out of [tmp, join(file, 'sub.csv')]) {
      const r = node(RUNNER, ['predict', '--data', DEMO, '--weights', peaked, '--out', out, '--ep', 'cpu']);
      console.log(`      ${r.stderr.trim().split('\n').pop()}`);
      assert.notEqual(r.status, 0);
      assert.ok(r.stderr.includes(out) || r.stderr.includes(file), r.stderr);
      assert.doesNotMatch(r.stderr, SCORED);
      assert.doesNotMatch(r.stderr, STACK);
    }
  });

  it('defect 7: SIGTERM to a --devices run kills the workers and removes the temporary row files', async () => {
    const tdir = join(tmp, 'tmpdir');
    mkdirSync(tdir);
    const child = spawn(
      process.execPath,
      [
        RUNNER,
        'predict',
        '--data',
        DATA,
        '--weights',
        peaked,
        '--out',
        join(tmp, 'term.csv'),
        '--ep',
        'cpu',
        '--devices',
        '0,1',
      ],
      {
        env: { ...process.env, TMPDIR: tdir, ARENAKIT_PROGRESS_MS: '0' },
      },
    );
    let text = '';
    // Workers are running once the run prints inference progress and has two child processes.
    const workers = await new Promise<number[]>((resolve, reject) => {
      child.on('exit', () => reject(new Error(`predict ended before it could be stopped:\n${text}`)));
      child.stderr.on('data', (d: Buffer) => {
        text += d.toString();
        if (!/\d+\/\d+ rows \(/.test(text)) return;
        const pids = spawnSync('ps', ['-o', 'pid=', '--ppid', String(child.pid)], { encoding: 'utf8' })
          .stdout.split('\n')
          .map(Number)
          .filter((x) => x > 0);
        if (pids.length >= 2) resolve(pids);
      });
    });
    assert.ok(workers.length >= 2, `workers ${workers}`);
    assert.ok(
      readdirSync(tdir).some((f) => f.startsWith('arenakit-shards-')),
      'the run keeps its rows in a temporary folder',
    );
    child.kill('SIGTERM');
    const code = await new Promise((resolve) => child.on('exit', resolve));
    await new Promise((r) => setTimeout(r, 500));
    // Running = its /proc entry exists and it is not a zombie (a killed orphan may wait for a reaper).
    const alive = workers.filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
      } catch {
        return false;
      }
    });
    const left = readdirSync(tdir).filter((f) => f.startsWith('arenakit-'));
    console.log(
      `      exit ${code}; workers ${workers.join(', ')} running after SIGTERM: [${alive.join(', ')}]; arenakit temp left: [${left.join(', ')}]`,
    );
    assert.deepEqual(alive, []);
    assert.deepEqual(left, []);
    assert.ok(!existsSync(join(tmp, 'term.csv')));
  });

  it('defect 7: clear messages, no stack traces, for broken weights directories and --cache on a file', () => {
    const cases: [string, (dir: string) => string[] | void, RegExp][] = [
      // (run as root here, so "unreadable" is a directory in the file's place)
      [
        'tokenizer.json unreadable',
        (d) => (rmSync(join(d, 'tokenizer.json')), mkdirSync(join(d, 'tokenizer.json'))),
        /tokenizer\.json (is 4096 bytes|.*cannot be read)/,
      ],
      [
        'corrupt .onnx',
        (d) =>
          writeFileSync(join(d, 'model.cpu.onnx'), Buffer.alloc(readFileSync(join(d, 'model.cpu.onnx')).length, 7)),
        /model\.cpu\.onnx: ONNX Runtime .*cannot load/,
      ],
      [
        'graph file missing',
        (d) => (editManifest(d, (m) => delete m.files['model.cpu.onnx']), rmSync(join(d, 'model.cpu.onnx'))),
        /missing graph file model\.cpu\.onnx/,
      ],
      [
        'manifest.json unreadable',
        (d) => (rmSync(join(d, 'manifest.json')), mkdirSync(join(d, 'manifest.json'))),
        /manifest\.json: cannot be read/,
      ],
      ['--cache on a file', () => ['--cache', DEMO], /--cache .*(cannot be written|must be a folder)/],
    ];
    for (const [what, make, says] of cases) {
      const dir = copy(peaked);
      const extra = make(dir) ?? [];
      const r = node(RUNNER, [
        'predict',
        '--data',
        DEMO,
        '--weights',
        dir,
        '--out',
        join(tmp, 'x.csv'),
        '--ep',
        'cpu',
        ...extra,
      ]);
      console.log(`      ${what}: ${r.stderr.trim().split('\n').pop()}`);
      assert.notEqual(r.status, 0, what);
      assert.match(r.stderr, says, what);
      assert.doesNotMatch(r.stderr, STACK, what);
    }
  });

  it('defect 7: calibrate refuses bad options and bad files with a message (no stack, no silent acceptance)', () => {
    const preds = join(tmp, 'good-pred.csv');
    ok(RUNNER, ['validate', '--data', DEMO, '--weights', peaked, '--ep', 'cpu', '--predictions-out', preds]);
    const lines = readFileSync(preds, 'utf8').trim().split('\n');
    const put = (name: string, text: string) => (writeFileSync(join(tmp, name), text), join(tmp, name));
    const dup = put('dup.csv', [...lines, lines[1]].join('\n') + '\n');
    const blank = put('blank.csv', [lines[0], lines[1].replace(/,[^,]*$/, ','), ...lines.slice(2)].join('\n') + '\n');
    const demo = readFileSync(DEMO, 'utf8').trim().split('\n');
    const badLabels = put(
      'badlab.csv',
      [demo[0], demo[1].replace(/,0,1,0$/, ',1,-1,1'), ...demo.slice(2)].join('\n') + '\n',
    );
    assert.notEqual(readFileSync(badLabels, 'utf8'), readFileSync(DEMO, 'utf8'));
    const out = join(tmp, 'c.json');
    const cases: [string, string[], RegExp][] = [
      ['--bogus', ['--bogus'], /bogus/],
      [
        '--apply missing.json',
        ['--apply', join(tmp, 'missing.json'), '--predictions', preds, '--out', join(tmp, 'q.csv')],
        /missing\.json: cannot be read/,
      ],
      ['duplicate ids', ['--predictions', dup, '--labels', DEMO, '--out', out], /already appeared/],
      ['empty probability cell', ['--predictions', blank, '--labels', DEMO, '--out', out], /not valid/],
      ['labels [1,-1,1]', ['--predictions', preds, '--labels', badLabels, '--out', out], /not one-hot/],
      [
        '--folds abc',
        ['--predictions', preds, '--labels', DEMO, '--out', out, '--folds', 'abc'],
        /--folds must be an integer/,
      ],
    ];
    for (const [what, args, says] of cases) {
      const r = node(RUNNER, ['calibrate', ...args]);
      console.log(`      ${what}: ${r.stderr.trim().split('\n')[0]}`);
      assert.notEqual(r.status, 0, `${what}: accepted\n${r.stdout}`);
      assert.match(r.stderr, says, what);
      assert.doesNotMatch(r.stderr, STACK, what);
    }
  });

  it('defect 7: a manifest maxTokens too small for the template gives one warning, not one per row, and names the trainer flag', () => {
    const dir = copy(peaked);
    editManifest(dir, (m) => (m.maxTokens = 16));
    const r = node(RUNNER, ['predict', '--data', DEMO, '--weights', dir, '--out', join(tmp, 'mt.csv'), '--ep', 'cpu']);
    const warnings = r.stderr.split('\n').filter((l) => /could not be encoded/.test(l));
    console.log(`      ${warnings.length} warning line(s): ${warnings[0]?.slice(0, 200)}`);
    assert.notEqual(r.status, 0);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /trainer\.cjs import --max-tokens/);
    assert.doesNotMatch(r.stderr, /Check --max-tokens/);
  });
});
