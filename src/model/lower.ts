// Lowering of the decoder definition (src/model/decoder.ts) to ONNX Runtime nodes: weights from a
// WeightSource (float MatMul or block-quantized MatMulNBits, fp32 or fp16 activations with norms,
// residual stream and head in fp32), the attention variant, and the runtime fusions applied after
// the graph is built (residual Add + RMSNorm -> SkipSimplifiedLayerNormalization; a packed q/k/v
// projection fed straight into GroupQueryAttention).
//
// Attention variants (both exact against HF on the CPU EP):
//   fused    - com.microsoft GroupQueryAttention (rotary, soft-cap, local window, right padding via
//              seqlens_k). Fast on CPU and recent CUDA; WebGPU ignores its softcap, ORT 1.19 lacks it.
//   explicit - standard ONNX ops only: rotary (rotate-half), Q K^T, scale, Tanh soft-cap, causal +
//              sliding-window + padding mask (Where), Softmax in fp32, weighted sum of V.
// A window is left out when the inputs can never be longer than it (maxTokens <= window): exact, and
// it lets a runtime pick wider kernels.
import { GraphBuilder, GraphBuildError } from '../graph/builder';
import type { Graph, InitializerRef, Node, Value } from '../graph/ir';
import type { TensorStore } from '../graph/store';
import { dequantizeNBits, quantizeNBits, reconstructionError, type ReconstructionError } from '../quant/nbits';
import type { GraphOptions, HostTensor, ModelConfig, WeightSource } from '../types';
import { f32ToF16, roundTo } from '../util/fp16';
import { decoder, softcap, type Lowering } from './decoder';
import { familyOf, layerWindow } from './families';
import { rotaryTables } from './rotary';

export type AttentionVariant = 'fused' | 'explicit';
export const ATTENTION_VARIANTS: AttentionVariant[] = ['fused', 'explicit'];

export interface DecoderGraphOptions extends GraphOptions {
  /** Attention lowering (default 'fused'). */
  attention?: AttentionVariant;
  /** Where initializer bytes go (default: inline, in memory); an external store streams the embedding to disk. */
  store?: TensorStore;
  /** Dtype HF rounds the sqrt(hidden) embedding multiplier to (the checkpoint's torch_dtype); default float32. */
  embedScaleDtype?: 'float32' | 'bfloat16' | 'float16';
  /** Storage of the embedding table: float16 halves it (Gather + Cast; exact when the weights are fp16 values). Default: activation dtype. */
  embedding?: 'float32' | 'float16';
  /** Embedding rows per streamed chunk (default EMBED_CHUNK_ROWS); only used when the source reads row ranges. */
  embedChunkRows?: number;
  /** Rotary table length; default config.maxPositions. */
  maxSeqLen?: number;
  /** Longest input the graph will see (the manifest's maxTokens): windows at least this long are left out. */
  maxTokens?: number;
  /** MatMulNBits accuracy_level (0 = exact fp32 accumulate, 4 = int8 activations on CPU). */
  accuracyLevel?: number;
  /** Initializers another variant of this graph already put in the same store: taken by name, the weights are not read again. */
  reuse?: Map<string, InitializerRef>;
  /** Receives one reconstruction-error row per quantized linear weight. */
  quantReport?: ReconstructionError[];
  graphName?: string;
}

export class DecoderGraphError extends Error {
  override name = 'DecoderGraphError';
}

function expectShape(t: HostTensor, shape: number[], name: string): HostTensor {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
    throw new DecoderGraphError(`weight "${name}" has shape [${t.shape}], config expects [${shape}]; the checkpoint does not match its config.json`);
  return t;
}

function f32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** float32 -> the storage bytes of `dtype`. */
function floatBytes(a: Float32Array, dtype: 'float32' | 'float16'): Uint8Array {
  if (dtype === 'float32') return f32Bytes(a);
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f32ToF16(a[i]);
  return new Uint8Array(out.buffer);
}

/** Embedding rows read and converted per step when the source reads row ranges (4096 x 3584 fp32 = 59 MB). */
export const EMBED_CHUNK_ROWS = 4096;

