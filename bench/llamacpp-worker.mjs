// llama.cpp worker of the paired CPU prefill benchmark (bench/paired-prefill.ts, issue 21), outside CI and
// package.json: node-llama-cpp (its prebuilt llama.cpp CPU libraries) loaded from the path in LLAMA_CPP_NODE,
// one long-lived process so load cost is never timed. JSON lines on stdin / stdout:
//   {"cmd":"load","name":"q8_0","path":"/tmp/gguf/bench-q8_0.gguf"}      -> {"ok":true,...}
//   {"cmd":"run","name":"q8_0","rows":[[ids...]],"logits":false}        -> {"s":..,"cpu":..,"logits"?:[..]}
// Each row is prefilled into a cleared context sequence (no KV reuse) in one 512-token batch, the last token's
// logits computed (what the kit computes: its last token's score), with `threads` threads and spinning as
// llama.cpp does by default; flash attention as LLAMA_FLASH_ATTN says (1 / 0; default auto, llama.cpp's default). "s" is wall seconds, "cpu" this process's CPU seconds (all threads), summed over rows.
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const root = process.env.LLAMA_CPP_NODE;
const threads = Number(process.env.BENCH_THREADS || 2);
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(root, 'dist', 'index.js')).href);
const logs = [];
const llama = await getLlama({
  gpu: false,
  build: 'never',
  usePrebuiltBinaries: true,
  skipDownload: true,
  maxThreads: threads,
  logLevel: LlamaLogLevel.debug,
  logger: (level, message) => logs.push(message),
});
const models = new Map();
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

async function load(name, path) {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0, useMmap: true });
  const context = await model.createContext({
    contextSize: 1024,
    batchSize: 512,
    threads: { ideal: threads, min: threads },
    sequences: 1,
    flashAttention: { 1: true, 0: false }[process.env.LLAMA_FLASH_ATTN ?? ''] ?? 'auto',
  });
  const sequence = context.getSequence();
  models.set(name, { model, context, sequence });
}

async function run(name, rows, wantLogits) {
  const { sequence } = models.get(name);
  let s = 0;
  let cpu = 0;
  const logits = [];
  for (const row of rows) {
    await sequence.clearHistory();
    const last = row.length - 1;
    const input = row.map((t, i) =>
      i === last ? [t, { generateNext: { logits: wantLogits ? true : { filter: { tokens: [0] } } } }] : t,
    );
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const res = await sequence.controlledEvaluate(input);
    s += Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);
    cpu += (c.user + c.system) / 1e6;
    if (wantLogits) {
      const l = res[last].next.logits; // Map<token, logit>
      const a = new Array(l.size);
      for (const [k, v] of l) a[k] = v;
      logits.push(a);
    }
  }
  await sequence.clearHistory();
  return { s, cpu, ...(wantLogits ? { logits } : {}) };
}

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const m = JSON.parse(line);
  try {
    if (m.cmd === 'load') {
      await load(m.name, m.path);
      const variant = logs.filter((l) => /load_backend|model buffer size/.test(l));
      out({ ok: true, gpu: llama.gpu, systemInfo: llama.systemInfo, cpuLogs: variant.slice(0, 8) });
    } else if (m.cmd === 'run') out(await run(m.name, m.rows, !!m.logits));
    else if (m.cmd === 'quit') break;
    else out({ error: `unknown command ${m.cmd}` });
  } catch (e) {
    out({ error: String(e && e.stack ? e.stack : e) });
  }
}
process.stdout.write('', () => process.exit(0)); // after stdout drains (a pipe is async)
