// Calibration fits against brute-force grid searches on generated data, auto's held-out guarantee,
// the tie models, blends and the calibrate CLI round trip.
import { TASKS } from '../src/task/task';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { logLoss } from '../src/metrics/metrics';
import { applyCalibration, fitCalibration, type Calibration } from '../src/post/calibrate';
import { blendProbs, fitBlendWeights } from '../src/post/blend';
import { rng } from '../src/post/fit';
import {
  applyMethod,
  fitLengthBins,
  fitMultipliers,
  fitTemperature,
  fitVector,
  type MultiplierParams,
} from '../src/post/methods';
import { fitTieModel, scoreToProbs, tieLoss, type DavidsonParams, type RaoKupperParams } from '../src/post/tie';
import { run as calibrateCli } from '../src/cli/commands/calibrate';

interface Gen {
  probs: Float64Array;
  labels: Uint8Array;
  lengths: Float64Array;
}

/**
 * True class probabilities from random logits; labels drawn from them; the "model" reports logits
 * distorted by `sharpen` (1 = calibrated), a per-class bias, and, when lengthEffect, a sharpening that grows with length.
 */
function generate(n: number, seed: number, sharpen = 1, bias = [0, 0, 0], lengthEffect = 0): Gen {
  const r = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-300)) * Math.cos(2 * Math.PI * r());
  const probs = new Float64Array(n * 3);
  const labels = new Uint8Array(n);
  const lengths = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const z = [gauss() * 0.8, gauss() * 0.8, gauss() * 0.4];
    const zs = Math.max(...z);
    const e = z.map((v) => Math.exp(v - zs));
    const s = e[0] + e[1] + e[2];
    const u = r();
    labels[i] = u < e[0] / s ? 0 : u < (e[0] + e[1]) / s ? 1 : 2;
    lengths[i] = Math.floor(200 + r() * 8000);
    const k = sharpen * (1 + lengthEffect * (lengths[i] / 8200 - 0.5));
    const m = z.map((v, c) => v * k + bias[c]);
    const mm = Math.max(...m);
    const q = m.map((v) => Math.exp(v - mm));
    const qs = q[0] + q[1] + q[2];
    for (let c = 0; c < 3; c++) probs[i * 3 + c] = q[c] / qs;
  }
  return { probs, labels, lengths };
}

function grid(lo: number, hi: number, step: number): number[] {
  const out: number[] = [];
  for (let v = lo; v <= hi + 1e-9; v += step) out.push(v);
  return out;
}

