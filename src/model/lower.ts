// Lowering of the decoder definition (src/model/decoder.ts) to ONNX Runtime nodes: weights from a
// WeightSource (float MatMul or block-quantized MatMulNBits, fp32 or fp16 activations with norms,
// residual stream and head in fp32; initializers in ort-weights.ts), one of the attention variants
// (ATTENTION, below), and the runtime fusions applied after the graph is built (ort-passes.ts).
//
// Attention variants (both exact against HF on the CPU EP):
//   fused    - ort-attention-fused.ts: com.microsoft GroupQueryAttention.
//   explicit - ort-attention-explicit.ts: standard ONNX ops only.
// A window is left out when the inputs can never be longer than it (maxTokens <= window): exact, and
// it lets a runtime pick wider kernels.
import { GraphBuilder, GraphBuildError } from '../graph/builder';
import type { Graph, InitializerRef, Value } from '../graph/ir';
import type { TensorStore } from '../graph/store';
import {
  dequantizeInt8Columns,
  dequantizeNBits,
  quantizeInt8Columns,
  quantizeNBits,
  reconstructionError,
  type ReconstructionError,
} from '../quant/nbits';
import { dequantizeInt4Rows, expandInt4Rows, quantizeInt4Rows, type Int4RowsWeight } from '../quant/int4-rows';
import type { GraphOptions, ModelConfig, WeightSource } from '../types';
import { roundTo } from '../util/fp16';
import { decoder, type Lowering } from './decoder';
import { familyOf, fusedSource, layerWindow } from './families';
import { linearModules } from './lora';
import type { AttentionContext, AttentionVariant, OrtAttention } from './ort-attention';
import { explicitAttention } from './ort-attention-explicit';
import { fusedAttention } from './ort-attention-fused';
import { dropUnusedInitializers, fuseSkipNorms, packQkv } from './ort-passes';
import { DecoderGraphError, EMBED_CHUNK_ROWS, embeddingInit, expectShape, f32Bytes, floatBytes } from './ort-weights';
import { rotaryTables } from './rotary';

export type { AttentionVariant } from './ort-attention';

/** The attention variants by name: a new variant is one entry here and one file. */
const ATTENTION: Record<AttentionVariant, OrtAttention> = { fused: fusedAttention, explicit: explicitAttention };
export const ATTENTION_VARIANTS = Object.keys(ATTENTION) as AttentionVariant[];

