// Typed op-level graph builder: each helper emits exactly one node, checks input dtypes, infers the
// output dtype and (where cheap) shape, and returns the output Value(s). Nodes are appended in
// topological order by construction. Initializer bytes go straight to a TensorStore.
import { attr, type Attr, type Dim, type DType, type Graph, type InitializerRef, type Node, type Value } from './ir';
import { memoryStore, type TensorStore } from './store';
import { f32ToF16 } from '../util/fp16';

export class GraphBuildError extends Error {
  override name = 'GraphBuildError';
}

export const MS = 'com.microsoft';

type Opt = Value | null;

function broadcast(a: Dim[] | null, b: Dim[] | null): Dim[] | null {
  if (!a || !b) return null;
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = i < n - a.length ? 1 : a[i - (n - a.length)];
    const y = i < n - b.length ? 1 : b[i - (n - b.length)];
    out.push(x === 1 ? y : y === 1 ? x : x === y ? x : typeof x === 'number' && typeof y === 'number' ? NaN : x ?? y);
    if (Number.isNaN(out[i])) return null;
  }
  return out;
}

function reducedShape(s: Dim[] | null, axes: number[], keepdims: boolean): Dim[] | null {
  if (!s) return null;
  const r = s.length;
  const ax = new Set(axes.map((i) => (i + r) % r));
  return keepdims ? s.map((d, i) => (ax.has(i) ? 1 : d)) : s.filter((_, i) => !ax.has(i));
}

export class GraphBuilder {
  readonly nodes: Node[] = [];
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  readonly initializers: InitializerRef[] = [];
  readonly values = new Map<string, Value>();
  private counter = new Map<string, number>();

  constructor(
    readonly name = 'graph',
    readonly store: TensorStore = memoryStore(),
    readonly opsetImports = [
      { domain: '', version: 21 },
      { domain: MS, version: 1 },
    ],
  ) {}

  /** A fresh value name: `base` if unused, else base_1, base_2, ... */
  fresh(base: string): string {
    if (!this.values.has(base) && !this.counter.has(base)) {
      this.counter.set(base, 0);
      return base;
    }
    let n = this.counter.get(base) ?? 0;
    let name: string;
    do name = `${base}_${++n}`;
    while (this.values.has(name));
    this.counter.set(base, n);
    return name;
  }

  private define(v: Value): Value {
    if (this.values.has(v.name)) throw new GraphBuildError(`value "${v.name}" is defined twice; pick another name`);
    this.values.set(v.name, v);
    return v;
  }

  input(name: string, dtype: DType, shape: Dim[]): Value {
    const v = this.define({ name, dtype, shape });
    this.inputs.push(v);
    return v;
  }

  /** Marks `v` as a graph output, renaming through Identity when `name` differs. */
  output(v: Value, name = v.name): Value {
    const out = name === v.name ? v : this.op('Identity', [v], [{ dtype: v.dtype, shape: v.shape }], {}, { outNames: [name] })[0];
    this.outputs.push(out);
    return out;
  }

  /** Adds an initializer; its bytes are handed to the store at once (external file or inline). */
  initializer(name: string, dtype: DType, shape: number[], bytes: Uint8Array): Value {
    const ref = this.store.put(name, dtype, shape, bytes);
    this.initializers.push(ref);
    return this.define({ name, dtype, shape: [...shape] });
  }

  /** Adds an initializer whose bytes arrive as consecutive chunks (never whole in memory with an external store). */
  initializerChunks(name: string, dtype: DType, shape: number[], byteLength: number, chunks: Iterable<Uint8Array>): Value {
    const ref = this.store.putChunks(name, dtype, shape, byteLength, chunks);
    this.initializers.push(ref);
    return this.define({ name, dtype, shape: [...shape] });
  }

  /** An initializer already in the store (written by another variant of the same graph): no bytes move. */
  existing(ref: InitializerRef): Value {
    this.initializers.push(ref);
    return this.define({ name: ref.name, dtype: ref.dtype, shape: [...ref.shape] });
  }

  constFloat(name: string, data: Float32Array | number[], shape: number[] = [data.length]): Value {
    const f = data instanceof Float32Array ? data : Float32Array.from(data);
    return this.initializer(this.fresh(name), 'float32', shape, new Uint8Array(f.buffer, f.byteOffset, f.byteLength));
  }

