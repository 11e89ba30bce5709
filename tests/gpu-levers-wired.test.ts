// Issue 21, the GPU levers wired into the runner and checked on the CPU EP: the token budget per batch sized from
// the GPU's free memory (`--token-budget auto`, the default: nvidia-smi's memory.free, the graph's weight bytes,
// the model's activation bytes per token) and IO binding (ARENAKIT_IO_BINDING=1: ORT writes the logits into a
// buffer of the runner's). Both must leave a submission as it was: the budget only changes which rows share a
// batch, the binding only where the logits land.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { parseModel, serialise } from '../src/graph/serialise';
import {
  activationBytesPerToken,
  chooseTokenBudget,
  DEFAULT_TOKEN_BUDGET,
  graphWeightBytes,
  memoryTokenBudget,
  parseFreeMemory,
  readGpuFreeMemory,
} from '../src/infer/gpu-levers';
import { runLogits } from '../src/infer/session';
import { buildDecoderGraph } from '../src/model/lower';
import { tinyConfig, tinyWeights } from '../src/model/tiny';
import { readManifest } from '../src/weights/manifest';
import { FIXTURES, gemma2bConfig } from './helpers/fixtures';
import { makePeakedModel, maxDiff, node, RUNNER, submissionProbs } from './helpers/peaked';

const gemma2b = gemma2bConfig;

/** A fake nvidia-smi: memory.free per GPU as given (MiB); `marker` records every call's arguments. */
function fakeSmi(dir: string, freeMiB: number[], marker: string): string {
  const p = join(dir, 'nvidia-smi');
  writeFileSync(
    p,
    `#!/bin/sh\necho "$@" >> ${marker}\nif [ "$1" = "--query-gpu=memory.free" ]; then\n${freeMiB.map((m) => `echo "${m} MiB"`).join('\n')}\nexit 0; fi\nexit 9\n`,
  );
  chmodSync(p, 0o755);
  return p;
}

