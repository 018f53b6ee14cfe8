/**
 * Activation range calibration for static quantization: streaming per-tensor statistics (min, max, a
 * fixed-size histogram that widens by merging bins, per-channel means) and the four range choosers
 * (MinMax, Percentile, Entropy/KL, MSE). Memory per tensor is constant whatever the amount of data.
 */
import type * as ort from 'onnxruntime-node';
import { CancelledError } from '../../../protocol/rpc';
import { openDataset } from '../../data';
import type { OnnxModel } from '../../formats/onnx/model';
import { modelInputs, openSession } from '../../runtime/session';
import { outputFloats, toOrt } from '../../runtime/tensors';
import type { Calibration, PassContext } from '../pass';
import { qRange, scaleZeroPoint, type QuantSpec } from './math';
import type { CalibrationMethod } from './params';

/** Signed bins of a histogram over [-limit, limit]; even, so that 0 is a bin edge and |x| folds exactly. */
export const histogramBins = 4096;

/**
 * Streaming statistics of one tensor: running min and max, a histogram of x over [-limit, limit] with a
 * fixed number of bins, and optionally the running mean of each channel along `channelAxis`.
 *
 * When a batch exceeds the current limit, the limit doubles (as often as needed) and pairs of bins merge,
 * so the histogram stays exact at its current resolution and its size never changes.
 */
export class TensorStats {
  min = Infinity;
  max = -Infinity;
  count = 0;
  /** Half-width of the histogram range; 0 until a non-zero value is seen. */
  limit = 0;
  readonly counts = new Float64Array(histogramBins);
  /** Zeros seen before the first non-zero value (the histogram has no range yet). */
  private pendingZeros = 0;
  /** Exact zeros seen (every quantizer represents 0 exactly). */
  zeros = 0;
  channelSums?: Float64Array;
  channelCount = 0;

  /** `channelAxis`: 'channel1' (axis 1 of [N, C, ...]) or 'last' (the last axis) to also keep per-channel means. */
  constructor(readonly channelAxis?: 'channel1' | 'last') {}

  /** Adds a batch of values with its shape (the shape matters only for per-channel means). */
  add(data: Float32Array, dims: readonly number[] = [data.length]): void {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
      if (v === 0) this.zeros++;
      if (v !== v) throw new RangeError('the activation holds NaN values');
    }
    if (data.length === 0) return;
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new RangeError('the activation holds infinite values');
    this.min = Math.min(this.min, lo);
    this.max = Math.max(this.max, hi);
    this.count += data.length;
    const need = Math.max(-lo, hi);
    if (need > 0) {
      if (this.limit === 0) {
        this.limit = need;
        this.counts[histogramBins / 2] += this.pendingZeros;
        this.pendingZeros = 0;
      }
      while (need > this.limit) this.widen();
      const w = (2 * this.limit) / histogramBins;
      for (let i = 0; i < data.length; i++) {
        const b = Math.floor((data[i] + this.limit) / w);
        this.counts[b < 0 ? 0 : b >= histogramBins ? histogramBins - 1 : b]++;
      }
    } else this.pendingZeros += data.length;
    if (this.channelAxis) this.addChannels(data, dims);
  }

  /** Doubles the range: bins 2m and 2m+1 become bin n/4 + m of the new histogram. */
  private widen(): void {
    const old = Float64Array.from(this.counts);
    this.counts.fill(0);
    for (let b = 0; b < histogramBins; b++) this.counts[histogramBins / 4 + (b >> 1)] += old[b];
    this.limit *= 2;
  }

  private addChannels(data: Float32Array, dims: readonly number[]): void {
    const channels = this.channelAxis === 'channel1' ? (dims[1] ?? 1) : (dims[dims.length - 1] ?? 1);
    const inner = this.channelAxis === 'channel1' ? dims.slice(2).reduce((a, b) => a * b, 1) : 1;
    if (!this.channelSums) this.channelSums = new Float64Array(channels);
    if (this.channelSums.length !== channels) throw new RangeError(`channel count changed from ${this.channelSums.length} to ${channels}`);
    for (let i = 0; i < data.length; i++) this.channelSums[Math.floor(i / inner) % channels] += data[i];
    this.channelCount += data.length / channels;
  }

  /** Mean of each channel, when kept. */
  channelMeans(): Float64Array | undefined {
    return this.channelSums?.map((s) => s / Math.max(1, this.channelCount));
  }

  /** Width of one bin. */
  get binWidth(): number {
    return (2 * this.limit) / histogramBins;
  }

  /** Histogram of |x| over [0, limit], histogramBins / 2 bins. */
  absHistogram(): Float64Array {
    const half = histogramBins / 2;
    const out = new Float64Array(half);
    for (let k = 0; k < half; k++) out[k] = this.counts[half + k] + this.counts[half - 1 - k];
    out[0] += this.pendingZeros;
    return out;
  }
}