  constInt64(name: string, data: number[], shape: number[] = [data.length]): Value {
    const a = BigInt64Array.from(data.map((x) => BigInt(x)));
    return this.initializer(this.fresh(name), 'int64', shape, new Uint8Array(a.buffer));
  }

  /** Scalar float constant of the given float dtype. */
  scalar(name: string, value: number, dtype: DType = 'float32'): Value {
    if (dtype === 'float32') return this.constFloat(name, [value], []);
    if (dtype === 'float16') return this.initializer(this.fresh(name), 'float16', [], new Uint8Array(new Uint16Array([f32ToF16(value)]).buffer));
    throw new GraphBuildError(`scalar "${name}": unsupported dtype ${dtype}`);
  }

  /** Emits one node. Every helper below goes through here. */
  op(
    op: string,
    inputs: Opt[],
    outs: { dtype: DType; shape: Dim[] | null }[],
    attrs: Record<string, Attr> = {},
    opts: { domain?: string; name?: string; outNames?: string[] } = {},
  ): Value[] {
    for (const v of inputs)
      if (v && this.values.get(v.name) !== v) throw new GraphBuildError(`${op}: input "${v.name}" does not belong to this graph`);
    const nodeName = this.fresh(opts.name ?? op);
    const outputs = outs.map((o, i) => this.define({ name: opts.outNames?.[i] ?? this.fresh(`${nodeName}_out${i}`), dtype: o.dtype, shape: o.shape }));
    this.nodes.push({
      name: nodeName,
      op,
      domain: opts.domain ?? '',
      inputs: inputs.map((v) => (v ? v.name : '')),
      outputs: outputs.map((v) => v.name),
      attrs,
    });
    return outputs;
  }

  private sameType(op: string, ...vs: Value[]): DType {
    const t = vs[0].dtype;
    for (const v of vs)
      if (v.dtype !== t) throw new GraphBuildError(`${op}: dtype mismatch (${vs.map((x) => `${x.name}:${x.dtype}`).join(', ')}); insert a cast`);
    return t;
  }

  private elementwise(op: string, a: Value, b: Value, name?: string): Value {
    return this.op(op, [a, b], [{ dtype: this.sameType(op, a, b), shape: broadcast(a.shape, b.shape) }], {}, { name })[0];
  }

  add(a: Value, b: Value, name?: string): Value {
    return this.elementwise('Add', a, b, name);
  }
  sub(a: Value, b: Value, name?: string): Value {
    return this.elementwise('Sub', a, b, name);
  }
  mul(a: Value, b: Value, name?: string): Value {
    return this.elementwise('Mul', a, b, name);
  }
  div(a: Value, b: Value, name?: string): Value {
    return this.elementwise('Div', a, b, name);
  }

  tanh(x: Value, name?: string): Value {
    return this.op('Tanh', [x], [{ dtype: x.dtype, shape: x.shape }], {}, { name })[0];
  }

  /** A one-input op whose output has the input's dtype and shape (Relu, Sigmoid, Neg, Sqrt, ...). */
  unary(op: string, x: Value, name?: string): Value {
    return this.op(op, [x], [{ dtype: x.dtype, shape: x.shape }], {}, { name })[0];
  }

  /** Comparison (Less, LessOrEqual, Greater, GreaterOrEqual, Equal) or logical And/Or: a bool tensor. */
  compare(op: 'Less' | 'LessOrEqual' | 'Greater' | 'GreaterOrEqual' | 'Equal' | 'And' | 'Or', a: Value, b: Value, name?: string): Value {
    this.sameType(op, a, b);
    return this.op(op, [a, b], [{ dtype: 'bool', shape: broadcast(a.shape, b.shape) }], {}, { name })[0];
  }

  /** cond ? a : b, elementwise with broadcasting. */
  where(cond: Value, a: Value, b: Value, name?: string): Value {
    const t = this.sameType('Where', a, b);
    return this.op('Where', [cond, a, b], [{ dtype: t, shape: broadcast(cond.shape, broadcast(a.shape, b.shape)) }], {}, { name })[0];
  }

