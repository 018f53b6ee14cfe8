import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../../../src/core/formats/onnx/build';
import { replaceTensorData } from '../../../src/core/formats/onnx/edit';
import { OnnxModel } from '../../../src/core/formats/onnx/model';
import { writeOnnx } from '../../../src/core/formats/onnx/write';
import { parseParams } from '../../../src/core/passes/pass';
import { quantizeParams, type QuantizeOptions, type QuantizeReport } from '../../../src/core/passes/quantize/params';
import { normal, seededRandom } from '../../../src/core/random';

/** Parsed quantize options from CLI-style raw values. */
export function options(raw: Record<string, unknown>): QuantizeOptions {
  const p = parseParams<QuantizeOptions>(quantizeParams, raw);
  // The table's enum gives '8' or '4'; the options type wants the number.
  return { ...p, bits: Number(p.bits) as 8 | 4 };
}

/** Writes `bytes` as `name` in `dir` and returns the path. */
export function writeBytes(dir: string, name: string, bytes: Uint8Array): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}

/** Writes an edited model beside nothing else, returning its path and size. */
export function save(m: OnnxModel, dir: string, name: string): { file: string; bytes: number } {
  const file = path.join(dir, name);
  writeOnnx(m, file);
  return { file, bytes: fs.statSync(file).size };
}

/**
 * Runs a model (path or bytes) once and returns its first output as floats. `basic` stops onnxruntime at its
 * basic graph optimizations: at the default level it rewrites an int8 DequantizeLinear + MatMul into an 8-bit
 * MatMulNBits that quantizes the activations too (accuracy_level 4), so the output is no longer exactly the
 * float model with the dequantized weights (measured 0.5% of the largest output on a generated MLP).
 */
export async function run(model: string | Uint8Array, feeds: Record<string, ort.Tensor>, opts: { basic?: boolean } = {}): Promise<Float32Array> {
  const options: ort.InferenceSession.SessionOptions = { logSeverityLevel: 4, intraOpNumThreads: 1, ...(opts.basic ? { graphOptimizationLevel: 'basic' } : {}) };
  const s = typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
  try {
    const out = await s.run(feeds);
    const t = out[s.outputNames[0]];
    return t.type === 'float32' ? (t.data as Float32Array) : Float32Array.from(t.data as ArrayLike<number>);
  } finally {
    await s.release();
  }
}

/** Seeded normal float input of a shape. */
export function randomInput(shape: number[], seed = 3, scale = 1): ort.Tensor {
  const randn = normal(seededRandom(seed));
  return new ort.Tensor('float32', Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => randn() * scale), shape);
}

/** The float model with every quantized weight replaced by original + error (what the quantized model should compute). */
export function dequantizedReference(source: string, report: QuantizeReport): Uint8Array {
  const m = OnnxModel.open(source);
  try {
    for (const e of report.errors) {
      const w = m.weights().get(e.weight)!;
      const orig = w.ref.toFloat32();
      replaceTensorData(m.graph, e.weight, orig.map((v, i) => v + e.error[i]));
    }
    return encodeModel(m.proto);
  } finally {
    m.close();
  }
}

/** Cosine similarity. */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

/** Largest |a - b| relative to the largest |b|. */
export function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return worst / scale;
}

/** onnx.checker.check_model from the system python3-onnx; undefined when it is missing, else its stderr ('' = valid). */
export function onnxChecker(file: string): string | undefined {
  const py = '/usr/bin/python3';
  if (!fs.existsSync(py)) return undefined;
  const r = spawnSync(py, ['-c', 'import sys, onnx; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)', file], { encoding: 'utf8' });
  if (r.status !== 0 && /No module named 'onnx'/.test(r.stderr)) return undefined;
  return r.status === 0 ? '' : r.stderr.trim().split('\n').slice(-3).join(' ');
}
