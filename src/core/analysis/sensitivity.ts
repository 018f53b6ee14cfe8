import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ClassificationMetrics, isClassifierOutput } from './metrics';
import { channelLayout } from './histogram';
import { openDataset, splitDataRange, type HostTensor } from '../data';
import { writeFileAtomic } from '../atomicWrite';
import { InputError } from '../errors';
import { sha256File } from '../formats/onnx/write';
import { toolName, version } from '../version';
import { detectFormat } from '../formats/detect';
import { OnnxModel } from '../formats/onnx/model';
import type { Layer, LayerKind } from '../model/layers';
import type { EpName } from '../runtime/ep';
import type { Progress } from '../runtime/evaluate';
import { modelInputs, openSession } from '../runtime/session';
import { outputFloats, toOrt } from '../runtime/tensors';
import { CancelledError } from '../../protocol/rpc';
import type { AnalyzeParams, AnalyzeResult, LayerDoneEvent, LayerSensitivity, SweepPoint } from '../../protocol/analysis';

/** Default pruning levels: 0, 10, ..., 90 and 95 % (the 0 level is the exactness check: its metric is 0). */
export const defaultSparsities = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];
/** Default bit widths of the quantization sweep. */
export const defaultBits = [8, 6, 4, 3, 2];
/** Default sample cap: 512 samples separate layers on MNIST-size models in seconds; `--limit` changes it. */
export const defaultLimit = 512;
/** Samples synthesised for `--data random` when no `--limit` is given. */
export const defaultRandomSamples = 64;
/** Cached batch inputs and baseline outputs past this many bytes: beyond it the data is streamed per variant. */
const cacheBudgetBytes = 256 << 20;
/** Samples per run when the model takes batches. */
const batchSize = 64;

/** Layers whose main weight the sweeps perturb. */
const studiedKinds = new Set<LayerKind>(['conv', 'convTranspose', 'gemm', 'matmul', 'embedding']);

/**
 * Magnitude pruning of `src` into `dst`: exactly round(sparsity * n) elements become 0, the smallest by |w|
 * (ties at the threshold broken by index order, so the result is deterministic). `sortedAbs` is |src| sorted
 * ascending, computed once per layer. Returns how many elements changed value.
 */
export function magnitudePrune(src: Float32Array, sortedAbs: Float32Array, sparsity: number, dst: Float32Array): number {
  const n = src.length;
  const k = Math.min(n, Math.max(0, Math.round(sparsity * n)));
  dst.set(src);
  if (k === 0) return 0;
  const t = sortedAbs[k - 1];
  // Elements strictly below the threshold all go; of those equal to it, only as many as fill k.
  let below = 0;
  for (let i = 0; i < k; i++) if (sortedAbs[i] < t) below++;
  let ties = k - below;
  let changed = 0;
  for (let i = 0; i < n; i++) {
    const v = src[i];
    const m = v < 0 ? -v : v;
    if (m < t || (m === t && ties-- > 0)) {
      if (v !== 0) changed++;
      dst[i] = 0;
    }
  }
  return changed;
}

/**
 * |values| sorted ascending (NaN last). The bit patterns of non-negative float32s order like their values, so
 * this is a two-pass 16-bit radix sort of uint32 keys: measured ~10x faster than Float32Array.sort on 4M weights.
 */
export function sortedMagnitudes(values: Float32Array): Float32Array {
  const n = values.length;
  const abs = new Float32Array(n);
  for (let i = 0; i < n; i++) abs[i] = Math.abs(values[i]);
  let src = new Uint32Array(abs.buffer);
  let dst = new Uint32Array(n);
  for (const shift of [0, 16]) {
    const start = new Float64Array(65537);
    for (let i = 0; i < n; i++) start[((src[i] >>> shift) & 0xffff) + 1]++;
    for (let b = 0; b < 65536; b++) start[b + 1] += start[b];
    for (let i = 0; i < n; i++) {
      const k = src[i];
      dst[start[(k >>> shift) & 0xffff]++] = k;
    }
    [src, dst] = [dst, src];
  }
  return new Float32Array(src.buffer);
}

/** 1.5 * 2^52: adding and subtracting it rounds a double with |x| < 2^51 to an integer, half to even. */
const magic = 6755399441055744;

/** Rounds half to even, as ONNX QuantizeLinear does (the magic-number trick). */
export function roundHalfEven(x: number): number {
  return x + magic - magic;
}

