// Paired, interleaved CPU prefill benchmark of issue 21: the kit vs llama.cpp vs PyTorch (HF transformers when it
// imports, else a plain-torch eager forward mirroring it) on the same seeded bench model (bench/cpu-prefill-bench.ts),
// outside CI and package.json. Every engine is a long-lived worker (llama.cpp: bench/llamacpp-worker.mjs, a node
// child running node-llama-cpp; torch: bench/torch_prefill_worker.py) or in-process (the kit), so no start-up is
// timed. R rounds; each round runs every setting once, in an order that rotates each round; ratios are paired within
// a round and the median over rounds is reported, with median wall and CPU-second rates (tokens per CPU-second of the
// engine's process x threads). Before the rounds the engines are checked against each other on the 512-token row:
// llama.cpp's last-token logits (every GGUF type) against torch's fp32 lm_head logits, and the kit's fp32 score
// logits against torch's last hidden state times the same seeded score head.
// Prerequisites (BENCHMARKS.md, "CPU prefill: paired"): `npx tsx bench/export-bench-model.ts /tmp/benchmodel`,
// `python3 bench/gguf_from_export.py /tmp/benchmodel /tmp/gguf`, node-llama-cpp installed outside the repo, torch.
// Run: LLAMA_CPP_NODE=/tmp/llamacpp/node_modules/node-llama-cpp GGUF_DIR=/tmp/gguf HF_PYTHON=/usr/bin/python3 \
//   npx tsx bench/paired-prefill.ts [--model /tmp/benchmodel] [--rounds 5] [--threads 2] [--no-set16]
// An engine whose path is unset or missing is reported absent and the rest run.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as ort from 'onnxruntime-node';
import {
  benchConfig,
  benchWeights,
  DEFAULT_SETTING,
  linearOps,
  median,
  runBatch,
  SETTINGS,
  writeBenchGraph,
  benchSession,
} from './cpu-prefill-bench';

interface Timing {
  s: number;
  cpu: number;
  logits?: number[][];
  hidden?: number[][];
  error?: string;
}

/** A JSON-lines worker process: one request in flight at a time. */
class Worker {
  private lines: AsyncIterableIterator<string>;
  constructor(
    private p: ChildProcessWithoutNullStreams,
    public name: string,
  ) {
    this.lines = createInterface({ input: p.stdout })[Symbol.asyncIterator]();
    p.stderr.on('data', (d: Buffer) => process.stderr.write(`[${name}] ${d}`));
  }
  async read(): Promise<Record<string, unknown>> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`${this.name} worker exited`);
    const o = JSON.parse(r.value) as Record<string, unknown>;
    if (o.error) throw new Error(`${this.name}: ${String(o.error)}`);
    return o;
  }
  async call(m: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.p.stdin.write(JSON.stringify(m) + '\n');
    return this.read();
  }
  close(): void {
    this.p.stdin.write('{"cmd":"quit"}\n');
    this.p.stdin.end();
  }
}

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
}
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const argmax = (a: ArrayLike<number>) => {
  let k = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[k]) k = i;
  return k;
};

/** One timed item of a round: a setting on a row set; `run` returns wall and CPU seconds. */
interface Item {
  name: string;
  tokens: number;
  peak: 'float' | 'int8' | 'none';
  run: () => Promise<Timing>;
}

