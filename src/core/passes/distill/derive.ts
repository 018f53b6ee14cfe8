/**
 * A student derived from the teacher (`--student derive:RATIO`): every prunable channel group of the teacher
 * (structured.ts's dependency groups) loses the same fraction of its lowest-L1 channels, the fraction searched so the
 * student keeps at most RATIO of the teacher's parameters and as many as that allows (prune-then-distill, as in
 * NVIDIA's Minitron). Also a seeded re-initialisation, for students trained from scratch on the same architecture.
 */
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, type TensorProto } from 'onnx-buf';
import { floatTensor, int64Tensor } from '../../formats/onnx/build';
import { inferShapes } from '../../formats/onnx/shapes';
import { InputError } from '../../errors';
import { replaceTensorData } from '../../formats/onnx/edit';
import { OnnxModel, isParameter } from '../../formats/onnx/model';
import { normal, seededRandom } from '../../random';
import { defaultTrainable } from '../../train/grad';
import { findGroups, keptCount } from '../prune/structured';

/** Parameters of a model: its numeric weights that are not shapes or indices. */
export function paramCount(model: OnnxModel): number {
  return [...model.weights().values()].filter((w) => w.ref.numeric && isParameter(w.ref)).reduce((a, w) => a + w.ref.count, 0);
}

/** What `deriveStudent` made. */
export interface DerivedStudent {
  model: OnnxModel;
  /** Fraction of channels removed per group. */
  removeFraction: number;
  paramFraction: number;
  /** Channels kept over all pruned groups. */
  channelsKept: number;
  channelsBefore: number;
}

/** Parses `derive:RATIO`; undefined when `spec` is a file. */
export function deriveRatio(spec: string): number | undefined {
  if (!spec.startsWith('derive:')) return undefined;
  const r = Number(spec.slice('derive:'.length));
  if (!(r > 0 && r < 1)) throw new InputError(undefined, `--student derive:RATIO needs a ratio between 0 and 1 (the student's share of the teacher's parameters), not '${spec.slice(7)}'`);
  return r;
}

/** Prunes a copy of `teacher` to at most `ratio` of its parameters; the teacher is not changed. */
export function deriveStudent(teacher: OnnxModel, ratio: number): DerivedStudent {
  const bytes = toBinary(ModelProtoSchema, teacher.proto);
  const total = paramCount(teacher);
  const attempt = (fraction: number): DerivedStudent => {
    const model = OnnxModel.fromBytes(bytes, teacher.file);
    foldWeightReshapes(model);
    const cg = findGroups(model);
    const weights = model.weights();
    const removed = new Map<number, number[]>();
    let before = 0;
    let kept = 0;
    for (const g of cg.groups) {
      if (!g.prunable || g.members.length === 0 || g.members.some((m) => weights.get(m.tensor)?.ref.dtype !== 1 || weights.get(m.tensor)?.scope !== '')) continue;
      const scores = cg.weightImportance(g.id, 'l1') ?? new Float64Array(g.channels);
      const keep = keptCount(g.channels, fraction);
      const order = [...scores.keys()].sort((a, b) => scores[a] - scores[b] || a - b);
      removed.set(g.id, order.slice(0, g.channels - keep).sort((a, b) => a - b));
      before += g.channels;
      kept += keep;
    }
    if (removed.size === 0) throw new InputError(teacher.file, 'derive: the teacher has no prunable channel group, so no student can be derived from it (give --student a model)');
    cg.shrink(removed);
    pinFlattenWidths(model);
    // IR 3 wants every initializer listed as an input; from IR 4 new ones (folded, pinned) need not be.
    if (model.proto.irVersion < 4n) model.proto.irVersion = 4n;
    const used = new Set(model.graph.node.flatMap((n) => n.input));
    model.graph.initializer = model.graph.initializer.filter((t) => used.has(t.name));
    const inits = new Set(model.graph.initializer.map((t) => t.name));
    model.graph.input = model.graph.input.filter((v) => inits.has(v.name) || used.has(v.name));
    model.invalidate();
    return { model, removeFraction: fraction, paramFraction: paramCount(model) / total, channelsKept: kept, channelsBefore: before };
  };
  // The parameter count falls as the fraction grows: bisect for the smallest fraction that fits under the ratio.
  let lo = 0;
  let hi = 0.99;
  let best = attempt(hi);
  if (best.paramFraction > ratio) throw new InputError(teacher.file, `derive:${ratio}: even removing 99% of every channel group leaves ${(best.paramFraction * 100).toFixed(1)}% of the parameters (the rest is in layers channel pruning cannot touch)`);
  for (let i = 0; i < 12; i++) {
    const mid = (lo + hi) / 2;
    const m = attempt(mid);
    if (m.paramFraction <= ratio) {
      best.model.close();
      best = m;
      hi = mid;
    } else {
      m.model.close();
      lo = mid;
    }
  }
  return best;
}

