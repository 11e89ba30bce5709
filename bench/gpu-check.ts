// The prepared GPU check (issue 22 item 9; bench/gpu-check.sh ships and runs it): on the machine it runs
// on, generate a seeded model at Gemma-2-2B widths (no weights travel), import it as `--target t4` writes
// it (fp16 GPU graph with both attention variants + the fp32 CPU reference, one shared data file), then on
// every EP that loads (CPU, CUDA when its provider libraries resolve, WebGPU through the Vulkan driver):
// the runner's self-check (src/infer/selfcheck.ts), parity with the fp32 CPU graph on a longer batch, and
// throughput. Writes one JSON report; an EP or variant that does not load is recorded with its error.
// Run: node dist/gpu-check.cjs [--width 2b|tiny] [--layers N] [--vocab N] [--batch B] [--seq S] [--reps R]
//        [--eps cpu,cuda,webgpu] [--quant int4|int8] [--seed N] --out report.json
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { parseModel } from '../src/graph/serialise';
import { chooseTokenBudget, FPA_INTB_CORES, graphWeightBytes, readGpuFreeMemory } from '../src/infer/gpu-levers';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CHECK_MAX_ROWS, CHECK_MAX_TOKENS, selfCheck } from '../src/infer/selfcheck';
import {
  createSession,
  cudaUnavailableReason,
  graphVariants,
  processRuntime,
  runLogits,
  type OpenedGraph,
} from '../src/infer/session';
import { RUNTIMES, type AttentionVariant, type Ep } from '../src/infer/runtime';
import { tinyConfig, tinyWeights } from '../src/model/tiny';
import type { ModelConfig } from '../src/types';
import { readManifest, type GraphEntry } from '../src/weights/manifest';
import { TARGETS } from '../src/weights/targets';
import { writeWeightsDir } from '../src/weights/write';

/** Gemma-2-2B's decoder widths (config.json of google/gemma-2-2b); the layer count and vocabulary are options. */
export function checkConfig(width: '2b' | 'tiny', layers: number, vocab: number): ModelConfig {
  const base = tinyConfig({ vocabSize: vocab });
  if (width === 'tiny') return { ...base, numLayers: layers };
  const H = 2304;
  return {
    ...base,
    hiddenSize: H,
    intermediateSize: 9216,
    numLayers: layers,
    numHeads: 8,
    numKvHeads: 4,
    headDim: 256,
    attnScale: 256 ** -0.5,
    slidingWindow: 4096,
    maxPositions: 8192,
    head: {
      kind: 'classifier',
      layers: [{ weight: 'score.weight', bias: null, inFeatures: H, outFeatures: 3 }],
      activation: null,
    },
  };
}

/** Seeded token rows [n, seq] in 4..vocab-1 (no padding: every row full). */
export function checkIds(n: number, seq: number, vocab: number, seed: number): Int32Array[] {
  let s = seed >>> 0 || 1;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), s);
  return Array.from({ length: n }, () => Int32Array.from({ length: seq }, () => 4 + (next() % (vocab - 4))));
}

const feeds = (rows: Int32Array[]) => {
  const n = rows.length;
  const L = rows[0].length;
  const ids = new BigInt64Array(n * L);
  rows.forEach((r, i) => r.forEach((t, j) => (ids[i * L + j] = BigInt(t))));
  return { ids, mask: new BigInt64Array(n * L).fill(1n), n, L };
};

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isFinite(d) ? d : Infinity;
  }
  return m;
}

/** What the machine says about its GPUs and Vulkan drivers (for the report; nothing depends on it). */
function machine(): Record<string, unknown> {
  const smi = spawnSync(
    'nvidia-smi',
    ['--query-gpu=name,driver_version,memory.total,compute_cap', '--format=csv,noheader'],
    {
      encoding: 'utf8',
      timeout: 15000,
    },
  );
  const icd = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d'].flatMap((d) =>
    existsSync(d) ? readdirSync(d).map((f) => join(d, f)) : [],
  );
  return {
    gpus:
      smi.status === 0
        ? smi.stdout.trim().split('\n')
        : `nvidia-smi: ${smi.error?.message ?? smi.stderr?.trim() ?? smi.status}`,
    vulkan_icds: icd,
    node: process.version,
  };
}

