// Reverse-mode autodiff (src/graph/grad.ts): every gradient rule against central finite differences
// of the same ONNX forward, then the whole Gemma-2 training lowering against Hugging Face's gradients
// of one batch (gemma2-tiny/grads.safetensors), and a perturbed rule that must make that check fail.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../src/graph/builder';
import { addGradients, GRAD_RULES, type GradRule } from '../src/graph/grad';
import type { Value } from '../src/graph/ir';
import { serialise } from '../src/graph/serialise';
import { batchFeeds, poolIndex } from '../src/train/feeds';
import { buildTrainGraph, TRAIN_ACTIVATIONS } from '../src/train/graph';
import { checkParams, planLora, readAdapter } from '../src/train/lora';
import { TrainSession } from '../src/train/session';
import { openCheckpoint } from '../src/weights/safetensors';
import { fixtureConfig, maxAbsDiff } from './helpers/fixtures';
import { fixtureBatch, fixtureGradDiff, GEMMA2_TINY } from './helpers/train-fixtures';
import { mulberry32 } from '../src/util/rng';
import { ACTIVATIONS, type Activation } from '../src/types';

type Forward = (b: GraphBuilder, xs: Value[]) => Value;
/** positive: inputs in [0.5, 1.5); awayFromZero: |x| in [0.1, 1] (a kink at 0 must not fall inside x +- eps); rules: a perturbed table. */
type RuleOpts = { positive?: boolean; awayFromZero?: boolean; rules?: Record<string, GradRule> };

/**
 * loss = sum(f(xs) * R) for a fixed random R; returns the analytic gradient of each input and the
 * largest |analytic - central difference| relative to max(1, |fd|).
 */
async function checkRule(shapes: number[][], f: Forward, opts: RuleOpts = {}): Promise<number> {
  const rnd = mulberry32(7).next;
  const b = new GraphBuilder('rule');
  const xs = shapes.map((s, i) => b.input(`x${i}`, 'float32', s));
  const y = f(b, xs);
  const n = (y.shape as number[]).reduce((a, d) => a * d, 1);
  const r = b.constFloat(
    'r',
    Float32Array.from({ length: n }, () => rnd() * 2 - 1),
    y.shape as number[],
  );
  const loss = b.reduceSum(b.mul(y, r), [...(y.shape as number[]).keys()], false, 'loss');
  b.output(loss, 'loss');
  const seed = b.input('seed', 'float32', []);
  addGradients(b, loss, xs, { seed, rules: opts.rules }).forEach((g, i) => b.output(g, `g${i}`));
  const s = await ort.InferenceSession.create(serialise(b.finish()), { intraOpNumThreads: 1 });
  const data = shapes.map((sh) =>
    Float32Array.from({ length: sh.reduce((a, d) => a * d, 1) }, () => {
      if (opts.positive) return 0.5 + rnd();
      if (opts.awayFromZero) return (rnd() < 0.5 ? -1 : 1) * (0.1 + 0.9 * rnd());
      return rnd() * 2 - 1;
    }),
  );
  const run = async (d: Float32Array[]) => {
    const feeds: Record<string, ort.Tensor> = { seed: new ort.Tensor('float32', Float32Array.of(1), []) };
    d.forEach((a, i) => (feeds[`x${i}`] = new ort.Tensor('float32', a, shapes[i])));
    return s.run(feeds);
  };
  const base = await run(data);
  const eps = 1e-2;
  let worst = 0;
  for (let i = 0; i < data.length; i++) {
    const g = base[`g${i}`].data as Float32Array;
    assert.equal(g.length, data[i].length, `gradient of x${i} has the input's size`);
    for (let j = 0; j < data[i].length; j++) {
      const v = data[i][j];
      data[i][j] = v + eps;
      const up = ((await run(data)).loss.data as Float32Array)[0];
      data[i][j] = v - eps;
      const down = ((await run(data)).loss.data as Float32Array)[0];
      data[i][j] = v;
      const fd = (up - down) / (2 * eps);
      worst = Math.max(worst, Math.abs(g[j] - fd) / Math.max(1, Math.abs(fd)));
    }
  }
  await s.release();
  return worst;
}

