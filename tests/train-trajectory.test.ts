// Optimisation against Hugging Face: replays both gemma2-train trajectories (AdamW, linear warmup
// whose first step has lr 0, 2 accumulated micro-batches, clip_grad_norm_ 1.0) and compares every
// trainable tensor after every step; PiSSA initialisation of all 28 projections against pissa-full.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildTrainGraph } from '../src/train/graph';
import { PROJECTIONS } from '../src/model/lora';
import { planLora, pissaInit, readAdapter } from '../src/train/lora';
import { adamState, lrAt } from '../src/train/optim';
import { TrainSession } from '../src/train/session';
import { trainStep } from '../src/train/step';
import { svd } from '../src/train/svd';
import { openCheckpoint, openSafetensors } from '../src/weights/safetensors';
import { fixtureConfig, maxAbsDiff } from './helpers/fixtures';
import { fixtureBatch, GEMMA2_TINY, GEMMA2_TRAIN } from './helpers/train-fixtures';

const TOL = 1e-5;

describe('train: trajectories vs Hugging Face Trainer', function () {
  this.timeout(120000);
  for (const [run, adapter] of [
    ['trajectory', join(GEMMA2_TINY, 'adapter')],
    ['trajectory-frozen2', join(GEMMA2_TRAIN, 'adapter-frozen2')],
  ])
    it(`${run}: every tensor after every step within ${TOL}`, async () => {
      const c = fixtureConfig(GEMMA2_TINY);
      const ck = openCheckpoint(GEMMA2_TINY);
      const ad = readAdapter(adapter);
      const spec = planLora(c, ad.settings);
      const s = await TrainSession.create(buildTrainGraph(c, ck.get, spec));
      const tj = JSON.parse(readFileSync(join(GEMMA2_TRAIN, `${run}.json`), 'utf8'));
      const ref = openSafetensors(join(GEMMA2_TRAIN, `${run}.safetensors`));
      const keyMap: Record<string, string> = tj.key_to_adapter_file_key;
      const names = Object.keys(tj.trainable_params);
      assert.equal(names.length, ad.params.size, 'trains exactly the fixture tensors');
      const h = tj.hyperparameters;
      const state = adamState(ad.params);
      const mbs = [fixtureBatch('padded', [0, 1, 2]), fixtureBatch('single', [2])];
      for (let step = 1; step <= 4; step++) {
        const lr = lrAt(step, h.lr, 'linear', h.num_warmup_steps, h.num_training_steps);
        const log = await trainStep(c, s, ad.params, state, mbs, step, lr, {
          adam: { lr: h.lr, betas: h.betas, eps: h.eps, weightDecay: h.weight_decay },
          maxGradNorm: h.max_grad_norm,
          dropout: 0,
          seed: 0,
        });
        const want = tj.steps[step - 1];
        let worst = 0;
        for (const n of names)
          worst = Math.max(worst, maxAbsDiff(ad.params.get(keyMap[n])!, ref.read(`step${step}/${n}`).data));
        console.log(
          `      step ${step}: lr ${lr} (HF ${want.lr}), grad norm ${log.gradNorm.toFixed(4)} (HF ${want.total_grad_norm_before_clip.toFixed(4)}), ` +
            `losses ${log.microLosses.map((l) => l.toFixed(5)).join('/')}, max tensor diff ${worst.toExponential(2)} (tolerance ${TOL})`,
        );
        assert.equal(lr, want.lr);
        assert.ok(Math.abs(log.gradNorm - want.total_grad_norm_before_clip) < 1e-3);
        assert.ok(worst < TOL, `step ${step}: ${worst}`);
      }
      await s.release();
      ref.close();
      ck.close();
    });
});