/** The activation quantizer the ranges are chosen for: uint8 asymmetric (U8S8). */
export const activationSpec: QuantSpec = { type: 'uint8', symmetric: false };

/** The range [lo, hi] kept when values beyond |x| = t are clipped. */
function clipped(s: TensorStats, t: number): [number, number] {
  return [Math.max(s.min, -t), Math.min(s.max, t)];
}

/**
 * The range an activation is quantized over, by method. Percentile, Entropy and MSE choose a threshold t on
 * |x| and clip the observed [min, max] to [-t, t], so a one-sided tensor (after Relu) stays one-sided.
 * - minmax: the observed [min, max].
 * - percentile: t = the `percentile`-th percentile of |x| (one threshold on the magnitude, not two tails).
 * - entropy: TensorRT's calibrator: the t whose quantized histogram (128 levels per side, or 256 when the
 *   tensor is non-negative) has the smallest KL divergence from the clipped reference histogram.
 * - mse: the t, among 256 clip ratios of max |x|, that minimises the expected squared error of uint8
 *   quantization over the histogram (rounding noise inside the range, clipping error outside).
 */
export function chooseRange(s: TensorStats, method: CalibrationMethod, percentile = 99.999): [number, number] {
  if (s.count === 0) return [0, 0];
  if (method === 'minmax' || s.limit === 0) return [s.min, s.max];
  if (method === 'percentile') return clipped(s, percentileThreshold(s, percentile));
  if (method === 'entropy') return clipped(s, entropyThreshold(s));
  return mseRange(s);
}

/** The p-th percentile of |x| from the histogram (upper edge of the bin where the CDF reaches p). */
export function percentileThreshold(s: TensorStats, p: number): number {
  const abs = s.absHistogram();
  const total = abs.reduce((a, b) => a + b, 0);
  const target = (total * p) / 100;
  let acc = 0;
  for (let k = 0; k < abs.length; k++) {
    acc += abs[k];
    if (acc >= target) return Math.min((k + 1) * s.binWidth, Math.max(-s.min, s.max));
  }
  return s.limit;
}

/**
 * TensorRT-style entropy calibration on the |x| histogram: for each candidate threshold bin i, the reference
 * P is the first i bins with the outliers beyond added to the last; Q is P's first i bins merged into
 * `levels` groups and spread back uniformly over each group's non-empty bins; the threshold with the least
 * KL(P || Q) wins. Exact zeros are left out: they quantize exactly whatever the threshold.
 */
export function entropyThreshold(s: TensorStats): number {
  const abs = s.absHistogram();
  // Exact zeros (half of a post-Relu tensor) quantize without error at any threshold; left in the first bin they
  // dominate the first level's KL and push the threshold far down (2.5-21% of mnist-8's and a CNN's values clipped).
  abs[0] = Math.max(0, abs[0] - s.zeros);
  const levels = s.min >= 0 ? 256 : 128;
  const n = abs.length;
  let last = n;
  while (last > 0 && abs[last - 1] === 0) last--;
  if (last <= levels) return Math.max(-s.min, s.max);
  const suffix = new Float64Array(n + 1);
  for (let k = n - 1; k >= 0; k--) suffix[k] = suffix[k + 1] + abs[k];
  let best = last;
  let bestKl = Infinity;
  const p = new Float64Array(n);
  const q = new Float64Array(n);
  for (let i = levels; i <= last; i++) {
    for (let k = 0; k < i; k++) p[k] = abs[k];
    p[i - 1] += suffix[i];
    // Merge the unclipped bins [start, end) into each level (as MXNet's and TensorRT's calibrators do: the
    // outliers are in P only), then spread each level over the bins where P is non-zero.
    for (let j = 0; j < levels; j++) {
      const start = Math.floor((j * i) / levels);
      const end = Math.floor(((j + 1) * i) / levels);
      let sum = 0;
      let nonzero = 0;
      for (let k = start; k < end; k++) {
        sum += abs[k];
        if (p[k] > 0) nonzero++;
      }
      for (let k = start; k < end; k++) q[k] = p[k] > 0 && nonzero > 0 ? sum / nonzero : 0;
    }
    const kl = klDivergence(p, q, i);
    if (kl < bestKl) {
      bestKl = kl;
      best = i;
    }
  }
  return Math.min(best * s.binWidth, Math.max(-s.min, s.max));
}