const RULE_TOL = 2e-3;

describe('train: gradient rules vs finite differences', function () {
  this.timeout(60000);
  const cases: [string, number[][], Forward, RuleOpts?][] = [
    ['Add (broadcast)', [[2, 3, 4], [4]], (b, [p, q]) => b.add(p, q)],
    [
      'Sub (broadcast)',
      [
        [2, 3, 4],
        [3, 1],
      ],
      (b, [p, q]) => b.sub(p, q),
    ],
    [
      'Mul (both broadcast)',
      [
        [2, 1, 4],
        [3, 4],
      ],
      (b, [p, q]) => b.mul(p, q),
    ],
    [
      'Div (broadcast)',
      [
        [2, 3, 4],
        [2, 3, 1],
      ],
      (b, [p, q]) => b.div(p, q),
      { positive: true },
    ],
    ['Neg', [[3, 4]], (b, [p]) => b.neg(p)],
    [
      'MatMul x[B,S,K] @ W[K,N]',
      [
        [2, 3, 4],
        [4, 5],
      ],
      (b, [p, q]) => b.matmul(p, q),
    ],
    [
      'MatMul batched, broadcast batch dims',
      [
        [2, 1, 3, 4],
        [1, 2, 4, 5],
      ],
      (b, [p, q]) => b.matmul(p, q),
    ],
    ['Transpose', [[2, 3, 4]], (b, [p]) => b.transpose(p, [2, 0, 1])],
    ['Reshape', [[2, 3, 4]], (b, [p]) => b.mul(b.reshape(p, [0, 12]), b.reshape(p, [0, 12]))],
    [
      'Unsqueeze + Expand',
      [[3, 4]],
      (b, [p]) => b.expand(b.unsqueeze(p, [0]), b.constInt64('to', [2, 3, 4]), [2, 3, 4]),
    ],
    ['Tanh', [[3, 4]], (b, [p]) => b.tanh(b.mul(p, b.scalar('k', 2)))],
    ['Sqrt', [[3, 4]], (b, [p]) => b.sqrt(p), { positive: true }],
    ['Exp', [[3, 4]], (b, [p]) => b.exp(p)],
    ['Sigmoid (SiLU)', [[3, 4]], (b, [p]) => b.mul(p, b.unary('Sigmoid', p))],
    ['Erf', [[3, 4]], (b, [p]) => b.unary('Erf', b.mul(p, b.scalar('k', 1.5)))],
    ['Relu', [[3, 4]], (b, [p]) => b.unary('Relu', p), { awayFromZero: true }],
    // every activation exactly as the training lowering spells it (MLP and score.N.* heads)
    ...ACTIVATIONS.map((a): [string, number[][], Forward, RuleOpts] => [
      `training activation ${a}`,
      [[3, 4]],
      (b, [p]) => TRAIN_ACTIVATIONS[a](b, b.mul(p, b.scalar('k', 2))),
      { awayFromZero: a === 'relu' },
    ]),
    ['Softmax', [[2, 3, 5]], (b, [p]) => b.softmax(b.mul(p, b.scalar('k', 3)), -1)],
    ['LogSoftmax', [[2, 5]], (b, [p]) => b.logSoftmax(b.mul(p, b.scalar('k', 3)), -1)],
    ['ReduceMean (keepdims)', [[2, 3, 4]], (b, [p]) => b.mul(p, b.reduceMean(b.mul(p, p), [-1], true))],
    ['ReduceSum (no keepdims)', [[2, 3, 4]], (b, [p]) => b.reduceSum(b.mul(p, p), [0, 2], false)],
    [
      'Split + Concat (rotate_half)',
      [[2, 3, 4]],
      (b, [p]) => {
        const [x1, x2] = b.split(p, [2, 2], -1);
        return b.mul(b.concat([b.neg(x2), x1], -1), p);
      },
    ],
    ['Split with an unused piece', [[2, 6]], (b, [p]) => b.split(p, [2, 4], -1)[1]],
  ];
  for (const [name, shapes, f, o] of cases)
    it(name, async () => {
      const worst = await checkRule(shapes, f, o);
      console.log(
        `      ${name}: max |analytic - finite difference| (relative) ${worst.toExponential(2)} (tolerance ${RULE_TOL})`,
      );
      assert.ok(worst < RULE_TOL, `${name}: gradient off by ${worst}`);
    });

  // A wrong rule must fail the same check (Erf without its 2/sqrt(pi), Relu passing every gradient through).
  for (const [op, shapes, f, wrong, o] of [
    ['Tanh', [[3, 4]], (b, [p]) => b.tanh(p), ({ b, y, dy }) => [b.mul(dy[0]!, b.sub(b.scalar('one', 1), y[0]))], {}],
    [
      'Erf',
      [[3, 4]],
      (b, [p]) => b.unary('Erf', p),
      ({ b, x, dy }) => [b.mul(dy[0]!, b.exp(b.neg(b.mul(x[0], x[0]))))],
      {},
    ],
    ['Relu', [[3, 4]], (b, [p]) => b.unary('Relu', p), ({ dy }) => [dy[0]], { awayFromZero: true }],
  ] as [string, number[][], Forward, GradRule, RuleOpts][])
    it(`a wrong ${op} rule fails its finite-difference check`, async () => {
      const worst = await checkRule(shapes, f, { ...o, rules: { ...GRAD_RULES, [op]: wrong } });
      console.log(`      perturbed ${op} rule: ${worst.toExponential(2)} (must exceed ${10 * RULE_TOL})`);
      assert.ok(worst > 10 * RULE_TOL);
    });

  // The training activations against the fused ONNX ops the inference lowering uses (ORT's kernels, not ours).
  const FWD_TOL = 1e-6;
  for (const [a, fused] of [
    ['gelu_tanh', (b, x) => b.gelu(x, 'tanh')],
    ['gelu', (b, x) => b.gelu(x, 'none')],
    ['relu', (b, x) => b.unary('Relu', x)],
  ] as [Activation, (b: GraphBuilder, x: Value) => Value][])
    it(`training ${a} equals ONNX ${a === 'relu' ? 'Relu' : 'Gelu'} on [-8, 8] within ${FWD_TOL} (relative)`, async () => {
      const b = new GraphBuilder('act');
      const x = b.input('x', 'float32', [2001]);
      b.output(TRAIN_ACTIVATIONS[a](b, x), 'mine');
      b.output(fused(b, x), 'onnx');
      const s = await ort.InferenceSession.create(serialise(b.finish()), { intraOpNumThreads: 1 });
      const xs = Float32Array.from({ length: 2001 }, (_, i) => -8 + i / 125);
      const r = await s.run({ x: new ort.Tensor('float32', xs, [2001]) });
      await s.release();
      const mine = r.mine.data as Float32Array;
      const onnx = r.onnx.data as Float32Array;
      const d = mine.reduce((m, v, i) => Math.max(m, Math.abs(v - onnx[i]) / Math.max(1, Math.abs(onnx[i]))), 0);
      console.log(`      ${a}: max |training - fused| / max(1, |fused|) ${d.toExponential(2)} (tolerance ${FWD_TOL})`);
      assert.ok(d < FWD_TOL);
    });
});