// The fixture's PiSSA tensors carry the rounding of one float32 SVD (torch 1.13.1 on Debian's OpenBLAS; the
// same build here reproduces them to 6e-8). bench/pissa_noise.py measures, as max |B@A difference|: the exact
// (float64) SVD is 1.25e-5 from the fixture on layer 0 k_proj, 1.19e-5 on layer 1 q_proj, 1.13e-5 on layer 2
// q_proj (the other 25 modules 4e-7..5e-6); numpy's float32 SVD on the same OpenBLAS lands 4.4e-8 from the exact
// one, and the exact B@A moves by at most 1.3e-6 when W moves by float32 roundings, yet torch's own float32
// result moves by up to 2.4e-5 when 5 of W's entries move by one ulp. So within 1e-5 on those three modules
// means reproducing that build's rounding bit for bit; src/train/svd.ts computes the exact SVD (float64
// Jacobi, 1e-12) and the bound here is 3e-5 (W_res = W - s B@A doubles the B@A difference).
const PISSA_TOL = 3e-5;

describe('train: PiSSA initialisation vs peft', function () {
  this.timeout(60000);
  it('A, B and the residual of all 28 projections (sign-invariant: B@A, outer products, W_res)', () => {
    const c = fixtureConfig(GEMMA2_TINY);
    const ck = openCheckpoint(GEMMA2_TINY);
    const spec = planLora(c, {
      r: 8,
      lora_alpha: 16,
      lora_dropout: 0,
      target_modules: PROJECTIONS,
      layers_to_transform: null,
      use_rslora: false,
      modules_to_save: [],
    });
    const { params, residual } = pissaInit(spec, ck.get);
    const f = openSafetensors(join(GEMMA2_TRAIN, 'pissa-full.safetensors'));
    let ba = 0;
    let outer = 0;
    let res = 0;
    let recon = 0;
    let within = 0;
    for (const m of spec.lora.values()) {
      const [A, B] = [params.get(m.aKey)!, params.get(m.bKey)!];
      const [Ar, Br, R] = ['lora_A', 'lora_B', 'W_residual'].map((k) => f.read(`${m.module}/${k}`).data);
      const W = ck.get(`${m.module}.weight`).data;
      const [r, I, O] = [m.rank, m.inFeatures, m.outFeatures];
      let worst = 0;
      for (let o = 0; o < O; o++)
        for (let j = 0; j < I; j++) {
          let x = 0;
          let y = 0;
          for (let i = 0; i < r; i++) {
            const p = B[o * r + i] * A[i * I + j];
            const q = Br[o * r + i] * Ar[i * I + j];
            x += p;
            y += q;
            outer = Math.max(outer, Math.abs(p - q));
            worst = Math.max(worst, Math.abs(p - q));
          }
          ba = Math.max(ba, Math.abs(x - y));
          const mine = residual.get(`${m.module}.weight`)![o * I + j];
          res = Math.max(res, Math.abs(mine - R[o * I + j]));
          worst = Math.max(worst, Math.abs(x - y), Math.abs(mine - R[o * I + j]));
          recon = Math.max(recon, Math.abs(mine + m.scale * x - W[o * I + j]));
        }
      if (worst < TOL) within++;
    }
    f.close();
    ck.close();
    console.log(
      `      max diff B@A ${ba.toExponential(2)}, outer products ${outer.toExponential(2)}, W_res ${res.toExponential(2)} (tolerance ${PISSA_TOL}); ` +
        `${within}/28 modules within ${TOL}; |W_res + s B@A - W| ${recon.toExponential(2)}`,
    );
    assert.ok(ba < PISSA_TOL && outer < PISSA_TOL && res < PISSA_TOL);
    assert.ok(recon < 1e-6);
  });

  it('svd: U S V^T reproduces a wide and a tall matrix, singular values descending', () => {
    for (const [m, n] of [
      [5, 3],
      [3, 7],
    ]) {
      const w = Float64Array.from({ length: m * n }, (_, i) => Math.sin(i * 1.7) + (i % 3));
      const { u, s, vt, k } = svd(w, m, n);
      let err = 0;
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let x = 0;
          for (let c = 0; c < k; c++) x += u[i * k + c] * s[c] * vt[c * n + j];
          err = Math.max(err, Math.abs(x - w[i * n + j]));
        }
      assert.ok(err < 1e-12, `reconstruction error ${err}`);
      for (let c = 1; c < k; c++) assert.ok(s[c] <= s[c - 1]);
    }
  });
});