/**
 * The embedding table as an initializer. With a row-reading source (WeightSource.rows + shape) the
 * table is read `chunkRows` rows at a time and each chunk converted on its own and handed to the
 * store (an external store appends it to the data file, so only one chunk is ever resident).
 * Otherwise the whole tensor is read. Byte-identical either way.
 */
function embeddingInit(b: GraphBuilder, weights: WeightSource, name: string, shape: [number, number], dtype: 'float32' | 'float16', chunkRows: number): Value {
  const { rows, shape: shapeOf } = weights;
  if (!rows || !shapeOf) return b.initializer(name, dtype, shape, floatBytes(expectShape(weights(name), shape, name).data, dtype));
  expectShape({ shape: shapeOf(name), data: new Float32Array(0) }, shape, name);
  const [V, H] = shape;
  function* chunks(): Generator<Uint8Array> {
    for (let r0 = 0; r0 < V; r0 += chunkRows) {
      const n = Math.min(chunkRows, V - r0);
      yield floatBytes(expectShape(rows!(name, r0, n), [n, H], `${name} rows ${r0}..${r0 + n - 1}`).data, dtype);
    }
  }
  return b.initializerChunks(name, dtype, shape, V * H * (dtype === 'float16' ? 2 : 4), chunks());
}

/** The decoder of `config` as an ONNX graph: inputs input_ids, attention_mask (int64 [batch, seq]); output logits float32 [batch, numLabels]. */
export function buildDecoderGraph(config: ModelConfig, weights: WeightSource, opts: DecoderGraphOptions): Graph {
  const b = new GraphBuilder(opts.graphName ?? `${config.family}_decoder`, opts.store);
  const lower = ortLowering(b, config, weights, opts);
  const logits = decoder(config, lower);
  b.output(logits, 'logits');
  if (b.outputs[0].dtype !== 'float32') throw new GraphBuildError('logits must be float32');
  const g = b.finish();
  fuseSkipNorms(g, lower.residualAdds);
  if ((opts.attention ?? 'fused') === 'fused') packQkv(g);
  dropUnusedInitializers(g);
  return g;
}

