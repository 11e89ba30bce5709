// Issue 9, runner side, in process: the label-order map, the per-pass TTA rule on the one model
// interface, the logits cache (NaN round trip, checksums), the tie fit on failed rows, and how a pass
// treats cache errors and non-finite logits. Tests name the defect they guard.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import type { ArenaRow } from '../src/types';
import { labelColumns, passProbs, type ModelSpec } from '../src/infer/model';
import { predictModel, type PassRunner } from '../src/infer/tta';
import type { PassResult } from '../src/infer/pass';
import { runPass } from '../src/infer/pass';
import { CacheError, openLogitsCache } from '../src/infer/logits-cache';
import { fitTieModel, TieError } from '../src/post/tie';
import { applyCalibration, fitCalibration, type Calibration } from '../src/post/calibrate';
import type { Manifest } from '../src/weights/manifest';
import { softmaxRows } from '../src/util/probs';
import { TASKS } from '../src/task/task';

const rowsOf = (n: number): ArenaRow[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `r${i}`,
    line: i + 2,
    prompt: [`p${i}`],
    responseA: ['a'.repeat(i + 1)],
    responseB: ['b'.repeat(2 * i + 1)],
  }));

function spec(kind: 'neural' | 'features', labels: string[], calibration?: Calibration): ModelSpec {
  const manifest = { kind, labels } as unknown as Manifest;
  return { dir: kind, manifest, task: TASKS.lmsys, ...labelColumns(labels, kind, TASKS.lmsys), calibration };
}

/** A PassRunner over fixed logits: first pass `first`, swapped pass `swapped` (both [n*3] in the spec's label order). */
function fixedRunner(first: Float64Array, swapped: Float64Array, k = 3): PassRunner {
  const pick = (src: Float64Array, rows: number[]): PassResult => {
    const logits = new Float64Array(rows.length * k);
    rows.forEach((r, j) => logits.set(src.subarray(r * k, r * k + k), j * k));
    const failedRows = rows.map((_, j) => j).filter((j) => !Number.isFinite(logits[j * k]));
    return { logits, numLabels: k, tokens: 0, computedTokens: 0, seconds: 0, failedRows };
  };
  return {
    pass: async (_m, rows, swap) => pick(swap ? swapped : first, rows),
    release: async () => {},
    ep: () => 'cpu',
    info: () => undefined,
  };
}

function randomLogits(n: number, seed: number): Float64Array {
  let s = seed;
  const r = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 8;
  return Float64Array.from({ length: n * 3 }, r);
}

