// CPU prefill benchmark (issue 21): the kit's CPU graphs on a Llama-architecture model with Gemma-2-2B widths
// (hidden 2304, intermediate 9216, 8 heads / 4 KV heads, head_dim 256, 4 layers, vocab 32000), weights from a
// seed (normal, std 0.02 = HF's initializer_range; norms 1), one forward per row, logits at the last token.
// Settings: fp32, int8 / int4 x accuracy_level 0 / 4 x block 32 / 128. Interleaved rounds (the order rotates
// each round), tokens/s per setting as the median over rounds, and ratios paired within a round.
// Also: the accuracy cost of each setting (max |logit diff| against the fp32 graph on the same rows), the
// 16-row batched set (batch 1 vs one padded batch), and the session start from the plain vs the saved
// optimized graph (src/infer/optimized.ts).
// Run: `npx tsx bench/cpu-prefill-bench.ts [--rounds 5] [--threads 2] [--only int8,int4] [--len 512] [--long 2048]`
// (--long N: also fused vs explicit attention of the default setting on one N-token row)
// (needs ~6 GB of memory and ~1.5 GB under os.tmpdir(); nothing is kept).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { parseModel, writeModel } from '../src/graph/serialise';
import { externalStore } from '../src/graph/store';
import { buildDecoderGraph } from '../src/model/lower';
import type { HostTensor, LinearFormat, ModelConfig, WeightSource } from '../src/types';
import { forName } from '../src/util/rng';
import { parseHfConfig } from '../src/weights/hfconfig';
import { loadOptions, prepackSafe, saveOptions, type OptimizedPaths } from '../src/infer/optimized';
import { expandedDir, expansionPlan, type ExpandedData } from '../src/weights/expand';

/** The issue's bench model as an HF config (LlamaForSequenceClassification, 3 labels). */
export function benchConfig(layers = 4): ModelConfig {
  return parseHfConfig(
    {
      architectures: ['LlamaForSequenceClassification'],
      model_type: 'llama',
      hidden_size: 2304,
      intermediate_size: 9216,
      num_hidden_layers: layers,
      num_attention_heads: 8,
      num_key_value_heads: 4,
      head_dim: 256,
      hidden_act: 'silu',
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      max_position_embeddings: 4096,
      vocab_size: 32000,
      pad_token_id: 0,
      tie_word_embeddings: false,
      attention_bias: false,
      mlp_bias: false,
      id2label: { 0: 'winner_model_a', 1: 'winner_model_b', 2: 'winner_tie' },
      label2id: { winner_model_a: 0, winner_model_b: 1, winner_tie: 2 },
      torch_dtype: 'float32',
    },
    'bench-config.json',
  );
}

/** Seeded weights by HF name (each tensor its own stream), cached: every setting reads the same values. */
export function benchWeights(c: ModelConfig, seed: number): WeightSource {
  const cache = new Map<string, HostTensor>();
  const H = c.hiddenSize;
  const shapeOf = (n: string): number[] => {
    if (n === 'model.embed_tokens.weight') return [c.vocabSize, H];
    if (n === 'score.weight') return [c.numLabels, H];
    if (/norm\.weight$/.test(n)) return [H];
    if (/q_proj/.test(n)) return [c.numHeads * c.headDim, H];
    if (/[kv]_proj/.test(n)) return [c.numKvHeads * c.headDim, H];
    if (/o_proj/.test(n)) return [H, c.numHeads * c.headDim];
    if (/(gate|up)_proj/.test(n)) return [c.intermediateSize, H];
    if (/down_proj/.test(n)) return [H, c.intermediateSize];
    throw new Error(`bench model: no tensor "${n}"`);
  };
  return (name: string) => {
    let t = cache.get(name);
    if (!t) {
      const shape = shapeOf(name);
      const data = new Float32Array(shape.reduce((a, d) => a * d, 1));
      if (/norm\.weight$/.test(name)) data.fill(1);
      else {
        const rng = forName(seed, name);
        for (let i = 0; i < data.length; i++) data[i] = rng.normal() * 0.02;
      }
      t = { shape, data };
      cache.set(name, t);
    }
    return t;
  };
}