describe('GPU levers wired (issue 21): memory-sized token budget and IO binding, checked on the CPU EP', function () {
  this.timeout(300_000);
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-levers-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('free memory from nvidia-smi: the smallest of the GPUs used; a failing or odd nvidia-smi gives a note, not an error', () => {
    assert.deepEqual(parseFreeMemory('15101 MiB\n22000 MiB\n'), [15101 * 2 ** 20, 22000 * 2 ** 20]);
    assert.throws(() => parseFreeMemory('15101 MB'), /memory\.free printed "15101 MB"/);
    const smi = fakeSmi(tmp, [15101, 9000], join(tmp, 'calls'));
    const env = { ...process.env, ARENAKIT_NVIDIA_SMI: smi };
    assert.equal(readGpuFreeMemory([], env).bytes, 9000 * 2 ** 20);
    assert.equal(readGpuFreeMemory([0], env).bytes, 15101 * 2 ** 20);
    assert.equal(readGpuFreeMemory([1], env).bytes, 9000 * 2 ** 20);
    assert.match(readGpuFreeMemory([4], env).note ?? '', /listed no memory for GPU 4/);
    const gone = readGpuFreeMemory([], { ...process.env, ARENAKIT_NVIDIA_SMI: join(tmp, 'absent') });
    console.log(`      no nvidia-smi: ${gone.note}`);
    assert.equal(gone.bytes, undefined);
    assert.match(gone.note ?? '', /memory\.free failed/);
  });

  it('chooseTokenBudget: a number is kept; auto is memory-sized on CUDA only (Gemma-2-2B, T4 with 14.7 GiB free), 16384 elsewhere', () => {
    const c = gemma2b();
    const base = {
      config: c,
      weightBytes: 2.3e9,
      activations: 'float16' as const,
      variant: 'fused' as const,
      maxTokens: 2048,
    };
    const free = 15101 * 2 ** 20;
    assert.deepEqual(chooseTokenBudget({ ...base, requested: 8192, ep: 'cuda', gpuFreeBytes: free }), {
      budget: 8192,
      reason: '--token-budget',
    });
    for (const ep of ['cpu', 'webgpu'])
      assert.equal(
        chooseTokenBudget({ ...base, requested: 'auto', ep, gpuFreeBytes: free }).budget,
        DEFAULT_TOKEN_BUDGET,
      );
    assert.equal(chooseTokenBudget({ ...base, requested: 'auto', ep: 'cuda' }).budget, DEFAULT_TOKEN_BUDGET);
    const fused = chooseTokenBudget({ ...base, requested: 'auto', ep: 'cuda', gpuFreeBytes: free });
    const explicit = chooseTokenBudget({
      ...base,
      variant: 'explicit',
      requested: 'auto',
      ep: 'cuda',
      gpuFreeBytes: free,
    });
    console.log(`      T4 fused: ${fused.budget} (${fused.reason}); explicit at 2,048 tokens: ${explicit.budget}`);
    assert.equal(
      fused.budget,
      memoryTokenBudget({
        memoryBytes: free,
        weightBytes: 2.3e9,
        perTokenBytes: activationBytesPerToken(c, 2),
        maxTokens: 2048,
      }),
    );
    assert.ok(explicit.budget < fused.budget && explicit.budget >= 2048);
    const bf16 = chooseTokenBudget({
      ...base,
      activations: 'bfloat16',
      requested: 'auto',
      ep: 'cuda',
      gpuFreeBytes: free,
    });
    assert.equal(bf16.budget, fused.budget);
  });

  it("graphWeightBytes: a CPU-only import's graph holds every byte of its data file (within 2 %: small tensors are inline)", () => {
    const out = makePeakedModel(tmp, 'peaked');
    const m = readManifest(out);
    const g = m.graphs.cpu!;
    const bytes = graphWeightBytes(parseModel(readFileSync(join(out, g.file))));
    const data = g.externalData.reduce((a, f) => a + statSync(join(out, f)).size, 0);
    const tensors = parseModel(readFileSync(join(out, g.file))).graph!.initializer!.length;
    console.log(`      weights in the graph ${bytes} bytes; data file ${data} bytes; ${tensors} initializers`);
    // The graph's small tensors (norms, rotary tables) are stored inline, not in the data file.
    assert.ok(Math.abs(bytes - data) <= 0.02 * data, `${bytes} vs ${data}`);
  });

  it('predict --ep cpu: the memory-sized budget of a 16 GB GPU, 300 tokens and the default give the same submission', () => {
    const out = join(tmp, 'peaked');
    const csv = join(__dirname, '..', 'demo', 'arena-demo.csv');
    const m = readManifest(out);
    const g = m.graphs.cpu!;
    const sized = chooseTokenBudget({
      requested: 'auto',
      ep: 'cuda',
      gpuFreeBytes: 15101 * 2 ** 20,
      weightBytes: graphWeightBytes(parseModel(readFileSync(join(out, g.file)))),
      config: m.config,
      activations: 'float16',
      variant: 'fused',
      maxTokens: m.maxTokens,
    }).budget;
    const run = (budget: string | null, env: NodeJS.ProcessEnv = {}) => {
      const sub = join(tmp, `sub-${budget ?? 'auto'}-${env.ARENAKIT_IO_BINDING ?? ''}.csv`);
      const r = node(
        RUNNER,
        [
          'predict',
          '--data',
          csv,
          '--weights',
          out,
          '--ep',
          'cpu',
          '--out',
          sub,
          ...(budget ? ['--token-budget', budget] : []),
        ],
        env,
      );
      assert.equal(r.status, 0, r.stderr);
      return {
        probs: submissionProbs(sub),
        text: readFileSync(sub, 'utf8'),
        summary: JSON.parse(r.stdout.trim().split('\n').pop()!),
      };
    };
    const auto = run(null);
    assert.deepEqual(auto.summary.token_budget, [DEFAULT_TOKEN_BUDGET]);
    for (const b of [String(sized), '300']) {
      const r = run(b);
      assert.deepEqual(r.summary.token_budget, [Number(b)]);
      const d = maxDiff(r.probs, auto.probs);
      console.log(`      --token-budget ${b} vs auto (${DEFAULT_TOKEN_BUDGET}): max prob diff ${d} (tolerance 1e-6)`);
      assert.ok(d <= 1e-6);
    }
    // IO binding: the same submission, byte for byte.
    const bound = run(null, { ARENAKIT_IO_BINDING: '1' });
    console.log(`      ARENAKIT_IO_BINDING=1: submission ${bound.text === auto.text ? 'identical' : 'DIFFERENT'}`);
    assert.equal(bound.text, auto.text);
  });

  it('predict --ep auto without CUDA: the free memory is read once; the CPU fallback keeps the default budget', () => {
    const out = join(tmp, 'peaked');
    const csv = join(__dirname, '..', 'demo', 'arena-demo.csv');
    const marker = join(tmp, 'calls-cuda');
    const smi = fakeSmi(mkdtempSync(join(tmp, 'smi-')), [15101], marker);
    const r = node(
      RUNNER,
      ['predict', '--data', csv, '--weights', out, '--ep', 'auto', '--out', join(tmp, 'sub-cuda.csv')],
      {
        ARENAKIT_NVIDIA_SMI: smi,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const calls = readFileSync(marker, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('--query-gpu=memory.free'));
    const line = r.stderr.split('\n').find((l) => l.includes('tokens per batch'));
    console.log(`      memory.free asked ${calls.length}x; ${line?.replace(/^.*EP /, 'EP ')}`);
    assert.equal(calls.length, 1);
    assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()!).token_budget, [DEFAULT_TOKEN_BUDGET]);
  });

  it('IO binding on the CPU EP: the logits ORT writes into the bound buffer equal an unbound run, bit for bit', async () => {
    const c = tinyConfig({ vocabSize: 512 });
    const bytes = serialise(
      buildDecoderGraph(c, tinyWeights(c, 2), {
        linear: { kind: 'nbits', bits: 4, blockSize: 32, symmetric: true },
        activations: 'float32',
      }),
    );
    const s = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
    const inp = JSON.parse(readFileSync(join(FIXTURES, 'gemma2-tiny', 'inputs.json'), 'utf8')).padded;
    const n = inp.input_ids.length;
    const L = inp.input_ids[0].length;
    const ids = BigInt64Array.from(inp.input_ids.flat().map(BigInt));
    const mask = BigInt64Array.from(inp.attention_mask.flat().map(BigInt));
    const saved = process.env.ARENAKIT_IO_BINDING;
    try {
      delete process.env.ARENAKIT_IO_BINDING;
      const plain = await runLogits(s, ids, mask, n, L);
      process.env.ARENAKIT_IO_BINDING = '1';
      const bound = await runLogits(s, ids, mask, n, L);
      // The bound buffer is what came back (ORT filled it): a stale (zero) buffer would differ.
      let d = 0;
      plain.forEach((x, i) => (d = Math.max(d, Math.abs(x - bound[i]))));
      console.log(
        `      ${n} rows x ${L} tokens: bound vs plain max abs diff ${d} (tolerance 0); logits ${Array.from(bound.slice(0, 3)).map((x) => x.toFixed(4))}`,
      );
      assert.equal(d, 0);
      assert.ok(bound.some((x) => x !== 0));
    } finally {
      if (saved === undefined) delete process.env.ARENAKIT_IO_BINDING;
      else process.env.ARENAKIT_IO_BINDING = saved;
      await s.release();
    }
  });
});
