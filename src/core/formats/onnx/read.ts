import * as fs from 'node:fs';
import { fromBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProtoSchema, type ModelProto } from 'onnx-buf';
import { ModelFormatError } from '../../errors';

/** A decoded ONNX model and where it came from. */
export interface OnnxFile {
  /** Absolute or user-given path of the .onnx file. */
  path: string;
  /** File size in bytes. */
  bytes: number;
  /** The decoded protobuf. */
  proto: ModelProto;
}

/** Reads and decodes an ONNX model file, with an error that names the file and the problem. */
export function readOnnxFile(path: string): OnnxFile {
  const bytes = fs.readFileSync(path);
  return { path, bytes: bytes.byteLength, proto: decodeOnnx(bytes, path) };
}

/** Decodes ONNX bytes; `file` is only used in error messages. */
export function decodeOnnx(bytes: Uint8Array, file: string): ModelProto {
  if (bytes.byteLength === 0) throw new ModelFormatError(file, 'empty file');
  let proto: ModelProto;
  try {
    proto = fromBinary(ModelProtoSchema, bytes, { readUnknownFields: true });
  } catch (err) {
    if (looksLikeTensorProto(bytes)) {
      throw new ModelFormatError(file, 'this is a serialized TensorProto (an input or weight tensor), not an ONNX model');
    }
    const why = err instanceof Error ? err.message : String(err);
    throw new ModelFormatError(file, `not an ONNX model, or truncated or corrupted (protobuf decode failed: ${why})`);
  }
  if (!proto.graph) {
    if (looksLikeTensorProto(bytes)) {
      throw new ModelFormatError(file, 'this is a serialized TensorProto (an input or weight tensor), not an ONNX model');
    }
    throw new ModelFormatError(file, 'not an ONNX model: it has no graph');
  }
  if (proto.irVersion <= 0n) throw new ModelFormatError(file, 'not an ONNX model: ir_version is missing');
  // Every IR version from 3 on must import an opset; a file cut short after the graph loses it.
  if (proto.irVersion >= 3n && proto.opsetImport.length === 0) throw new ModelFormatError(file, 'not a valid ONNX model: it imports no opset (truncated?)');
  return proto;
}

function looksLikeTensorProto(bytes: Uint8Array): boolean {
  try {
    const t = fromBinary(TensorProtoSchema, bytes);
    return t.dataType > 0 && (t.rawData.byteLength > 0 || t.floatData.length > 0 || t.int64Data.length > 0 || t.int32Data.length > 0);
  } catch {
    return false;
  }
}