export interface Setting {
  name: string;
  linear: LinearFormat;
  accuracyLevel?: number;
  /** false: the whole last layer on every token (before issue 21). */
  lastTokenEarly?: boolean;
  /** true: gate|up packed into one MatMul + Split (before issue 21); default two MatMuls. */
  packGateUp?: boolean;
  attention?: 'fused' | 'explicit';
}

const nb = (bits: 4 | 8, blockSize: 32 | 128): LinearFormat => ({ kind: 'nbits', bits, blockSize, symmetric: true });
export const SETTINGS: Setting[] = [
  { name: 'fp32', linear: { kind: 'float' } },
  { name: 'int8 b32 L0', linear: nb(8, 32), accuracyLevel: 0 },
  { name: 'int8 b32 L4', linear: nb(8, 32), accuracyLevel: 4 },
  { name: 'int8 b128 L4', linear: nb(8, 128), accuracyLevel: 4 },
  { name: 'int4 b32 L0', linear: nb(4, 32), accuracyLevel: 0 },
  { name: 'int4 b32 L4', linear: nb(4, 32), accuracyLevel: 4 },
  { name: 'int4 b128 L4', linear: nb(4, 128), accuracyLevel: 4 },
  { name: 'int8 b128 L4 whole-last', linear: nb(8, 128), accuracyLevel: 4, lastTokenEarly: false },
  { name: 'int8 b128 L4 packed-gate-up', linear: nb(8, 128), accuracyLevel: 4, packGateUp: true },
  // MatMulInteger: int8 weights per output feature, int8 activations per token (MLAS u8s8 GEMM, AMX here)
  { name: 'int8 rows', linear: { kind: 'int8-rows' } },
  // 4-bit codes x integer multipliers per block of 32, expanded to int8 rows at session start (the CPU-only int4 default)
  { name: 'int4 rows', linear: { kind: 'int4-rows', blockSize: 32 } },
];
/** The default CPU import (issue 21): int8 rows (MatMulInteger); before it int8 MatMulNBits block 128, level 4. */
export const DEFAULT_SETTING = 'int8 rows';
/** GEMM peaks of this machine type measured in issue 21 (fp32 SGEMM, int8 VNNI), for the fraction-of-peak column. */
const PEAK_GOPS = { float: 442, int8: 1012 };

/** Multiply-add work of one row of S tokens through the linears (x2 = ops), the whole last layer counted. */
export function linearOps(c: ModelConfig, S: number): number {
  const H = c.hiddenSize;
  const qkvo = H * c.headDim * (2 * c.numHeads + 2 * c.numKvHeads);
  return 2 * S * c.numLayers * (qkvo + 3 * H * c.intermediateSize) + 2 * c.numLabels * H;
}

/** Writes a setting's graph (external data beside it); returns the .onnx path. */
export function writeBenchGraph(dir: string, c: ModelConfig, w: WeightSource, s: Setting): string {
  const file = join(dir, `${s.name.replace(/\s+/g, '_')}.onnx`);
  const store = externalStore(file + '.data');
  // int4 rows: the codes in the data file, the int8 weights expanded at session start (benchSession), as a
  // weights directory's manifest records them (src/weights/expand.ts)
  const plan = s.linear.kind === 'int4-rows' ? expansionPlan(store, `${basename(file)}.int8`) : null;
  rmSync(file + EXPAND_SUFFIX, { force: true });
  try {
    const g = buildDecoderGraph(c, w, {
      linear: s.linear,
      activations: 'float32',
      accuracyLevel: s.accuracyLevel,
      lastTokenEarly: s.lastTokenEarly,
      packGateUp: s.packGateUp,
      attention: s.attention,
      store,
      maxTokens: 2048,
      maxSeqLen: 2048,
      embedding: s.linear.kind === 'float' ? 'float32' : 'float16',
      int4Rows: plan?.put,
    });
    writeModel(file, g);
    if (plan) writeFileSync(file + EXPAND_SUFFIX, JSON.stringify(plan.entry));
  } finally {
    store.close();
  }
  return file;
}

