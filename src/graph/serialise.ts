// Graph IR -> ONNX ModelProto bytes (onnx-proto / protobufjs). Initializers in an external-data
// file are written as data_location = EXTERNAL with location / offset / length entries.
import { writeFileSync } from 'node:fs';
import { onnx } from 'onnx-proto';
import { ONNX_DTYPE } from './ir';
import type { Attr, Dim, Graph, InitializerRef, Value } from './ir';

function valueInfo(v: Value): onnx.IValueInfoProto {
  const dims = (v.shape ?? []).map((d: Dim) =>
    typeof d === 'number' ? { dimValue: d } : d === null ? {} : { dimParam: d },
  );
  return {
    name: v.name,
    type: { tensorType: { elemType: ONNX_DTYPE[v.dtype], shape: v.shape ? { dim: dims } : undefined } },
  };
}

function attribute(name: string, a: Attr): onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  switch (a.type) {
    case 'int':
      return { name, type: T.INT, i: a.value };
    case 'float':
      return { name, type: T.FLOAT, f: a.value };
    case 'string':
      return { name, type: T.STRING, s: new TextEncoder().encode(a.value) };
    case 'ints':
      return { name, type: T.INTS, ints: a.value };
    case 'floats':
      return { name, type: T.FLOATS, floats: a.value };
  }
}

function tensor(t: InitializerRef): onnx.ITensorProto {
  const base: onnx.ITensorProto = { name: t.name, dataType: ONNX_DTYPE[t.dtype], dims: t.shape };
  if (t.external)
    return {
      ...base,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: t.external.location },
        { key: 'offset', value: String(t.external.offset) },
        { key: 'length', value: String(t.external.length) },
      ],
    };
  return { ...base, rawData: t.data ?? new Uint8Array(0) };
}

function toModelProto(g: Graph, producer = 'arenakit'): onnx.IModelProto {
  return {
    irVersion: 10,
    producerName: producer,
    opsetImport: g.opsetImports.map((o) => ({ domain: o.domain, version: o.version })),
    graph: {
      name: g.name,
      input: g.inputs.map(valueInfo),
      output: g.outputs.map(valueInfo),
      initializer: g.initializers.map(tensor),
      node: g.nodes.map((n) => ({
        name: n.name,
        opType: n.op,
        domain: n.domain,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attrs).map(([k, a]) => attribute(k, a)),
      })),
    },
  };
}

export function serialise(g: Graph, producer?: string): Uint8Array {
  return onnx.ModelProto.encode(onnx.ModelProto.create(toModelProto(g, producer))).finish();
}

export function parseModel(bytes: Uint8Array): onnx.ModelProto {
  return onnx.ModelProto.decode(bytes);
}

export function writeModel(path: string, g: Graph, producer?: string): number {
  const bytes = serialise(g, producer);
  writeFileSync(path, bytes);
  return bytes.length;
}
