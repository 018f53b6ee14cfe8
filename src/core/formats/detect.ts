import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError, ModelFormatError } from '../errors';

/** The model formats Whittle knows. */
export type ModelFormat = 'onnx' | 'tfjs';

/** One entry of the format registry: how to recognise a format by content, with the extension as a hint. */
interface FormatEntry {
  format: ModelFormat;
  extensions: string[];
  /** True when the first bytes of the file belong to this format. */
  match(head: Uint8Array, file: string): boolean;
}

const formats: FormatEntry[] = [
  {
    format: 'tfjs',
    extensions: ['.json'],
    match: (head) => {
      const text = Buffer.from(head).toString('utf8');
      return /^\s*\{/.test(text) && /"(modelTopology|weightsManifest|format)"/.test(text);
    },
  },
  {
    format: 'onnx',
    extensions: ['.onnx', '.ort.onnx'],
    // A ModelProto starts with a protobuf tag; every exporter we know writes ir_version (field 1, varint) first,
    // but field order is not guaranteed, so any valid ModelProto field tag is accepted here and decode decides.
    match: (head) => head.length > 0 && [0x08, 0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72, 0xa2, 0xca].includes(head[0]),
  },
];

/** Signatures of files that people mistake for models, with what to say about them. */
const impostors: Array<{ test: (head: Uint8Array) => boolean; problem: string }> = [
  { test: (h) => h[0] === 0x50 && h[1] === 0x4b, problem: 'this is a zip archive (a PyTorch .pt or Keras file?), not an ONNX model' },
  { test: (h) => h[0] === 0x1f && h[1] === 0x8b, problem: 'this is a gzip file; unpack it first' },
  { test: (h) => h[0] === 0x89 && h[1] === 0x48 && h[2] === 0x44 && h[3] === 0x46, problem: 'this is an HDF5 file (Keras .h5), not a supported model' },
  { test: (h) => /^\s*[[{]/.test(Buffer.from(h).toString('utf8')), problem: 'this is a JSON file, not an ONNX model' },
];

/** Finds a file's model format from its content; throws an InputError that names the file otherwise. */
export function detectFormat(file: string): ModelFormat {
  let head: Uint8Array;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(4096);
      head = buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0));
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InputError(file, 'no such file');
    if (code === 'EISDIR') throw new InputError(file, 'is a folder, not a model file');
    if (code === 'EACCES') throw new InputError(file, 'permission denied');
    throw new InputError(file, `cannot read (${code ?? String(err)})`);
  }
  if (head.length === 0) throw new ModelFormatError(file, 'empty file');
  const ext = path.extname(file).toLowerCase();
  // The extension is only a hint: try the formats it suggests first, then the rest.
  const ordered = [...formats].sort((a, b) => Number(b.extensions.includes(ext)) - Number(a.extensions.includes(ext)));
  for (const entry of ordered) if (entry.match(head, file)) return entry.format;
  for (const imp of impostors) if (imp.test(head)) throw new ModelFormatError(file, imp.problem);
  throw new ModelFormatError(file, 'not a recognised model format (expected ONNX protobuf or a TF.js model.json)');
}