/**
 * Re-draws a model's trainable weights (the default trainables: Conv, Gemm, MatMul and Add initializers) from a seeded
 * He-normal distribution; vectors (biases) become zero. Fan-in is per output unit: a Conv kernel's [in, kh, kw], a
 * MatMul matrix's rows. Weights that read a graph input directly are divided by `inputRms`, the root mean square of
 * the input data, so unscaled inputs (mnist-8 takes pixels in 0..255) do not blow up the first activations.
 */
export function reinitialize(model: OnnxModel, seed: number, inputRms = 1): void {
  const randn = normal(seededRandom(seed));
  const convWeights = new Set(model.graph.node.filter((n) => n.opType === 'Conv').map((n) => n.input[1]));
  const inits = new Set(model.graph.initializer.map((t) => t.name));
  const dataInputs = new Set(model.graph.input.filter((v) => !inits.has(v.name)).map((v) => v.name));
  const firstLayer = new Set(model.graph.node.filter((n) => dataInputs.has(n.input[0])).map((n) => n.input[1]));
  const weights = model.weights();
  for (const name of defaultTrainable(model.graph)) {
    const ref = weights.get(name)?.ref;
    if (!ref || ref.dtype !== 1) continue;
    const shape = ref.shape;
    const count = ref.count;
    if (shape.filter((d) => d > 1).length < 2) {
      replaceTensorData(model.graph, name, new Float32Array(count));
      continue;
    }
    const fanIn = convWeights.has(name) ? count / shape[0] : count / shape[shape.length - 1];
    const std = Math.sqrt(2 / fanIn) / (firstLayer.has(name) && inputRms > 0 ? inputRms : 1);
    replaceTensorData(model.graph, name, Float32Array.from({ length: count }, () => randn() * std));
  }
  model.invalidate();
}

function int64s(t: TensorProto): number[] {
  if (t.int64Data.length) return t.int64Data.map(Number);
  const view = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
  return Array.from({ length: t.rawData.byteLength / 8 }, (_, i) => Number(view.getBigInt64(i * 8, true)));
}

/**
 * Replaces each Reshape of a float32 weight by a constant shape with the reshaped weight itself (mnist-8 reshapes
 * its last MatMul's weight from [16, 4, 4, 10] in the graph), so the channel groups reach it as a stored tensor.
 */
export function foldWeightReshapes(model: OnnxModel): number {
  const g = model.graph;
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  const readers = new Map<string, number>();
  for (const n of g.node) for (const i of n.input) readers.set(i, (readers.get(i) ?? 0) + 1);
  const weights = model.weights();
  let folded = 0;
  g.node = g.node.filter((n) => {
    if (n.opType !== 'Reshape' || (n.domain && n.domain !== 'ai.onnx')) return true;
    const data = inits.get(n.input[0]);
    const target = inits.get(n.input[1]);
    const ref = weights.get(n.input[0])?.ref;
    if (!data || !target || target.dataType !== 7 || !ref || ref.dtype !== 1 || g.output.some((o) => o.name === n.output[0])) return true;
    const src = ref.shape;
    const dims = int64s(target).map((d, i) => (d === 0 ? src[i] : d));
    const known = dims.reduce((a, d) => (d > 0 ? a * d : a), 1);
    const shape = dims.map((d) => (d === -1 ? ref.count / known : d));
    if (shape.reduce((a, b) => a * b, 1) !== ref.count) return true;
    g.initializer.push(floatTensor(n.output[0], shape, ref.toFloat32()));
    folded++;
    return false;
  });
  if (folded) {
    // Drop sources nothing reads any more.
    const used = new Set(g.node.flatMap((n) => n.input));
    g.initializer = g.initializer.filter((t) => used.has(t.name) || !readers.has(t.name));
    g.input = g.input.filter((v) => !inits.has(v.name) || used.has(v.name) || !readers.has(v.name));
    model.invalidate();
  }
  return folded;
}

/**
 * Shrinking gives a flattening Reshape the target [1, -1]; training makes a leading 1 a symbolic batch only when the
 * rest is explicit, so write the width out: [1, -1] becomes [1, width] (a batch-1 model stays batch-1 otherwise).
 */
function pinFlattenWidths(model: OnnxModel): void {
  const g = model.graph;
  const shapes = inferShapes(model.proto);
  for (const n of g.node) {
    if (n.opType !== 'Reshape') continue;
    const t = g.initializer.find((x) => x.name === n.input[1]);
    if (!t || t.dataType !== 7) continue;
    const v = int64s(t);
    const out = shapes.get(n.output[0])?.shape;
    if (v.length !== 2 || v[0] !== 1 || v[1] !== -1 || typeof out?.[1] !== 'number') continue;
    const name = `${t.name}_pinned`;
    g.initializer = g.initializer.filter((x) => x.name !== name);
    g.initializer.push(int64Tensor(name, [2], [1, out[1]]));
    n.input[1] = name;
  }
}
