import { CancelledError } from '../../../protocol/rpc';
import { analyze, magnitudePrune, sortedMagnitudes } from '../../analysis/sensitivity';
import { InputError } from '../../errors';
import { replaceTensorData } from '../../formats/onnx/edit';
import type { OnnxModel } from '../../formats/onnx/model';
import type { Layer } from '../../model/layers';
import type { Pass, PassContext, PassReport, ParamSpec } from '../pass';
import { allocateSparsity, costCurve } from './allocate';
import { structuredApply, type StructuredSummary } from './structured';
import { sparsegptWeights } from './sparsegpt';
import { inputNorms, wandaPrune } from './wanda';

/** Parsed parameters of the prune pass. */
export interface PruneOptions {
  /** Fraction of each pruned weight to zero (0..1); implied by `pattern` when that is given. */
  sparsity?: number;
  method: 'magnitude' | 'wanda' | 'sparsegpt';
  /** Magnitude score: |w|, or |w| divided by the L2 norm of all weights reading the same input ('input'). */
  norm: 'abs' | 'input';
  /** SparseGPT: Hessian damping as a fraction of its mean diagonal. */
  damp: number;
  scope: 'layer' | 'global' | 'sensitivity';
  /** Global and sensitivity scopes: bounds on each layer's sparsity. */
  minSparsity: number;
  maxSparsity: number;
  /** 'none' or 'N:M' (keep N of every M consecutive weights along the input dimension). */
  pattern: string;
  /** Layer (or weight) names to leave dense. */
  exclude: string[];
  /** 'channels': remove whole channels with their dependency groups (structured.ts) instead of zeroing weights. */
  structured?: 'channels';
  /** Structured: how channels are ranked. */
  importance?: 'l1' | 'l2' | 'bn' | 'activation';
  /** Structured: round each group's kept channel count to a multiple of this. */
  channelMultiple?: number;
  /** Calibration data (sensitivity curves, Wanda, SparseGPT) when it is not the evaluation --data; the run reads it. */
  calibData?: string;
  /** Metric budget in points: the run searches for the largest sparsity whose evaluated drop stays within it. */
  maxDrop?: number;
}

/** What one pruned layer ended up with. */
export interface LayerPruneSummary {
  layer: string;
  op: string;
  weight: string;
  shape: number[];
  /** Structured pruning: the shape before channels were removed (`shape` is then the new one). */
  shapeBefore?: number[];
  /** Structured pruning: the output channels removed (indices along the weight's output axis, in the original indexing). */
  removedChannels?: number[];
  /** Elements of the weight (before structured pruning). */
  params: number;
  /** Zero elements after pruning (zeros already there included); structured pruning: elements removed. */
  zeros: number;
  /** Zeros before pruning, so the pass's own effect is zeros - zerosBefore. */
  zerosBefore: number;
  sparsity: number;
}

/**
 * A layer's keep-mask: bit i (LSB first within each byte) is 1 when element i of the weight (row-major) is
 * nonzero after pruning. Kept in memory, not in the report, so a later fine-tuning pass can hold pruned
 * weights at zero by re-applying it after each optimizer step.
 */
export interface PruneMask {
  layer: string;
  weight: string;
  shape: number[];
  kept: Uint8Array;
  /** Structured pruning: the removed output rows (axis 0) and input columns (axis 1), in the original indexing; `shape` and `kept` are the original's. */
  removedRows?: number[];
  removedCols?: number[];
}

/** How `--scope sensitivity` chose a layer's sparsity from its analysis curve. */
export interface SensitivityChoice {
  layer: string;
  params: number;
  sparsity: number;
  /** The curve's metric at that sparsity (linear between measured levels), the layer pruned alone. */
  predictedCost: number;
}

/** The prune pass's report: per-layer summaries, plus the masks (in memory only). */
export interface PruneReport extends PassReport {
  layers: LayerPruneSummary[];
  /** `--scope sensitivity`: the allocation, with the analysis metric it minimised. */
  allocation?: { metricName: string; data: string; samples: number; layers: SensitivityChoice[] };
  masks: PruneMask[];
  /** `--structured channels`: the groups pruned and the ones skipped, with reasons. */
  structured?: StructuredSummary;
}

/** How a weight's input dimension lies in memory, for N:M groups: `outIn` = axis 1 of [O, I, ...], `inOut` = every axis but the last of [..., O]. */
export type NMLayout = 'outIn' | 'inOut';

