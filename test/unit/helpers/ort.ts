import * as fs from 'node:fs';
import { fromBinary } from '@bufbuild/protobuf';
import { TensorProtoSchema } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { tensorRefOf } from '../../../src/core/formats/onnx/model';
import { ExternalFiles } from '../../../src/core/model/externalFiles';
import type { TensorRef } from '../../../src/core/model/tensorRef';

// Keep ORT's own error log (models it cannot load) out of the test output; failures are reported by tests.
ort.env.logLevel = 'fatal';

const ortTypes: Record<number, ort.Tensor.Type> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64',
};

/** An ORT tensor from a TensorRef, or undefined for element types ORT's JS API cannot take. */
export function toOrtTensor(ref: TensorRef): ort.Tensor | undefined {
  const type = ortTypes[ref.dtype];
  if (!type) return undefined;
  const data = ref.read();
  return new ort.Tensor(type, (type === 'bool' ? Uint8Array.from(data as Uint8Array) : data) as never, ref.shape);
}

/** Reads an `input_N.pb` / `output_N.pb` TensorProto as a TensorRef (undefined when it is not a tensor, e.g. a sequence). */
export function readTensorPb(file: string): TensorRef | undefined {
  try {
    const t = fromBinary(TensorProtoSchema, fs.readFileSync(file));
    if (t.dataType === 0) return undefined;
    const ref = tensorRefOf(t, t.name, new ExternalFiles(file), file);
    // Sequence and optional protos can decode as a TensorProto with nonsense dims; reading shows it.
    ref.read();
    return ref;
  } catch {
    return undefined;
  }
}

/** Runs a model (bytes or path) on feeds and returns its outputs; the session is released. */
export async function runModel(model: Uint8Array | string, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const session = typeof model === 'string' ? await ort.InferenceSession.create(model, { logSeverityLevel: 4 }) : await ort.InferenceSession.create(model, { logSeverityLevel: 4 });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

/** True when two output sets are bit-for-bit identical (NaN equal to NaN). */
export function identicalOutputs(a: Record<string, ort.Tensor>, b: Record<string, ort.Tensor>): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => {
    const x = a[k];
    const y = b[k];
    if (!y || x.type !== y.type || x.dims.join() !== y.dims.join()) return false;
    const dx = x.data as ArrayLike<unknown>;
    const dy = y.data as ArrayLike<unknown>;
    if (dx.length !== dy.length) return false;
    for (let i = 0; i < dx.length; i++) if (!Object.is(dx[i], dy[i])) return false;
    return true;
  });
}