  /** [start, limit) step delta, int64 scalars in. */
  range(start: Value, limit: Value, delta: Value, name?: string): Value {
    return this.op('Range', [start, limit, delta], [{ dtype: start.dtype, shape: [null] }], {}, { name })[0];
  }

  /** ONNX Gelu (opset 20); approximate 'tanh' = HF gelu_pytorch_tanh. */
  gelu(x: Value, approximate: 'none' | 'tanh' = 'tanh', name?: string): Value {
    return this.op('Gelu', [x], [{ dtype: x.dtype, shape: x.shape }], { approximate: attr.string(approximate) }, { name })[0];
  }

  cast(x: Value, to: DType, name?: string): Value {
    return this.op('Cast', [x], [{ dtype: to, shape: x.shape }], { to: attr.int(ONNX_DTYPE[to]) }, { name })[0];
  }

  identity(x: Value, name?: string): Value {
    return this.op('Identity', [x], [{ dtype: x.dtype, shape: x.shape }], {}, { name })[0];
  }

  /** x [..., K] @ w [K, N] (or batched, batch dims broadcast). */
  matmul(x: Value, w: Value, name?: string): Value {
    const t = this.sameType('MatMul', x, w);
    let shape: Dim[] | null = null;
    if (x.shape && w.shape && w.shape.length === 2) shape = [...x.shape.slice(0, -1), w.shape[1]];
    else if (x.shape && w.shape && x.shape.length >= 2 && w.shape.length >= 2) {
      const batch = broadcast(x.shape.slice(0, -2), w.shape.slice(0, -2));
      if (batch) shape = [...batch, x.shape[x.shape.length - 2], w.shape[w.shape.length - 1]];
    }
    return this.op('MatMul', [x, w], [{ dtype: t, shape }], {}, { name })[0];
  }

  gather(data: Value, indices: Value, axis = 0, name?: string): Value {
    let shape: Dim[] | null = null;
    if (data.shape && indices.shape) shape = [...data.shape.slice(0, axis), ...indices.shape, ...data.shape.slice(axis + 1)];
    return this.op('Gather', [data, indices], [{ dtype: data.dtype, shape }], { axis: attr.int(axis) }, { name })[0];
  }

  /** GatherND; with batch_dims = 1 and indices [B, 1] it picks one row per batch item. */
  gatherND(data: Value, indices: Value, batchDims = 0, name?: string): Value {
    let shape: Dim[] | null = null;
    const last = indices.shape?.[indices.shape.length - 1];
    if (data.shape && indices.shape && typeof last === 'number')
      shape = [...indices.shape.slice(0, -1), ...data.shape.slice(batchDims + last)];
    return this.op('GatherND', [data, indices], [{ dtype: data.dtype, shape }], { batch_dims: attr.int(batchDims) }, { name })[0];
  }

  reshape(x: Value, shape: number[], name?: string): Value {
    const s = this.constInt64(`${name ?? 'reshape'}_shape`, shape);
    const out: Dim[] = shape.map((d, i) => (d === 0 ? (x.shape?.[i] ?? null) : d === -1 ? null : d));
    return this.op('Reshape', [x, s], [{ dtype: x.dtype, shape: out }], {}, { name })[0];
  }

  unsqueeze(x: Value, axes: number[], name?: string): Value {
    const a = this.constInt64(`${name ?? 'unsqueeze'}_axes`, axes);
    let shape: Dim[] | null = null;
    if (x.shape) {
      shape = [...x.shape];
      for (const ax of [...axes].sort((p, q) => p - q)) shape.splice(ax, 0, 1);
    }
    return this.op('Unsqueeze', [x, a], [{ dtype: x.dtype, shape }], {}, { name })[0];
  }

  shape(x: Value, name?: string): Value {
    return this.op('Shape', [x], [{ dtype: 'int64', shape: [x.shape ? x.shape.length : null] }], {}, { name })[0];
  }

  reduceSum(x: Value, axes: number[], keepdims: boolean, name?: string): Value {
    const a = this.constInt64(`${name ?? 'reduce'}_axes`, axes);
    const shape = reducedShape(x.shape, axes, keepdims);
    return this.op('ReduceSum', [x, a], [{ dtype: x.dtype, shape }], { keepdims: attr.int(keepdims ? 1 : 0) }, { name })[0];
  }