const patternRe = /^(\d+):(\d+)$/;

/** The pass's parameter table: drives the CLI flags, the recipe schema, the wizard and the tests. */
export const pruneParams: ParamSpec[] = [
  { name: 'sparsity', type: 'number', min: 0, max: 1, placeholder: 'S', help: 'fraction of weights to zero in each pruned layer (layer scope) or overall (global scope)' },
  { name: 'norm', type: 'enum', choices: ['abs', 'input'], default: 'abs', placeholder: 'NORM', help: 'magnitude score: abs = |w|; input = |w| / ||w of the same input||, so inputs of small scale are not emptied wholesale' },
  { name: 'method', type: 'enum', choices: ['magnitude', 'wanda', 'sparsegpt'], default: 'magnitude', placeholder: 'METHOD', help: 'importance score: |w|; wanda |w| x ||x|| (input feature norms on the calibration data) compared within each output; sparsegpt: prune by w²/[H⁻¹]ᵢᵢ² and update the remaining weights to reconstruct each layer\'s output on the calibration data' },
  { name: 'damp', type: 'number', min: 0, max: 10, default: 0.01, placeholder: 'F', help: 'sparsegpt: Hessian damping, as a fraction of the mean of its diagonal' },
  { name: 'scope', type: 'enum', choices: ['layer', 'global', 'sensitivity'], default: 'layer', placeholder: 'SCOPE', help: 'layer: the same sparsity in every layer; global: one |w| threshold across layers; sensitivity: per-layer sparsities from the analysis curves on --data at the least total metric cost' },
  { name: 'minSparsity', type: 'number', min: 0, max: 1, default: 0, placeholder: 'S', help: 'global and sensitivity scopes: lowest sparsity of any layer' },
  { name: 'maxSparsity', type: 'number', min: 0, max: 1, default: 1, placeholder: 'S', help: 'global and sensitivity scopes: highest sparsity of any layer' },
  { name: 'calibData', type: 'string', placeholder: 'SPEC', help: 'calibration data for the sensitivity curves, wanda and sparsegpt (a --data SPEC, e.g. file#:1000); default: --data, which is always the evaluation data' },
  { name: 'maxDrop', type: 'number', min: 0, max: 100, placeholder: 'PT', help: 'metric budget: the largest overall sparsity (up to --sparsity, if given) whose evaluated drop on --data is at most PT points of accuracy (of top-1 agreement without labels), found by bisection' },
  {
    name: 'pattern',
    type: 'string',
    default: 'none',
    placeholder: 'N:M',
    help: 'semi-structured N:M sparsity along the input dimension, e.g. 2:4 or 4:8',
    check: (v) => {
      if (v === 'none') return undefined;
      const m = patternRe.exec(String(v));
      return m && Number(m[1]) >= 1 && Number(m[1]) < Number(m[2]) ? undefined : `must be none or N:M with 1 <= N < M (e.g. 2:4), not '${String(v)}'`;
    },
  },
  { name: 'exclude', type: 'list', default: [], placeholder: 'LAYERS', help: 'comma-separated layer names to leave dense' },
  { name: 'structured', type: 'enum', choices: ['channels'], placeholder: 'KIND', help: 'structured pruning that removes whole channels (with their dependency groups), so the model really shrinks; --sparsity is then the fraction of channels removed per group' },
  { name: 'importance', type: 'enum', choices: ['l1', 'l2', 'bn', 'activation'], default: 'l1', placeholder: 'KIND', help: 'structured: channel ranking by L1 or L2 norm of the group\'s weights, BatchNormalization |gamma|, or mean |activation| on --data' },
  { name: 'channelMultiple', type: 'number', min: 1, default: 8, placeholder: 'N', help: 'structured: round each group\'s kept channel count to a multiple of N (8 suits onnxruntime\'s blocked CPU conv kernels: measured faster than exact counts; 1 keeps the exact fraction)', check: (v) => (Number.isInteger(v) ? undefined : `must be a whole number, not ${String(v)}`) },
];

/** Layer kinds whose main weight the pass prunes. */
const prunable = new Set(['conv', 'gemm', 'matmul']);

