// Issue 20 item 2, wired: `import --graphs cpu,cuda,cuda-bf16` writes the fp16 and the bf16 CUDA graphs beside
// the fp32 CPU one; predict / validate / doctor settle the precision once per run from nvidia-smi's compute
// capability (a fake one here: T4 7.5 -> the fp16 graph, L4 8.9 -> the bf16 graph) and run that graph, or
// the other GPU graph with a note when the weights lack it; --ep cpu never asks nvidia-smi. The bf16 graph
// cannot run on ORT's CPU EP (no bf16 MatMulNBits / MatMul kernels): its refusal proves the file's dtype here,
// and tests/bf16-graph.test.ts proves the same builder's structure by widening it to fp32.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { resolveGpuPrecision } from '../src/infer/gpu-precision';
import { checkTolerance } from '../src/infer/selfcheck';
import { chooseGraph } from '../src/infer/session';
import { importCheckpoint } from '../src/weights/import';
import { readManifest, type Manifest } from '../src/weights/manifest';
import { planTarget } from '../src/weights/targets';
import { FIXTURES, maxAbsDiff, runLogits } from './helpers/fixtures';
import { fakeComputeCapSmi } from './helpers/nvidia-smi-cc';
import { ensureBuilt, RUNNER } from './helpers/peaked';
import { writeByteTokenizer } from './helpers/byte-tokenizer';

const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