/** KL(P || Q) over the first n bins, both normalised; bins where P is 0 contribute nothing. */
function klDivergence(p: Float64Array, q: Float64Array, n: number): number {
  let sp = 0;
  let sq = 0;
  for (let k = 0; k < n; k++) {
    sp += p[k];
    sq += q[k];
  }
  if (sp === 0 || sq === 0) return Infinity;
  let kl = 0;
  for (let k = 0; k < n; k++) {
    if (p[k] === 0) continue;
    const pk = p[k] / sp;
    const qk = q[k] / sq;
    // A P bin with no Q mass: a large finite penalty, as TensorRT smooths rather than rejecting the threshold.
    kl += pk * Math.log(pk / (qk > 0 ? qk : 1e-12));
  }
  return kl;
}

/**
 * Expected squared error of quantizing the histogram's values over [lo, hi] with `spec`: s^2/12 for values
 * inside the representable range (uniform rounding noise), the squared distance to the nearest end for
 * values beyond it. Per value, averaged.
 */
export function histogramMse(s: TensorStats, lo: number, hi: number, spec: QuantSpec = activationSpec): number {
  if (s.limit === 0) return 0;
  const sz = scaleZeroPoint(lo, hi, spec);
  const [qmin, qmax] = qRange(spec);
  const low = (qmin - sz.zeroPoint) * sz.scale;
  const high = (qmax - sz.zeroPoint) * sz.scale;
  const w = s.binWidth;
  const noise = (sz.scale * sz.scale) / 12;
  let err = 0;
  let total = 0;
  for (let b = 0; b < histogramBins; b++) {
    const n = s.counts[b];
    if (n === 0) continue;
    const c = -s.limit + (b + 0.5) * w;
    const d = c < low ? low - c : c > high ? c - high : 0;
    err += n * (d > 0 ? d * d : noise);
    total += n;
  }
  return total > 0 ? err / total : 0;
}

/** MSE calibration: the clip ratio of max |x| (1/256 steps) with the least expected quantization error. */
function mseRange(s: TensorStats): [number, number] {
  const top = Math.max(-s.min, s.max);
  let best: [number, number] = [s.min, s.max];
  let bestErr = histogramMse(s, s.min, s.max);
  for (let k = 1; k < 256; k++) {
    const r = clipped(s, (top * k) / 256);
    const e = histogramMse(s, r[0], r[1]);
    if (e < bestErr) {
      bestErr = e;
      best = r;
    }
  }
  return best;
}

/** One tensor to observe during calibration. */
export interface CalibrationTarget {
  tensor: string;
  /** Also keep per-channel means along this axis (inputs of layers that get bias correction). */
  channelAxis?: 'channel1' | 'last';
}

/** What a calibration run saw. */
export interface CalibrationResult {
  stats: Map<string, TensorStats>;
  samples: number;
  /** The dataset's description, for the report. */
  description: string;
}

/**
 * Runs the float model over the calibration data once, fetching every target tensor as an extra output, and
 * folds each batch into its TensorStats. Batches are dropped as soon as they are counted: memory is one
 * batch of activations plus a fixed amount per tensor.
 */
export async function collectStats(model: OnnxModel, targets: CalibrationTarget[], calib: Calibration, ctx: PassContext): Promise<CalibrationResult> {
  const inputs = modelInputs(model);
  const inputNames = new Set(inputs.map((i) => i.name));
  const dataset = await openDataset(calib.data, inputs, { limit: calib.limit, seed: calib.seed, shapes: calib.shapes, randomCount: calib.limit ?? 64 });
  for (const w of dataset.warnings) if (!ctx.warnings.includes(w)) ctx.warnings.push(w);
  const stats = new Map<string, TensorStats>();
  for (const t of targets) {
    const old = stats.get(t.tensor);
    if (!old || (!old.channelAxis && t.channelAxis)) stats.set(t.tensor, new TensorStats(t.channelAxis));
  }
  const fetch = [...stats.keys()].filter((t) => !inputNames.has(t));
  const session = await openSession(model, { ep: calib.ep ?? 'cpu', extraOutputs: fetch, dynamicBatch: true });
  for (const w of session.warnings) ctx.warnings.push(`calibration: ${w}`);
  let samples = 0;
  try {
    const perRun = session.batched ? 32 : 1;
    for await (const batch of dataset.batches(perRun, ctx.signal)) {
      if (ctx.signal?.aborted) throw new CancelledError();
      const feeds = Object.fromEntries(Object.entries(batch.inputs).map(([k, v]) => [k, toOrt(v)]));
      const got: Record<string, ort.Tensor> = fetch.length ? await session.session.run(feeds, fetch) : {};
      for (const [name, s] of stats) {
        const t = got[name] ?? feeds[name];
        try {
          s.add(outputFloats(t), t.dims);
        } catch (err) {
          throw new RangeError(`calibration of '${name}': ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      samples += batch.count;
      ctx.progress?.(samples / Math.max(1, dataset.size), `calibrating: ${samples} of ${dataset.size} samples`);
    }
  } finally {
    await session.release().catch(() => {});
  }
  return { stats, samples, description: dataset.description };
}