/** The N:M layout of a layer's weight, from where its output axis is. */
export function nmLayout(layer: Pick<Layer, 'kind' | 'outputAxis' | 'weight'>): NMLayout {
  // Conv [O,I,kh,kw], Gemm transB=1 [O,I] and a MatMul weight on the left [M,K] have the input dim at axis 1.
  return layer.outputAxis === 0 ? 'outIn' : 'inOut';
}

/** [pre, len, post]: the weight viewed as pre x len x post with the groups running along len. */
function groupView(shape: readonly number[], layout: NMLayout): [number, number, number] {
  const count = shape.reduce((a, b) => a * b, 1);
  if (layout === 'outIn') {
    const pre = shape[0] ?? 1;
    const len = shape[1] ?? 1;
    return [pre, len, count / (pre * len)];
  }
  // inOut: a Reshape'd MatMul weight (mnist-8's [16,4,4,10] as [256,10]) flattens all leading axes into K.
  const post = shape.at(-1) ?? 1;
  return [1, count / post, post];
}

/** Length of the input dimension the N:M groups run along. */
export function inputDimLength(shape: readonly number[], layout: NMLayout): number {
  return groupView(shape, layout)[1];
}

/**
 * Checks N:M sparsity: in every group of m consecutive elements along the input dimension, at most n are
 * nonzero. Returns the number of groups and of violating groups, with the first violation's start index.
 */
export function checkNM(weights: Float32Array, shape: readonly number[], layout: NMLayout, n: number, m: number): { groups: number; violations: number; first?: number } {
  const [pre, len, post] = groupView(shape, layout);
  let groups = 0;
  let violations = 0;
  let first: number | undefined;
  for (let p = 0; p < pre; p++) {
    for (let q = 0; q < post; q++) {
      for (let g = 0; g + m <= len; g += m) {
        groups++;
        let nonzero = 0;
        for (let j = 0; j < m; j++) if (weights[(p * len + g + j) * post + q] !== 0) nonzero++;
        if (nonzero > n) {
          violations++;
          first ??= (p * len + g) * post + q;
        }
      }
    }
  }
  return { groups, violations, first };
}

/** Zeros the m - n smallest |w| of every group of m along the input dimension (ties by position), in place. */
export function pruneNM(weights: Float32Array, shape: readonly number[], layout: NMLayout, n: number, m: number): void {
  const [pre, len, post] = groupView(shape, layout);
  const idx = new Array<number>(m);
  for (let p = 0; p < pre; p++) {
    for (let q = 0; q < post; q++) {
      for (let g = 0; g + m <= len; g += m) {
        for (let j = 0; j < m; j++) idx[j] = (p * len + g + j) * post + q;
        // Stable sort by |w|: equal magnitudes keep position order, so the result is deterministic.
        const order = idx.slice().sort((a, b) => Math.abs(weights[a]) - Math.abs(weights[b]) || a - b);
        for (let j = 0; j < m - n; j++) weights[order[j]] = 0;
      }
    }
  }
}

/** Index of the first element of an ascending array that is greater than `t`: how many are <= t. */
function countAtMost(sorted: Float32Array, t: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A layer selected for pruning, with its weights as float32. */
interface Target {
  layer: Layer;
  values: Float32Array;
}

/** Per-layer element counts to zero for one global |w| threshold, each clamped to [min, max] sparsity. */
function globalCounts(targets: Target[], sorted: Float32Array[], sparsity: number, min: number, max: number): number[] {
  const total = targets.reduce((a, t) => a + t.values.length, 0);
  const goal = Math.round(sparsity * total);
  const clamp = (i: number, k: number) => {
    const n = targets[i].values.length;
    return Math.min(Math.round(max * n), Math.max(Math.round(min * n), k));
  };
  const countsAt = (t: number) => sorted.map((s, i) => clamp(i, t < 0 ? 0 : countAtMost(s, t)));
  // The threshold is one of the magnitudes: binary-search the merged, sorted list for the smallest that reaches the goal.
  const all = new Float32Array(total);
  let off = 0;
  for (const s of sorted) {
    all.set(s, off);
    off += s.length;
  }
  const merged = all.sort();
  let lo = -1;
  let hi = merged.length - 1;
  const sum = (t: number) => countsAt(t).reduce((a, b) => a + b, 0);
  if (sum(-1) >= goal) return countsAt(-1);
  if (sum(merged[hi]) < goal) return countsAt(merged[hi]);
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (sum(merged[mid]) >= goal) hi = mid;
    else lo = mid;
  }
  const counts = countsAt(merged[hi]);
  // Ties at the threshold can overshoot: take the excess back from the layers that hold tied magnitudes.
  let excess = counts.reduce((a, b) => a + b, 0) - goal;
  for (let i = 0; i < counts.length && excess > 0; i++) {
    const floor = clamp(i, countAtMost(sorted[i], lo < 0 ? -1 : merged[lo]));
    const give = Math.min(excess, counts[i] - floor);
    counts[i] -= give;
    excess -= give;
  }
  return counts;
}