describe('issue 9 runner units', () => {
  it('defect 2: label names map logits to the task columns; unknown names are refused naming the labels', () => {
    assert.deepEqual(
      labelColumns(['winner_tie', 'winner_model_a', 'winner_model_b'], 'm', TASKS.lmsys).columns,
      [1, 2, 0],
    );
    const logits = Float64Array.of(3, 1, 0); // tie, A, B
    const p = passProbs(spec('neural', ['winner_tie', 'winner_model_a', 'winner_model_b']), logits, 1);
    const ref = softmaxRows([1, 0, 3], 1, 3);
    assert.deepEqual([...p], [...ref]);
    assert.throws(
      () => labelColumns(['LABEL_0', 'LABEL_1', 'LABEL_2'], 'w/manifest.json', TASKS.lmsys),
      (e: Error) => /w\/manifest\.json/.test(e.message) && /LABEL_0/.test(e.message),
    );
    assert.throws(
      () => labelColumns(['winner_model_a', 'winner_model_b'], 'w/manifest.json', TASKS.lmsys),
      /expected the three outcomes/,
    );
    assert.equal(labelColumns(['score'], 'w', TASKS.lmsys).columns, null);
  });

  it('defect 3: a neural and a feature model with the same logits give the same submission (calibration + swap TTA)', async () => {
    const n = 60;
    const rows = rowsOf(n);
    const lengths = rows.map((r) => r.prompt[0].length + r.responseA[0].length + r.responseB[0].length);
    const first = randomLogits(n, 1);
    const swapped = randomLogits(n, 2);
    const labels = Uint8Array.from({ length: n }, (_, i) => i % 3);
    const cal = fitCalibration(softmaxRows(first, n, 3), labels, { method: 'vector', labels: TASKS.lmsys.labels });
    const LABELS = ['winner_model_a', 'winner_model_b', 'winner_tie'];
    for (const tta of [{ kind: 'swap' as const }, { kind: 'swap-uncertain' as const, fraction: 0.4 }]) {
      const a = await predictModel(0, spec('neural', LABELS, cal), rows, lengths, tta, fixedRunner(first, swapped));
      const b = await predictModel(0, spec('features', LABELS, cal), rows, lengths, tta, fixedRunner(first, swapped));
      assert.deepEqual([...a.probs], [...b.probs]);
      assert.deepEqual(a.swappedRows, b.swappedRows);
      // The rule itself: calibrate each pass in its own frame, flip the swapped one, average.
      const cf = applyCalibration(cal, softmaxRows(first, n, 3), lengths);
      const cs = applyCalibration(cal, softmaxRows(swapped, n, 3), lengths);
      const swappedSet = new Set(a.swappedRows);
      let d = 0;
      for (let i = 0; i < n; i++) {
        const exp = swappedSet.has(i)
          ? [0, 1, 2].map((c) => (cf[i * 3 + c] + cs[i * 3 + [1, 0, 2][c]]) / 2)
          : [0, 1, 2].map((c) => cf[i * 3 + c]);
        for (let c = 0; c < 3; c++) d = Math.max(d, Math.abs(a.probs[i * 3 + c] - exp[c]));
      }
      console.log(
        `      ${tta.kind}: neural == features exactly; vs the rule computed by hand: max abs diff ${d.toExponential(2)} (tol 1e-12)`,
      );
      assert.ok(d < 1e-12);
    }
  });

  it('defect 6: a row failing the first pass but succeeding the swapped pass uses the swapped pass; failing both gives uniform', async () => {
    const n = 4;
    const first = randomLogits(n, 3);
    const swapped = randomLogits(n, 4);
    first.fill(NaN, 0, 3); // row 0: first pass failed
    first.fill(NaN, 3, 6); // row 1: both failed
    swapped.fill(NaN, 3, 6);
    const r = await predictModel(
      0,
      spec('neural', ['winner_model_a', 'winner_model_b', 'winner_tie']),
      rowsOf(n),
      [1, 1, 1, 1],
      { kind: 'swap' },
      fixedRunner(first, swapped),
    );
    const sw = softmaxRows(swapped.subarray(0, 3), 1, 3);
    assert.deepEqual([...r.probs.subarray(0, 3)], [sw[1], sw[0], sw[2]]);
    assert.deepEqual([...r.probs.subarray(3, 6)], [1 / 3, 1 / 3, 1 / 3]);
    assert.deepEqual(r.failedRows, [1]);
  });

  it('defect 6: NaN and Inf logits round-trip through the cache (not 0)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'arenakit-cache-'));
    try {
      const ids = Int32Array.of(5, 6, 7);
      const c1 = openLogitsCache(dir, 'model-x');
      c1.put([{ ids, logits: Float32Array.of(NaN, Infinity, -1.5) }]);
      const got = openLogitsCache(dir, 'model-x').get(ids);
      console.log(`      reopened cache: [${got ? [...got].join(', ') : 'missing'}] (wrote [NaN, Infinity, -1.5])`);
      assert.ok(got && Number.isNaN(got[0]) && got[1] === Infinity && got[2] === -1.5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('defect 6: the tie fit leaves out rows with NaN scores (failed rows) and refuses when too few remain', () => {
    const n = 400;
    const scores = new Float64Array(n);
    const labels = new Uint8Array(n);
    let s = 7;
    const u = () => (s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32;
    for (let i = 0; i < n; i++) {
      scores[i] = (u() - 0.5) * 6;
      const pa = 1 / (1 + Math.exp(-2 * scores[i]));
      const v = u();
      labels[i] = v < 0.15 ? 2 : v < 0.15 + 0.85 * pa ? 0 : 1;
    }
    const clean = fitTieModel(scores, labels);
    const withNaN = Float64Array.from(scores);
    const nanLabels = Uint8Array.from(labels);
    const extra = 40;
    const bigScores = new Float64Array(n + extra).fill(NaN);
    bigScores.set(withNaN);
    const bigLabels = new Uint8Array(n + extra);
    bigLabels.set(nanLabels);
    const fit = fitTieModel(bigScores, bigLabels);
    console.log(
      `      davidson on ${n} rows: scale ${clean.params.scale.toFixed(4)}; with ${extra} NaN rows added: scale ${fit.params.scale.toFixed(4)}`,
    );
    assert.deepEqual(fit.params, clean.params);
    assert.ok(fit.params.scale > 1.5, 'the fit moved away from its starting point (scale 1) towards the true 2');
    assert.throws(
      () => fitTieModel(Float64Array.of(1, NaN, NaN, 2), Uint8Array.of(0, 1, 2, 0)),
      (e: Error) => e instanceof TieError && /only 2 of 4 rows/.test(e.message),
    );
  });

  describe('defect 7: a pass with a failing cache or non-finite logits', () => {
    const rows = rowsOf(6);
    /** A session returning logits [i, -i, 0] for a row whose first id is i, NaN for ids in `nanIds`. */
    const session = (nanIds: number[] = []) =>
      ({
        run: async (feeds: Record<string, ort.Tensor>) => {
          const [n, L] = feeds.input_ids.dims as number[];
          const ids = feeds.input_ids.data as BigInt64Array;
          const out = new Float32Array(n * 3);
          for (let b = 0; b < n; b++) {
            const id = Number(ids[b * L]);
            out.set(nanIds.includes(id) ? [NaN, NaN, NaN] : [id, -id, 0], b * 3);
          }
          return { logits: { data: out, dispose() {} } };
        },
      }) as unknown as ort.InferenceSession;
    const base = (warn: (m: string) => void) => ({
      tokenBudget: 4,
      swap: false,
      label: 'test',
      warn,
      numLabels: 3,
      padId: 0,
      dir: 'w',
      encode: (row: ArenaRow) => Int32Array.of(Number(row.id.slice(1)) + 1, 9),
    });

    it('a cache write failure stops the pass with CacheError; no row becomes a failed (uniform) row', async () => {
      const warnings: string[] = [];
      const cache = {
        file: 'c',
        size: 0,
        corrupted: 0,
        get: () => undefined,
        put: () => {
          throw new CacheError('--cache c: cannot be written (no space left on device (ENOSPC))');
        },
      };
      await assert.rejects(
        runPass(session(), rows, { ...base((m) => warnings.push(m)), cache }),
        (e: Error) => e instanceof CacheError && /ENOSPC/.test(e.message),
      );
      assert.deepEqual(warnings, []);
    });

    it('non-finite logits make failed rows with one warning naming them', async () => {
      const warnings: string[] = [];
      const r = await runPass(
        session([2, 4]),
        rows,
        base((m) => warnings.push(m)),
      );
      assert.deepEqual(r.failedRows, [1, 3]);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0], /2 row\(s\) got non-finite logits.*r1 \(line 3\), r3 \(line 5\)/);
      assert.ok(Number.isNaN(r.logits[3]) && r.logits[0] === 1);
    });
  });
});