/**
 * Symmetric per-channel fake quantization of `src` into `dst`, channels along `axis` of `shape`: scale =
 * max|w_c| / (2^(bits-1) - 1) in float32, q = clamp(round_half_even(w / scale)), w' = q * scale, each step
 * rounded to float32 as ONNX QuantizeLinear -> DequantizeLinear computes it. An all-zero channel stays zero.
 * Returns how many elements changed value.
 */
export function fakeQuantize(src: Float32Array, shape: readonly number[], axis: number, bits: number, dst: Float32Array): number {
  if (!Number.isInteger(bits) || bits < 2 || bits > 16) throw new InputError(undefined, `bits must be a whole number from 2 to 16, not ${bits}`);
  const { outer, channels, inner } = channelLayout(shape, axis);
  const qmax = 2 ** (bits - 1) - 1;
  const absMax = new Float64Array(channels);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const base = (o * channels + c) * inner;
      let m = absMax[c];
      for (let i = base; i < base + inner; i++) {
        const v = src[i];
        const a = v < 0 ? -v : v;
        if (a > m) m = a;
      }
      absMax[c] = m;
    }
  }
  const scales = Float64Array.from(absMax, (m) => Math.fround(m / qmax));
  let changed = 0;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const base = (o * channels + c) * inner;
      const s = scales[c];
      for (let i = base; i < base + inner; i++) {
        const v = src[i];
        let w = 0;
        if (s > 0 && Number.isFinite(s)) {
          let q = roundHalfEven(Math.fround(v / s));
          if (q > qmax) q = qmax;
          else if (q < -qmax - 1) q = -qmax - 1;
          w = Math.fround(q * s);
        } else w = s === 0 ? 0 : v;
        if (w !== v) changed++;
        dst[i] = w;
      }
    }
  }
  return changed;
}

/** One batch ready to run: its feeds, labels, and the fed baseline's first output. */
interface Prepared {
  feeds: Record<string, ort.Tensor>;
  labels?: Int32Array;
  base: Float32Array;
  dims: readonly number[];
}

/**
 * Per-layer sensitivity: for each studied layer alone, prune its main weight at each sparsity and fake-quantize
 * it at each bit width, and measure each variant against the unmodified model on the same data.
 *
 * One ORT session serves the whole sweep: every studied weight is a pure graph input, fed its original values
 * except the one being varied. The baseline is a fed run with the original weights (constant-folded weights
 * differ by ~1e-6 from fed ones, so the plain model is never the reference). Batches and the baseline's first
 * output are cached up to 256 MB; past that, data is streamed again for each variant with the baseline re-run
 * beside it. A variant that changes no element (sparsity 0, say) is the baseline by construction and scores 0
 * without running. `signal` is checked between batches; `onLayer` hears each finished layer.
 */
/**
 * Per-layer sweeps, with results cached by model content, data and settings: a second run of the same analysis
 * (the panel reopened, the CLI run again) is instant. The cache lives outside the workspace, in
 * $WHITTLE_CACHE_DIR or ~/.cache/whittle/analysis; `noCache` skips it.
 */
export async function analyze(p: AnalyzeParams & { noCache?: boolean }, signal?: AbortSignal, onLayer?: (e: LayerDoneEvent) => void, progress: Progress = () => {}): Promise<AnalyzeResult> {
  // A model that cannot be hashed (missing, unreadable) gets no cache; the sweep reports it properly.
  let file: string | undefined;
  try {
    file = p.noCache ? undefined : cacheFile(p);
  } catch {
    file = undefined;
  }
  if (file && fs.existsSync(file)) {
    try {
      const hit = JSON.parse(fs.readFileSync(file, 'utf8')) as AnalyzeResult;
      hit.layers.forEach((layer, i) => onLayer?.({ type: 'layerDone', layer, done: i + 1, total: hit.layers.length }));
      return { ...hit, cached: true };
    } catch {
      // A damaged cache entry is simply recomputed.
    }
  }
  const result = await sweepLayers(p, signal, onLayer, progress);
  if (file) {
    try {
      writeFileAtomic(file, JSON.stringify(result));
    } catch {
      // A cache that cannot be written costs only time.
    }
  }
  return result;
}