  // ---- primitive ops of the training lowering (each has a gradient rule in grad.ts)

  neg(x: Value, name?: string): Value {
    return this.op('Neg', [x], [{ dtype: x.dtype, shape: x.shape }], {}, { name })[0];
  }

  sqrt(x: Value, name?: string): Value {
    return this.op('Sqrt', [x], [{ dtype: x.dtype, shape: x.shape }], {}, { name })[0];
  }

  exp(x: Value, name?: string): Value {
    return this.op('Exp', [x], [{ dtype: x.dtype, shape: x.shape }], {}, { name })[0];
  }

  transpose(x: Value, perm: number[], name?: string): Value {
    const shape = x.shape ? perm.map((p) => x.shape![p]) : null;
    return this.op('Transpose', [x], [{ dtype: x.dtype, shape }], { perm: attr.ints(perm) }, { name })[0];
  }

  concat(xs: Value[], axis: number, name?: string): Value {
    const s0 = xs[0].shape;
    let shape: Dim[] | null = null;
    if (s0 && xs.every((v) => v.shape)) {
      const ax = (axis + s0.length) % s0.length;
      const sizes = xs.map((v) => v.shape![ax]);
      shape = s0.map((d, i) => (i !== ax ? d : sizes.every((n) => typeof n === 'number') ? (sizes as number[]).reduce((a, n) => a + n, 0) : null));
    }
    return this.op('Concat', xs, [{ dtype: this.sameType('Concat', ...xs), shape }], { axis: attr.int(axis) }, { name })[0];
  }

  softmax(x: Value, axis = -1, name?: string): Value {
    return this.op('Softmax', [x], [{ dtype: x.dtype, shape: x.shape }], { axis: attr.int(axis) }, { name })[0];
  }

  logSoftmax(x: Value, axis = -1, name?: string): Value {
    return this.op('LogSoftmax', [x], [{ dtype: x.dtype, shape: x.shape }], { axis: attr.int(axis) }, { name })[0];
  }

  reduceMean(x: Value, axes: number[], keepdims: boolean, name?: string): Value {
    const a = this.constInt64(`${name ?? 'reduce'}_axes`, axes);
    return this.op('ReduceMean', [x, a], [{ dtype: x.dtype, shape: reducedShape(x.shape, axes, keepdims) }], { keepdims: attr.int(keepdims ? 1 : 0) }, { name })[0];
  }

  /** Broadcasts x to the runtime shape held by `shape` (an int64 vector, e.g. Shape(y)). */
  expand(x: Value, shape: Value, like: Dim[] | null, name?: string): Value {
    return this.op('Expand', [x, shape], [{ dtype: x.dtype, shape: like }], {}, { name })[0];
  }

  /** Reshape to a runtime shape (an int64 vector, e.g. Shape(y)). */
  reshapeTo(x: Value, shape: Value, like: Dim[] | null, name?: string): Value {
    return this.op('Reshape', [x, shape], [{ dtype: x.dtype, shape: like }], {}, { name })[0];
  }

  /** Zeros (float32: ConstantOfShape's default value) of the runtime shape held by `shape`. */
  zeros(shape: Value, like: Dim[] | null, name?: string): Value {
    return this.op('ConstantOfShape', [shape], [{ dtype: 'float32', shape: like }], {}, { name })[0];
  }

  /** Splits the last axis into pieces of the given sizes. */
  split(x: Value, sizes: number[], axis = -1, name?: string): Value[] {
    const s = this.constInt64(`${name ?? 'split'}_sizes`, sizes);
    const r = x.shape?.length ?? 0;
    const ax = (axis + r) % r;
    return this.op(
      'Split',
      [x, s],
      sizes.map((n) => ({ dtype: x.dtype, shape: x.shape ? x.shape.map((d, i) => (i === ax ? n : d)) : null })),
      { axis: attr.int(axis) },
      { name },
    );
  }

