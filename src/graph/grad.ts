// Reverse-mode autodiff over the graph IR. `addGradients` walks the forward nodes back to front and
// emits, for each node on a path from a parameter to the loss, the ONNX nodes of its gradient rule
// into the same builder, so the one graph returns the loss and d(loss)/d(parameter) together.
// One rule per primitive op, each a few lines (llm.c style: forward op and backward rule side by side,
// checkable by reading); `tests/train-grad.test.ts` checks every rule against finite differences.
// Fused contrib ops (GroupQueryAttention, SkipSimplifiedLayerNormalization, MatMulNBits) have no rule
// on purpose: the training lowering spells the model out in the primitives below.
import { GraphBuilder, GraphBuildError } from './builder';
import type { Dim, Node, Value } from './ir';

/** What a rule sees: the node, its input and output values, the gradients of its outputs. */
export interface GradContext {
  b: GraphBuilder;
  node: Node;
  x: Value[];
  y: Value[];
  /** Gradient of each output; null = the output does not reach the loss (zero). */
  dy: (Value | null)[];
  /** Whether each input needs a gradient (a parameter is upstream of it). */
  needs: boolean[];
}

/** Returns one gradient per input (null where not needed or not differentiable). */
export type GradRule = (c: GradContext) => (Value | null)[];

const rank = (v: Value, where: string): number => {
  if (!v.shape) throw new GraphBuildError(`${where}: value "${v.name}" has unknown rank; the gradient rule needs it`);
  return v.shape.length;
};

const isStatic = (s: Dim[] | null): s is number[] => !!s && s.every((d) => typeof d === 'number');

/** Sums `g` over the axes that `x` was broadcast along, then gives it `x`'s shape. */
function unbroadcast(b: GraphBuilder, g: Value, x: Value): Value {
  const gs = g.shape;
  const xs = x.shape;
  if (!gs || !xs) throw new GraphBuildError(`unbroadcast: "${g.name}" or "${x.name}" has unknown rank`);
  const lead = gs.length - xs.length;
  const axes: number[] = [];
  for (let i = 0; i < gs.length; i++) if (i < lead || (xs[i - lead] === 1 && gs[i] !== 1)) axes.push(i);
  if (axes.length === 0) return g;
  const s = b.reduceSum(g, axes, true, `${x.name}_unbroadcast`);
  return isStatic(xs) ? b.reshape(s, xs, `${x.name}_unbroadcast_shape`) : b.reshapeTo(s, b.shape(x), xs);
}

/** The int64 constant an initializer input holds (axes, sizes); rules read their attributes from it. */
function constInts(b: GraphBuilder, name: string): number[] {
  const t = b.initializers.find((i) => i.name === name);
  if (!t?.data || t.dtype !== 'int64')
    throw new GraphBuildError(`gradient rule: "${name}" must be an inline int64 constant`);
  return Array.from(
    new BigInt64Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength)),
    Number,
  );
}

const one = (b: GraphBuilder, v: number) => b.scalar('grad_const', v);

/** Transposes the last two axes. */
const swapLast = (b: GraphBuilder, v: Value): Value => {
  const r = rank(v, 'MatMul');
  const perm = [...Array(r).keys()];
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return b.transpose(v, perm);
};