/** The cache entry of an analysis: a hash of the model's bytes (and external data stamps), the data and the settings. */
function cacheFile(p: AnalyzeParams): string {
  const hash = createHash('sha256');
  hash.update(`${toolName} ${version}\n`);
  hash.update(sha256File(p.model));
  for (const f of fs.readdirSync(path.dirname(path.resolve(p.model)))) {
    // External data files sit beside the model; their stamps stand in for hashing gigabytes.
    if (f.endsWith('.data') || f.endsWith('.bin')) {
      const st = fs.statSync(path.join(path.dirname(path.resolve(p.model)), f));
      hash.update(`${f}:${st.size}:${st.mtimeMs}\n`);
    }
  }
  hash.update(dataFingerprint(p.data));
  const settings = { kind: p.kind, limit: p.limit, seed: p.seed, ep: p.ep, sparsities: p.sparsities, bits: p.bits, exclude: [...(p.exclude ?? [])].sort(), shapes: p.shapes };
  hash.update(JSON.stringify(settings));
  const dir = process.env.WHITTLE_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'whittle', 'analysis');
  return path.join(dir, `${hash.digest('hex').slice(0, 32)}.json`);
}

/** What identifies a --data SPEC's content cheaply: 'random', or paths with sizes and mtimes. */
function dataFingerprint(full: string): string {
  if (full === 'random') return 'random';
  // A #A:B range reads part of the same files: stamp the files, and the range text tells the parts apart.
  const { base: spec, range } = splitDataRange(full);
  const parts: string[] = range ? [`range ${range.start ?? ''}:${range.end ?? ''}`] : [];
  const walk = (p: string, depth: number) => {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      parts.push(`${p}:missing`);
      return;
    }
    if (st.isDirectory() && depth < 3) for (const f of fs.readdirSync(p).sort()) walk(path.join(p, f), depth + 1);
    else parts.push(`${p}:${st.size}:${st.mtimeMs}`);
  };
  walk(path.resolve(spec), 0);
  return parts.join('\n');
}

