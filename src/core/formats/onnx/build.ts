import { create, toBinary } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType as AttrType,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  TensorProtoSchema,
  ValueInfoProtoSchema,
  type AttributeProto,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from 'onnx-buf';

/** An attribute value as written in code: numbers, number lists, strings, tensors or subgraphs. */
export type AttrValue = number | number[] | string | TensorProto | GraphProto | { floats: number[] };

/** A float32 initializer stored as raw_data. */
export function floatTensor(name: string, dims: number[], values: Float32Array | number[]): TensorProto {
  const data = values instanceof Float32Array ? values : Float32Array.from(values);
  if (data.length !== dims.reduce((a, b) => a * b, 1)) throw new Error(`floatTensor ${name}: ${data.length} values for shape [${dims}]`);
  return create(TensorProtoSchema, {
    name,
    dims: dims.map(BigInt),
    dataType: 1,
    // A fresh copy: raw_data must own exactly these bytes, whatever buffer `values` views.
    rawData: new Uint8Array(Float32Array.from(data).buffer),
  });
}

/** An int64 initializer (shapes, axes). */
export function int64Tensor(name: string, dims: number[], values: number[]): TensorProto {
  return create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType: 7, int64Data: values.map(BigInt) });
}

/** A node; integer-valued numbers become INT attributes, other numbers FLOAT. */
export function node(opType: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue> = {}, name?: string): NodeProto {
  return create(NodeProtoSchema, {
    opType,
    input: inputs,
    output: outputs,
    name: name ?? outputs[0],
    attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
  });
}

function attribute(name: string, v: AttrValue): AttributeProto {
  if (typeof v === 'number') {
    return Number.isInteger(v)
      ? create(AttributeProtoSchema, { name, type: AttrType.INT, i: BigInt(v) })
      : create(AttributeProtoSchema, { name, type: AttrType.FLOAT, f: v });
  }
  if (typeof v === 'string') return create(AttributeProtoSchema, { name, type: AttrType.STRING, s: new TextEncoder().encode(v) });
  if (Array.isArray(v)) return create(AttributeProtoSchema, { name, type: AttrType.INTS, ints: v.map(BigInt) });
  if ('floats' in v) return create(AttributeProtoSchema, { name, type: AttrType.FLOATS, floats: v.floats });
  if (v.$typeName === 'onnx.GraphProto') return create(AttributeProtoSchema, { name, type: AttrType.GRAPH, g: v });
  return create(AttributeProtoSchema, { name, type: AttrType.TENSOR, t: v });
}

/** A tensor-typed graph input or output; a string dimension is symbolic. */
export function valueInfo(name: string, elemType: number, shape: Array<number | string>): ValueInfoProto {
  return create(ValueInfoProtoSchema, {
    name,
    type: {
      value: {
        case: 'tensorType',
        value: {
          elemType,
          shape: {
            dim: shape.map((d) => ({ value: typeof d === 'number' ? { case: 'dimValue' as const, value: BigInt(d) } : { case: 'dimParam' as const, value: d } })),
          },
        },
      },
    },
  });
}

/** A graph from its parts. */
export function graph(name: string, nodes: NodeProto[], inputs: ValueInfoProto[], outputs: ValueInfoProto[], initializers: TensorProto[]): GraphProto {
  return create(GraphProtoSchema, { name, node: nodes, input: inputs, output: outputs, initializer: initializers });
}

/** A model at the given default-domain opset. */
export function model(g: GraphProto, opset: number, producer = 'whittle', irVersion = 8): ModelProto {
  return create(ModelProtoSchema, {
    irVersion: BigInt(irVersion),
    producerName: producer,
    graph: g,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(opset) })],
  });
}

/** Serialises a model to protobuf bytes. */
export function encodeModel(m: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, m);
}