const GRAD_TOL = 1e-5;

describe('train: Gemma-2 training graph vs Hugging Face', function () {
  this.timeout(60000);

  it('pools like HF: (argmax(input_ids == pad) - 1) mod L', () => {
    assert.equal(poolIndex([5, 6, 0, 0], 4, 0), 1);
    assert.equal(poolIndex([5, 6, 7, 8], 4, 0), 3);
    assert.equal(poolIndex([5, 0, 7, 8], 4, 0), 0);
  });

  it('one batch: loss, logits and all 57 gradients match gemma2-tiny/grads.safetensors', async () => {
    const d = await fixtureGradDiff();
    console.log(
      `      loss diff ${d.loss.toExponential(2)}, logits ${d.logits.toExponential(2)}, gradients max abs diff ${d.grad.toExponential(2)} (tolerance ${GRAD_TOL})`,
    );
    assert.ok(d.loss < GRAD_TOL && d.logits < GRAD_TOL && d.grad < GRAD_TOL);
  });

  // One decoder definition, so the training lowering covers every family the inference graph does.
  for (const [fam, tol, o] of [
    ['gemma-tiny', 2e-4, {}],
    ['llama3-tiny', 2e-5, {}],
    ['qwen2-tiny', 3e-5, {}],
    ['mistral-tiny', 2e-5, {}],
    ['gemma2-mlphead', 2e-5, { activation: 'gelu_tanh' }],
  ] as [string, number, { activation?: 'gelu_tanh' }][])
    it(`${fam}: PEFT LoRA logits through the training lowering within ${tol} (the fixture README's tolerance)`, async () => {
      const dir = join(GEMMA2_TINY, '..', fam);
      const c = fixtureConfig(dir, o);
      const ck = openCheckpoint(dir);
      const ad = readAdapter(join(dir, 'adapter'));
      const spec = planLora(c, ad.settings);
      checkParams(spec, ad.params, fam);
      const s = await TrainSession.create(buildTrainGraph(c, ck.get, spec, { forwardOnly: true }));
      const inp = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')).padded;
      const rows = inp.input_ids.map((ids: number[], i: number) => ({
        inputIds: ids.slice(
          0,
          inp.attention_mask[i].reduce((a: number, v: number) => a + v, 0),
        ),
        label: 0,
      }));
      const logits = (await s.run(batchFeeds(c, rows), ad.params, 0)).logits;
      await s.release();
      ck.close();
      const d = maxAbsDiff(
        logits,
        JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).lora_logits.padded.flat(),
      );
      console.log(`      ${fam}: max abs diff ${d.toExponential(2)} (tolerance ${tol})`);
      assert.ok(d < tol);
    });

  for (const [op, wrong] of [
    ['Tanh', ({ b, y, dy }) => [b.mul(dy[0]!, b.sub(b.scalar('one', 1), y[0]))]],
    ['Softmax', ({ b, y, dy }) => [b.mul(y[0], dy[0]!)]],
    [
      'MatMul',
      (ctx) => GRAD_RULES.MatMul(ctx).map((g, i) => (i === 0 && g ? ctx.b.mul(g, ctx.b.scalar('off', 1.001)) : g)),
    ],
  ] as [string, GradRule][])
    it(`fails when the ${op} rule is perturbed`, async () => {
      const d = await fixtureGradDiff({ ...GRAD_RULES, [op]: wrong });
      console.log(`      perturbed ${op}: gradients max abs diff ${d.grad.toExponential(2)}`);
      assert.ok(d.grad > GRAD_TOL);
    });
});

