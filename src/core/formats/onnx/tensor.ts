import type { TensorProto } from 'onnx-buf';
import { dtypeBytes } from '../../model/dtype';

/** Shape of a TensorProto as plain numbers. */
export function tensorShape(t: TensorProto): number[] {
  return t.dims.map((d) => Number(d));
}

/** Number of elements in a TensorProto. */
export function tensorCount(t: TensorProto): number {
  return tensorShape(t).reduce((a, b) => a * b, 1);
}

/** Bytes a TensorProto's elements occupy, packed. */
export function tensorBytes(t: TensorProto): number {
  return dtypeBytes(t.dataType, tensorCount(t));
}