/** Gradient rules by ONNX op type. Exported so a test can swap one for a wrong one and see the fixture check fail. */
export const GRAD_RULES: Record<string, GradRule> = {
  // y = a + b, a - b, a * b, a / b with numpy broadcasting: the gradient of a broadcast input is summed back.
  Add: ({ b, x, dy, needs }) => [
    needs[0] ? unbroadcast(b, dy[0]!, x[0]) : null,
    needs[1] ? unbroadcast(b, dy[0]!, x[1]) : null,
  ],
  Sub: ({ b, x, dy, needs }) => [
    needs[0] ? unbroadcast(b, dy[0]!, x[0]) : null,
    needs[1] ? unbroadcast(b, b.neg(dy[0]!), x[1]) : null,
  ],
  Mul: ({ b, x, dy, needs }) => [
    needs[0] ? unbroadcast(b, b.mul(dy[0]!, x[1]), x[0]) : null,
    needs[1] ? unbroadcast(b, b.mul(dy[0]!, x[0]), x[1]) : null,
  ],
  // d(a/b)/db = -a/b^2 = -y/b
  Div: ({ b, x, y, dy, needs }) => [
    needs[0] ? unbroadcast(b, b.div(dy[0]!, x[1]), x[0]) : null,
    needs[1] ? unbroadcast(b, b.neg(b.div(b.mul(dy[0]!, y[0]), x[1])), x[1]) : null,
  ],
  Neg: ({ b, dy }) => [b.neg(dy[0]!)],
  Identity: ({ dy }) => [dy[0]],
  // float -> float casts only (the training graph is fp32 throughout)
  Cast: ({ dy }) => [dy[0]],
  // tanh' = 1 - y^2
  Tanh: ({ b, y, dy }) => [b.mul(dy[0]!, b.sub(one(b, 1), b.mul(y[0], y[0])))],
  // sqrt' = 1 / (2 y)
  Sqrt: ({ b, y, dy }) => [b.div(b.mul(dy[0]!, one(b, 0.5)), y[0])],
  Exp: ({ b, y, dy }) => [b.mul(dy[0]!, y[0])],
  // sigmoid' = y (1 - y)
  Sigmoid: ({ b, y, dy }) => [b.mul(dy[0]!, b.mul(y[0], b.sub(one(b, 1), y[0])))],
  // erf' = 2/sqrt(pi) exp(-x^2)  (exact GELU)
  Erf: ({ b, x, dy }) => [b.mul(dy[0]!, b.mul(b.exp(b.neg(b.mul(x[0], x[0]))), one(b, 2 / Math.sqrt(Math.PI))))],
  // relu' = 1 where x > 0, else 0 (0 at x = 0, as torch's threshold_backward)
  Relu: ({ b, x, dy }) => [b.where(b.compare('Greater', x[0], one(b, 0)), dy[0]!, one(b, 0))],
  // Y = A @ B (batched, batch dims broadcast): dA = dY @ B^T, dB = A^T @ dY, summed over broadcast batch dims.
  MatMul: ({ b, x, dy, needs }) => [
    needs[0] ? unbroadcast(b, b.matmul(dy[0]!, swapLast(b, x[1])), x[0]) : null,
    needs[1] ? unbroadcast(b, b.matmul(swapLast(b, x[0]), dy[0]!), x[1]) : null,
  ],
  Transpose: ({ b, node, dy }) => {
    const perm = node.attrs.perm.value as number[];
    const inv = perm.map((_, i) => perm.indexOf(i));
    return [b.transpose(dy[0]!, inv), null];
  },
  Reshape: ({ b, x, dy }) => [b.reshapeTo(dy[0]!, b.shape(x[0]), x[0].shape), null],
  Unsqueeze: ({ b, x, dy }) => [b.reshapeTo(dy[0]!, b.shape(x[0]), x[0].shape), null],
  Expand: ({ b, x, dy }) => [unbroadcast(b, dy[0]!, x[0]), null],
  // Split <-> Concat: the gradient of one is the other (missing output gradients are zeros).
  Split: ({ b, node, y, dy }) => {
    const axis = node.attrs.axis.value as number;
    const parts = dy.map((g, i) => g ?? b.zeros(b.shape(y[i]), y[i].shape));
    return [b.concat(parts, axis), null];
  },
  Concat: ({ b, node, x, dy }) => {
    const axis = node.attrs.axis.value as number;
    const r = rank(x[0], 'Concat');
    const ax = (axis + r) % r;
    const sizes = x.map((v) => v.shape![ax]);
    if (!sizes.every((n) => typeof n === 'number'))
      throw new GraphBuildError(`Concat "${node.name}": the gradient needs static sizes on axis ${axis}`);
    return b.split(dy[0]!, sizes as number[], axis);
  },
  // softmax: dx = y * (dy - sum(dy * y))
  Softmax: ({ b, node, y, dy }) => {
    const axis = node.attrs.axis.value as number;
    return [b.mul(y[0], b.sub(dy[0]!, b.reduceSum(b.mul(dy[0]!, y[0]), [axis], true)))];
  },
  // log-softmax: dx = dy - softmax(x) * sum(dy)
  LogSoftmax: ({ b, node, y, dy }) => {
    const axis = node.attrs.axis.value as number;
    return [b.sub(dy[0]!, b.mul(b.exp(y[0]), b.reduceSum(dy[0]!, [axis], true)))];
  },
  // sum: every input element receives the output gradient of its slot.
  ReduceSum: ({ b, node, x, dy }) => [spread(b, node, x[0], dy[0]!, 1), null],
  // mean over n elements: dy / n to each; n must be static (RMSNorm's hidden size).
  ReduceMean: ({ b, node, x, dy }) => {
    const axes = constInts(b, node.inputs[1]);
    const r = rank(x[0], 'ReduceMean');
    const n = axes.reduce((p, a) => {
      const d = x[0].shape![(a + r) % r];
      if (typeof d !== 'number')
        throw new GraphBuildError(`ReduceMean "${node.name}": the gradient needs a static size on axis ${a}`);
      return p * d;
    }, 1);
    return [spread(b, node, x[0], dy[0]!, 1 / n), null];
  },
};