export interface DecoderGraphOptions extends GraphOptions {
  /** Attention lowering (default 'fused'). */
  attention?: AttentionVariant;
  /** Where initializer bytes go (default: inline, in memory); an external store streams the embedding to disk. */
  store?: TensorStore;
  /** Dtype HF rounds the sqrt(hidden) embedding multiplier to (the checkpoint's torch_dtype); default float32. */
  embedScaleDtype?: 'float32' | 'bfloat16' | 'float16';
  /** Storage of the embedding table: float16 halves it (Gather + Cast; exact when the weights are fp16 values). Default: activation dtype. */
  embedding?: 'float32' | 'float16' | 'bfloat16';
  /** Embedding rows per streamed chunk (default EMBED_CHUNK_ROWS); only used when the source reads row ranges. */
  embedChunkRows?: number;
  /** Rotary table length; default config.maxPositions. */
  maxSeqLen?: number;
  /** Gate and up packed into one MatMul + Split (true, before issue 21); default false: two projections sharing the
   * input, no Split copy (1.05-1.07x on the CPU bench model: BENCHMARKS.md "CPU prefill"). */
  packGateUp?: boolean;
  /** Run the last layer beyond attention on each row's last real token only (default true; Lowering.lastTokenEarly). */
  lastTokenEarly?: boolean;
  /** Longest input the graph will see (the manifest's maxTokens): windows at least this long are left out. */
  maxTokens?: number;
  /** MatMulNBits accuracy_level (0 = exact fp32 accumulate, 4 = int8 activations on CPU). */
  accuracyLevel?: number;
  /** Initializers another variant of this graph already put in the same store: taken by name, the weights are not read again. */
  reuse?: Map<string, InitializerRef>;
  /**
   * Where an int4-rows linear's codes go: a reference to the int8 tensor the loader expands them into
   * (src/weights/expand.ts), or null to keep the expanded int8 bytes inline. Absent: inline.
   */
  int4Rows?: (name: string, q: Int4RowsWeight) => InitializerRef | null;
  /** Receives one reconstruction-error row per quantized linear weight. */
  quantReport?: ReconstructionError[];
  graphName?: string;
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
function ortLowering(
  b: GraphBuilder,
  c: ModelConfig,
  source: WeightSource,
  opts: DecoderGraphOptions,
): Lowering & { residualAdds: Set<string> } {
  const weights = fusedSource(c, source);
  const act = opts.activations;
  const variant = opts.attention ?? 'fused';
  const f = familyOf(c);
  const H = c.hiddenSize;
  const D = c.headDim;
  if (D % 2) throw new DecoderGraphError(`head_dim ${D} must be even for rotary embeddings`);
  if (c.numHeads % c.numKvHeads)
    throw new DecoderGraphError(
      `num_attention_heads ${c.numHeads} is not a multiple of num_key_value_heads ${c.numKvHeads}`,
    );
  const get = (name: string, shape: number[]) => expectShape(weights(name), shape, name);
  const reused = (name: string) => {
    const r = opts.reuse?.get(name);
    return r ? b.existing(r) : null;
  };
  /** A float initializer from data computed only when no other variant stored it yet. */
  const floatInit = (
    name: string,
    data: Float32Array | (() => Float32Array),
    shape: number[],
    dtype: 'float32' | 'float16' | 'bfloat16',
  ) => reused(name) ?? b.initializer(name, dtype, shape, floatBytes(typeof data === 'function' ? data() : data, dtype));
  const toAct = (x: Value) => (x.dtype === act ? x : b.cast(x, act));
  /** Per-token int8 activations by input value name (int8-rows linears). */
  const rowQuant = new Map<string, ReturnType<GraphBuilder['quantizeRows']>>();
  const toF32 = (x: Value) => (x.dtype === 'float32' ? x : b.cast(x, 'float32'));
  const residualAdds = new Set<string>();

  /** The MLP gate modules of every layer (packed with up only when opts.packGateUp). */
  const gates = new Set(Array.from({ length: c.numLayers }, (_, i) => f.layer(i).gate));
  /** [out, in] of each projection module, from the family's layer table. */
  const outWidth = new Map(linearModules(c).map((m) => [m.module, [m.outF, m.inF] as [number, number]]));

  let ids: Value;
  let mask: Value;
  const memo = new Map<string, Value>();
  const once = (key: string, make: () => Value) => memo.get(key) ?? (memo.set(key, make()), memo.get(key)!);
  const lastIndex = () =>
    once('last', () => b.sub(b.reduceSum(mask, [1], true, 'lengths'), b.constInt64('one', [1], []), 'last_index')); // [B, 1]
  const seqLen = () =>
    once('seq', () => b.gather(b.shape(ids, 'ids_shape'), b.constInt64('axis1', [1], []), 0, 'seq_len'));
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
  const shared: AttentionContext = {
    b,
    c,
    act,
    once,
    mask: () => mask,
    seqLen,
    lastIndex,
    rope,
    windowOf,
    toF32,
    toAct,
  };
  const attend = ATTENTION[variant];
  if (!attend)
    throw new DecoderGraphError(`unknown attention variant "${variant}"; one of ${ATTENTION_VARIANTS.join(', ')}`);

  return {
    b,
    residualAdds,
    lastTokenEarly: opts.lastTokenEarly ?? true,
    inputs() {
      ids = b.input('input_ids', 'int64', ['batch', 'seq']);
      mask = b.input('attention_mask', 'int64', ['batch', 'seq']);
      return ids;
    },
    embed(x) {
      const name = `${f.embed}.weight`;
      const table =
        reused(name) ??
        embeddingInit(
          b,
          weights,
          name,
          [c.vocabSize, H],
          opts.embedding ?? act,
          opts.embedChunkRows ?? EMBED_CHUNK_ROWS,
        );
      const e = toF32(b.gather(table, x, 0, 'embed'));
      if (!c.embedScale) return e;
      return b.mul(
        e,
        b.scalar('embed_scale', roundTo(Math.sqrt(H), opts.embedScaleDtype ?? 'float32')),
        'embed_scaled',
      );
    },
    norm(module, x, width = H) {
      const gamma = () => {
        const w = get(`${module}.weight`, [width]).data;
        const g = new Float32Array(width);
        for (let i = 0; i < width; i++) g[i] = c.normPlusOne ? 1 + w[i] : w[i];
        return g;
      };
      return b.rmsNorm(toF32(x), floatInit(`${module}.gamma`, gamma, [width], 'float32'), c.rmsNormEps, module);
    },
    linear(modules, x, bias) {
      // gate | up as two projections of the one input, no packed output for a Split to copy apart (unless
      // packGateUp); the same weights and codes (quantization is per output row)
      if (!opts.packGateUp && modules.length === 2 && gates.has(modules[0]))
        return [this.linear([modules[0]], x, bias)[0], this.linear([modules[1]], x, bias)[0]];
      const shapes = modules.map((m) => {
        const s = outWidth.get(m);
        if (!s) throw new DecoderGraphError(`no projection "${m}" in the ${c.family} layer table`);
        return s;
      });
      const K = shapes[0][1];
      const outs = shapes.map((s) => s[0]);
      const N = outs.reduce((a, n) => a + n, 0);
      const tag =
        modules.length === 1
          ? modules[0]
          : `${modules[0].slice(0, modules[0].lastIndexOf('.'))}.${modules.map((m) => m.slice(m.lastIndexOf('.') + 1)).join('+')}`;
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
      /** Per-module reconstruction errors of the stacked weight `w` against its dequantized copy (import's report). */
      const report = (w: Float32Array, dequantized: () => Float32Array) => {
        if (!opts.quantReport) return;
        const wq = dequantized();
        let r0 = 0;
        modules.forEach((m, i) => {
          const r1 = r0 + outs[i];
          opts.quantReport!.push(
            reconstructionError(`${m}.weight`, w.subarray(r0 * K, r1 * K), wq.subarray(r0 * K, r1 * K)),
          );
          r0 = r1;
        });
      };
      if (lin.kind === 'float') {
        const wt = () => {
          const w = stacked();
          const t = new Float32Array(K * N);
          for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) t[k * N + n] = w[n * K + k];
          return t;
        };
        y = b.matmul(xa, floatInit(`${tag}.weight_t`, wt, [K, N], act), tag);
      } else if (lin.kind === 'int8-rows' || lin.kind === 'int4-rows') {
        if (act !== 'float32')
          throw new GraphBuildError(`${tag}: ${lin.kind} linears are for the fp32 CPU graph, not ${act} activations`);
        let qb = reused(`${tag}.qweight_t`);
        let scales = reused(`${tag}.col_scales`);
        if (!qb || !scales) {
          const w = stacked();
          let columnScales: Float32Array;
          if (lin.kind === 'int4-rows') {
            // 4-bit codes the loader expands exactly into these int8 weights (src/quant/int4-rows.ts); inline
            // (expanded here) when no store takes them
            const q = quantizeInt4Rows(w, N, K, lin.blockSize);
            report(w, () => dequantizeInt4Rows(q));
            const ref = opts.int4Rows?.(`${tag}.qweight_t`, q);
            qb = ref
              ? b.existing(ref)
              : b.initializer(`${tag}.qweight_t`, 'int8', [K, N], new Uint8Array(expandInt4Rows(q).buffer));
            columnScales = q.scales;
          } else {
            const q = quantizeInt8Columns(w, N, K);
            report(w, () => dequantizeInt8Columns(q));
            qb = b.initializer(`${tag}.qweight_t`, 'int8', [K, N], new Uint8Array(q.b.buffer));
            columnScales = q.scales;
          }
          scales = b.initializer(`${tag}.col_scales`, 'float32', [N], floatBytes(columnScales, 'float32'));
        }
        // One quantization per input: q / k / v and gate / up share theirs.
        let xq = rowQuant.get(xa.name);
        if (!xq) rowQuant.set(xa.name, (xq = b.quantizeRows(xa, `${tag}.xq`)));
        y = b.matmulInt8Rows(xq, { b: qb, scales }, N, tag);
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
          report(w, () => dequantizeNBits(q));
          qb = b.initializer(`${tag}.qweight`, 'uint8', [N, nBlocks, (lin.blockSize * lin.bits) / 8], q.b);
          scales = floatInit(`${tag}.scales`, q.scales, [N, nBlocks], act);
          zp = q.zeroPoints ? b.initializer(`${tag}.qzeros`, 'uint8', zpShape, q.zeroPoints) : null;
        }
        y = b.matmulNBits(
          xa,
          { b: qb, scales, zeroPoints: zp },
          { K, N, bits: lin.bits, blockSize: lin.blockSize, accuracyLevel: opts.accuracyLevel },
          tag,
        );
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
    attention: (layer, q, k, v) => attend(shared, layer, q, k, v),
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
        if (shp.length !== 2)
          throw new DecoderGraphError(`head weight "${weight}" has shape [${shp}], expected [out, in]`);
        const [out, K] = shp;
        const pick = rows ?? Array.from({ length: out }, (_, i) => i);
        for (const r of pick)
          if (!(Number.isInteger(r) && r >= 0 && r < out))
            throw new DecoderGraphError(`head row ${r} is outside "${weight}" [${shp}]`);
        const N = pick.length;
        const m = new Float32Array(K * N);
        pick.forEach((r, n) => {
          const row = one ? one(r) : t!.data.subarray(r * K, (r + 1) * K);
          for (let k = 0; k < K; k++) m[k * N + n] = row[k];
        });
        shape = [K, N];
        return m;
      };
      const init =
        reused(wName) ??
        (() => {
          const m = wt();
          return b.initializer(wName, 'float32', shape, f32Bytes(m));
        })();
      let y = b.matmul(toF32(x), init, base);
      if (bias) {
        const out = init.shape![1] as number;
        y = b.add(
          y,
          floatInit(`${base}.bias`, () => get(bias, [out]).data, [out], 'float32'),
          `${base}.biased`,
        );
      }
      return y;
    },
  };
}
