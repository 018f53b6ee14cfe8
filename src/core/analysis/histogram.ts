import { InputError } from '../errors';
import { OnnxModel } from '../formats/onnx/model';
import type { InspectableModel } from '../model/inspectable';
import type { Layer } from '../model/layers';
import { TensorRef } from '../model/tensorRef';
import type { LayerHistogram } from '../../protocol/analysis';
import { effectiveWeight } from './quantError';

/**
 * Least bins of the internal histogram that percentiles are read from (the next multiple of `bins`): a
 * percentile is exact to within (max - min) / 4096 (it is interpolated linearly inside its fine bin).
 */
export const percentileBins = 4096;

/** Elements per chunk when streaming a tensor (a view for aligned float32, a converted copy otherwise). */
const chunkSize = 1 << 20;

/** A tensor seen as [outer, channels, inner] around its output axis: element i is in channel floor(i / inner) % channels. */
export interface ChannelLayout {
  axis: number;
  outer: number;
  channels: number;
  inner: number;
}

/** The [outer, channels, inner] layout of `shape` around `axis` (a scalar or empty shape is one channel). */
export function channelLayout(shape: readonly number[], axis: number): ChannelLayout {
  if (shape.length === 0) return { axis: 0, outer: 1, channels: 1, inner: 1 };
  const a = Math.min(Math.max(0, axis), shape.length - 1);
  const prod = (d: readonly number[]) => d.reduce((x, y) => x * y, 1);
  return { axis: a, outer: prod(shape.slice(0, a)), channels: shape[a], inner: prod(shape.slice(a + 1)) };
}

/** Dequantized main weights already computed, per model and layer: the tiles of one heatmap dequantize once. */
const dequantized = new WeakMap<OnnxModel, Map<string, { ref: TensorRef; axis: number; format: string }>>();

/** A layer whose main weight is stored as integer codes (through DequantizeLinear, or a MatMulNBits node). */
export function isQuantizedLayer(layer: Layer): boolean {
  return layer.quant !== undefined || layer.op === 'com.microsoft:MatMulNBits';
}

/**
 * The real values of a quantized layer's main weight as a float32 TensorRef (named like the stored weight),
 * with its output axis: what the model computes with, not the integer codes. MatMulNBits gives its [K, N]
 * matrix, whose output axis is 1. Remembered per model (a reloaded model is a new object) and layer.
 */
export function dequantizedWeight(model: OnnxModel, layer: Layer): { ref: TensorRef; axis: number; format: string } {
  let perModel = dequantized.get(model);
  if (!perModel) dequantized.set(model, (perModel = new Map()));
  let hit = perModel.get(layer.name);
  if (!hit) {
    const w = effectiveWeight(model, layer);
    const ref = new TensorRef(layer.weight.name, 1, w.shape, { kind: 'values', values: w.values }, model.file);
    hit = { ref, axis: layer.op === 'com.microsoft:MatMulNBits' ? 1 : layer.outputAxis, format: w.format };
    perModel.set(layer.name, hit);
  }
  return hit;
}

/**
 * The layer's tensor to look at (`tensor` by role or by name; default its main weight) and that tensor's output
 * axis. A quantized layer's main weight comes back dequantized (`format` says how it is stored), so the
 * Inspector's histograms and value tiles show real values; the passes read `model.layers()` and are unaffected.
 */
export function resolveTensor(model: InspectableModel, layerName: string, tensor?: string): { layer?: Layer; ref: TensorRef; axis: number; format?: string } {
  const layer = model.layers().find((l) => l.name === layerName);
  if (layer) {
    if (!tensor || tensor === layer.weight.name || tensor === 'weight') return mainWeight(model, layer);
    const ref = layer.tensors[tensor] ?? Object.values(layer.tensors).find((t) => t.name === tensor);
    if (!ref) throw new InputError(model.file, `layer '${layerName}' has no tensor '${tensor}' (it has ${Object.values(layer.tensors).map((t) => t.name).join(', ')})`);
    return { layer, ref, axis: 0 };
  }
  // A bare weight name also works: the axis is that of the layer that uses it as its main weight, else 0.
  const ref = model.weights().get(tensor ?? layerName)?.ref;
  if (!ref) throw new InputError(model.file, `no layer or weight named '${tensor ?? layerName}'`);
  const owner = model.layers().find((l) => l.weight === ref);
  if (owner) return mainWeight(model, owner);
  return { layer: owner, ref, axis: 0 };
}