/** Broadcasts a reduction's output gradient (times `scale`) back over the reduced axes of `x`. */
function spread(b: GraphBuilder, node: Node, x: Value, g: Value, scale: number): Value {
  const axes = constInts(b, node.inputs[1]);
  const keep = (node.attrs.keepdims?.value ?? 1) === 1;
  let k = g;
  if (!keep) {
    const r = rank(x, node.op);
    k = b.unsqueeze(
      g,
      axes.map((a) => (a + r) % r).sort((p, q) => p - q),
    );
  }
  if (scale !== 1) k = b.mul(k, one(b, scale));
  return b.expand(k, b.shape(x), x.shape);
}

export interface GradientOptions {
  /** The gradient fed into the loss (a scalar graph input lets the caller scale it, e.g. 1 / accumulation steps). */
  seed: Value;
  /** Rule table (default GRAD_RULES); tests pass a perturbed copy. */
  rules?: Record<string, GradRule>;
}

/**
 * Appends the backward pass of `loss` (a scalar) to the builder and returns d(loss)/d(p) for each of
 * `params` (graph inputs), in order. Nodes that do not connect a parameter to the loss get no backward.
 */
export function addGradients(b: GraphBuilder, loss: Value, params: Value[], opts: GradientOptions): Value[] {
  const rules = opts.rules ?? GRAD_RULES;
  // Forward sweep: which values depend on a parameter.
  const needs = new Set(params.map((p) => p.name));
  const active: Node[] = [];
  for (const n of [...b.nodes]) {
    if (!n.inputs.some((i) => needs.has(i))) continue;
    active.push(n);
    for (const o of n.outputs) if (b.values.get(o)?.dtype === 'float32') needs.add(o);
  }
  if (!needs.has(loss.name)) throw new GraphBuildError(`loss "${loss.name}" does not depend on any parameter`);
  // Backward sweep: accumulate output gradients, apply each node's rule in reverse order.
  const grads = new Map<string, Value>([[loss.name, opts.seed]]);
  const accumulate = (name: string, g: Value) => {
    const prev = grads.get(name);
    grads.set(name, prev ? b.add(prev, g, `grad_acc.${name}`) : g);
  };
  const val = (name: string): Value => b.values.get(name)!;
  for (let i = active.length - 1; i >= 0; i--) {
    const node = active[i];
    const dy = node.outputs.map((o) => grads.get(o) ?? null);
    if (dy.every((g) => g === null)) continue;
    const rule = rules[node.op];
    if (!rule)
      throw new GraphBuildError(
        `no gradient rule for op ${node.op} (node "${node.name}"); add one to GRAD_RULES in src/graph/grad.ts`,
      );
    const x = node.inputs.map((n) => (n ? val(n) : (null as unknown as Value)));
    const out = rule({ b, node, x, y: node.outputs.map(val), dy, needs: node.inputs.map((n) => needs.has(n)) });
    node.inputs.forEach((n, j) => {
      if (n && needs.has(n) && out[j]) accumulate(n, out[j]!);
    });
  }
  return params.map((p) => {
    const g = grads.get(p.name);
    if (!g) throw new GraphBuildError(`parameter "${p.name}" does not reach the loss`);
    return g;
  });
}
