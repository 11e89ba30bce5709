// Typed op-level graph builder: each helper emits exactly one node, checks input dtypes, infers the
// output dtype and (where cheap) shape, and returns the output Value(s). Nodes are appended in
// topological order by construction (GraphCore, src/graph/core.ts, holds the graph and the emitter).
import { attr, ONNX_DTYPE, type Attr, type Dim, type DType, type Value } from './ir';
import { GraphCore, MS } from './core';

export { GraphBuildError } from './core';

function broadcast(a: Dim[] | null, b: Dim[] | null): Dim[] | null {
  if (!a || !b) return null;
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = i < n - a.length ? 1 : a[i - (n - a.length)];
    const y = i < n - b.length ? 1 : b[i - (n - b.length)];
    out.push(x === 1 ? y : y === 1 ? x : x === y ? x : typeof x === 'number' && typeof y === 'number' ? NaN : (x ?? y));
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

export class GraphBuilder extends GraphCore {
  private elementwise(op: string, a: Value, b: Value, name?: string): Value {
    return this.op(
      op,
      [a, b],
      [{ dtype: this.sameType(op, a, b), shape: broadcast(a.shape, b.shape) }],
      {},
      { name },
    )[0];
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
  compare(
    op: 'Less' | 'LessOrEqual' | 'Greater' | 'GreaterOrEqual' | 'Equal' | 'And' | 'Or',
    a: Value,
    b: Value,
    name?: string,
  ): Value {
    this.sameType(op, a, b);
    return this.op(op, [a, b], [{ dtype: 'bool', shape: broadcast(a.shape, b.shape) }], {}, { name })[0];
  }

  /** cond ? a : b, elementwise with broadcasting. */
  where(cond: Value, a: Value, b: Value, name?: string): Value {
    const t = this.sameType('Where', a, b);
    return this.op(
      'Where',
      [cond, a, b],
      [{ dtype: t, shape: broadcast(cond.shape, broadcast(a.shape, b.shape)) }],
      {},
      { name },
    )[0];
  }

  /** [start, limit) step delta, int64 scalars in. */
  range(start: Value, limit: Value, delta: Value, name?: string): Value {
    return this.op('Range', [start, limit, delta], [{ dtype: start.dtype, shape: [null] }], {}, { name })[0];
  }

  /** ONNX Gelu (opset 20); approximate 'tanh' = HF gelu_pytorch_tanh. */
  gelu(x: Value, approximate: 'none' | 'tanh' = 'tanh', name?: string): Value {
    return this.op(
      'Gelu',
      [x],
      [{ dtype: x.dtype, shape: x.shape }],
      { approximate: attr.string(approximate) },
      { name },
    )[0];
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
    if (data.shape && indices.shape)
      shape = [...data.shape.slice(0, axis), ...indices.shape, ...data.shape.slice(axis + 1)];
    return this.op('Gather', [data, indices], [{ dtype: data.dtype, shape }], { axis: attr.int(axis) }, { name })[0];
  }

  /** GatherND; with batch_dims = 1 and indices [B, 1] it picks one row per batch item. */
  gatherND(data: Value, indices: Value, batchDims = 0, name?: string): Value {
    let shape: Dim[] | null = null;
    const last = indices.shape?.[indices.shape.length - 1];
    if (data.shape && indices.shape && typeof last === 'number')
      shape = [...indices.shape.slice(0, -1), ...data.shape.slice(batchDims + last)];
    return this.op(
      'GatherND',
      [data, indices],
      [{ dtype: data.dtype, shape }],
      { batch_dims: attr.int(batchDims) },
      { name },
    )[0];
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
    return this.op(
      'ReduceSum',
      [x, a],
      [{ dtype: x.dtype, shape }],
      { keepdims: attr.int(keepdims ? 1 : 0) },
      { name },
    )[0];
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
      shape = s0.map((d, i) =>
        i !== ax
          ? d
          : sizes.every((n) => typeof n === 'number')
            ? (sizes as number[]).reduce((a, n) => a + n, 0)
            : null,
      );
    }
    return this.op(
      'Concat',
      xs,
      [{ dtype: this.sameType('Concat', ...xs), shape }],
      { axis: attr.int(axis) },
      { name },
    )[0];
  }

  softmax(x: Value, axis = -1, name?: string): Value {
    return this.op('Softmax', [x], [{ dtype: x.dtype, shape: x.shape }], { axis: attr.int(axis) }, { name })[0];
  }

  logSoftmax(x: Value, axis = -1, name?: string): Value {
    return this.op('LogSoftmax', [x], [{ dtype: x.dtype, shape: x.shape }], { axis: attr.int(axis) }, { name })[0];
  }

  reduceMean(x: Value, axes: number[], keepdims: boolean, name?: string): Value {
    const a = this.constInt64(`${name ?? 'reduce'}_axes`, axes);
    return this.op(
      'ReduceMean',
      [x, a],
      [{ dtype: x.dtype, shape: reducedShape(x.shape, axes, keepdims) }],
      { keepdims: attr.int(keepdims ? 1 : 0) },
      { name },
    )[0];
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
    return this.op('MatMulNBits', [a, q.b, q.scales, q.zeroPoints], [{ dtype: a.dtype, shape }], attrs, {
      domain: MS,
      name,
    })[0];
  }

  /**
   * Per-row (per-token) symmetric int8 quantization of x [..., K], stored as uint8 with zero point 128 (the
   * u8 x s8 MLAS kernels, AMX / VNNI): q = round(x x 127 / max|x_row|) + 128 and the row's scale max|x_row| / 127
   * [..., 1]. Rows are quantized alone, so a row's result does not depend on its batch.
   */
  quantizeRows(x: Value, name: string): { q: Value; scale: Value; zeroPoint: Value } {
    const rowShape = x.shape ? [...x.shape.slice(0, -1), 1] : null;
    const absmax = this.op(
      'ReduceMax',
      [this.unary('Abs', x, `${name}.abs`), this.constInt64(`${name}.axes`, [-1])],
      [{ dtype: 'float32', shape: rowShape }],
      { keepdims: attr.int(1) },
      { name: `${name}.absmax` },
    )[0];
    const m = this.elementwise('Max', absmax, this.scalar(`${name}.tiny`, 1e-30), `${name}.absmax_pos`);
    const inv = this.div(this.scalar(`${name}.q127`, 127), m, `${name}.inv_scale`);
    const r = this.unary('Round', this.mul(x, inv, `${name}.scaled`), `${name}.rounded`);
    const q = this.cast(this.add(r, this.scalar(`${name}.zp_f`, 128), `${name}.shifted`), 'uint8', `${name}.q`);
    const scale = this.mul(m, this.scalar(`${name}.inv127`, 1 / 127), `${name}.scale`);
    return { q, scale, zeroPoint: this.initializer(this.fresh(`${name}.zp`), 'uint8', [], Uint8Array.of(128)) };
  }

  /**
   * x [..., K] (quantized by quantizeRows) @ int8 weights [K, N] with one scale per output column: MatMulInteger
   * (exact int32 accumulation) times the row's scale and the column's scale, float32 [..., N].
   */
  matmulInt8Rows(
    xq: { q: Value; scale: Value; zeroPoint: Value },
    w: { b: Value; scales: Value },
    N: number,
    name: string,
  ): Value {
    const shape = xq.q.shape ? [...xq.q.shape.slice(0, -1), N] : null;
    const acc = this.op('MatMulInteger', [xq.q, w.b, xq.zeroPoint], [{ dtype: 'int32', shape }], {}, { name })[0];
    const f = this.cast(acc, 'float32', `${name}.acc_f`);
    return this.mul(this.mul(f, xq.scale, `${name}.row_scaled`), w.scales, `${name}.out`);
  }

  /**
   * ORT GroupQueryAttention (prompt mode, no KV cache kept). `query` is packed QKV when key/value are
   * null. Returns the attention output [B, S, numHeads * headDim].
   */
  groupQueryAttention(
    qkv: { query: Value; key: Value | null; value: Value | null },
    lens: { seqlensK: Value; totalSeqLen: Value },
    rope: { cos: Value; sin: Value } | null,
    p: {
      numHeads: number;
      kvNumHeads: number;
      headDim: number;
      scale: number;
      softcap: number | null;
      localWindow: number | null;
    },
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
}