/** The ONNX Runtime lowering; `residualAdds` names the residual Add nodes for the fusion pass. */
export function ortLowering(b: GraphBuilder, c: ModelConfig, weights: WeightSource, opts: DecoderGraphOptions): Lowering & { residualAdds: Set<string> } {
  const act = opts.activations;
  const variant = opts.attention ?? 'fused';
  const f = familyOf(c);
  const H = c.hiddenSize;
  const D = c.headDim;
  if (D % 2) throw new DecoderGraphError(`head_dim ${D} must be even for rotary embeddings`);
  if (c.numHeads % c.numKvHeads) throw new DecoderGraphError(`num_attention_heads ${c.numHeads} is not a multiple of num_key_value_heads ${c.numKvHeads}`);
  const get = (name: string, shape: number[]) => expectShape(weights(name), shape, name);
  const reused = (name: string) => {
    const r = opts.reuse?.get(name);
    return r ? b.existing(r) : null;
  };
  /** A float initializer from data computed only when no other variant stored it yet. */
  const floatInit = (name: string, data: Float32Array | (() => Float32Array), shape: number[], dtype: 'float32' | 'float16') =>
    reused(name) ?? b.initializer(name, dtype, shape, floatBytes(typeof data === 'function' ? data() : data, dtype));
  const toAct = (x: Value) => (x.dtype === act ? x : b.cast(x, act));
  const toF32 = (x: Value) => (x.dtype === 'float32' ? x : b.cast(x, 'float32'));
  const residualAdds = new Set<string>();

  /** Output width of each projection module, from the family's layer table. */
  const outWidth = new Map<string, [number, number]>();
  for (let i = 0; i < c.numLayers; i++) {
    const l = f.layer(i);
    const qo = c.numHeads * D;
    const kvo = c.numKvHeads * D;
    for (const [m, shape] of [[l.q, [qo, H]], [l.k, [kvo, H]], [l.v, [kvo, H]], [l.o, [H, qo]], [l.gate, [c.intermediateSize, H]], [l.up, [c.intermediateSize, H]], [l.down, [H, c.intermediateSize]]] as const)
      outWidth.set(m, shape as [number, number]);
  }

  let ids: Value;
  let mask: Value;
  const memo = new Map<string, Value>();
  const once = (key: string, make: () => Value) => memo.get(key) ?? (memo.set(key, make()), memo.get(key)!);
  const lastIndex = () => once('last', () => b.sub(b.reduceSum(mask, [1], true, 'lengths'), b.constInt64('one', [1], []), 'last_index')); // [B, 1]
  const seqLen = () => once('seq', () => b.gather(b.shape(ids, 'ids_shape'), b.constInt64('axis1', [1], []), 0, 'seq_len'));
  const ropeRows = opts.maxSeqLen ?? c.maxPositions;
  let tables: { cos: Float32Array; sin: Float32Array } | undefined;
  const ropeTables = () => (tables ??= rotaryTables(c.rope, D, ropeRows));
  const rope = () => ({
    cos: once('cos', () => floatInit('rotary.cos_cache', () => ropeTables().cos, [ropeRows, D / 2], act)),
    sin: once('sin', () => floatInit('rotary.sin_cache', () => ropeTables().sin, [ropeRows, D / 2], act)),
  });
  /** The window a layer uses in this graph: none when no input can be longer than it. */
  const windowOf = (layer: number) => {
    const w = layerWindow(c, layer);
    return w !== null && opts.maxTokens !== undefined && opts.maxTokens <= w ? null : w;
  };

  const fusedAttention = (layer: number, q: Value, k: Value, v: Value): Value => {
    const seqlensK = once('seqlens_k', () => b.cast(b.reshape(lastIndex(), [-1], 'seqlens_k_flat'), 'int32', 'seqlens_k'));
    const total = once('total_seq', () => b.cast(seqLen(), 'int32', 'total_sequence_length'));
    return b.groupQueryAttention(
      { query: q, key: k, value: v },
      { seqlensK, totalSeqLen: total },
      rope(),
      { numHeads: c.numHeads, kvNumHeads: c.numKvHeads, headDim: D, scale: c.attnScale, softcap: c.attnSoftcap, localWindow: windowOf(layer) },
      `layers.${layer}.attn`,
    );
  };

  /** Allowed (query i, key j) pairs [B, 1, 1, S, S]: j <= i, i - j < window, key j is not padding. */
  const allowed = (window: number | null): Value =>
    once(`allowed.${window}`, () => {
      const i64 = (n: string, v: number) => b.constInt64(n, [v], []);
      const pos = once('positions', () => b.range(i64('zero', 0), seqLen(), i64('step', 1), 'positions'));
      const qi = once('qi', () => b.unsqueeze(pos, [1], 'query_pos')); // [S, 1]
      const kj = once('kj', () => b.unsqueeze(pos, [0], 'key_pos')); // [1, S]
      let ok = once('causal', () => b.compare('GreaterOrEqual', qi, kj, 'causal'));
      if (window !== null) ok = b.compare('And', ok, b.compare('Less', b.sub(qi, kj, `distance.${window}`), i64('window', window), `in_window.${window}`), `causal_window.${window}`);
      const keys = once('key_valid', () => b.unsqueeze(b.cast(mask, 'bool', 'mask_bool'), [1, 2, 3], 'key_valid')); // [B, 1, 1, 1, S]
      return b.compare('And', b.unsqueeze(ok, [0, 1, 2], `pairs.${window}`), keys, `allowed.${window}`);
    });

  const explicitAttention = (layer: number, q: Value, k: Value, v: Value): Value => {
    const t = `layers.${layer}.attn`;
    const nH = c.numHeads;
    const nKV = c.numKvHeads;
    const rep = nH / nKV;
    const { cos, sin } = rope();
    const pos = once('positions', () => b.range(b.constInt64('zero', [0], []), seqLen(), b.constInt64('step', [1], []), 'positions'));
    const c0 = once('cos_rows', () => b.gather(cos, pos, 0, 'rotary.cos')); // [S, D/2]
    const s0 = once('sin_rows', () => b.gather(sin, pos, 0, 'rotary.sin'));
    // x * cos + rotate_half(x) * sin, with rotate_half(x) = cat(-x2, x1)
    const rotary = (x: Value, n: string) => {
      const [x1, x2] = b.split(x, [D / 2, D / 2], -1, `${n}.halves`);
      const o1 = b.sub(b.mul(x1, c0), b.mul(x2, s0), `${n}.rot1`);
      const o2 = b.add(b.mul(x2, c0), b.mul(x1, s0), `${n}.rot2`);
      return b.concat([o1, o2], -1, `${n}.rotated`);
    };
    const heads = (x: Value, n: number, name: string) => b.transpose(b.reshape(x, [0, 0, n, D], `${name}.split_heads`), [0, 2, 1, 3], `${name}.bhsd`); // [B, n, S, D]
    let qh = rotary(heads(q, nH, `${t}.q`), `${t}.q`);
    const kh = rotary(heads(k, nKV, `${t}.k`), `${t}.k`);
    const vh = heads(v, nKV, `${t}.v`);
    // query heads grouped by their kv head: [B, nKV, rep, S, D] against k, v [B, nKV, 1, S, D]
    const scale = b.scalar(`${t}.scale`, c.attnScale, act);
    if (act === 'float16') qh = b.mul(qh, scale, `${t}.q_scaled`); // keeps Q K^T inside fp16's range
    const q5 = b.reshape(qh, [0, nKV, rep, -1, D], `${t}.q_groups`);
    const kT = b.transpose(b.unsqueeze(kh, [2], `${t}.k_groups`), [0, 1, 2, 4, 3], `${t}.k_t`);
    let s = b.matmul(q5, kT, `${t}.scores`);
    if (act !== 'float16') s = b.mul(s, scale, `${t}.scaled`);
    if (c.attnSoftcap !== null) s = softcap(b, s, c.attnSoftcap, `${t}.softcap`);
    s = toF32(s); // softmax in fp32, as HF
    const masked = b.where(allowed(windowOf(layer)), s, b.scalar(`${t}.min`, -3.4028234663852886e38), `${t}.masked`);
    const p = toAct(b.softmax(masked, -1, `${t}.probs`));
    const o = b.matmul(p, b.unsqueeze(vh, [2], `${t}.v_groups`), `${t}.weighted`); // [B, nKV, rep, S, D]
    const merged = b.transpose(b.reshape(o, [0, nH, -1, D], `${t}.heads`), [0, 2, 1, 3], `${t}.bshd`);
    return b.reshape(merged, [0, 0, nH * D], `${t}.out`);
  };
  return {
    b,
    residualAdds,
    inputs() {
      ids = b.input('input_ids', 'int64', ['batch', 'seq']);
      mask = b.input('attention_mask', 'int64', ['batch', 'seq']);
      return ids;
    },
    embed(x) {
      const name = `${f.embed}.weight`;
      const table = reused(name) ?? embeddingInit(b, weights, name, [c.vocabSize, H], opts.embedding ?? act, opts.embedChunkRows ?? EMBED_CHUNK_ROWS);
      const e = toF32(b.gather(table, x, 0, 'embed'));
      if (!c.embedScale) return e;
      return b.mul(e, b.scalar('embed_scale', roundTo(Math.sqrt(H), opts.embedScaleDtype ?? 'float32')), 'embed_scaled');
    },
    norm(module, x) {
      const gamma = () => {
        const w = get(`${module}.weight`, [H]).data;
        const g = new Float32Array(H);
        for (let i = 0; i < H; i++) g[i] = c.normPlusOne ? 1 + w[i] : w[i];
        return g;
      };
      return b.rmsNorm(toF32(x), floatInit(`${module}.gamma`, gamma, [H], 'float32'), c.rmsNormEps, module);
    },
    linear(modules, x, bias) {
      const shapes = modules.map((m) => {
        const s = outWidth.get(m);
        if (!s) throw new DecoderGraphError(`no projection "${m}" in the ${c.family} layer table`);
        return s;
      });
      const K = shapes[0][1];
      const outs = shapes.map((s) => s[0]);
      const N = outs.reduce((a, n) => a + n, 0);
      const tag = modules.length === 1 ? modules[0] : `${modules[0].slice(0, modules[0].lastIndexOf('.'))}.${modules.map((m) => m.slice(m.lastIndexOf('.') + 1)).join('+')}`;
      const xa = toAct(x);
      let y: Value;
      const lin = opts.linear;
      /** The stacked HF weights [N, K], read only when no other variant stored this projection. */
      const stacked = () => {
        const w = new Float32Array(N * K);
        let row = 0;
        modules.forEach((m, i) => {
          w.set(get(`${m}.weight`, [outs[i], K]).data, row * K);
          row += outs[i];
        });
        return w;
      };
      if (lin.kind === 'float') {
        const wt = () => {
          const w = stacked();
          const t = new Float32Array(K * N);
          for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) t[k * N + n] = w[n * K + k];
          return t;
        };
        y = b.matmul(xa, floatInit(`${tag}.weight_t`, wt, [K, N], act), tag);
      } else {
        const nBlocks = Math.ceil(K / lin.blockSize);
        const zpShape = lin.bits === 4 ? [N, Math.ceil(nBlocks / 2)] : [N, nBlocks];
        let qb = reused(`${tag}.qweight`);
        let scales: Value;
        let zp: Value | null;
        if (qb) {
          scales = reused(`${tag}.scales`)!;
          zp = lin.symmetric ? null : reused(`${tag}.qzeros`);
        } else {
          const w = stacked();
          const q = quantizeNBits(w, N, K, lin);
          if (opts.quantReport) {
            const wq = dequantizeNBits(q);
            let r0 = 0;
            modules.forEach((m, i) => {
              const r1 = r0 + outs[i];
              opts.quantReport!.push(reconstructionError(`${m}.weight`, w.subarray(r0 * K, r1 * K), wq.subarray(r0 * K, r1 * K)));
              r0 = r1;
            });
          }
          qb = b.initializer(`${tag}.qweight`, 'uint8', [N, nBlocks, (lin.blockSize * lin.bits) / 8], q.b);
          scales = floatInit(`${tag}.scales`, q.scales, [N, nBlocks], act);
          zp = q.zeroPoints ? b.initializer(`${tag}.qzeros`, 'uint8', zpShape, q.zeroPoints) : null;
        }
        y = b.matmulNBits(xa, { b: qb, scales, zeroPoints: zp }, { K, N, bits: lin.bits, blockSize: lin.blockSize, accuracyLevel: opts.accuracyLevel }, tag);
      }
      if (bias) {
        const bv = () => {
          const v = new Float32Array(N);
          let o = 0;
          modules.forEach((m, i) => {
            v.set(get(`${m}.bias`, [outs[i]]).data, o);
            o += outs[i];
          });
          return v;
        };
        y = b.add(y, floatInit(`${tag}.bias`, bv, [N], act), `${tag}.biased`);
      }
      return modules.length === 1 ? [y] : b.split(y, outs, -1, `${tag}.split`);
    },
    attention: (layer, q, k, v) => (variant === 'fused' ? fusedAttention : explicitAttention)(layer, q, k, v),
    act(kind, x) {
      const n = (s: string) => b.fresh(`act.${s}`);
      switch (kind) {
        case 'gelu_tanh':
          return b.gelu(x, 'tanh', n('gelu_tanh'));
        case 'gelu':
          return b.gelu(x, 'none', n('gelu'));
        case 'relu':
          return b.unary('Relu', x, n('relu'));
        case 'tanh':
          return b.tanh(x, n('tanh'));
        case 'silu':
          return b.mul(x, b.unary('Sigmoid', x, n('sigmoid')), n('silu'));
      }
    },
    residual(x, delta) {
      const y = b.add(toF32(delta), toF32(x), b.fresh('residual'));
      residualAdds.add(b.nodes[b.nodes.length - 1].name);
      return y;
    },
    lastToken: (x) => b.gatherND(x, lastIndex(), 1, 'last_token'), // [B, H]
    dense(weight, bias, x, rows) {
      const base = weight.replace(/\.weight$/, '');
      const wName = `${base}${rows ? '.rows' : ''}.weight_t`;
      let shape: [number, number] = [0, 0];
      /** [K, N] transposed rows; a judge's few label rows of a 256k-row lm_head / embedding are read one by one when the source can. */
      const wt = () => {
        const full = weights.shape?.(weight);
        const one = rows && full && weights.rows ? (r: number) => weights.rows!(weight, r, 1).data : null;
        const t = one ? null : weights(weight);
        const shp = full ?? t!.shape;
        if (shp.length !== 2) throw new DecoderGraphError(`head weight "${weight}" has shape [${shp}], expected [out, in]`);
        const [out, K] = shp;
        const pick = rows ?? Array.from({ length: out }, (_, i) => i);
        for (const r of pick) if (!(Number.isInteger(r) && r >= 0 && r < out)) throw new DecoderGraphError(`head row ${r} is outside "${weight}" [${shp}]`);
        const N = pick.length;
        const m = new Float32Array(K * N);
        pick.forEach((r, n) => {
          const row = one ? one(r) : t!.data.subarray(r * K, (r + 1) * K);
          for (let k = 0; k < K; k++) m[k * N + n] = row[k];
        });
        shape = [K, N];
        return m;
      };
      const init = reused(wName) ?? (() => {
        const m = wt();
        return b.initializer(wName, 'float32', shape, f32Bytes(m));
      })();
      let y = b.matmul(toF32(x), init, base);
      if (bias) {
        const out = init.shape![1] as number;
        y = b.add(y, floatInit(`${base}.bias`, () => get(bias, [out]).data, [out], 'float32'), `${base}.biased`);
      }
      return y;
    },
  };
}