describe('calibration methods vs brute force', () => {
  it('temperature matches a fine grid over T', () => {
    const g = generate(2000, 1, 1.7);
    const fit = fitTemperature(g.probs, g.labels, 3);
    let best = { t: 1, l: Infinity };
    for (const t of grid(0.2, 3, 0.0005)) {
      const l = logLoss(applyMethod('temperature', { temperature: t }, g.probs, 3), g.labels, 3);
      if (l < best.l) best = { t, l };
    }
    const lf = logLoss(applyMethod('temperature', fit, g.probs, 3), g.labels, 3);
    console.log(
      `    T fit ${fit.temperature.toFixed(5)} grid ${best.t.toFixed(5)}; loss fit ${lf.toFixed(8)} grid ${best.l.toFixed(8)} (diff ${(lf - best.l).toExponential(2)}, tol 1e-9)`,
    );
    assert.ok(lf <= best.l + 1e-9);
    assert.ok(Math.abs(fit.temperature - best.t) < 2e-3);
    assert.ok(fit.temperature > 1.4, 'overconfident predictions need T > 1');
  });

  it('vector scaling matches a 3-D grid', () => {
    const g = generate(400, 2, 0.6, [0, 0.3, -0.4]);
    const fit = fitVector(g.probs, g.labels, 3);
    const lf = logLoss(applyMethod('vector', fit, g.probs, 3), g.labels, 3);
    let best = { l: Infinity, p: [0, 0, 0] };
    for (const a of grid(0.8, 2.6, 0.05))
      for (const b1 of grid(-1, 1, 0.05))
        for (const b2 of grid(-0.5, 1.5, 0.05)) {
          const l = logLoss(applyMethod('vector', { temperature: 1 / a, bias: [0, b1, b2] }, g.probs, 3), g.labels, 3);
          if (l < best.l) best = { l, p: [a, b1, b2] };
        }
    console.log(
      `    fit 1/T=${(1 / fit.temperature).toFixed(3)} b=[${fit.bias.map((b) => b.toFixed(3))}] loss ${lf.toFixed(7)}; grid [${best.p.map((v) => v.toFixed(2))}] loss ${best.l.toFixed(7)} (tol: fit <= grid)`,
    );
    assert.ok(lf <= best.l + 1e-9);
    assert.ok(
      Math.abs(1 / fit.temperature - best.p[0]) < 0.06 &&
        Math.abs(fit.bias[1] - best.p[1]) < 0.06 &&
        Math.abs(fit.bias[2] - best.p[2]) < 0.06,
    );
  });

  it('length bins (no shrinkage) match a per-bin grid', () => {
    const g = generate(3000, 3, 1, [0, 0, 0], 1.5);
    const fit = fitLengthBins(g.probs, g.labels, g.lengths, 3, 3, 0);
    assert.equal(fit.temperatures.length, 3);
    const bin = (l: number) => (l < fit.edges[0] ? 0 : l < fit.edges[1] ? 1 : 2);
    for (let b = 0; b < 3; b++) {
      const rows = [...g.labels.keys()].filter((i) => bin(g.lengths[i]) === b);
      const p = Float64Array.from(rows.flatMap((i) => [...g.probs.subarray(i * 3, i * 3 + 3)]));
      const y = rows.map((i) => g.labels[i]);
      let best = { t: 1, l: Infinity };
      for (const t of grid(0.3, 3, 0.001)) {
        const l = logLoss(applyMethod('temperature', { temperature: t }, p, 3), y, 3);
        if (l < best.l) best = { t, l };
      }
      console.log(`    bin ${b}: T fit ${fit.temperatures[b].toFixed(4)} grid ${best.t.toFixed(4)}`);
      assert.ok(Math.abs(fit.temperatures[b] - best.t) < 2e-3);
    }
    assert.ok(
      fit.temperatures[0] < fit.temperatures[2],
      'longer rows were made overconfident, so their temperature is higher',
    );
  });

  it('multipliers match a finer brute-force grid within 1e-3', () => {
    const g = generate(600, 4, 1.3, [0, 0, -0.5]);
    const fit = fitMultipliers(g.probs, g.labels, 3);
    const lf = logLoss(applyMethod('multipliers', fit, g.probs, 3), g.labels, 3);
    let best: { l: number; p?: MultiplierParams } = { l: Infinity };
    for (const threshold of grid(0.4, 0.95, 0.025))
      for (const multiplier of grid(0.5, 1.6, 0.025))
        for (const tieMultiplier of grid(0.6, 2.2, 0.025)) {
          const l = logLoss(
            applyMethod('multipliers', { threshold, multiplier, tieMultiplier }, g.probs, 3),
            g.labels,
            3,
          );
          if (l < best.l) best = { l, p: { threshold, multiplier, tieMultiplier } };
        }
    console.log(
      `    fit ${JSON.stringify(fit)} loss ${lf.toFixed(6)}; brute ${JSON.stringify(best.p)} loss ${best.l.toFixed(6)} (diff ${(lf - best.l).toExponential(2)}, tol 1e-3)`,
    );
    assert.ok(lf <= best.l + 1e-3);
    assert.ok(fit.tieMultiplier > 1.1, 'ties were under-predicted, so the fitted tie multiplier boosts them');
  });

  it('the seeds rule (0.75, 1.125, 1.325) is reproduced exactly', () => {
    const p = applyMethod(
      'multipliers',
      { threshold: 0.75, multiplier: 1.125, tieMultiplier: 1.325 },
      Float64Array.from([0.8, 0.1, 0.1, 0.5, 0.3, 0.2]),
      3,
    );
    const z0 = 0.8 * 1.125 + 0.1 + 0.1 * 1.325;
    const z1 = 0.5 + 0.3 + 0.2 * 1.325;
    const want = [0.9 / z0, 0.1 / z0, 0.1325 / z0, 0.5 / z1, 0.3 / z1, 0.265 / z1];
    want.forEach((w, j) => assert.ok(Math.abs(p[j] - w) < 1e-12));
  });
});