const EXPAND_SUFFIX = '.expand.json';

/**
 * A session of a bench graph; an int4-rows graph opens from the folder its int8 weights are expanded into
 * (src/weights/expand.ts), the expansion timed with the first session that needs it.
 */
export async function benchSession(
  file: string,
  sopt: ort.InferenceSession.SessionOptions,
): Promise<ort.InferenceSession> {
  if (!existsSync(file + EXPAND_SUFFIX)) return ort.InferenceSession.create(file, sopt);
  const expand = JSON.parse(readFileSync(file + EXPAND_SUFFIX, 'utf8')) as ExpandedData;
  const from = expandedDir(
    dirname(file),
    { file: basename(file), externalData: [basename(file) + '.data'], expand },
    { ARENAKIT_EXPAND_DIR: join(dirname(file), 'expanded') },
  );
  return ort.InferenceSession.create(join(from, basename(file)), sopt);
}

/** Seeded token rows (ids 1..31999), all real tokens. */
export function benchRows(n: number, lengths: (i: number) => number, seed: number): number[][] {
  const rng = forName(seed, 'rows');
  return Array.from({ length: n }, (_, i) =>
    Array.from({ length: lengths(i) }, () => 1 + Math.floor(rng.next() * 31999)),
  );
}

/** One padded batch (right padding, pad 0) -> logits, wall seconds and CPU seconds of this process (all threads). */
export async function runBatch(
  s: ort.InferenceSession,
  rows: number[][],
): Promise<{ logits: Float32Array; s: number; cpu: number }> {
  const B = rows.length;
  const S = Math.max(...rows.map((r) => r.length));
  const ids = new BigInt64Array(B * S);
  const mask = new BigInt64Array(B * S);
  rows.forEach((r, b) => r.forEach((t, i) => ((ids[b * S + i] = BigInt(t)), (mask[b * S + i] = 1n))));
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const out = await s.run({
    input_ids: new ort.Tensor('int64', ids, [B, S]),
    attention_mask: new ort.Tensor('int64', mask, [B, S]),
  });
  const s1 = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  return { logits: out.logits.data as Float32Array, s: s1, cpu: (c.user + c.system) / 1e6 };
}

export const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
export const maxAbs = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

/** Session start of a setting from the plain graph vs from its saved optimized graph (interleaved rounds). */
async function startBench(
  dir: string,
  c: ModelConfig,
  w: WeightSource,
  rounds: number,
  sopt: ort.InferenceSession.SessionOptions,
  name: string,
): Promise<Record<string, number>> {
  const s = SETTINGS.find((x) => x.name === name)!;
  const file = writeBenchGraph(dir, c, w, s); // already written by the rounds: same bytes, rewritten
  const tag = name.replace(/\s+/g, '_');
  const p: OptimizedPaths = {
    model: join(dir, `${tag}.opt.onnx`),
    partial: join(dir, `${tag}.opt.partial.onnx`),
    dataName: `${tag}.opt.data`,
  };
  const t0 = Date.now();
  await (
    await benchSession(file, { ...sopt, ...saveOptions(p, prepackSafe(parseModel(readFileSync(file)))) })
  ).release();
  const save = (Date.now() - t0) / 1000;
  const plain: number[] = [];
  const opt: number[] = [];
  for (let r = 0; r < Math.max(3, rounds); r++)
    for (const which of r % 2 ? ['opt', 'plain'] : ['plain', 'opt']) {
      const t = Date.now();
      const sess = await (which === 'plain' ? benchSession : ort.InferenceSession.create)(
        which === 'plain' ? file : p.partial,
        which === 'plain' ? sopt : { ...sopt, ...loadOptions },
      );
      (which === 'plain' ? plain : opt).push((Date.now() - t) / 1000);
      await sess.release();
    }
  return {
    plain_s: +median(plain).toFixed(3),
    from_saved_optimized_s: +median(opt).toFixed(3),
    first_start_saving_s: +save.toFixed(3),
  };
}