function keptMask(values: Float32Array): Uint8Array {
  const bits = new Uint8Array(Math.ceil(values.length / 8));
  for (let i = 0; i < values.length; i++) if (values[i] !== 0) bits[i >> 3] |= 1 << (i & 7);
  return bits;
}

function zerosOf(values: Float32Array): number {
  let z = 0;
  for (let i = 0; i < values.length; i++) if (values[i] === 0) z++;
  return z;
}

/**
 * Chooses the layers to prune: float32 Conv/Gemm/MatMul weights held as main-graph initializers, minus the
 * excluded ones. Anything else is skipped with a warning, never silently.
 */
function selectTargets(model: OnnxModel, exclude: string[], ctx: PassContext): Layer[] {
  const layers = model.layers().filter((l) => prunable.has(l.kind));
  const weights = model.weights();
  const known = new Set(model.layers().flatMap((l) => [l.name, l.weight.name]));
  for (const name of exclude) if (!known.has(name)) ctx.warnings.push(`--exclude: no layer named '${name}' in the model`);
  const excluded = new Set(exclude);
  const seen = new Set<string>();
  const out: Layer[] = [];
  for (const l of layers) {
    if (excluded.has(l.name) || excluded.has(l.weight.name)) continue;
    const w = weights.get(l.weight.name);
    if (l.weight.dtype !== 1) {
      ctx.warnings.push(`layer '${l.name}' skipped: its weight is ${l.weight.dtypeName}, and pruning handles float32 only so far`);
      continue;
    }
    if (!w || w.origin.kind !== 'initializer' || w.scope !== '') {
      ctx.warnings.push(`layer '${l.name}' skipped: its weight is not an initializer of the main graph`);
      continue;
    }
    if (seen.has(l.weight.name)) {
      ctx.warnings.push(`layer '${l.name}' shares weight '${l.weight.name}' with another layer; it was pruned once`);
      continue;
    }
    seen.add(l.weight.name);
    out.push(l);
  }
  return out;
}

/**
 * |w| / ||w_j||: each weight's magnitude over the L2 norm of every weight that reads the same input feature j
 * (input channel j of a Conv, of its own group for grouped convs; row j of a [K, N] MatMul weight). A weight of
 * an all-zero input scores 0.
 */
export function inputNormalized(values: Float32Array, shape: readonly number[], layout: NMLayout, groups = 1): Float32Array {
  const count = values.length;
  let feature: (i: number) => number;
  let features: number;
  if (layout === 'outIn') {
    const [rows, len] = [shape[0] ?? 1, shape[1] ?? 1];
    const post = count / (rows * len);
    const perGroup = rows / groups;
    features = groups * len;
    feature = (i) => {
      const r = Math.floor(i / (len * post));
      return Math.floor(r / perGroup) * len + Math.floor((i % (len * post)) / post);
    };
  } else {
    const cols = shape.at(-1) ?? 1;
    features = count / cols;
    feature = (i) => Math.floor(i / cols);
  }
  const sq = new Float64Array(features);
  for (let i = 0; i < count; i++) sq[feature(i)] += values[i] * values[i];
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const nrm = Math.sqrt(sq[feature(i)]);
    out[i] = nrm > 0 ? Math.abs(values[i]) / nrm : 0;
  }
  return out;
}

/** The `group` attribute of a layer's Conv node (1 for anything else). */
function convGroups(model: OnnxModel, layer: Layer): number {
  const node = model.graph.node.find((x) => x.name === layer.name);
  return Number(node?.attribute.find((a) => a.name === 'group')?.i ?? 1) || 1;
}

/**
 * `--scope sensitivity`: per-layer element counts from the analysis curves of the unmodified model (the cached
 * `analyze` sweep on the calibration data), allocated by `allocateSparsity`. A layer with no curve keeps the
 * target sparsity and is named in a warning.
 */