describe('blend weights vs brute force', () => {
  it('two and three sets match a simplex grid', () => {
    const base = generate(1500, 5, 1);
    const a = generate(1500, 5, 2.2).probs;
    const b = generate(1500, 5, 0.5).probs;
    const c = generate(1500, 5, 1, [0, 0.8, 0]).probs;
    const w2 = fitBlendWeights([a, b], base.labels, 3);
    let best2 = { w: 0, l: Infinity };
    for (const w of grid(0, 1, 0.001)) {
      const l = logLoss(blendProbs([a, b], [w, 1 - w]), base.labels, 3);
      if (l < best2.l) best2 = { w, l };
    }
    const l2 = logLoss(blendProbs([a, b], w2), base.labels, 3);
    const w3 = fitBlendWeights([a, b, c], base.labels, 3);
    let best3 = { w: [0, 0, 0], l: Infinity };
    for (const x of grid(0, 1, 0.01))
      for (const y of grid(0, 1 - x, 0.01)) {
        const l = logLoss(blendProbs([a, b, c], [x, y, 1 - x - y]), base.labels, 3);
        if (l < best3.l) best3 = { w: [x, y, 1 - x - y], l };
      }
    const l3 = logLoss(blendProbs([a, b, c], w3), base.labels, 3);
    console.log(
      `    K=2 fit ${w2[0].toFixed(4)} grid ${best2.w.toFixed(3)} (loss diff ${(l2 - best2.l).toExponential(2)}); K=3 fit [${w3.map((v) => v.toFixed(3))}] grid [${best3.w.map((v) => v.toFixed(2))}] (loss diff ${(l3 - best3.l).toExponential(2)})`,
    );
    assert.ok(l2 <= best2.l + 1e-9 && Math.abs(w2[0] - best2.w) < 0.01);
    assert.ok(l3 <= best3.l + 1e-9);
    assert.ok(Math.abs(w3.reduce((s, v) => s + v, 0) - 1) < 1e-12);
  });
});

describe('auto calibration', () => {
  const cases: [string, number, number[], number][] = [
    ['calibrated', 1, [0, 0, 0], 0],
    ['overconfident', 1.8, [0, 0, 0], 0],
    ['underconfident', 0.5, [0, 0, 0], 0],
    ['tie-biased', 1, [0, 0, -0.6], 0],
    ['length-dependent', 1, [0, 0, 0], 1.6],
  ];
  for (const [name, sharpen, bias, lengthEffect] of cases)
    it(`held-out loss is never worse than identity by > 1e-4 (${name})`, () => {
      for (const seed of [10, 11]) {
        const fitSet = generate(3000, seed, sharpen, bias, lengthEffect);
        const test = generate(3000, seed + 100, sharpen, bias, lengthEffect);
        const cal = fitCalibration(fitSet.probs, fitSet.labels, {
          lengths: fitSet.lengths,
          labels: TASKS.lmsys.labels,
        });
        const before = logLoss(test.probs, test.labels, 3);
        const after = logLoss(applyCalibration(cal, test.probs, test.lengths), test.labels, 3);
        console.log(
          `    ${name} seed ${seed}: picked ${cal.method}; held-out ${before.toFixed(5)} -> ${after.toFixed(5)} (diff ${(after - before).toExponential(2)}, tol 1e-4)`,
        );
        assert.ok(after <= before + 1e-4);
        if (name !== 'calibrated')
          assert.notEqual(cal.method, 'identity', `${name}: a real miscalibration must be corrected`);
        // The JSON round trip gives the same probabilities.
        const again = applyCalibration(JSON.parse(JSON.stringify(cal)) as Calibration, test.probs, test.lengths);
        assert.equal(logLoss(again, test.labels, 3), after);
      }
    });

  it('blends several sets before calibrating and checks the set count on apply', () => {
    const g = generate(1500, 20, 1.5);
    const other = generate(1500, 20, 0.7).probs;
    const cal = fitCalibration([g.probs, other], g.labels, { sources: ['a.csv', 'b.csv'], labels: TASKS.lmsys.labels });
    assert.equal(cal.blend!.weights.length, 2);
    assert.throws(() => applyCalibration(cal, g.probs), /expects 2 prediction set\(s\) \(a\.csv, b\.csv\), got 1/);
    assert.ok(cal.fittedOn.logLossAfter <= Math.min(logLoss(g.probs, g.labels, 3), logLoss(other, g.labels, 3)) + 1e-9);
  });
});