  /** RMSNorm `x * rsqrt(mean(x^2) + eps) * gamma` (ORT SimplifiedLayerNormalization, default domain), fp32 stash. */
  rmsNorm(x: Value, gamma: Value, eps: number, name?: string): Value {
    return this.op(
      'SimplifiedLayerNormalization',
      [x, gamma],
      [{ dtype: x.dtype, shape: x.shape }],
      { axis: attr.int(-1), epsilon: attr.float(eps), stash_type: attr.int(1) },
      { name },
    )[0];
  }

  /** Fused residual add + RMSNorm: returns [norm(x + skip) * gamma, x + skip]. */
  skipRmsNorm(x: Value, skip: Value, gamma: Value, eps: number, name?: string): [Value, Value] {
    const t = this.sameType('SkipSimplifiedLayerNormalization', x, skip);
    const [y, , , sum] = this.op(
      'SkipSimplifiedLayerNormalization',
      [x, skip, gamma],
      [
        { dtype: t, shape: x.shape },
        { dtype: 'float32', shape: null },
        { dtype: 'float32', shape: null },
        { dtype: t, shape: x.shape },
      ],
      { epsilon: attr.float(eps) },
      { domain: MS, name },
    );
    return [y, sum];
  }

  /** MatMulNBits: A [..., K] times a block-quantized [K, N] weight (B, scales, zero points as initializers). */
  matmulNBits(
    a: Value,
    q: { b: Value; scales: Value; zeroPoints: Value | null },
    p: { K: number; N: number; bits: number; blockSize: number; accuracyLevel?: number },
    name?: string,
  ): Value {
    const shape = a.shape ? [...a.shape.slice(0, -1), p.N] : null;
    const attrs: Record<string, Attr> = {
      K: attr.int(p.K),
      N: attr.int(p.N),
      bits: attr.int(p.bits),
      block_size: attr.int(p.blockSize),
    };
    if (p.accuracyLevel !== undefined) attrs.accuracy_level = attr.int(p.accuracyLevel);
    return this.op('MatMulNBits', [a, q.b, q.scales, q.zeroPoints], [{ dtype: a.dtype, shape }], attrs, { domain: MS, name })[0];
  }

  /**
   * ORT GroupQueryAttention (prompt mode, no KV cache kept). `query` is packed QKV when key/value are
   * null. Returns the attention output [B, S, numHeads * headDim].
   */
  groupQueryAttention(
    qkv: { query: Value; key: Value | null; value: Value | null },
    lens: { seqlensK: Value; totalSeqLen: Value },
    rope: { cos: Value; sin: Value } | null,
    p: { numHeads: number; kvNumHeads: number; headDim: number; scale: number; softcap: number | null; localWindow: number | null },
    name?: string,
  ): Value {
    const q = qkv.query;
    const attrs: Record<string, Attr> = {
      num_heads: attr.int(p.numHeads),
      kv_num_heads: attr.int(p.kvNumHeads),
      scale: attr.float(p.scale),
      do_rotary: attr.int(rope ? 1 : 0),
      rotary_interleaved: attr.int(0),
    };
    if (p.softcap !== null) attrs.softcap = attr.float(p.softcap);
    if (p.localWindow !== null) attrs.local_window_size = attr.int(p.localWindow);
    const b = q.shape?.[0] ?? null;
    const kvShape: Dim[] = [b, p.kvNumHeads, null, p.headDim];
    const [out] = this.op(
      'GroupQueryAttention',
      [q, qkv.key, qkv.value, null, null, lens.seqlensK, lens.totalSeqLen, rope?.cos ?? null, rope?.sin ?? null],
      [
        { dtype: q.dtype, shape: q.shape ? [q.shape[0], q.shape[1], p.numHeads * p.headDim] : null },
        { dtype: q.dtype, shape: kvShape },
        { dtype: q.dtype, shape: kvShape },
      ],
      attrs,
      { domain: MS, name },
    );
    return out;
  }

  /** Snapshot of the graph as plain data. */
  finish(): Graph {
    return {
      name: this.name,
      inputs: this.inputs,
      outputs: this.outputs,
      nodes: this.nodes,
      initializers: this.initializers,
      values: this.values,
      opsetImports: this.opsetImports,
    };
  }
}

export const ONNX_DTYPE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  bfloat16: 16,
};