/** erf in float64 to ~1e-15: Maclaurin series below 2.5, the erfc continued fraction above. */
function erf(x: number): number {
  const a = Math.abs(x);
  let r: number;
  if (a < 2.5) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 200; n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
      if (Math.abs(term) < 1e-18) break;
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    let k = a;
    for (let n = 80; n >= 1; n--) k = a + n / 2 / k;
    r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / k;
  }
  return x < 0 ? -r : r;
}

const JS_ACT: Partial<Record<Activation, (x: number) => number>> = {
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  relu: (x) => Math.max(0, x),
};

describe('train: multi-layer score heads with exact GELU and ReLU (gemma2-mlphead trunk)', function () {
  this.timeout(120000);
  const dir = join(GEMMA2_TINY, '..', 'gemma2-mlphead');
  const TOL = 1e-5;

  /** Head gradients from the whole training graph vs central differences of a float64 JS head on the graph's pooled features. */
  async function headCheck(
    act: Activation,
    rules?: Record<string, GradRule>,
  ): Promise<{ grad: number; loss: number; maxGrad: number; n: number }> {
    const c = fixtureConfig(dir, { activation: act });
    if (c.head.kind !== 'classifier') throw new Error('gemma2-mlphead has a classifier head');
    const head = c.head;
    const ck = openCheckpoint(dir);
    const ad = readAdapter(join(dir, 'adapter'));
    const spec = planLora(c, ad.settings);
    const labels = [0, 1, 2];
    const feeds = batchFeeds(c, fixtureBatch('padded', labels));
    const full = await TrainSession.create(buildTrainGraph(c, ck.get, spec, { rules }));
    const r = await full.run(feeds, ad.params, 1);
    await full.release();
    const fwd = await TrainSession.create(buildTrainGraph(c, ck.get, spec, { forwardOnly: true }));
    const pooled = (await fwd.run(feeds, ad.params, 0)).pooled!;
    await fwd.release();
    ck.close();
    // float64 copies of the head tensors; jsLoss reads them, the differences nudge them
    const key = (hf: string) => `base_model.model.${hf}`;
    const w = new Map(
      head.layers
        .flatMap((l) => [l.weight, ...(l.bias ? [l.bias] : [])])
        .map((hf) => [hf, Float64Array.from(ad.params.get(key(hf))!)]),
    );
    const f = JS_ACT[act]!;
    const jsLoss = (): number => {
      let loss = 0;
      for (let i = 0; i < labels.length; i++) {
        let y = Array.from(pooled.subarray(i * c.hiddenSize, (i + 1) * c.hiddenSize));
        head.layers.forEach((l, j) => {
          const W = w.get(l.weight)!;
          const bias = l.bias ? w.get(l.bias)! : null;
          y = Array.from({ length: l.outFeatures }, (_, o) => {
            let s = bias ? bias[o] : 0;
            for (let k = 0; k < l.inFeatures; k++) s += W[o * l.inFeatures + k] * y[k];
            return j + 1 < head.layers.length ? f(s) : s;
          });
        });
        const m = Math.max(...y);
        loss += Math.log(y.reduce((a, v) => a + Math.exp(v - m), 0)) + m - y[labels[i]];
      }
      return loss / labels.length;
    };
    const eps = 1e-5;
    let grad = 0;
    let maxGrad = 0;
    let n = 0;
    for (const [hf, t] of w) {
      const g = r.grads.get(key(hf))!;
      for (let j = 0; j < t.length; j++) {
        const v = t[j];
        t[j] = v + eps;
        const up = jsLoss();
        t[j] = v - eps;
        const down = jsLoss();
        t[j] = v;
        const fd = (up - down) / (2 * eps);
        grad = Math.max(grad, Math.abs(g[j] - fd));
        maxGrad = Math.max(maxGrad, Math.abs(fd));
        n++;
      }
    }
    return { grad, loss: Math.abs(r.loss - jsLoss()), maxGrad, n };
  }

  for (const act of ['gelu', 'relu'] as Activation[]) {
    it(`${act} head: all head gradients through the training graph match finite differences of a float64 JS head within ${TOL}`, async () => {
      const d = await headCheck(act);
      console.log(
        `      ${act}: loss diff ${d.loss.toExponential(2)}, ${d.n} head gradients (max |g| ${d.maxGrad.toFixed(3)}) max abs diff ${d.grad.toExponential(2)} (tolerance ${TOL})`,
      );
      assert.ok(d.loss < TOL && d.grad < TOL);
    });
    const op = act === 'gelu' ? 'Erf' : 'Relu';
    it(`${act} head: the check fails with a wrong ${op} rule`, async () => {
      const wrong: GradRule = (ctx) =>
        GRAD_RULES[op](ctx).map((g) => (g ? ctx.b.mul(g, ctx.b.scalar('off', 1.01)) : g));
      const d = await headCheck(act, { ...GRAD_RULES, [op]: wrong });
      console.log(
        `      perturbed ${op} (x1.01): head gradients max abs diff ${d.grad.toExponential(2)} (must exceed ${TOL})`,
      );
      assert.ok(d.grad > TOL);
    });
  }
});