describe('single-score tie models vs brute force', () => {
  function scores(n: number, seed: number, truth: DavidsonParams) {
    const r = rng(seed);
    const s = new Float64Array(n);
    const y = new Uint8Array(n);
    for (let i = 0; i < n; i++) s[i] = (r() - 0.5) * 6;
    const p = scoreToProbs({ method: 'davidson', params: truth }, s);
    for (let i = 0; i < n; i++) {
      const u = r();
      y[i] = u < p[i * 3] ? 0 : u < p[i * 3] + p[i * 3 + 1] ? 1 : 2;
    }
    return { s, y };
  }

  it('Davidson fit matches a 3-D grid and recovers the generating parameters', () => {
    const truth = { scale: 0.8, bias: 0.2, logNu: -0.3 };
    const { s, y } = scores(2000, 7, truth);
    const fit = fitTieModel(s, y, 'davidson');
    const p = fit.params as DavidsonParams;
    const lf = tieLoss('davidson', p, s, y);
    let best = { l: Infinity, x: [0, 0, 0] };
    for (const a of grid(0.4, 1.2, 0.04))
      for (const b of grid(-0.4, 0.6, 0.04))
        for (const c of grid(-1, 0.4, 0.04)) {
          const l = tieLoss('davidson', { scale: a, bias: b, logNu: c }, s, y);
          if (l < best.l) best = { l, x: [a, b, c] };
        }
    console.log(
      `    fit [${[p.scale, p.bias, p.logNu].map((v) => v.toFixed(3))}] loss ${lf.toFixed(7)}; grid [${best.x.map((v) => v.toFixed(2))}] loss ${best.l.toFixed(7)}; truth [0.8, 0.2, -0.3]`,
    );
    assert.ok(lf <= best.l + 1e-9);
    assert.ok(Math.abs(p.scale - 0.8) < 0.2 && Math.abs(p.bias - 0.2) < 0.2 && Math.abs(p.logNu + 0.3) < 0.2);
  });

  it('Rao-Kupper fit matches a 3-D grid', () => {
    const { s, y } = scores(1500, 8, { scale: 1, bias: 0, logNu: -0.2 });
    const fit = fitTieModel(s, y, 'rao-kupper');
    const p = fit.params as RaoKupperParams;
    const lf = tieLoss('rao-kupper', p, s, y);
    let best = { l: Infinity, x: [0, 0, 0] };
    for (const a of grid(0.2, 1.4, 0.04))
      for (const b of grid(-0.5, 0.5, 0.04))
        for (const c of grid(-2.5, 0.5, 0.1)) {
          const l = tieLoss('rao-kupper', { scale: a, bias: b, logEta: c }, s, y);
          if (l < best.l) best = { l, x: [a, b, c] };
        }
    console.log(
      `    fit [${[p.scale, p.bias, p.logEta].map((v) => v.toFixed(3))}] loss ${lf.toFixed(7)}; grid [${best.x.map((v) => v.toFixed(2))}] loss ${best.l.toFixed(7)} (tol 1e-6)`,
    );
    assert.ok(lf <= best.l + 1e-6);
    const probs = scoreToProbs(fit, [0, 3, -3]);
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(probs[i * 3] + probs[i * 3 + 1] + probs[i * 3 + 2] - 1) < 1e-12);
    assert.ok(probs[3] > probs[4] && probs[7] > probs[6]);
  });
});

describe('calibrate CLI', () => {
  it('fits from files, applies, and writes into a weights manifest', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'arenakit-cal-'));
    const g = generate(800, 30, 1.8);
    const ids = Array.from({ length: 800 }, (_, i) => String(1000 + i));
    const header = 'id,winner_model_a,winner_model_b,winner_tie\n';
    // Prediction file in reverse order: the CLI must align by id.
    const order = [...ids.keys()].reverse();
    writeFileSync(
      join(dir, 'p.csv'),
      header +
        order.map((i) => `${ids[i]},${g.probs[i * 3]},${g.probs[i * 3 + 1]},${g.probs[i * 3 + 2]}`).join('\n') +
        '\n',
    );
    writeFileSync(
      join(dir, 'l.csv'),
      'id,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie\n' +
        ids
          .map(
            (id, i) =>
              `${id},"[""hi""]","[""${'a'.repeat(i % 50)}""]","[""b""]",${[0, 1, 2].map((c) => (g.labels[i] === c ? 1 : 0)).join(',')}`,
          )
          .join('\n') +
        '\n',
    );
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ format: 'arenakit-weights', version: 1 }));
    await calibrateCli([
      '--predictions',
      join(dir, 'p.csv'),
      '--labels',
      join(dir, 'l.csv'),
      '--method',
      'temperature',
      '--out',
      join(dir, 'cal.json'),
      '--weights',
      dir,
    ]);
    const cal = JSON.parse(readFileSync(join(dir, 'cal.json'), 'utf8')) as Calibration;
    assert.equal(cal.method, 'temperature');
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')).calibration, cal);
    await calibrateCli([
      '--apply',
      join(dir, 'cal.json'),
      '--predictions',
      join(dir, 'p.csv'),
      '--out',
      join(dir, 'q.csv'),
    ]);
    const q = readFileSync(join(dir, 'q.csv'), 'utf8').trim().split('\n');
    assert.equal(q[0], header.trim());
    assert.equal(q.length, 801);
    const first = q[1].split(',').map(Number);
    const want = applyCalibration(cal, g.probs.slice(799 * 3, 800 * 3));
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(first[c + 1] - want[c]) < 1e-9);
    await assert.rejects(
      calibrateCli([
        '--predictions',
        join(dir, 'p.csv'),
        '--labels',
        join(dir, 'l.csv'),
        '--method',
        'bogus',
        '--out',
        join(dir, 'x.json'),
      ]),
      /unknown --method bogus/,
    );
  });
});
