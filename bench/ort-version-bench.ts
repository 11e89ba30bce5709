// ORT version comparison on the issue-21 bench model (bench/cpu-prefill-bench.ts): two onnxruntime-node versions
// cannot load in one process, so each process loads ORT and the bench helpers from the package root it is run
// in (process.cwd(): a checkout whose node_modules holds the version under test) and writes its rates and logits
// to --out; run it alternately in two checkouts and pair the processes (`--compare A.json B.json` prints ratios
// and the max |logit diff| between them). Graphs are written once to --graphs and reused by every process.
// Run: `npx tsx PATH/bench/ort-version-bench.ts --graphs /tmp/g --out /tmp/x.json [--rounds 3] [--logits]`
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
}
const NAMES = arg('only', 'fp32,int8 b128 L4,int4 b128 L4').split(',');

async function measure(): Promise<void> {
  const root = process.cwd();
  const ort = createRequire(join(root, 'package.json'))('onnxruntime-node');
  const b = await import(pathToFileURL(join(root, 'bench/cpu-prefill-bench.ts')).href);
  const rounds = Number(arg('rounds', '3'));
  const threads = Number(arg('threads', '2'));
  const len = 512;
  const dir = arg('graphs', '/tmp/arenakit-ort-graphs');
  mkdirSync(dir, { recursive: true });
  const c = b.benchConfig();
  const w = b.benchWeights(c, 21);
  const sopt = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
  const sessions = new Map<string, any>();
  const start: Record<string, number> = {};
  for (const name of NAMES) {
    const s = b.SETTINGS.find((x: { name: string }) => x.name === name);
    const file = join(dir, `${name.replace(/\s+/g, '_')}.onnx`);
    if (!existsSync(file)) b.writeBenchGraph(dir, c, w, s);
    const t0 = Date.now();
    sessions.set(name, await ort.InferenceSession.create(file, sopt));
    start[name] = (Date.now() - t0) / 1000;
  }
  const logits: Record<string, number[]> = {};
  if (process.argv.includes('--logits')) {
    const accRows = b.benchRows(4, () => len, 2); // the bench's accuracy rows
    for (const name of NAMES) logits[name] = Array.from((await b.runBatch(sessions.get(name), accRows)).logits);
  }
  const row = b.benchRows(1, () => len, 1);
  for (const name of NAMES) await b.runBatch(sessions.get(name), row); // warm-up
  const cpuTps: Record<string, number[]> = Object.fromEntries(NAMES.map((n) => [n, []]));
  const wallTps: Record<string, number[]> = Object.fromEntries(NAMES.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++)
    for (let i = 0; i < NAMES.length; i++) {
      const name = NAMES[(i + r) % NAMES.length];
      const x = await b.runBatch(sessions.get(name), row);
      cpuTps[name].push((len * threads) / x.cpu);
      wallTps[name].push(len / x.s);
    }
  for (const s of sessions.values()) await s.release();
  const out = {
    ort: ort.env.versions?.common ?? 'unknown',
    root,
    rounds,
    cpu_tokens_per_s: Object.fromEntries(NAMES.map((n) => [n, Math.round(b.median(cpuTps[n]))])),
    wall_tokens_per_s: Object.fromEntries(NAMES.map((n) => [n, Math.round(b.median(wallTps[n]))])),
    session_start_s: start,
    logits,
  };
  writeFileSync(arg('out', '/tmp/ort-version.json'), JSON.stringify(out));
  const { logits: _l, ...brief } = out;
  console.log(JSON.stringify(brief));
}

function compare(files: string[]): void {
  const runs = files.map((f) => JSON.parse(readFileSync(f, 'utf8')));
  const [a, bb] = runs;
  const names = Object.keys(a.cpu_tokens_per_s);
  const r = Object.fromEntries(names.map((n) => [n, +(bb.cpu_tokens_per_s[n] / a.cpu_tokens_per_s[n]).toFixed(3)]));
  const d: Record<string, number> = {};
  for (const n of names)
    if (a.logits[n]?.length && bb.logits[n]?.length)
      d[n] = a.logits[n].reduce((m: number, x: number, i: number) => Math.max(m, Math.abs(x - bb.logits[n][i])), 0);
  console.log(JSON.stringify({ a: a.ort, b: bb.ort, b_over_a_cpu_rate: r, max_logit_diff: d }));
}

if (process.argv.includes('--compare')) compare(process.argv.slice(process.argv.indexOf('--compare') + 1));
else void measure();
