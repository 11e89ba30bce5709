// The graph under construction: values (each defined once, fresh names on demand), inputs, outputs,
// initializers (bytes handed straight to a TensorStore) and the one node emitter every op helper goes
// through. The op helpers themselves are GraphBuilder's (src/graph/builder.ts).
import type { Attr, Dim, DType, Graph, InitializerRef, Node, Value } from './ir';
import { memoryStore, type TensorStore } from './store';
import { f32ToF16 } from '../util/fp16';

export class GraphBuildError extends Error {
  override name = 'GraphBuildError';
}

export const MS = 'com.microsoft';

type Opt = Value | null;

export class GraphCore {
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

  protected define(v: Value): Value {
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
    const out =
      name === v.name ? v : this.op('Identity', [v], [{ dtype: v.dtype, shape: v.shape }], {}, { outNames: [name] })[0];
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
  initializerChunks(
    name: string,
    dtype: DType,
    shape: number[],
    byteLength: number,
    chunks: Iterable<Uint8Array>,
  ): Value {
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
    if (dtype === 'float16')
      return this.initializer(
        this.fresh(name),
        'float16',
        [],
        new Uint8Array(new Uint16Array([f32ToF16(value)]).buffer),
      );
    throw new GraphBuildError(`scalar "${name}": unsupported dtype ${dtype}`);
  }

  /** Emits one node. Every op helper (GraphBuilder, src/graph/builder.ts) goes through here. */
  op(
    op: string,
    inputs: Opt[],
    outs: { dtype: DType; shape: Dim[] | null }[],
    attrs: Record<string, Attr> = {},
    opts: { domain?: string; name?: string; outNames?: string[] } = {},
  ): Value[] {
    for (const v of inputs)
      if (v && this.values.get(v.name) !== v)
        throw new GraphBuildError(`${op}: input "${v.name}" does not belong to this graph`);
    const nodeName = this.fresh(opts.name ?? op);
    const outputs = outs.map((o, i) =>
      this.define({ name: opts.outNames?.[i] ?? this.fresh(`${nodeName}_out${i}`), dtype: o.dtype, shape: o.shape }),
    );
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

  protected sameType(op: string, ...vs: Value[]): DType {
    const t = vs[0].dtype;
    for (const v of vs)
      if (v.dtype !== t)
        throw new GraphBuildError(
          `${op}: dtype mismatch (${vs.map((x) => `${x.name}:${x.dtype}`).join(', ')}); insert a cast`,
        );
    return t;
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
