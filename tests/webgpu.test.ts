// The WebGPU lane: ONNX Runtime's WebGPU EP on Mesa's software Vulkan driver (lavapipe, installed by
// .ci/run), so GPU kernels are exercised on a machine without a GPU. Sessions take 20-30 s to compile
// their shaders there, so this lane runs a few cases only.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { serialise } from '../src/graph/serialise';
import { buildDecoderGraph } from '../src/model/lower';
import { openCheckpoint } from '../src/weights/safetensors';
import { mergedSource, openAdapter } from '../src/weights/peft';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { FIXTURES, fixtureConfig, maxAbsDiff, runLogits } from './helpers/fixtures';
import { makePeakedModel, maxDiff, node, ok, RUNNER, submissionProbs, TRAINER } from './helpers/peaked';
import { writeByteTokenizer } from './helpers/byte-tokenizer';
import { exactNBitsModel } from '../src/infer/reference-graph';
import { runLogits as sessionLogits } from '../src/infer/session';
import { spawnSync } from 'node:child_process';
import { fixtureGradDiff } from './helpers/train-fixtures';

/**
 * WebGPU vs HF fp32 logits. WebGPU shaders may use faster, less exact math than the CPU (fused
 * multiply-add order, approximate exp/tanh): we allow the error of fp16 rounding of the logits
 * (2^-11 relative of logits up to ~10, i.e. 5e-3). Measured differences are printed.
 */
const WEBGPU_TOL = 5e-3;

const WEBGPU: ort.InferenceSession.SessionOptions = { executionProviders: ['webgpu'] };

/** Whether a WebGPU adapter exists here; with ARENAKIT_WEBGPU=required (CI) its absence is a failure. */
async function webgpuOrSkip(ctx: Mocha.Context): Promise<void> {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  try {
    const dir = join(FIXTURES, 'gemma2-tiny');
    const ckpt = openCheckpoint(dir);
    const bytes = serialise(
      buildDecoderGraph({ ...fixtureConfig(dir), numLayers: 0 }, ckpt.get, {
        linear: { kind: 'float' },
        activations: 'float32',
      }),
    );
    ckpt.close();
    const s = await ort.InferenceSession.create(bytes, WEBGPU);
    await s.release();
  } catch (e) {
    const why = `no WebGPU adapter (${(e as Error).message.split('\n')[0]}); install lavapipe: apt-get install -t bookworm-backports mesa-vulkan-drivers`;
    if (process.env.ARENAKIT_WEBGPU === 'required') throw new Error(why);
    console.log(`      skipped: ${why}`);
    ctx.skip();
  }
}

