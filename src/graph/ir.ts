// Graph IR: plain data for an op-level ONNX graph (values with dtype + shape, nodes in topological
// order, initializers whose bytes live in memory or in an external-data file). The builder emits it,
// serialise.ts turns it into an ONNX ModelProto, and a gradient pass can walk `nodes` front to back.

export type DType = 'float32' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'uint8' | 'int8' | 'bool';

/** A dimension: a fixed size, a symbolic name ('batch', 'seq'), or null when unknown. */
export type Dim = number | string | null;

export interface Value {
  name: string;
  dtype: DType;
  /** null = rank unknown. */
  shape: Dim[] | null;
}

export type Attr =
  | { type: 'int'; value: number }
  | { type: 'float'; value: number }
  | { type: 'string'; value: string }
  | { type: 'ints'; value: number[] }
  | { type: 'floats'; value: number[] };

export interface Node {
  name: string;
  op: string;
  /** '' = default ONNX domain; 'com.microsoft' for ORT contrib ops. */
  domain: string;
  /** Value names; '' marks an omitted optional input. */
  inputs: string[];
  outputs: string[];
  attrs: Record<string, Attr>;
}

export interface InitializerRef {
  name: string;
  dtype: DType;
  shape: number[];
  /** Inline bytes (tests, small tensors) ... */
  data?: Uint8Array;
  /** ... or a range in an external-data file (relative to the model file). */
  external?: { location: string; offset: number; length: number };
}

export interface Graph {
  name: string;
  inputs: Value[];
  outputs: Value[];
  nodes: Node[];
  initializers: InitializerRef[];
  /** Every value by name (inputs, initializers, node outputs). */
  values: Map<string, Value>;
  opsetImports: { domain: string; version: number }[];
}

export const DTYPE_BYTES: Record<DType, number> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  uint8: 1,
  int8: 1,
  bool: 1,
};

export const attr = {
  int: (value: number): Attr => ({ type: 'int', value }),
  float: (value: number): Attr => ({ type: 'float', value }),
  string: (value: string): Attr => ({ type: 'string', value }),
  ints: (value: number[]): Attr => ({ type: 'ints', value }),
  floats: (value: number[]): Attr => ({ type: 'floats', value }),
};

/** ONNX TensorProto.DataType of each dtype. */
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
