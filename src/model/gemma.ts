// Gemma / Gemma-2 sequence-classification graph (HF Gemma2ForSequenceClassification semantics, see
// shared docs/model.md and the hf-reference fixtures README) from ModelConfig + WeightSource.
// Contract: inputs input_ids, attention_mask (int64 [batch, seq], right padding); output logits
// float32 [batch, num_labels]. Uses ORT fused ops: GroupQueryAttention (rotary, softcap, local window,
// right padding via seqlens_k), SkipSimplifiedLayerNormalization, MatMulNBits.
import { GraphBuilder, GraphBuildError } from '../graph/builder';
import { f32ArrayToF16, f32ToF16, roundTo } from '../util/fp16';
import type { Graph, Value } from '../graph/ir';
import type { TensorStore } from '../graph/store';
import { dequantizeNBits, quantizeNBits, reconstructionError, type ReconstructionError } from '../quant/nbits';
import type { GraphOptions, HostTensor, ModelConfig, WeightSource } from '../types';

export interface GemmaGraphOptions extends GraphOptions {
  /** Where initializer bytes go (default: inline, in memory); an external store streams the embedding to disk. */
  store?: TensorStore;
  /** Dtype HF rounds the sqrt(hidden) embedding multiplier to (the checkpoint's torch_dtype); default float32. */
  embedScaleDtype?: 'float32' | 'bfloat16' | 'float16';
  /** Storage of the embedding table: float16 halves it (Gather + Cast; exact when the weights are fp16 values). Default: activation dtype. */
  embedding?: 'float32' | 'float16';
  /** Concatenate q/k/v and gate/up into one MatMul each (exact; default true). */
  fuseProjections?: boolean;
  /** Embedding rows per streamed chunk (default EMBED_CHUNK_ROWS); only used when the source reads row ranges. */
  embedChunkRows?: number;
  /** Rotary cache length; default config.maxPositions. */
  maxSeqLen?: number;
  /** MatMulNBits accuracy_level (0 = exact fp32 accumulate, 4 = int8 activations on CPU). */
  accuracyLevel?: number;
  /** Receives one reconstruction-error row per quantized linear weight. */
  quantReport?: ReconstructionError[];
  graphName?: string;
}

export class GemmaGraphError extends Error {
  override name = 'GemmaGraphError';
}