async function sensitivityCounts(model: OnnxModel, targets: Target[], p: PruneOptions, calib: NonNullable<PassContext['calibration']>, ctx: PassContext): Promise<{ counts: number[]; allocation: NonNullable<PruneReport['allocation']> }> {
  const exclude = model.layers().filter((l) => prunable.has(l.kind) && !targets.some((t) => t.layer.name === l.name)).map((l) => l.name);
  const result = await analyze({ model: model.file, data: calib.data, kind: 'prune', limit: calib.limit, seed: calib.seed, ep: calib.ep, shapes: calib.shapes, exclude }, ctx.signal, undefined, ctx.progress);
  const byName = new Map(result.layers.map((l) => [l.name, l]));
  const curves = targets.map((t) => {
    const s = byName.get(t.layer.name);
    const curve = s && costCurve(s);
    if (curve) return curve;
    ctx.warnings.push(`layer '${t.layer.name}' has no sensitivity curve; it is pruned at the target sparsity`);
    return { params: t.values.length, sparsities: [p.sparsity!], costs: [0] };
  });
  const a = allocateSparsity(curves, p.sparsity!, p.minSparsity, p.maxSparsity);
  if (a.overall < p.sparsity! - 1e-6) ctx.warnings.push(`--scope sensitivity reached ${(a.overall * 100).toFixed(2)}% overall, not ${(p.sparsity! * 100).toFixed(2)}%: --max-sparsity or the highest measured level stops every layer`);
  const counts = targets.map((t, i) => Math.round(a.sparsities[i] * t.values.length));
  return {
    counts,
    allocation: {
      metricName: result.baseline.metricName,
      data: result.data,
      samples: result.baseline.samples,
      layers: targets.map((t, i) => ({ layer: t.layer.name, params: t.values.length, sparsity: counts[i] / t.values.length, predictedCost: a.predictedCost[i] })),
    },
  };
}