/** Fused vs explicit attention of the default setting on one row of `len` tokens (interleaved, CPU seconds). */
async function longBench(
  dir: string,
  c: ModelConfig,
  w: WeightSource,
  len: number,
  rounds: number,
  sopt: ort.InferenceSession.SessionOptions,
): Promise<Record<string, number>> {
  const base = SETTINGS.find((x) => x.name === DEFAULT_SETTING)!;
  const sess: Record<string, ort.InferenceSession> = {};
  for (const attention of ['fused', 'explicit'] as const)
    sess[attention] = await benchSession(
      writeBenchGraph(dir, c, w, { ...base, name: `${base.name} ${attention}`, attention }),
      sopt,
    );
  const row = benchRows(1, () => len, 4);
  const d = maxAbs((await runBatch(sess.fused, row)).logits, (await runBatch(sess.explicit, row)).logits);
  const ratio: number[] = [];
  const tps: Record<string, number[]> = { fused: [], explicit: [] };
  for (let r = 0; r < rounds; r++) {
    const cpu: Record<string, number> = {};
    for (const a of r % 2 ? ['explicit', 'fused'] : ['fused', 'explicit']) cpu[a] = (await runBatch(sess[a], row)).cpu;
    ratio.push(cpu.fused / cpu.explicit);
    for (const a of ['fused', 'explicit']) tps[a].push((len * Number(sopt.intraOpNumThreads)) / cpu[a]);
  }
  for (const s of Object.values(sess)) await s.release();
  return {
    len,
    fused_cpu_tokens_per_s: Math.round(median(tps.fused)),
    explicit_cpu_tokens_per_s: Math.round(median(tps.explicit)),
    explicit_speedup: +median(ratio).toFixed(2),
    max_logit_diff: +d.toExponential(2),
  };
}

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
}