describe('bf16 CUDA graph: import, choice by compute capability, self-check tolerance', function () {
  this.timeout(300_000);
  let tmp: string;
  let out: string;
  let m: Manifest;
  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-gpugraphs-'));
    out = join(tmp, 'w');
    writeByteTokenizer(join(tmp, 'tok')); // ids inside the fixture's 512-row vocabulary
    await importCheckpoint({
      base: join(FIXTURES, 'gemma2-tiny'),
      tokenizer: join(tmp, 'tok'),
      attention: ['fused', 'explicit'],
      quant: 'int4',
      graphs: ['cpu', 'cuda', 'cuda-bf16'],
      template: 'gemma-chat',
      maxTokens: 256,
      labels: ['winner_model_a', 'winner_model_b', 'winner_tie'],
      out,
    });
    m = readManifest(out);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('writes three graphs (float32 / float16 / bfloat16), each with both attention variants, one shared data file', async () => {
    const acts = Object.fromEntries(Object.entries(m.graphs).map(([k, g]) => [k, g!.activations]));
    console.log(`      graphs: ${JSON.stringify(acts)}`);
    assert.deepEqual(acts, { cpu: 'float32', cuda: 'float16', 'cuda-bf16': 'bfloat16' });
    const bf16 = m.graphs['cuda-bf16']!;
    assert.deepEqual(Object.keys(bf16.variants ?? {}).sort(), ['explicit', 'fused']);
    assert.notEqual(bf16.sha256, m.graphs.cuda!.sha256);
    for (const f of [bf16.file, ...bf16.externalData]) assert.ok(existsSync(join(out, f)), f);
    // One data file for the three graphs: the int4 codes are stored once; fp16 and bf16 scales / norms apart.
    const data = bf16.externalData[0];
    assert.deepEqual([m.graphs.cpu!.externalData, m.graphs.cuda!.externalData], [[data], [data]]);
    console.log(`      shared data file ${data}: ${m.files[data].bytes} bytes`);
    // The CPU EP has no bf16 kernels: its refusal names a bf16 node, which proves the file's dtype.
    await assert.rejects(
      ort.InferenceSession.create(join(out, bf16.file), { executionProviders: ['cpu'] }),
      (e: Error) => {
        console.log(`      bf16 graph on the CPU EP: ${e.message.split('\n')[0].slice(0, 160)}`);
        return /Could not find an implementation for (MatMulNBits|MatMul|Cast|Gather|SimplifiedLayerNormalization)/.test(
          e.message,
        );
      },
    );
    // The fp16 graph of the same import still runs here and agrees with the CPU graph (unchanged by bf16).
    const inputs = json(join(FIXTURES, 'gemma2-tiny', 'inputs.json'));
    const cpu = await runLogits(join(out, m.graphs.cpu!.file), inputs.padded);
    const cuda = await runLogits(join(out, m.graphs.cuda!.file), inputs.padded, { executionProviders: ['cpu'] });
    const d = maxAbsDiff(cuda, cpu);
    console.log(
      `      fp16 graph vs fp32 graph: ${d.toExponential(3)} (tolerance ${checkTolerance({ activations: 'float16' })})`,
    );
    assert.ok(d <= checkTolerance({ activations: 'float16' }));
  });

  it('--target l4: the bf16 GPU graph + the fp32 CPU reference, sharing one data file (embedding stored once, in bf16)', async () => {
    const imp = async (target: 't4' | 'l4') => {
      const plan = planTarget(target);
      const dir = join(tmp, target);
      await importCheckpoint({
        base: join(FIXTURES, 'gemma2-tiny'),
        tokenizer: join(tmp, 'tok'),
        quant: plan.quantKind,
        graphs: plan.graphs,
        attentionByGraph: plan.attention,
        template: 'gemma-chat',
        maxTokens: 256,
        labels: ['winner_model_a', 'winner_model_b', 'winner_tie'],
        out: dir,
      });
      return { dir, m: readManifest(dir) };
    };
    const l4 = await imp('l4');
    const t4 = await imp('t4');
    assert.deepEqual(Object.keys(l4.m.graphs).sort(), ['cpu', 'cuda-bf16']);
    const bytes = (x: { m: Manifest }) => x.m.files['model.onnx.data'].bytes;
    console.log(`      data bytes: l4 ${bytes(l4)}, t4 ${bytes(t4)}`);
    assert.ok(Math.abs(bytes(l4) - bytes(t4)) <= 0.02 * bytes(t4), 'the l4 folder stores a tensor twice');
    // Its CPU graph (bf16 embedding table, Gather + Cast on the CPU EP) runs and agrees with the t4 one.
    const inputs = json(join(FIXTURES, 'gemma2-tiny', 'inputs.json'));
    const hf = (json(join(FIXTURES, 'gemma2-tiny', 'expected.json')).base_logits.padded as number[][]).flat();
    const a = await runLogits(join(l4.dir, l4.m.graphs.cpu!.file), inputs.padded);
    const b = await runLogits(join(t4.dir, t4.m.graphs.cpu!.file), inputs.padded);
    const d = maxAbsDiff(a, b);
    console.log(
      `      l4 CPU graph (bf16 table) vs t4 CPU graph (fp16 table): ${d.toExponential(3)}; vs HF ${maxAbsDiff(a, hf).toExponential(3)} (t4 ${maxAbsDiff(b, hf).toExponential(3)}: int4, informative); tolerance 5e-2 (the tables' bf16 vs fp16 rounding of the fixture's fp32 values; a bf16 checkpoint's are exact in both)`,
    );
    assert.ok(d <= 5e-2);
    assert.ok(Math.abs(maxAbsDiff(a, hf) - maxAbsDiff(b, hf)) <= 5e-2);
  });

  it('T4 (7.5) runs the cuda graph, L4 (8.9) / A100 (8.0) / H100 (9.0) the cuda-bf16 graph; --gpu-precision overrides', () => {
    const pick = (caps: string[], forced?: string) => {
      const p = resolveGpuPrecision('auto', forced, { ...process.env, ARENAKIT_NVIDIA_SMI: fakeComputeCapSmi(caps) })!;
      const g = chooseGraph(m, 'cuda', p.precision)!;
      console.log(`      ${caps.join('+')}${forced ? ` --gpu-precision ${forced}` : ''}: ${g.kind} (${p.reason})`);
      return g.kind;
    };
    assert.equal(pick(['7.5', '7.5']), 'cuda');
    assert.equal(pick(['8.9']), 'cuda-bf16');
    assert.equal(pick(['8.0']), 'cuda-bf16');
    assert.equal(pick(['9.0']), 'cuda-bf16');
    assert.equal(pick(['8.9', '7.5']), 'cuda'); // the oldest GPU decides
    assert.equal(pick(['8.9'], 'fp16'), 'cuda');
    assert.equal(pick(['7.5'], 'bf16'), 'cuda-bf16');
    // Every other EP runs the fp32 graph.
    assert.equal(chooseGraph(m, 'cpu', 'bfloat16')!.kind, 'cpu');
    assert.equal(chooseGraph(m, 'webgpu', 'bfloat16')!.kind, 'cpu');
  });

  it('weights without the wanted GPU graph run the other one, with a note naming the import flag', () => {
    const only = (k: 'cuda' | 'cuda-bf16'): Manifest => ({ ...m, graphs: { cpu: m.graphs.cpu, [k]: m.graphs[k] } });
    const a = chooseGraph(only('cuda'), 'cuda', 'bfloat16')!;
    console.log(`      bf16 wanted, fp16 only: ${a.kind}: ${a.note}`);
    assert.equal(a.kind, 'cuda');
    assert.match(a.note!, /no cuda-bf16 graph .*import --graphs cuda-bf16/);
    const b = chooseGraph(only('cuda-bf16'), 'cuda', 'float16')!;
    assert.equal(b.kind, 'cuda-bf16');
    assert.match(b.note!, /no cuda graph/);
    const c = chooseGraph({ ...m, graphs: { cpu: m.graphs.cpu } }, 'cuda', 'bfloat16')!;
    assert.equal(c.kind, 'cpu');
    assert.equal(chooseGraph(m, 'cuda', 'bfloat16')!.note, undefined);
  });

  it('self-check tolerance: fp32 5e-3 < fp16 5e-2 < bf16 2e-1 (bf16 rounds 8x coarser than fp16)', () => {
    const t = (a: 'float32' | 'float16' | 'bfloat16') => checkTolerance({ activations: a });
    console.log(`      tolerances: fp32 ${t('float32')}, fp16 ${t('float16')}, bf16 ${t('bfloat16')}`);
    assert.ok(t('float32') < t('float16') && t('float16') < t('bfloat16') && t('bfloat16') <= 0.25);
  });

  it('predict: the precision is settled once from nvidia-smi (8.9 -> bf16) and printed; --ep cpu never asks it', () => {
    ensureBuilt();
    const csv = join(__dirname, '..', 'demo', 'arena-demo.csv');
    const marker = join(tmp, 'asked');
    const smi = join(tmp, 'nvidia-smi');
    writeFileSync(
      smi,
      `#!/bin/sh\necho "$@" >> ${marker}\nif [ "$1" = "--query-gpu=compute_cap" ]; then echo 8.9; exit 0; fi\nexit 9\n`,
    );
    chmodSync(smi, 0o755);
    const run = (ep: string) =>
      spawnSync(
        process.execPath,
        [RUNNER, 'predict', '--data', csv, '--weights', out, '--ep', ep, '--out', join(tmp, `sub-${ep}.csv`)],
        { encoding: 'utf8', env: { ...process.env, ARENAKIT_NVIDIA_SMI: smi, ARENAKIT_SELFCHECK_DIR: join(tmp, 'v') } },
      );
    const auto = run('auto');
    assert.equal(auto.status, 0, auto.stderr);
    const line = auto.stderr.split('\n').find((l) => l.startsWith('gpu precision:'));
    console.log(`      --ep auto: ${line}`);
    assert.match(line ?? '', /gpu precision: bfloat16 \(compute capability 8\.9 \(sm89\)/);
    // No CUDA here: the run falls back to the fp32 CPU graph and says which graph ran.
    const summary = JSON.parse(auto.stdout.trim().split('\n').pop()!);
    assert.deepEqual(summary.activations, ['float32']);
    rmSync(marker, { force: true });
    const cpu = run('cpu');
    assert.equal(cpu.status, 0, cpu.stderr);
    assert.ok(!cpu.stderr.includes('gpu precision:'));
    assert.ok(
      !existsSync(marker),
      `--ep cpu asked nvidia-smi: ${existsSync(marker) ? readFileSync(marker, 'utf8') : ''}`,
    );
  });
});