/** HF rotary tables, computed in fp32 like torch: inv_freq = 1 / theta^(2i/d), angle = pos * inv_freq. */
export function rotaryCache(headDim: number, theta: number, maxSeq: number): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const cos = new Float32Array(maxSeq * half);
  const sin = new Float32Array(maxSeq * half);
  for (let i = 0; i < half; i++) {
    const inv = Math.fround(1 / Math.fround(Math.pow(theta, Math.fround((2 * i) / headDim))));
    for (let p = 0; p < maxSeq; p++) {
      const a = Math.fround(p * inv);
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

function expectShape(t: HostTensor, shape: number[], name: string): HostTensor {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
    throw new GemmaGraphError(`weight "${name}" has shape [${t.shape}], config expects [${shape}]; the checkpoint does not match its config.json`);
  return t;
}

function f16Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(f32ArrayToF16(a).buffer);
}
function f32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Embedding rows read and converted per step when the source reads row ranges (4096 x 3584 fp32 = 59 MB). */
export const EMBED_CHUNK_ROWS = 4096;

/** float32 -> the table's storage bytes, element by element with f32ToF16 (the same bytes as f32ArrayToF16). */
function tableBytes(a: Float32Array, dtype: 'float32' | 'float16'): Uint8Array {
  if (dtype === 'float32') return f32Bytes(a);
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f32ToF16(a[i]);
  return new Uint8Array(out.buffer);
}

/** Whole-tensor path (sources without `rows`): the float32 table and its fp16 copy are both resident once. */
function embeddingBytes(t: HostTensor, dtype: 'float32' | 'float16'): Uint8Array {
  const a = t.data;
  if (dtype === 'float32') return f32Bytes(a);
  const [rows, H] = t.shape;
  const out = new Uint16Array(rows * H);
  for (let r0 = 0; r0 < rows; r0 += EMBED_CHUNK_ROWS) {
    const end = Math.min(rows, r0 + EMBED_CHUNK_ROWS) * H;
    for (let i = r0 * H; i < end; i++) out[i] = f32ToF16(a[i]);
  }
  return new Uint8Array(out.buffer);
}

/**
 * The embedding table as an initializer. With a row-reading source (WeightSource.rows + shape) the
 * table is read EMBED_CHUNK_ROWS rows at a time and each chunk converted on its own and handed to
 * the store (an external store appends it to the data file, so only one chunk is ever resident; the
 * memory store gathers them, with no float32 table). Otherwise the whole tensor is read.
 * Byte-identical either way.
 */
function embeddingInit(
  b: GraphBuilder,
  weights: WeightSource,
  name: string,
  shape: [number, number],
  dtype: 'float32' | 'float16',
  chunkRows: number,
): Value {
  const { rows, shape: shapeOf } = weights;
  if (!rows || !shapeOf) return b.initializer(name, dtype, shape, embeddingBytes(expectShape(weights(name), shape, name), dtype));
  expectShape({ shape: shapeOf(name), data: new Float32Array(0) }, shape, name);
  const [V, H] = shape;
  const width = dtype === 'float16' ? 2 : 4;
  function* chunks(): Generator<Uint8Array> {
    for (let r0 = 0; r0 < V; r0 += chunkRows) {
      const n = Math.min(chunkRows, V - r0);
      const t = expectShape(rows!(name, r0, n), [n, H], `${name} rows ${r0}..${r0 + n - 1}`);
      yield tableBytes(t.data, dtype);
    }
  }
  return b.initializerChunks(name, dtype, shape, V * H * width, chunks());
}

export function buildGemmaGraph(config: ModelConfig, weights: WeightSource, opts: GemmaGraphOptions): Graph {
  const c = config;
  const act = opts.activations;
  const fuse = opts.fuseProjections ?? true;
  const b = new GraphBuilder(opts.graphName ?? 'gemma_classifier', opts.store);
  const H = c.hiddenSize;
  const D = c.headDim;
  const qOut = c.numHeads * D;
  const kvOut = c.numKvHeads * D;
  if (D % 2) throw new GemmaGraphError(`head_dim ${D} must be even for rotary embeddings`);
  if (c.numHeads % c.numKvHeads) throw new GemmaGraphError(`num_attention_heads ${c.numHeads} is not a multiple of num_key_value_heads ${c.numKvHeads}`);
  const get = (name: string, shape: number[]) => expectShape(weights(name), shape, name);

  const floatInit = (name: string, data: Float32Array, shape: number[], dtype: 'float32' | 'float16') =>
    b.initializer(name, dtype, shape, dtype === 'float16' ? f16Bytes(data) : f32Bytes(data));

  /** RMSNorm weight with HF's (1 + w) baked in, fp32. */
  const normWeight = (hf: string) => {
    const w = get(hf, [H]).data;
    const g = new Float32Array(H);
    for (let i = 0; i < H; i++) g[i] = 1 + w[i];
    return floatInit(hf.replace(/\.weight$/, '.gamma'), g, [H], 'float32');
  };

  /** y = x W^T for HF weights [out, in] stacked along out; float MatMul or MatMulNBits. */
  const linear = (x: Value, hfNames: string[], outs: number[], K: number, tag: string): Value => {
    const N = outs.reduce((a, n) => a + n, 0);
    const w = new Float32Array(N * K);
    let row = 0;
    for (let i = 0; i < hfNames.length; i++) {
      w.set(get(hfNames[i], [outs[i], K]).data, row * K);
      row += outs[i];
    }
    const lin = opts.linear;
    if (lin.kind === 'float') {
      const wt = new Float32Array(K * N);
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wt[k * N + n] = w[n * K + k];
      const init = floatInit(`${tag}.weight_t`, wt, [K, N], act);
      return b.matmul(x, init, tag);
    }
    const q = quantizeNBits(w, N, K, lin);
    if (opts.quantReport) {
      const wq = dequantizeNBits(q);
      let r0 = 0;
      for (let i = 0; i < hfNames.length; i++) {
        const n1 = r0 + outs[i];
        opts.quantReport.push(reconstructionError(hfNames[i], w.subarray(r0 * K, n1 * K), wq.subarray(r0 * K, n1 * K)));
        r0 = n1;
      }
    }
    const blob = (lin.blockSize * lin.bits) / 8;
    const qb = b.initializer(`${tag}.qweight`, 'uint8', [N, q.nBlocks, blob], q.b);
    const scales = floatInit(`${tag}.scales`, q.scales, [N, q.nBlocks], act);
    const zp = q.zeroPoints
      ? b.initializer(`${tag}.qzeros`, 'uint8', lin.bits === 4 ? [N, Math.ceil(q.nBlocks / 2)] : [N, q.nBlocks], q.zeroPoints)
      : null;
    return b.matmulNBits(x, { b: qb, scales, zeroPoints: zp }, { K, N, bits: lin.bits, blockSize: lin.blockSize, accuracyLevel: opts.accuracyLevel }, tag);
  };
  const toAct = (x: Value) => (x.dtype === act ? x : b.cast(x, act));
  const toF32 = (x: Value) => (x.dtype === 'float32' ? x : b.cast(x, 'float32'));

  // ---- inputs, lengths, rotary tables
  const inputIds = b.input('input_ids', 'int64', ['batch', 'seq']);
  const mask = b.input('attention_mask', 'int64', ['batch', 'seq']);
  const lenKeep = b.reduceSum(mask, [1], true, 'lengths'); // [B, 1]
  const lastIdx = b.sub(lenKeep, b.constInt64('one', [1], []), 'last_index'); // [B, 1]
  const seqlensK = b.cast(b.reshape(lastIdx, [-1], 'seqlens_k_flat'), 'int32', 'seqlens_k');
  const seqLen = b.gather(b.shape(inputIds, 'ids_shape'), b.constInt64('axis1', [1], []), 0, 'seq_len');
  const totalSeq = b.cast(seqLen, 'int32', 'total_sequence_length');
  const rope = rotaryCache(D, c.ropeTheta, opts.maxSeqLen ?? c.maxPositions);
  const cos = floatInit('rotary.cos_cache', rope.cos, [rope.cos.length / (D / 2), D / 2], act);
  const sin = floatInit('rotary.sin_cache', rope.sin, [rope.sin.length / (D / 2), D / 2], act);

  // ---- embeddings * sqrt(hidden), fp32 residual stream
  const emb = embeddingInit(b, weights, 'model.embed_tokens.weight', [c.vocabSize, H], opts.embedding ?? act, opts.embedChunkRows ?? EMBED_CHUNK_ROWS);
  let x = toF32(b.gather(emb, inputIds, 0, 'embed'));
  x = b.mul(x, b.scalar('embed_scale', roundTo(Math.sqrt(H), opts.embedScaleDtype ?? 'float32')), 'embed_scaled');

  const eps = c.rmsNormEps;
  let h = b.rmsNorm(x, normWeight('model.layers.0.input_layernorm.weight'), eps, 'layers.0.input_layernorm');
  const isGemma2 = c.architecture === 'Gemma2ForSequenceClassification';
  if (isGemma2 !== c.sandwichNorms) throw new GemmaGraphError(`${c.architecture}: sandwichNorms=${c.sandwichNorms} contradicts the architecture`);

  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    const t = `layers.${i}`;
    // ---- attention
    const ha = toAct(h);
    const proj = ['q_proj', 'k_proj', 'v_proj'].map((n) => `${p}.self_attn.${n}.weight`);
    const outs = [qOut, kvOut, kvOut];
    let qkv: { query: Value; key: Value | null; value: Value | null };
    if (fuse) qkv = { query: linear(ha, proj, outs, H, `${t}.qkv_proj`), key: null, value: null };
    else {
      const [q, k, v] = proj.map((n, j) => linear(ha, [n], [outs[j]], H, `${t}.${['q', 'k', 'v'][j]}_proj`));
      qkv = { query: q, key: k, value: v };
    }
    // HF marks EVEN layer indices as sliding (not odd, as one public exporter does).
    const window = c.slidingWindow !== null && i % 2 === 0 ? c.slidingWindow : null;
    const att = b.groupQueryAttention(
      qkv,
      { seqlensK, totalSeqLen: totalSeq },
      { cos, sin },
      { numHeads: c.numHeads, kvNumHeads: c.numKvHeads, headDim: D, scale: c.attnScale, softcap: c.attnSoftcap, localWindow: window },
      `${t}.attn`,
    );
    let a = toF32(linear(att, [`${p}.self_attn.o_proj.weight`], [H], qOut, `${t}.o_proj`));
    let m: Value;
    if (c.sandwichNorms) {
      a = b.rmsNorm(a, normWeight(`${p}.post_attention_layernorm.weight`), eps, `${t}.post_attention_layernorm`);
      [m, x] = b.skipRmsNorm(a, x, normWeight(`${p}.pre_feedforward_layernorm.weight`), eps, `${t}.pre_feedforward_layernorm`);
    } else {
      [m, x] = b.skipRmsNorm(a, x, normWeight(`${p}.post_attention_layernorm.weight`), eps, `${t}.post_attention_layernorm`);
    }
    // ---- MLP: down(gelu_tanh(gate(x)) * up(x))
    const ma = toAct(m);
    const I = c.intermediateSize;
    let gate: Value;
    let up: Value;
    if (fuse) [gate, up] = b.split(linear(ma, [`${p}.mlp.gate_proj.weight`, `${p}.mlp.up_proj.weight`], [I, I], H, `${t}.gate_up_proj`), [I, I], -1, `${t}.gate_up_split`);
    else {
      gate = linear(ma, [`${p}.mlp.gate_proj.weight`], [I], H, `${t}.gate_proj`);
      up = linear(ma, [`${p}.mlp.up_proj.weight`], [I], H, `${t}.up_proj`);
    }
    const inner = b.mul(b.gelu(gate, 'tanh', `${t}.act`), up, `${t}.gated`);
    let f = toF32(linear(inner, [`${p}.mlp.down_proj.weight`], [H], I, `${t}.down_proj`));
    if (c.sandwichNorms) f = b.rmsNorm(f, normWeight(`${p}.post_feedforward_layernorm.weight`), eps, `${t}.post_feedforward_layernorm`);
    const next = i + 1 < c.numLayers ? `model.layers.${i + 1}.input_layernorm.weight` : 'model.norm.weight';
    [h, x] = b.skipRmsNorm(f, x, normWeight(next), eps, i + 1 < c.numLayers ? `layers.${i + 1}.input_layernorm` : 'final_norm');
  }

  // ---- pool the last non-padding token (right padding: index = sum(mask) - 1), then the score head
  const pooled = b.gatherND(h, lastIdx, 1, 'pool_last_token'); // [B, H] fp32
  const score = get('score.weight', [c.numLabels, H]).data;
  const st = new Float32Array(H * c.numLabels);
  for (let n = 0; n < c.numLabels; n++) for (let k = 0; k < H; k++) st[k * c.numLabels + n] = score[n * H + k];
  const logits = b.matmul(pooled, floatInit('score.weight_t', st, [H, c.numLabels], 'float32'), 'score');
  b.output(logits, 'logits');
  if (b.outputs[0].dtype !== 'float32') throw new GraphBuildError('logits must be float32');
  return b.finish();
}