export async function cpuPrefillBench(): Promise<Record<string, unknown>> {
  const rounds = Number(arg('rounds', '5'));
  const threads = Number(arg('threads', '2'));
  const len = Number(arg('len', '512'));
  const only = arg('only', '');
  const settings = SETTINGS.filter(
    (s) => s.name === 'fp32' || !only || only.split(',').some((o) => s.name.includes(o)),
  );
  const c = benchConfig();
  const w = benchWeights(c, 21);
  const dir = mkdtempSync(join(tmpdir(), 'arenakit-prefill-'));
  // no spinning: a thread waiting for work sleeps, so CPU seconds count work (the machine is shared)
  const sopt = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all' as const,
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
  try {
    const sessions = new Map<string, ort.InferenceSession>();
    const start: Record<string, number> = {};
    for (const s of settings) {
      const file = writeBenchGraph(dir, c, w, s);
      const t0 = Date.now();
      sessions.set(s.name, await benchSession(file, sopt));
      start[s.name] = (Date.now() - t0) / 1000;
      process.stderr.write(`built and loaded ${s.name} (session start ${start[s.name].toFixed(2)} s)\n`);
    }
    const row = benchRows(1, () => len, 1);
    // accuracy: max |logit diff| against fp32 on 4 rows of `len` tokens (one batch)
    const accRows = benchRows(4, () => len, 2);
    const ref = (await runBatch(sessions.get('fp32')!, accRows)).logits;
    const acc: Record<string, number> = {};
    for (const s of settings) acc[s.name] = maxAbs((await runBatch(sessions.get(s.name)!, accRows)).logits, ref);
    for (const s of settings) await runBatch(sessions.get(s.name)!, row); // warm-up
    const tps: Record<string, number[]> = Object.fromEntries(settings.map((s) => [s.name, []]));
    const cpuTps: Record<string, number[]> = Object.fromEntries(settings.map((s) => [s.name, []]));
    const cpuRatio: Record<string, number[]> = Object.fromEntries(settings.map((s) => [s.name, []]));
    const ratio: Record<string, number[]> = Object.fromEntries(settings.map((s) => [s.name, []]));
    for (let r = 0; r < rounds; r++) {
      const order = settings.map((_, i) => settings[(i + r) % settings.length]);
      const secs: Record<string, number> = {};
      const cpus: Record<string, number> = {};
      for (const s of order) {
        const r = await runBatch(sessions.get(s.name)!, row);
        secs[s.name] = r.s;
        cpus[s.name] = r.cpu;
      }
      for (const s of settings) {
        tps[s.name].push(len / secs[s.name]);
        ratio[s.name].push(secs.fp32 / secs[s.name]);
        cpuTps[s.name].push((len * threads) / cpus[s.name]);
        cpuRatio[s.name].push(cpus.fp32 / cpus[s.name]);
      }
      process.stderr.write(
        `round ${r + 1}: ${settings.map((s) => `${s.name} ${(len / secs[s.name]).toFixed(0)}`).join(', ')} tokens/s\n`,
      );
    }
    const ops = linearOps(c, len);
    const table = settings.map((s) => {
      // GOP/s from the CPU-second rate (the shared machine's wall clock counts other people's work)
      const t = median(cpuTps[s.name]);
      const peak = s.linear.kind === 'float' || !s.accuracyLevel ? PEAK_GOPS.float : PEAK_GOPS.int8;
      return {
        setting: s.name,
        tokens_per_s: Math.round(median(tps[s.name])),
        vs_fp32: +median(ratio[s.name]).toFixed(2),
        cpu_tokens_per_s: Math.round(median(cpuTps[s.name])),
        cpu_vs_fp32: +median(cpuRatio[s.name]).toFixed(2),
        linear_gops: Math.round((ops / len) * t * 1e-9),
        of_peak: +(((ops / len) * t * 1e-9) / peak).toFixed(2),
        max_logit_diff_vs_fp32: +acc[s.name].toExponential(2),
        session_start_s: +start[s.name].toFixed(2),
      };
    });
    const logitScale = ref.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    // the 16-row set: seeded lengths 64..512, one row at a time vs one padded batch, default setting
    const def = sessions.get(DEFAULT_SETTING) ?? sessions.get(settings[settings.length - 1].name)!;
    const set = benchRows(16, (i) => 64 + ((i * 997 + 331) % 449), 3);
    const real = set.reduce((a, r) => a + r.length, 0);
    let one = 0;
    let oneCpu = 0;
    for (const r of set) {
      const x = await runBatch(def, [r]);
      one += x.s;
      oneCpu += x.cpu;
    }
    const padded = await runBatch(def, set);
    for (const s of sessions.values()) await s.release();
    const long = Number(arg('long', '0'));
    const longRow = long ? await longBench(dir, c, w, long, Math.min(rounds, 3), sopt) : undefined;
    const startup = {
      [DEFAULT_SETTING]: await startBench(dir, c, w, rounds, sopt, DEFAULT_SETTING),
      fp32: await startBench(dir, c, w, rounds, sopt, 'fp32'),
    };
    return {
      model: 'Llama, Gemma-2-2B widths, 4 layers, vocab 32000, seed 21',
      threads,
      rounds,
      len,
      fp32_logit_scale: +logitScale.toFixed(3),
      table,
      batched_16_rows: {
        setting: DEFAULT_SETTING,
        real_tokens: real,
        batch1_tokens_per_s: Math.round(real / one),
        padded_batch_tokens_per_s: Math.round(real / padded.s),
        batch1_cpu_tokens_per_s: Math.round((real * threads) / oneCpu),
        padded_batch_cpu_tokens_per_s: Math.round((real * threads) / padded.cpu),
      },
      session_start: startup,
      ...(longRow ? { long_row_attention: longRow } : {}),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Run directly with tsx only: in the dist/bench.cjs bundle `require.main === module` holds for every module.
if (process.argv[1] && /cpu-prefill-bench\.ts$/.test(process.argv[1]))
  cpuPrefillBench().then((r) => console.log(JSON.stringify(r, null, 2)));