async function sweepLayers(p: AnalyzeParams, signal?: AbortSignal, onLayer?: (e: LayerDoneEvent) => void, progress: Progress = () => {}): Promise<AnalyzeResult> {
  const sparsities = p.kind === 'quant' ? [] : checkLevels(p.sparsities ?? defaultSparsities, 'sparsities', (s) => s >= 0 && s <= 1);
  const bitsList = p.kind === 'prune' ? [] : checkLevels(p.bits ?? defaultBits, 'bits', (b) => Number.isInteger(b) && b >= 2 && b <= 16);
  if (!['prune', 'quant', 'both'].includes(p.kind)) throw new InputError(undefined, `--kind must be prune, quant or both, not '${p.kind}'`);
  if (detectFormat(p.model) === 'tfjs') {
    const limit = p.limit ?? (p.data === 'random' ? defaultRandomSamples : defaultLimit);
    return (await import('./sensitivityTfjs')).sweepLayersTfjs(p, { sparsities, bits: bitsList, limit, batch: batchSize }, signal, onLayer, progress);
  }
  const model = OnnxModel.open(p.model);
  let release: (() => Promise<void>) | undefined;
  try {
    const warnings: string[] = [];
    const exclude = new Set(p.exclude ?? []);
    const unknown = [...exclude].filter((n) => !model.layers().some((l) => l.name === n));
    if (unknown.length) warnings.push(`--exclude names no layer: ${unknown.join(', ')}`);
    const layers = studiedLayers(model, exclude, warnings);
    if (layers.length === 0) throw new InputError(p.model, 'the model has no layer whose weights can be swept (float32 Conv, Gemm, MatMul or Gather weights that are main-graph initializers)');

    const limit = p.limit ?? (p.data === 'random' ? defaultRandomSamples : defaultLimit);
    const dataset = await openDataset(p.data, modelInputs(model), { limit, seed: p.seed, shapes: p.shapes, randomCount: limit });
    warnings.push(...dataset.warnings);
    const session = await openSession(model, { ep: (p.ep ?? 'auto') as EpName, weightInputs: layers.map((l) => l.weight.name), dynamicBatch: true });
    release = () => session.release();
    warnings.push(...session.warnings);
    const output = session.outputs[0];
    const perRun = session.batched ? batchSize : 1;
    const run = async (feeds: Record<string, ort.Tensor>) => (await session.session.run(feeds, [output]))[output];

    // The baseline: fed run with the original weights, cached while it fits.
    const cached: Prepared[] = [];
    let cacheBytes = 0;
    let streaming = false;
    const prepare = async (batch: { inputs: Record<string, HostTensor>; labels?: Int32Array }): Promise<Prepared> => {
      const feeds = { ...Object.fromEntries(Object.entries(batch.inputs).map(([k, v]) => [k, toOrt(v)])), ...session.weightFeeds };
      const out = await run(feeds);
      return { feeds, labels: batch.labels, base: outputFloats(out).slice(), dims: out.dims };
    };
    let samples = 0;
    for await (const batch of dataset.batches(perRun, signal)) {
      if (signal?.aborted) throw new CancelledError();
      samples += batch.count;
      if (streaming) continue;
      const prepared = await prepare(batch);
      cacheBytes += prepared.base.byteLength + Object.values(batch.inputs).reduce((a, t) => a + t.data.byteLength, 0);
      if (cacheBytes > cacheBudgetBytes) {
        streaming = true;
        cached.length = 0;
      } else cached.push(prepared);
    }
    if (samples === 0) throw new InputError(p.data, 'the dataset has no samples');
    async function* batches(): AsyncGenerator<Prepared> {
      if (!streaming) {
        yield* cached;
        return;
      }
      for await (const batch of dataset.batches(perRun, signal)) yield prepare(batch);
    }

    const classifier = isClassifierOutput((await batches().next()).value!.dims);
    const useLabels = classifier && dataset.hasLabels;
    let baseAccuracy: number | undefined;
    if (useLabels) {
      const m = new ClassificationMetrics();
      for await (const b of batches()) m.add({ data: b.base, dims: b.dims }, undefined, b.labels);
      baseAccuracy = m.result().accuracy;
    }
    const metricName = useLabels ? 'accuracy drop' : classifier ? '1 - top-1 agreement' : '1 - cosine';
    if (!classifier && dataset.hasLabels) warnings.push(`output '${output}' does not look like class scores, so labels were not used`);

    /** Runs the model with `name` fed `values` and compares with the baseline. */
    const measure = async (name: string, shape: number[], values: Float32Array): Promise<SweepPoint> => {
      const score = new VariantScore(classifier, useLabels);
      const weight = new ort.Tensor('float32', values, shape);
      for await (const b of batches()) {
        if (signal?.aborted) throw new CancelledError();
        const got = outputFloats(await run({ ...b.feeds, [name]: weight }));
        if (got.length !== b.base.length) throw new Error(`output '${output}' changed size under a weight variant`);
        score.add(got, b.base, b.dims, b.labels);
      }
      return score.point(baseAccuracy);
    };
    const unchanged = (): SweepPoint => ({
      metric: 0,
      cosine: 1,
      ...(classifier ? { top1Agreement: 1, kl: 0 } : {}),
      ...(useLabels ? { accuracy: baseAccuracy } : {}),
    });

    const total = layers.length * (sparsities.length + bitsList.length);
    let done = 0;
    let lastReport = 0;
    const started = performance.now();
    const tick = (layer: string) => {
      done++;
      const now = performance.now();
      if (now - lastReport < 250 && done < total) return;
      lastReport = now;
      const eta = ((now - started) / done) * (total - done);
      progress(done / total, `layer ${layer}: ${done} of ${total} variants, about ${Math.ceil(eta / 1000)} s left`);
    };

    const results: LayerSensitivity[] = [];
    for (const layer of layers) {
      const ref = layer.weight;
      const original = session.weightFeeds[ref.name].data as Float32Array;
      const variant = new Float32Array(original.length);
      const entry: LayerSensitivity = { name: layer.name, op: layer.op, params: ref.count, score: 0 };
      if (sparsities.length) {
        const sorted = sortedMagnitudes(original);
        entry.prune = [];
        for (const sparsity of sparsities) {
          if (signal?.aborted) throw new CancelledError();
          const changed = magnitudePrune(original, sorted, sparsity, variant);
          entry.prune.push({ sparsity, ...(changed === 0 ? unchanged() : await measure(ref.name, ref.shape, variant)) });
          tick(layer.name);
        }
      }
      if (bitsList.length) {
        entry.quant = [];
        for (const bits of bitsList) {
          if (signal?.aborted) throw new CancelledError();
          const changed = fakeQuantize(original, ref.shape, layer.outputAxis, bits, variant);
          entry.quant.push({ bits, ...(changed === 0 ? unchanged() : await measure(ref.name, ref.shape, variant)) });
          tick(layer.name);
        }
      }
      const metrics = [...(entry.prune ?? []), ...(entry.quant ?? [])].map((q) => q.metric);
      entry.score = metrics.length ? metrics.reduce((a, b) => a + b, 0) / metrics.length : 0;
      results.push(entry);
      onLayer?.({ type: 'layerDone', layer: entry, done: results.length, total: layers.length });
    }
    const ranking = [...results].sort((a, b) => b.score - a.score || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((l) => l.name);
    return {
      baseline: { samples, ...(baseAccuracy !== undefined ? { accuracy: baseAccuracy } : {}), metricName },
      layers: results,
      ranking,
      ep: session.ep,
      data: dataset.description,
      warnings,
    };
  } finally {
    await release?.().catch(() => {});
    model.close();
  }
}

/** The layers to sweep: one per distinct float32 main-graph initializer weight, with a warning for each left out. */
function studiedLayers(model: OnnxModel, exclude: Set<string>, warnings: string[]): Layer[] {
  const weights = model.weights();
  const seen = new Map<string, string>();
  const out: Layer[] = [];
  for (const layer of model.layers()) {
    if (!studiedKinds.has(layer.kind) || exclude.has(layer.name)) continue;
    const name = layer.weight.name;
    const w = weights.get(name);
    if (!w || w.ref !== layer.weight || w.origin.kind !== 'initializer' || w.scope) {
      warnings.push(`layer '${layer.name}' skipped: its weight '${name}' is a Constant or lives in a subgraph, so it cannot be fed`);
    } else if (layer.weight.dtype !== 1) {
      warnings.push(`layer '${layer.name}' skipped: its weight '${name}' is ${layer.weight.dtypeName}, not float32`);
    } else if (seen.has(name)) {
      warnings.push(`layer '${layer.name}' shares its weight '${name}' with '${seen.get(name)}', which is swept for both`);
    } else {
      seen.set(name, layer.name);
      out.push(layer);
    }
  }
  return out;
}

/** Levels as given, checked. */
function checkLevels(levels: number[], name: string, ok: (x: number) => boolean): number[] {
  if (levels.length === 0) throw new InputError(undefined, `--${name} needs at least one level`);
  const bad = levels.find((x) => !Number.isFinite(x) || !ok(x));
  if (bad !== undefined) throw new InputError(undefined, `--${name} has an invalid level ${bad}`);
  return levels;
}

/**
 * One weight variant's outputs against the baseline's, accumulated batch by batch, as a sweep point: cosine
 * always; top-1 agreement and KL for class scores; the accuracy drop when labels are used. Bitwise-identical
 * outputs are exactly the baseline, with no rounding noise in the figures.
 */
export class VariantScore {
  private readonly cls = new ClassificationMetrics();
  private dot = 0;
  private na = 0;
  private nb = 0;
  private identical = true;

  constructor(
    private readonly classifier: boolean,
    private readonly useLabels: boolean,
  ) {}

  add(got: Float32Array, ref: Float32Array, dims: readonly number[], labels?: Parameters<ClassificationMetrics['add']>[2]): void {
    for (let i = 0; i < got.length; i++) {
      const x = got[i];
      const y = ref[i];
      if (x !== y) this.identical = false;
      this.dot += x * y;
      this.na += x * x;
      this.nb += y * y;
    }
    if (this.classifier) this.cls.add({ data: got, dims }, { data: ref, dims }, this.useLabels ? labels : undefined);
  }

  point(baseAccuracy?: number): SweepPoint {
    const { dot, na, nb, identical } = this;
    const cosine = identical ? 1 : na === 0 || nb === 0 ? (na === nb ? 1 : 0) : dot / Math.sqrt(na * nb);
    const c = this.cls.result();
    const point: SweepPoint = { metric: 0, cosine };
    if (this.classifier) {
      point.top1Agreement = identical ? 1 : c.top1Agreement;
      point.kl = identical ? 0 : c.kl;
    }
    if (this.useLabels) point.accuracy = c.accuracy;
    point.metric = this.useLabels ? baseAccuracy! - c.accuracy! : this.classifier ? 1 - point.top1Agreement! : 1 - cosine;
    return point;
  }
}
