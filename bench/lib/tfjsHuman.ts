import * as fs from 'node:fs';
import * as path from 'node:path';
import { TfjsModel } from '../../src/core/formats/tfjs/read';
import { writeTfjs, type TfjsEncoding } from '../../src/core/formats/tfjs/write';
import { inspectModel } from '../../src/core/inspect';
import { seededRandom } from '../../src/core/random';
import { loadTfjs } from '../../src/core/runtime/tfjs';

/** The graph models shipped in the npm package @vladmandic/human (a devDependency; never copied into the repo). */
export const humanModels = (): string[] => {
  // Bundles run from out/bench or out/test/unit: look upward for node_modules.
  let dir = '';
  for (let d = __dirname; d !== path.dirname(d); d = path.dirname(d)) {
    const c = path.join(d, 'node_modules', '@vladmandic', 'human', 'models');
    if (fs.existsSync(c)) {
      dir = c;
      break;
    }
  }
  if (!dir) return [];
  return fs.readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'models.json').map((f) => path.join(dir, f)).sort();
};

/** One model's figures. */
export interface HumanRow {
  model: string;
  stored: Record<string, number>;
  params: number;
  layers: number;
  roundTripIdentical: boolean;
  /** Output cosine against the original, per re-quantized form (all float weights in that form), on one seeded random input: the scored (last) output. */
  cosine: Record<string, number | string>;
  /** The same for every output (detection outputs after top-k reorder, so they can differ more than the dense ones). */
  cosineByOutput: Record<string, Record<string, number>>;
  bytes: Record<string, number>;
  ms: number;
}

/** Cosine similarity of two flat outputs. */
function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa === 0 && bb === 0 ? 1 : ab / Math.sqrt(aa * bb);
}

/**
 * For one model: inspect, round-trip read -> write -> read (identical dequantized weights), then re-quantize
 * every float weight to uint8, uint16 and float16 and run each against the original in tfjs on one seeded
 * random input (values in [0, 1), or 0-255 for int32 inputs; dynamic dims 1, spatial dims 64 where unknown).
 */
export async function humanRow(file: string, dir: string, forms: TfjsEncoding[] = ['uint8', 'uint16', 'float16']): Promise<HumanRow> {
  const t0 = performance.now();
  const summary = await inspectModel(file);
  const model = TfjsModel.open(file);
  const stored: Record<string, number> = {};
  for (const w of model.weights().values()) {
    const k = w.spec.quantization ? w.spec.quantization.dtype : w.spec.dtype;
    stored[k] = (stored[k] ?? 0) + 1;
  }
  const name = path.basename(file, '.json');
  const rt = writeTfjs(model, path.join(dir, name, 'kept', 'model.json'));
  const back = TfjsModel.open(rt.file);
  let identical = true;
  for (const [n, w] of model.weights()) {
    const a = w.ref.toFloat32();
    const b = back.weights().get(n)!.ref.toFloat32();
    if (a.length !== b.length || a.some((v, i) => !Object.is(v, b[i]))) identical = false;
  }

  const rand = seededRandom(1);
  const inputs = model.inputs().map((i) => {
    const shape = i.shape.map((d, k) => (typeof d === 'number' ? d : k === 0 ? 1 : 64));
    const n = shape.reduce((a, b) => a * b, 1);
    // Integer inputs (handtrack takes an int32 image) get pixel values.
    if ([2, 3, 6, 7].includes(i.elemType)) return { dtype: 'int32' as const, shape, data: Int32Array.from({ length: n }, () => Math.floor(rand() * 256)) };
    const data = new Float32Array(n);
    for (let k = 0; k < data.length; k++) data[k] = rand();
    return { dtype: 'float32' as const, shape, data };
  });
  const original = await loadTfjs(model);
  const ref = await original.run(inputs);
  const cos: Record<string, number | string> = {};
  const byOutput: Record<string, Record<string, number>> = {};
  const bytes: Record<string, number> = { source: model.shards.reduce((a, f) => a + fs.statSync(f).size, 0) };
  try {
    for (const form of forms) {
      const encodings = Object.fromEntries([...model.weights().values()].filter((w) => w.spec.dtype === 'float32').map((w) => [w.spec.name, form]));
      const q = writeTfjs(model, path.join(dir, name, form, 'model.json'), { encodings });
      bytes[form] = q.shards.reduce((a, s) => a + s.bytes, 0);
      const r = await loadTfjs(TfjsModel.open(q.file));
      try {
        const out = await r.run(inputs);
        cos[form] = Number(cosine(ref[original.scored].data, out[r.scored].data).toFixed(6));
        byOutput[form] = Object.fromEntries(original.outputs.map((o, k) => [o, Number(cosine(ref[k].data, out[k].data).toFixed(6))]));
      } catch (err) {
        cos[form] = `error: ${(err as Error).message}`;
      } finally {
        r.dispose();
      }
    }
  } finally {
    original.dispose();
  }
  return { model: name, stored, params: summary.params, layers: summary.layers.length, roundTripIdentical: identical, cosine: cos, cosineByOutput: byOutput, bytes, ms: Math.round(performance.now() - t0) };
}