/** A layer's main weight as resolveTensor gives it: dequantized when stored quantized. */
function mainWeight(model: InspectableModel, layer: Layer): { layer: Layer; ref: TensorRef; axis: number; format?: string } {
  // Only ONNX stores weights behind DequantizeLinear or MatMulNBits; TF.js weights are dequantized on read.
  if (!(model instanceof OnnxModel) || !isQuantizedLayer(layer)) return { layer, ref: layer.weight, axis: layer.outputAxis };
  const d = dequantizedWeight(model, layer);
  return { layer, ref: d.ref, axis: d.axis, format: d.format };
}

/**
 * A histogram of one layer's weight (or of another of its tensors): two streaming passes over float32 chunks,
 * never a full copy. Pass 1 gives min, max, sum, |sum|, exact zeros and the per-output-channel min, max, L1
 * and L2; pass 2 bins into a fine histogram (>= 4096 bins, a multiple of `bins`) that gives both the `bins` equal
 * counts and the percentiles, and sums
 * squared deviations from the mean for a numerically sound std. NaN and ±Infinity are left out of every figure.
 */
export function layerHistogram(model: InspectableModel, layer: string, tensor?: string, bins = 64, range?: [number, number]): LayerHistogram {
  if (!Number.isInteger(bins) || bins < 1 || bins > 1 << 16) throw new InputError(undefined, `bins must be a whole number from 1 to 65536, not ${bins}`);
  const { layer: owner, ref, axis, format } = resolveTensor(model, layer, tensor);
  if (!ref.numeric) throw new InputError(model.file, `tensor '${ref.name}' has element type ${ref.dtypeName}, which has no histogram`);
  if (range && !(Number.isFinite(range[0]) && Number.isFinite(range[1]) && range[0] < range[1])) throw new InputError(undefined, `histogram range must be two finite numbers, low < high, not [${range.join(', ')}]`);
  const hist: LayerHistogram = { layer: owner?.name ?? layer, ...tensorHistogram(ref, axis, bins), ...(format ? { storedAs: format } : {}) };
  // Two models' histograms drawn together need the same bins: count over the given range instead.
  if (range) Object.assign(hist, rangeCounts(ref, bins, range));
  return hist;
}

/**
 * `bins` equal counts over [lo, hi], values outside clamped into the end bins (so no mass is hidden), and the
 * edges; NaN and ±Infinity left out.
 */
function rangeCounts(ref: TensorRef, bins: number, [lo, hi]: [number, number]): { edges: number[]; counts: number[] } {
  const counts = new Float64Array(bins);
  const scale = bins / (hi - lo);
  for (const chunk of ref.chunks(chunkSize)) {
    for (let j = 0; j < chunk.length; j++) {
      const v = chunk[j];
      if (v - v !== 0) continue;
      counts[Math.min(bins - 1, Math.max(0, Math.floor((v - lo) * scale)))]++;
    }
  }
  return { edges: Array.from({ length: bins + 1 }, (_, i) => (i === bins ? hi : lo + ((hi - lo) * i) / bins)), counts: Array.from(counts) };
}

/** The histogram of one tensor, with channels along `axis` (see layerHistogram). */
export function tensorHistogram(ref: TensorRef, axis: number, bins = 64): Omit<LayerHistogram, 'layer'> {
  const lay = channelLayout(ref.shape, axis);
  const C = lay.channels;
  const chMin = new Float64Array(C).fill(Infinity);
  const chMax = new Float64Array(C).fill(-Infinity);
  const chL1 = new Float64Array(C);
  const chL2 = new Float64Array(C);
  // Totals: min, max, sum, |sum|, zeros, finite count.
  const tot = Float64Array.of(Infinity, -Infinity, 0, 0, 0, 0);
  let at = 0;
  for (const chunk of ref.chunks(chunkSize)) {
    scanChannels(chunk, at, lay.inner, C, chMin, chMax, chL1, chL2, tot);
    at += chunk.length;
  }
  let [min, max] = [tot[0], tot[1]];
  const [sum, absSum, zeros, finite] = [tot[2], tot[3], tot[4], tot[5]];
  if (finite === 0) min = max = 0;
  const mean = finite ? sum / finite : 0;

  // Pass 2: a fine histogram of at least 4096 bins, a whole multiple of `bins` so that the coarse counts are
  // sums of fine ones (one bin index per element), and squared deviations from the mean.
  const ratio = Math.ceil(percentileBins / bins);
  const fineBins = bins * ratio;
  const fine = new Float64Array(fineBins);
  const local = new Int32Array(fineBins);
  const width = max - min;
  const fineScale = width > 0 ? fineBins / width : 0;
  const lastFine = fineBins - 1;
  let dev = 0;
  for (const chunk of ref.chunks(chunkSize)) {
    dev += binChunk(chunk, min, fineScale, lastFine, mean, local);
    // Per-chunk int32 counts (a chunk holds < 2^31 elements) keep the hot loop on a small integer array.
    for (let b = 0; b < fineBins; b++) fine[b] += local[b];
    local.fill(0);
  }
  const counts = new Float64Array(bins);
  for (let b = 0; b < fineBins; b++) counts[(b / ratio) | 0] += fine[b];

  const count = ref.count;
  return {
    tensor: ref.name,
    shape: [...ref.shape],
    dtype: ref.dtypeName,
    edges: Array.from({ length: bins + 1 }, (_, i) => (i === bins ? max : min + (width * i) / bins)),
    counts: Array.from(counts),
    min,
    max,
    mean,
    std: finite ? Math.sqrt(dev / finite) : 0,
    absMean: finite ? absSum / finite : 0,
    sparsity: count ? zeros / count : 0,
    percentiles: {
      p1: percentile(fine, finite, 0.01, min, width),
      p5: percentile(fine, finite, 0.05, min, width),
      p25: percentile(fine, finite, 0.25, min, width),
      p50: percentile(fine, finite, 0.5, min, width),
      p75: percentile(fine, finite, 0.75, min, width),
      p95: percentile(fine, finite, 0.95, min, width),
      p99: percentile(fine, finite, 0.99, min, width),
    },
    channels: {
      axis: lay.axis,
      min: Array.from(chMin, (v) => (v === Infinity ? 0 : v)),
      max: Array.from(chMax, (v) => (v === -Infinity ? 0 : v)),
      l1: Array.from(chL1),
      l2: Array.from(chL2, Math.sqrt),
    },
  };
}