export async function pairedPrefill(): Promise<Record<string, unknown>> {
  const rounds = Number(arg('rounds', '5'));
  const threads = Number(arg('threads', '2'));
  const modelDir = arg('model', process.env.BENCH_MODEL_DIR ?? '/tmp/benchmodel');
  const ggufDir = process.env.GGUF_DIR ?? '/tmp/gguf';
  const llamaRoot = process.env.LLAMA_CPP_NODE ?? '';
  const py = process.env.HF_PYTHON ?? '';
  const set16 = !process.argv.includes('--no-set16');
  const absent: string[] = [];
  const rowsFile = join(modelDir, 'rows.json');
  if (!existsSync(rowsFile)) throw new Error(`no ${rowsFile}: run npx tsx bench/export-bench-model.ts ${modelDir}`);
  const rows = JSON.parse(readFileSync(rowsFile, 'utf8')) as { single_512: number[][]; set_16: number[][] };
  const row = rows.single_512;
  const len = row[0].length;
  const set = rows.set_16;
  const real = set.reduce((a, r) => a + r.length, 0);
  const load0 = loadavg();

  // the kit: in-process sessions, as bench/cpu-prefill-bench.ts builds them
  const c = benchConfig();
  const w = benchWeights(c, 21);
  const dir = mkdtempSync(join(tmpdir(), 'arenakit-paired-'));
  const sopt = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all' as const,
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
  const kitNames = ['fp32', DEFAULT_SETTING, 'int8 b128 L4', 'int4 rows', 'int4 b128 L4'];
  const kit = new Map<string, ort.InferenceSession>();
  const workers: Worker[] = [];
  try {
    for (const n of kitNames) {
      const s = SETTINGS.find((x) => x.name === n)!;
      kit.set(n, await benchSession(writeBenchGraph(dir, c, w, s), sopt));
      process.stderr.write(`kit: built and loaded ${n}\n`);
    }
    const kitRun = (n: string, rs: number[][]) => async (): Promise<Timing> => {
      let s = 0;
      let cpu = 0;
      for (const r of rs) {
        const x = await runBatch(kit.get(n)!, [r]);
        s += x.s;
        cpu += x.cpu;
      }
      return { s, cpu };
    };

    // llama.cpp workers: LLAMA_CPP_NODE (ggml picks its best CPU variant: AMX on this machine), and optionally
    // LLAMA_CPP_NODE_NOAMX, a copy of the install without libggml-cpu-sapphirerapids.so (the next best variant)
    const ggufs = ['f32', 'q8_0', 'q4_0', 'bf16'].filter((t) => {
      const ok = existsSync(join(ggufDir, `bench-${t}.gguf`));
      if (!ok) absent.push(`llama.cpp ${t}: no ${join(ggufDir, `bench-${t}.gguf`)}`);
      return ok;
    });
    const llamaInfo: Record<string, Record<string, unknown>> = {};
    const llamaWorkers: { tag: string; worker: Worker; types: string[] }[] = [];
    const noAmx = process.env.LLAMA_CPP_NODE_NOAMX ?? '';
    for (const [tag, root, types] of [
      ['llama.cpp', llamaRoot, ggufs],
      ['llama.cpp no-AMX', noAmx, ggufs.filter((t) => t === 'q8_0' || t === 'q4_0')],
    ] as [string, string, string[]][]) {
      if (!root || !existsSync(join(root, 'dist', 'index.js')) || !types.length) {
        if (tag === 'llama.cpp' || root) absent.push(`${tag}: no node-llama-cpp at "${root || 'unset'}"`);
        continue;
      }
      const p = spawn(process.execPath, [join(__dirname, 'llamacpp-worker.mjs')], {
        env: { ...process.env, LLAMA_CPP_NODE: root, BENCH_THREADS: String(threads) },
      });
      const worker = new Worker(p, tag);
      workers.push(worker);
      for (const t of types) {
        llamaInfo[tag] = await worker.call({ cmd: 'load', name: t, path: join(ggufDir, `bench-${t}.gguf`) });
        process.stderr.write(`${tag}: loaded ${t}\n`);
      }
      llamaWorkers.push({ tag, worker, types });
    }
    const llama = llamaWorkers.find((x) => x.tag === 'llama.cpp')?.worker;

    // torch worker
    let torch: Worker | undefined;
    let torchInfo: Record<string, unknown> = {};
    if (py && existsSync(py)) {
      const p = spawn(py, [join(__dirname, 'torch_prefill_worker.py'), modelDir, '--threads', String(threads)], {
        env: { ...process.env, OMP_NUM_THREADS: String(threads) },
      });
      torch = new Worker(p, 'torch');
      workers.push(torch);
      try {
        torchInfo = await torch.read();
      } catch (e) {
        absent.push(`torch: ${String(e)}`);
        torch = undefined;
      }
    } else absent.push(`torch: HF_PYTHON unset or missing (${py || 'unset'})`);

    // correctness: every engine on the 512-token row against torch's fp32 forward (or the kit's fp32 alone)
    const check: Record<string, unknown> = {};
    const kitFp32 = (await runBatch(kit.get('fp32')!, row)).logits;
    if (torch) {
      const ref = (await torch.call({ cmd: 'run', rows: row, logits: true })) as unknown as Timing;
      const hidden = ref.hidden![0];
      const lm = ref.logits![0];
      const score = w('score.weight');
      const H = c.hiddenSize;
      const viaTorch = Array.from({ length: c.numLabels }, (_, l) =>
        hidden.reduce((a, h, j) => a + h * score.data[l * H + j], 0),
      );
      check.kit_fp32_score_vs_torch = {
        max_diff: +maxDiff(kitFp32, viaTorch).toExponential(2),
        scale: +Math.max(...viaTorch.map(Math.abs)).toFixed(3),
      };
      check.torch_lm_head_scale = +Math.max(...lm.map(Math.abs)).toFixed(3);
      if (llama)
        for (const t of ggufs) {
          const l = ((await llama.call({ cmd: 'run', name: t, rows: row, logits: true })) as unknown as Timing)
            .logits![0];
          check[`llama.cpp_${t}_logits_vs_torch`] = {
            max_diff: +maxDiff(l, lm).toExponential(2),
            same_top1: argmax(l) === argmax(lm),
          };
        }
    }
    process.stderr.write(`check: ${JSON.stringify(check)}\n`);

    const items: Item[] = [
      { name: 'kit fp32', tokens: len, peak: 'float', run: kitRun('fp32', row) },
      { name: 'kit int8 rows', tokens: len, peak: 'int8', run: kitRun(DEFAULT_SETTING, row) },
      { name: 'kit int8 b128 L4', tokens: len, peak: 'int8', run: kitRun('int8 b128 L4', row) },
      { name: 'kit int4 rows', tokens: len, peak: 'int8', run: kitRun('int4 rows', row) },
      { name: 'kit int4 b128 L4', tokens: len, peak: 'int8', run: kitRun('int4 b128 L4', row) },
    ];
    for (const { tag, worker, types } of llamaWorkers)
      for (const t of types)
        items.push({
          name: `${tag} ${t.toUpperCase()}`,
          tokens: len,
          peak: t === 'f32' ? 'float' : t === 'bf16' ? 'none' : 'int8',
          run: async () => (await worker.call({ cmd: 'run', name: t, rows: row })) as unknown as Timing,
        });
    if (torch)
      items.push({
        name: 'torch fp32',
        tokens: len,
        peak: 'float',
        run: async () => (await torch.call({ cmd: 'run', rows: row })) as unknown as Timing,
      });
    if (set16) {
      items.push({
        name: 'set16 kit int8 rows batch 1',
        tokens: real,
        peak: 'int8',
        run: kitRun(DEFAULT_SETTING, set),
      });
      if (torch)
        for (const padded of [false, true])
          items.push({
            name: `set16 torch fp32 ${padded ? 'padded' : 'batch 1'}`,
            tokens: real,
            peak: 'none',
            run: async () => (await torch.call({ cmd: 'run', rows: set, padded })) as unknown as Timing,
          });
    }
    for (const it of items) await it.run(); // warm-up
    const wall: Record<string, number[]> = Object.fromEntries(items.map((i) => [i.name, []]));
    const cpu: Record<string, number[]> = Object.fromEntries(items.map((i) => [i.name, []]));
    const loads: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const order = items.map((_, i) => items[(i + r) % items.length]);
      for (const it of order) {
        const t = await it.run();
        wall[it.name].push(it.tokens / t.s);
        cpu[it.name].push((it.tokens * threads) / t.cpu);
      }
      loads.push(loadavg()[0]);
      process.stderr.write(
        `round ${r + 1} (load ${loadavg()[0].toFixed(2)}): ${items.map((i) => `${i.name} ${wall[i.name][r].toFixed(0)}`).join(', ')} tokens/s wall\n`,
      );
    }
    const gopPerToken = linearOps(c, len) / len / 1e9;
    const PEAK = { float: 442, int8: 1012 };
    const table = items.map((i) => {
      const cr = median(cpu[i.name]);
      return {
        setting: i.name,
        wall_tokens_per_s: Math.round(median(wall[i.name])),
        cpu_tokens_per_s: Math.round(cr),
        wall_gops: Math.round(gopPerToken * median(wall[i.name])),
        wall_of_peak: i.peak === 'none' ? null : +((gopPerToken * median(wall[i.name])) / PEAK[i.peak]).toFixed(2),
        wall_per_round: wall[i.name].map(Math.round),
      };
    });
    // ratios paired within a round (wall and CPU-second), median over rounds
    const pairs: [string, string, string][] = [
      ['int8 rows (default) / Q8_0 (bar 1.3)', 'kit int8 rows', 'llama.cpp Q8_0'],
      ['int8 b128 L4 / Q8_0', 'kit int8 b128 L4', 'llama.cpp Q8_0'],
      ['int4 rows (default) / Q4_0 (bar 0.95)', 'kit int4 rows', 'llama.cpp Q4_0'],
      ['int4 b128 L4 / Q4_0', 'kit int4 b128 L4', 'llama.cpp Q4_0'],
      ['fp32 / F32 (bar 1.15)', 'kit fp32', 'llama.cpp F32'],
      ['int8 rows (default) / BF16', 'kit int8 rows', 'llama.cpp BF16'],
      ['int8 rows (default) / no-AMX Q8_0', 'kit int8 rows', 'llama.cpp no-AMX Q8_0'],
      ['int4 rows (default) / no-AMX Q4_0', 'kit int4 rows', 'llama.cpp no-AMX Q4_0'],
      ['fp32 / torch fp32', 'kit fp32', 'torch fp32'],
      ['int8 rows (default) / torch fp32', 'kit int8 rows', 'torch fp32'],
      ['set16 kit batch 1 / torch batch 1 (bar 3)', 'set16 kit int8 rows batch 1', 'set16 torch fp32 batch 1'],
      ['set16 kit batch 1 / torch padded', 'set16 kit int8 rows batch 1', 'set16 torch fp32 padded'],
    ];
    const ratios = pairs
      .filter(([, a, b]) => wall[a]?.length && wall[b]?.length)
      .map(([label, a, b]) => ({
        ratio: label,
        wall: +median(wall[a].map((x, r) => x / wall[b][r])).toFixed(2),
        cpu_second: +median(cpu[a].map((x, r) => x / cpu[b][r])).toFixed(2),
        wall_per_round: wall[a].map((x, r) => +(x / wall[b][r]).toFixed(2)),
      }));
    return {
      model: 'Llama, Gemma-2-2B widths, 4 layers, vocab 32000, seed 21',
      threads,
      rounds,
      len,
      set16_real_tokens: real,
      load_average: { start: load0.map((x) => +x.toFixed(2)), per_round: loads.map((x) => +x.toFixed(2)) },
      engines: {
        kit: `onnxruntime-node ${ort.env.versions.common}, CPU EP, spinning off`,
        llama_cpp: Object.fromEntries(
          Object.entries(llamaInfo).map(([k, v]) => [k, { systemInfo: v.systemInfo, logs: v.cpuLogs }]),
        ),
        torch: torch ? torchInfo.engine : 'absent',
      },
      absent,
      check,
      table,
      ratios,
    };
  } finally {
    for (const wk of workers) wk.close();
    for (const s of kit.values()) await s.release();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && /paired-prefill\.ts$/.test(process.argv[1]))
  pairedPrefill().then((r) => console.log(JSON.stringify(r, null, 2)));