/** Nodes consuming each value name. */
function consumers(g: Graph): Map<string, Node[]> {
  const m = new Map<string, Node[]>();
  for (const n of g.nodes) for (const i of n.inputs) if (i) m.set(i, [...(m.get(i) ?? []), n]);
  for (const o of g.outputs) m.set(o.name, [...(m.get(o.name) ?? []), { name: '<output>' } as Node]);
  return m;
}

/** Residual Add followed by RMSNorm of the sum -> one SkipSimplifiedLayerNormalization (outputs the norm and the sum). */
export function fuseSkipNorms(g: Graph, residualAdds: Set<string>): void {
  const byOutput = new Map<string, Node>();
  for (const n of g.nodes) if (residualAdds.has(n.name)) byOutput.set(n.outputs[0], n);
  const drop = new Set<Node>();
  for (const norm of g.nodes) {
    if (norm.op !== 'SimplifiedLayerNormalization') continue;
    const add = byOutput.get(norm.inputs[0]);
    if (!add) continue;
    const fused: Node = {
      name: `${norm.name}.skip`,
      op: 'SkipSimplifiedLayerNormalization',
      domain: 'com.microsoft',
      inputs: [add.inputs[0], add.inputs[1], norm.inputs[1]],
      outputs: [norm.outputs[0], '', '', add.outputs[0]],
      attrs: { epsilon: norm.attrs.epsilon },
    };
    g.nodes[g.nodes.indexOf(add)] = fused; // at the Add's place: its inputs and the gamma initializer exist there
    drop.add(norm);
  }
  g.nodes.splice(0, g.nodes.length, ...g.nodes.filter((n) => !drop.has(n)));
}

/** GroupQueryAttention fed by the three outputs of one Split of a packed q/k/v projection takes the packed tensor instead. */
export function packQkv(g: Graph): void {
  const use = consumers(g);
  const producer = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) producer.set(o, n);
  const drop = new Set<Node>();
  for (const n of g.nodes) {
    if (n.op !== 'GroupQueryAttention') continue;
    const split = producer.get(n.inputs[0]);
    if (!split || split.op !== 'Split' || split.outputs.length !== 3) continue;
    if (split.outputs.some((o, i) => n.inputs[i] !== o || (use.get(o) ?? []).length !== 1)) continue;
    n.inputs[0] = split.inputs[0];
    n.inputs[1] = '';
    n.inputs[2] = '';
    drop.add(split);
    for (const o of split.outputs) g.values.delete(o);
  }
  g.nodes.splice(0, g.nodes.length, ...g.nodes.filter((n) => !drop.has(n)));
}

/** Initializers no node reads any more (a fused Split's sizes) leave the graph. */
export function dropUnusedInitializers(g: Graph): void {
  const used = new Set(g.nodes.flatMap((n) => n.inputs));
  g.initializers.splice(0, g.initializers.length, ...g.initializers.filter((i) => used.has(i.name)));
}