// The hot loops live in small functions called once per chunk: V8 then optimizes them fully, where a loop
// inside a function called once runs in on-stack-replacement code measured 3-5x slower.

/**
 * Pass 1 over one chunk whose first element is element `at` of the tensor: per-channel min, max, L1 and
 * squared L2 over runs of one channel, and the totals [min, max, sum, |sum|, zeros, finite]. NaN and
 * ±Infinity are skipped.
 */
function scanChannels(chunk: Float32Array, at: number, inner: number, C: number, chMin: Float64Array, chMax: Float64Array, chL1: Float64Array, chL2: Float64Array, tot: Float64Array): void {
  const n = chunk.length;
  let i = 0;
  while (i < n) {
    const g = at + i;
    const c = Math.floor(g / inner) % C;
    const end = Math.min(n, i + (inner - (g % inner)));
    let lo = Infinity;
    let hi = -Infinity;
    let s = 0;
    let a = 0;
    let q = 0;
    let z = 0;
    let k = 0;
    for (let j = i; j < end; j++) {
      const v = chunk[j];
      if (v - v !== 0) continue; // NaN or ±Infinity
      k++;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
      s += v;
      a += Math.abs(v); // a sign branch here would mispredict half the time
      q += v * v;
      if (v === 0) z++;
    }
    if (lo < chMin[c]) chMin[c] = lo;
    if (hi > chMax[c]) chMax[c] = hi;
    chL1[c] += a;
    chL2[c] += q;
    if (lo < tot[0]) tot[0] = lo;
    if (hi > tot[1]) tot[1] = hi;
    tot[2] += s;
    tot[3] += a;
    tot[4] += z;
    tot[5] += k;
    i = end;
  }
}

/** Pass 2 over one chunk: counts into `local` (fine bins over [min, max]); returns the sum of squared deviations from `mean`. */
function binChunk(chunk: Float32Array, min: number, fineScale: number, lastFine: number, mean: number, local: Int32Array): number {
  const n = chunk.length;
  let d2 = 0;
  for (let j = 0; j < n; j++) {
    const v = chunk[j];
    if (v - v !== 0) continue;
    // v - min >= 0 and the product < 2^31, so `| 0` truncates like Math.floor; max itself lands in the last bin.
    let f = ((v - min) * fineScale) | 0;
    if (f > lastFine) f = lastFine;
    local[f]++;
    const d = v - mean;
    d2 += d * d;
  }
  return d2;
}

/** The q-quantile from a fine histogram over [min, min + width]: linear inside the bin where the rank falls. */
function percentile(fine: Float64Array, n: number, q: number, min: number, width: number): number {
  if (n === 0) return 0;
  if (width === 0) return min;
  const rank = q * (n - 1);
  let below = 0;
  for (let b = 0; b < fine.length; b++) {
    const c = fine[b];
    if (below + c > rank) {
      const frac = (rank - below + 0.5) / c;
      return min + (width * (b + frac)) / fine.length;
    }
    below += c;
  }
  return min + width;
}