/** Magnitude, Wanda or SparseGPT pruning, per layer, global or sensitivity-allocated, or N:M along the input dimension. Edits the model's weights in place. */
export const prunePass: Pass<PruneOptions, PruneReport> = {
  name: 'prune',
  summary: 'unstructured (magnitude, Wanda or SparseGPT; per layer, global or sensitivity-guided) or N:M semi-structured pruning of Conv, Gemm and MatMul weights',
  params: pruneParams,
  async apply(model, p, ctx) {
    if (p.structured === 'channels') {
      try {
        return await structuredApply(model, p, ctx);
      } finally {
        // Channel removal reshapes initializers in place.
        model.invalidate();
      }
    }
    const nm = p.pattern !== 'none' ? patternRe.exec(p.pattern) : null;
    const [n, m] = nm ? [Number(nm[1]), Number(nm[2])] : [0, 0];
    if (nm && p.sparsity !== undefined && Math.abs(p.sparsity - (1 - n / m)) > 1e-9) {
      throw new InputError(undefined, `--pattern ${p.pattern} fixes the sparsity at ${1 - n / m}; leave out --sparsity or set it to that`);
    }
    if (!nm && p.sparsity === undefined) throw new InputError(undefined, 'option --sparsity is required (a fraction between 0 and 1), unless --pattern N:M is given');
    if (p.minSparsity > p.maxSparsity) throw new InputError(undefined, `--min-sparsity ${p.minSparsity} is above --max-sparsity ${p.maxSparsity}`);
    if (p.scope === 'layer' && (p.minSparsity !== 0 || p.maxSparsity !== 1)) ctx.warnings.push('--min-sparsity and --max-sparsity apply to --scope global and sensitivity only; ignored');
    if (nm && p.method === 'wanda') throw new InputError(undefined, '--method wanda with --pattern N:M is not available yet in this version of Whittle');
    if (nm && p.scope === 'sensitivity') throw new InputError(undefined, '--pattern N:M fixes every layer\'s sparsity, so it cannot be combined with --scope sensitivity');

    const layers = selectTargets(model, p.exclude, ctx);
    if (layers.length === 0) throw new InputError(model.file, 'no layer to prune: no float32 Conv, Gemm or MatMul weights left after --exclude');
    const targets: Target[] = layers.map((layer) => ({ layer, values: layer.weight.toFloat32() }));
    const zerosBefore = targets.map((t) => zerosOf(t.values));

    let counts: number[] | undefined;
    if (p.norm === 'input' && (nm || p.method !== 'magnitude')) throw new InputError(undefined, `--norm input applies to unstructured --method magnitude${nm ? ', not to --pattern' : `, not to --method ${p.method}`}`);
    // --norm input ranks by |w| / ||w of its input||: the thresholds run over those scores instead of |w|.
    const scores = !nm && p.norm === 'input' ? targets.map((t) => inputNormalized(t.values, t.layer.weight.shape, nmLayout(t.layer), convGroups(model, t.layer))) : undefined;
    const sorted = !nm ? targets.map((t, i) => sortedMagnitudes(scores?.[i] ?? t.values)) : [];
    if (!nm && p.scope === 'global') counts = globalCounts(targets, sorted, p.sparsity!, p.minSparsity, p.maxSparsity);
    const calibration = ctx.calibration ?? { data: 'random' };
    let allocation: PruneReport['allocation'];
    if (!nm && p.scope === 'sensitivity') {
      ctx.progress?.(undefined, 'measuring per-layer sensitivity');
      ({ counts, allocation } = await sensitivityCounts(model, targets, p, calibration, ctx));
    }
    const norms = p.method === 'wanda' ? await inputNorms(model, layers, calibration, ctx) : undefined;
    let gpt: Map<string, Float32Array> | undefined;
    if (p.method === 'sparsegpt') {
      // N:M layers whose input dimension does not fit the groups are skipped below; leave them out here too.
      const fits = targets.filter((t) => !nm || inputDimLength(t.layer.weight.shape, nmLayout(t.layer)) % m === 0);
      const zerosFor = (t: Target) => {
        const i = targets.indexOf(t);
        return counts ? counts[i] : Math.round(p.sparsity! * t.values.length);
      };
      gpt = await sparsegptWeights(model, fits.map((t) => ({ layer: t.layer, values: t.values, zeros: zerosFor(t) })), { damp: p.damp, nm: nm ? [n, m] : undefined }, calibration, ctx);
    }

    const report: PruneReport = { pass: 'prune', params: { ...p, sparsity: p.sparsity ?? 1 - n / m } as unknown as PruneReport['params'], layers: [], masks: [], ...(allocation ? { allocation } : {}) };
    for (let i = 0; i < targets.length; i++) {
      if (ctx.signal?.aborted) throw new CancelledError();
      const { layer, values } = targets[i];
      const shape = [...layer.weight.shape];
      let pruned: Float32Array;
      if (nm) {
        const layout = nmLayout(layer);
        const len = inputDimLength(shape, layout);
        if (len % m !== 0) {
          ctx.warnings.push(`layer '${layer.name}' skipped: its input dimension (${len}) is not a multiple of ${m}, so ${p.pattern} groups do not fit`);
          continue;
        }
        pruned = gpt?.get(layer.name) ?? values.slice();
        if (!gpt?.has(layer.name)) pruneNM(pruned, shape, layout, n, m);
      } else {
        pruned = new Float32Array(values.length);
        const s = counts ? counts[i] / values.length : p.sparsity!;
        const layerNorms = norms?.get(layer.name);
        const reconstructed = gpt?.get(layer.name);
        if (reconstructed) pruned = reconstructed;
        else if (layerNorms) {
          pruned.set(values);
          wandaPrune(pruned, shape, nmLayout(layer), layerNorms, s, convGroups(model, layer));
        } else if (scores) {
          magnitudePrune(scores[i], sorted[i], s, pruned);
          for (let j = 0; j < pruned.length; j++) pruned[j] = pruned[j] === 0 ? 0 : values[j];
        } else magnitudePrune(values, sorted[i], s, pruned);
      }
      replaceTensorData(model.graph, layer.weight.name, pruned);
      const zeros = zerosOf(pruned);
      report.layers.push({ layer: layer.name, op: layer.op, weight: layer.weight.name, shape, params: values.length, zeros, zerosBefore: zerosBefore[i], sparsity: zeros / values.length });
      report.masks.push({ layer: layer.name, weight: layer.weight.name, shape, kept: keptMask(pruned) });
      ctx.progress?.((i + 1) / targets.length, `pruned ${layer.name}`);
    }
    if (report.layers.length === 0) throw new InputError(model.file, `no layer could be pruned with --pattern ${p.pattern}`);
    return report;
  },
};