describe('WebGPU EP on lavapipe', function () {
  this.timeout(300000);
  before(async function () {
    await webgpuOrSkip(this);
  });

  it('fused GroupQueryAttention ignores softcap on WebGPU (why the capability table gives WebGPU the explicit graph)', async () => {
    // When ORT fixes this, the test fails: then WebGPU may run the fused graph (src/infer/runtime.ts RUNTIMES.cu13.attention.webgpu).
    const dir = join(FIXTURES, 'gemma2-tiny');
    const cfg = fixtureConfig(dir);
    const ckpt = openCheckpoint(dir);
    const fused = serialise(buildDecoderGraph(cfg, ckpt.get, { linear: { kind: 'float' }, activations: 'float32' }));
    const noCap = serialise(
      buildDecoderGraph({ ...cfg, attnSoftcap: null }, ckpt.get, { linear: { kind: 'float' }, activations: 'float32' }),
    );
    ckpt.close();
    const inputs = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8'));
    const hf = (JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).base_logits.padded as number[][]).flat();
    const gpu = await runLogits(fused, inputs.padded, WEBGPU);
    const vsHf = maxAbsDiff(gpu, hf);
    const vsNoCap = maxAbsDiff(gpu, await runLogits(noCap, inputs.padded));
    console.log(
      `      fused on WebGPU: ${vsHf.toExponential(3)} from HF; ${vsNoCap.toExponential(3)} from the CPU graph without soft-cap`,
    );
    assert.ok(
      vsHf > 1e-2,
      `WebGPU's fused attention now matches HF (${vsHf}): ORT applies softcap; allow 'fused' for webgpu in the capability table`,
    );
    assert.ok(vsNoCap < 1e-4, `fused WebGPU output is no longer the no-softcap model's (${vsNoCap})`);
  });

  for (const model of ['gemma2-tiny', 'gemma-tiny']) {
    it(`${model}: explicit attention on WebGPU matches HF, base and LoRA-merged (tolerance ${WEBGPU_TOL})`, async () => {
      const dir = join(FIXTURES, model);
      const cfg = fixtureConfig(dir);
      const ckpt = openCheckpoint(dir);
      const ad = openAdapter(join(dir, 'adapter'));
      const opts = {
        linear: { kind: 'float' as const },
        activations: 'float32' as const,
        attention: 'explicit' as const,
      };
      const base = serialise(buildDecoderGraph(cfg, ckpt.get, opts));
      const merged = serialise(buildDecoderGraph(cfg, mergedSource(ckpt.get, ad), opts));
      ad.close();
      ckpt.close();
      const inputs = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8'));
      const exp = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
      for (const [name, bytes, key] of [
        ['base', base, 'base_logits'],
        ['merged', merged, 'merged_logits'],
      ] as const)
        for (const which of ['padded', 'single']) {
          const d = maxAbsDiff(await runLogits(bytes, inputs[which], WEBGPU), (exp[key][which] as number[][]).flat());
          console.log(
            `      ${model} ${name} ${which}: WebGPU explicit vs HF max abs diff ${d.toExponential(3)} (tolerance ${WEBGPU_TOL})`,
          );
          assert.ok(d <= WEBGPU_TOL, `${model} ${name} ${which}: ${d} > ${WEBGPU_TOL}`);
        }
    });
  }

  it('IO binding on WebGPU: a bound logits buffer equals a plain run; device outputs (gpu-buffer) still abort on read', async () => {
    const dir = join(FIXTURES, 'gemma2-tiny');
    const ckpt = openCheckpoint(dir);
    const bytes = serialise(
      buildDecoderGraph({ ...fixtureConfig(dir), numLayers: 1 }, ckpt.get, {
        linear: { kind: 'float' },
        activations: 'float32',
        attention: 'explicit',
      }),
    );
    ckpt.close();
    const inp = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')).padded;
    const s = await ort.InferenceSession.create(bytes, WEBGPU);
    const B = inp.input_ids.length;
    const S = inp.input_ids[0].length;
    const ids = BigInt64Array.from(inp.input_ids.flat().map(BigInt));
    const mask = BigInt64Array.from(inp.attention_mask.flat().map(BigInt));
    const saved = process.env.ARENAKIT_IO_BINDING;
    let plain: Float32Array;
    let bound: Float32Array;
    try {
      delete process.env.ARENAKIT_IO_BINDING;
      plain = await sessionLogits(s, ids, mask, B, S);
      process.env.ARENAKIT_IO_BINDING = '1';
      bound = await sessionLogits(s, ids, mask, B, S);
    } finally {
      if (saved === undefined) delete process.env.ARENAKIT_IO_BINDING;
      else process.env.ARENAKIT_IO_BINDING = saved;
      await s.release();
    }
    const d = maxAbsDiff(bound, plain);
    console.log(`      bound vs plain WebGPU max abs diff ${d} (tolerance 0)`);
    assert.equal(d, 0);
    // Why the runner never keeps WebGPU outputs on the device: reading one back kills the process (ORT 1.29 / 1.30).
    // If a newer onnxruntime-node survives this, io-binding.ts can take the device form up again.
    const tmp = mkdtempSync(join(tmpdir(), 'arenakit-iob-'));
    writeFileSync(join(tmp, 'm.onnx'), bytes);
    const script = `const ort=require(${JSON.stringify(require.resolve('onnxruntime-node'))});(async()=>{const s=await ort.InferenceSession.create(${JSON.stringify(join(tmp, 'm.onnx'))},{executionProviders:['webgpu'],preferredOutputLocation:{logits:'gpu-buffer'}});const t=new ort.Tensor('int64',new BigInt64Array([2n,3n,4n]),[1,3]);const o=await s.run({input_ids:t,attention_mask:new ort.Tensor('int64',new BigInt64Array([1n,1n,1n]),[1,3])});console.log('location',o.logits.location);const d=await o.logits.getData(true);console.log('read',d.length)})()`;
    const r = spawnSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
    });
    console.log(
      `      gpu-buffer output read back: exit ${r.status} signal ${r.signal}; ${r.stdout.trim().split('\n').join('; ')}`,
    );
    assert.match(r.stdout, /location gpu-buffer/);
    assert.ok(
      r.signal === 'SIGABRT' && !/read \d/.test(r.stdout),
      'the gpu-buffer read survived: revisit io-binding.ts',
    );
  });

  it('int4 (MatMulNBits) explicit graph on WebGPU equals the CPU int4 graph of the same import', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'arenakit-webgpu-'));
    const tok = join(tmp, 'tok');
    writeByteTokenizer(tok);
    const dir = join(FIXTURES, 'gemma2-tiny');
    const out = join(tmp, 'int4');
    ok(TRAINER, [
      'import',
      '--base',
      dir,
      '--adapter',
      join(dir, 'adapter'),
      '--tokenizer',
      tok,
      '--quant',
      'int4',
      '--int4-kernel',
      'nbits', // MatMulNBits on WebGPU (a CPU-only int4 import defaults to int4-rows: MatMulInteger)
      '--attention',
      'fused,explicit',
      '--labels',
      'winner_model_a,winner_model_b,winner_tie',
      '--max-tokens',
      '256',
      '--out',
      out,
    ]);
    const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    const explicit = join(out, m.graphs.cpu.variants.explicit.file);
    const inputs = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8'));
    const hf = (JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).merged_logits.padded as number[][]).flat();
    // the exact CPU path (accuracy_level 0, as the self-check's reference): the import's CPU default quantizes activations
    const cpu = await runLogits(exactNBitsModel(readFileSync(explicit))!, inputs.padded, {
      extra: { session: { model_external_initializers_file_folder_path: out } },
    } as ort.InferenceSession.SessionOptions);
    // as the runner opens it on WebGPU (session.ts): accuracy_level 4 is the CPU EP's path
    const gpu = await runLogits(exactNBitsModel(readFileSync(explicit))!, inputs.padded, {
      ...WEBGPU,
      extra: { session: { model_external_initializers_file_folder_path: out } },
    } as ort.InferenceSession.SessionOptions);
    const d = maxAbsDiff(gpu, cpu);
    console.log(
      `      int4 explicit: WebGPU vs CPU ${d.toExponential(3)} (tolerance ${WEBGPU_TOL}); vs HF merged ${maxAbsDiff(gpu, hf).toExponential(3)} (quantization error, informative)`,
    );
    assert.ok(d <= WEBGPU_TOL);
  });

  it(`predict --ep webgpu on real sample rows matches --ep cpu within 5e-3; a fused graph forced on WebGPU is caught by the self-check and switched`, () => {
    const tmp = mkdtempSync(join(tmpdir(), 'arenakit-webgpu-'));
    const model = makePeakedModel(tmp, 'peaked', { attention: 'fused,explicit' });
    const rows = readFileSync(join(FIXTURES, '..', '..', 'data', 'arena-sample-999.csv'), 'utf8');
    // The first 40 sample rows (the sample file has one record per line).
    const data = join(tmp, 'rows.csv');
    writeFileSync(data, rows.split('\n').slice(0, 41).join('\n') + '\n');
    const cpuOut = join(tmp, 'cpu.csv');
    ok(RUNNER, ['predict', '--data', data, '--weights', model, '--ep', 'cpu', '--out', cpuOut]);
    const gpuOut = join(tmp, 'gpu.csv');
    const r = ok(RUNNER, ['predict', '--data', data, '--weights', model, '--ep', 'webgpu', '--out', gpuOut]);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!);
    const d = maxDiff(submissionProbs(gpuOut), submissionProbs(cpuOut));
    console.log(
      `      predict webgpu (${summary.attention[0]}, self-check ${summary.self_check_max_diff[0]}) vs cpu: max prob diff ${d.toExponential(3)} (tolerance 5e-3)`,
    );
    assert.equal(summary.attention[0], 'explicit');
    assert.ok(d <= 5e-3);
    // The wrong graph on purpose: the self-check sees the dropped soft-cap and switches to the explicit graph.
    const forced = node(RUNNER, [
      'predict',
      '--data',
      data,
      '--weights',
      model,
      '--ep',
      'webgpu',
      '--attention',
      'fused',
      '--out',
      join(tmp, 'forced.csv'),
    ]);
    assert.equal(forced.status, 0, forced.stderr);
    assert.match(forced.stderr, /self-check: .* webgpu fused .* FAILED/);
    assert.match(forced.stderr, /switching webgpu to the explicit attention graph/);
    const fs = JSON.parse(forced.stdout.trim().split('\n').pop()!);
    console.log(
      `      forced fused on webgpu: rejected ${JSON.stringify(fs.self_check_max_diff)}, ran ${fs.attention[0]}`,
    );
    assert.equal(fs.attention[0], 'explicit');
    assert.ok(maxDiff(submissionProbs(join(tmp, 'forced.csv')), submissionProbs(cpuOut)) <= 5e-3);
  });

  it("training on WebGPU: one batch's loss, logits and 57 gradients vs gemma2-tiny/grads.safetensors (HF + PEFT) within 1e-5", async () => {
    // the training graph is primitive ops only, so the same graph runs on any EP (src/train/graph.ts)
    const d = await fixtureGradDiff(undefined, 'webgpu');
    console.log(
      `      webgpu: loss diff ${d.loss.toExponential(2)}, logits ${d.logits.toExponential(2)}, gradients max abs diff ${d.grad.toExponential(2)} (tolerance 1e-5)`,
    );
    assert.ok(d.loss < 1e-5 && d.logits < 1e-5 && d.grad < 1e-5);
  });
});