export async function gpuCheck(o: {
  width: '2b' | 'tiny';
  layers: number;
  vocab: number;
  batch: number;
  seq: number;
  reps: number;
  eps: Ep[];
  quant: 'int4' | 'int8';
  seed: number;
  log: (l: string) => void;
  /** Called with the report so far after each step: a run cut short by its time limit still leaves one. */
  save?: (report: Record<string, unknown>) => void;
}): Promise<Record<string, unknown>> {
  const t0 = Date.now();
  const report: Record<string, unknown> = { options: { ...o, log: undefined, save: undefined }, machine: machine() };
  const rt = processRuntime();
  report.runtime = { core: rt.runtime, ort: RUNTIMES[rt.runtime].ort, reason: rt.reason };
  const dir = mkdtempSync(join(tmpdir(), 'arenakit-gpu-check-'));
  // The self-check's verdicts go with this run: a rerun of the same seeded model must check again.
  process.env.ARENAKIT_SELFCHECK_DIR = join(dir, 'verdicts');
  try {
    const cfg = checkConfig(o.width, o.layers, o.vocab);
    const tok = join(dir, 'tok');
    mkdirSync(tok);
    // The check feeds token ids directly; the weights directory still records a tokenizer.
    writeFileSync(
      join(tok, 'tokenizer.json'),
      JSON.stringify({
        version: '1.0',
        model: { type: 'WordLevel', vocab: { '<pad>': 0, '<unk>': 1 }, unk_token: '<unk>' },
      }),
    );
    writeFileSync(join(tok, 'tokenizer_config.json'), '{}');
    const w = join(dir, 'weights');
    let t = Date.now();
    const plan = TARGETS.t4;
    await writeWeightsDir({
      dir: w,
      config: cfg,
      weights: tinyWeights(cfg, o.seed),
      quant: { kind: o.quant, blockSize: 32, symmetric: true },
      // t4's layout plus the bf16 GPU graph (sm80+: the lent H200 runs it natively), over one data file.
      graphs: [...plan.graphs, 'cuda-bf16'],
      attentionByGraph: { ...plan.attention, 'cuda-bf16': plan.attention.cuda },
      tokenizerDir: tok,
      maxTokens: Math.max(o.seq, CHECK_MAX_TOKENS),
      labels: ['winner_model_a', 'winner_model_b', 'winner_tie'],
      provenance: { tool: 'arenakit gpu-check', seed: o.seed },
    });
    const m = readManifest(w);
    report.model = {
      config: {
        hidden: cfg.hiddenSize,
        intermediate: cfg.intermediateSize,
        layers: cfg.numLayers,
        heads: cfg.numHeads,
        kv_heads: cfg.numKvHeads,
        head_dim: cfg.headDim,
        vocab: cfg.vocabSize,
      },
      quant: o.quant,
      build_seconds: (Date.now() - t) / 1000,
      files: Object.fromEntries(readdirSync(w).map((f) => [f, statSync(join(w, f)).size])),
    };
    o.log(`gpu-check: model built in ${(Date.now() - t) / 1000} s (${cfg.numLayers} layers, hidden ${cfg.hiddenSize})`);

    // The reference: the fp32 CPU graph (explicit attention, as the self-check runs it).
    const checkRows = checkIds(CHECK_MAX_ROWS, CHECK_MAX_TOKENS, cfg.vocabSize, o.seed + 1);
    const long = feeds(checkIds(o.batch, o.seq, cfg.vocabSize, o.seed + 2));
    t = Date.now();
    const ref = await createSession(w, m.graphs.cpu!, 'explicit', 'cpu', { ep: 'cpu' });
    const want = await runLogits(ref.session, long.ids, long.mask, long.n, long.L);
    report.reference = { graph: ref.graph.file, seconds: (Date.now() - t) / 1000 };
    await ref.session.release();

    const results: Record<string, unknown>[] = [];
    report.results = results;
    o.save?.({ ...report, partial: true });
    for (const ep of o.eps) {
      if (ep === 'cuda') {
        const why = cudaUnavailableReason();
        if (why) {
          results.push({ ep, loaded: false, error: why });
          o.log(`gpu-check: cuda: ${why}`);
          continue;
        }
      }
      // Every EP runs the fp16 GPU graph (both variants); CUDA also the bf16 one; WebGPU also the fp32 graph, which
      // the runner gives it (graphForEp).
      const entries =
        ep === 'webgpu'
          ? [m.graphs.cuda!, m.graphs.cpu!]
          : ep === 'cuda'
            ? [m.graphs.cuda!, m.graphs['cuda-bf16']!]
            : [m.graphs.cuda!];
      for (const g of entries)
        for (const variant of graphVariants(g)) {
          const r: Record<string, unknown> = { ep, graph: g.file, variant, activations: g.activations };
          results.push(r);
          let s: OpenedGraph | null = null;
          try {
            t = Date.now();
            s = await createSession(w, g, variant, ep, { ep });
            r.load_seconds = (Date.now() - t) / 1000;
            r.loaded = true;
          } catch (e) {
            r.loaded = false;
            r.error = (e as Error).message.split('\n')[0];
            o.log(`gpu-check: ${ep} ${variant}: ${r.error}`);
            continue;
          }
          try {
            const { graph, check } = await selfCheck(w, m, s, checkRows, {
              ep,
              gpuPrecision: g.activations === 'bfloat16' ? 'bfloat16' : 'float16',
              padId: 0,
              warn: (x) => o.log(`warning: ${x}`),
            });
            // A rejected graph is released by the self-check, which may switch (explicit, CPU): recorded, and this
            // entry goes on measuring its own graph and variant in a new session.
            r.self_check = { ...check, chose: `${graph.ep} ${graph.graph.variant} ${graph.graph.activations}` };
            if (graph !== s) {
              await graph.session.release();
              s = await createSession(w, g, variant, ep, { ep });
            }
            const got = await runLogits(s.session, long.ids, long.mask, long.n, long.L);
            r.parity_max_abs = maxAbsDiff(got, want);
            const times: number[] = [];
            for (let i = 0; i < o.reps; i++) {
              const t1 = process.hrtime.bigint();
              await runLogits(s.session, long.ids, long.mask, long.n, long.L);
              times.push(Number(process.hrtime.bigint() - t1) / 1e9);
            }
            times.sort((a, b) => a - b);
            const med = times[Math.floor(times.length / 2)];
            r.throughput = {
              batch: long.n,
              seq: long.L,
              median_seconds: med,
              tokens_per_s: (long.n * long.L) / med,
              rows_per_s: long.n / med,
            };
            await measureLevers(r, s, { w, g, variant, ep, cfg, seq: o.seq, seed: o.seed, reps: o.reps, got, long });
            o.log(
              `gpu-check: ${ep} ${g.file} ${variant}: self-check ${check.maxDiff} (${r.self_check && (r.self_check as { chose: string }).chose}), parity ${r.parity_max_abs}, ${((long.n * long.L) / med).toFixed(0)} tokens/s`,
            );
          } catch (e) {
            r.error = (e as Error).message.split('\n')[0];
            o.log(`gpu-check: ${ep} ${variant}: ${r.error}`);
          } finally {
            await s?.session.release().catch(() => {});
            o.save?.({ ...report, partial: true });
          }
        }
    }
    report.results = results;
    report.ran = results.filter((r) => r.throughput).map((r) => `${r.ep} ${r.variant} ${r.activations}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  report.seconds = (Date.now() - t0) / 1000;
  return report;
}

/**
 * Issue 21's GPU levers on one graph: IO binding (ARENAKIT_IO_BINDING=1: the logits must be identical, and the
 * rate), and on CUDA fpA_intB (ARENAKIT_FPA_INTB=1: its own session; distance from the default kernels, rate,
 * start) and the memory-sized token budget (`--token-budget auto`: nvidia-smi's free memory, the graph's
 * weight bytes) run as one batch of that many tokens: its rate, or the error if it does not fit.
 */
async function measureLevers(
  r: Record<string, unknown>,
  s: OpenedGraph,
  o: {
    w: string;
    g: GraphEntry;
    variant: AttentionVariant;
    ep: Ep;
    cfg: ModelConfig;
    seq: number;
    seed: number;
    reps: number;
    got: Float32Array;
    long: ReturnType<typeof feeds>;
  },
): Promise<void> {
  const time = async (f: () => Promise<unknown>, reps: number) => {
    const t: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t1 = process.hrtime.bigint();
      await f();
      t.push(Number(process.hrtime.bigint() - t1) / 1e9);
    }
    return t.sort((a, b) => a - b)[Math.floor(t.length / 2)];
  };
  const { long } = o;
  const saved = process.env.ARENAKIT_IO_BINDING;
  process.env.ARENAKIT_IO_BINDING = '1';
  try {
    const bound = await runLogits(s.session, long.ids, long.mask, long.n, long.L);
    const med = await time(() => runLogits(s.session, long.ids, long.mask, long.n, long.L), o.reps);
    r.io_binding = { max_abs_vs_unbound: maxAbsDiff(bound, o.got), tokens_per_s: (long.n * long.L) / med };
  } catch (e) {
    r.io_binding = { error: (e as Error).message.split('\n')[0] };
  } finally {
    if (saved === undefined) delete process.env.ARENAKIT_IO_BINDING;
    else process.env.ARENAKIT_IO_BINDING = saved;
  }
  if (o.ep !== 'cuda') return;
  // fpA_intB (ARENAKIT_FPA_INTB=1): a session of its own, where the core's provider library has the kernel.
  const runtime = processRuntime().runtime;
  if (FPA_INTB_CORES.includes(runtime) && o.g.activations !== 'float32') {
    const before = process.env.ARENAKIT_FPA_INTB;
    process.env.ARENAKIT_FPA_INTB = '1';
    let f: OpenedGraph | null = null;
    try {
      const t0 = Date.now();
      f = await createSession(o.w, o.g, o.variant, 'cuda', { ep: 'cuda' });
      const load = (Date.now() - t0) / 1000;
      const got = await runLogits(f.session, long.ids, long.mask, long.n, long.L);
      const med = await time(() => runLogits(f!.session, long.ids, long.mask, long.n, long.L), o.reps);
      r.fpa_intb = {
        load_seconds: load,
        max_abs_vs_default: maxAbsDiff(got, o.got),
        tokens_per_s: (long.n * long.L) / med,
      };
    } catch (e) {
      r.fpa_intb = { error: (e as Error).message.split('\n')[0] };
    } finally {
      if (before === undefined) delete process.env.ARENAKIT_FPA_INTB;
      else process.env.ARENAKIT_FPA_INTB = before;
      await f?.session.release().catch(() => {});
    }
  } else r.fpa_intb = { skipped: `the ${runtime} core's CUDA provider has no fpA_intB kernel` };
  const free = readGpuFreeMemory([0]);
  const b = chooseTokenBudget({
    requested: 'auto',
    ep: 'cuda',
    gpuFreeBytes: free.bytes,
    weightBytes: graphWeightBytes(parseModel(readFileSync(join(o.w, o.g.file)))),
    config: o.cfg,
    activations: o.g.activations,
    variant: o.variant,
    maxTokens: o.seq,
  });
  const rows = Math.max(1, Math.floor(b.budget / o.seq));
  const big = feeds(checkIds(rows, o.seq, o.cfg.vocabSize, o.seed + 3));
  try {
    const med = await time(() => runLogits(s.session, big.ids, big.mask, big.n, big.L), 2);
    r.memory_budget = { budget: b.budget, reason: b.reason, rows, tokens_per_s: (rows * o.seq) / med, note: free.note };
  } catch (e) {
    r.memory_budget = { budget: b.budget, reason: b.reason, rows, error: (e as Error).message.split('\n')[0] };
  }
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      width: { type: 'string', default: '2b' },
      layers: { type: 'string' },
      vocab: { type: 'string' },
      batch: { type: 'string', default: '4' },
      seq: { type: 'string', default: '512' },
      reps: { type: 'string', default: '5' },
      eps: { type: 'string', default: 'cpu,cuda,webgpu' },
      quant: { type: 'string', default: 'int4' },
      seed: { type: 'string', default: '1' },
      out: { type: 'string' },
    },
  });
  const width = v.width === 'tiny' ? 'tiny' : v.width === '2b' ? '2b' : null;
  if (!width) throw new Error(`--width must be 2b or tiny, got "${v.width}"`);
  if (!v.out) throw new Error('--out report.json is required');
  const eps = v.eps!.split(',').filter(Boolean) as Ep[];
  for (const e of eps)
    if (!['cpu', 'cuda', 'webgpu'].includes(e)) throw new Error(`--eps takes cpu, cuda, webgpu; got "${e}"`);
  if (v.quant !== 'int4' && v.quant !== 'int8') throw new Error(`--quant must be int4 or int8, got "${v.quant}"`);
  const report = await gpuCheck({
    width,
    layers: Number(v.layers ?? (width === '2b' ? 4 : 2)),
    vocab: Number(v.vocab ?? (width === '2b' ? 32768 : 512)),
    batch: Number(v.batch),
    seq: Number(v.seq),
    reps: Number(v.reps),
    eps,
    quant: v.quant,
    seed: Number(v.seed),
    log: (l) => process.stderr.write(`${l}\n`),
    save: (r) => writeFileSync(v.out!, JSON.stringify(r, null, 2) + '\n'),
  });
  writeFileSync(v.out, JSON.stringify(report, null, 2) + '\n');
  process.stderr.write(
    `gpu-check: ran ${(report.ran as string[]).join(', ') || 'nothing'}; report ${v.out} (${report.seconds} s)\n`,
  );
}

if (require.main === module)
  main().catch((e) => {
    process.stderr.write(`error: ${(e as Error).message}\n`);
    process.exit(1);
  });
