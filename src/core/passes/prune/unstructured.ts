import { CancelledError } from '../../../protocol/rpc';
import { magnitudePrune, sortedMagnitudes } from '../../analysis/sensitivity';
import { InputError } from '../../errors';
import { replaceTensorData } from '../../formats/onnx/edit';
import type { OnnxModel } from '../../formats/onnx/model';
import type { Layer } from '../../model/layers';
import type { Pass, PassContext, PassReport, ParamSpec } from '../pass';

/** Parsed parameters of the prune pass. */
export interface PruneOptions {
  /** Fraction of each pruned weight to zero (0..1); implied by `pattern` when that is given. */
  sparsity?: number;
  method: 'magnitude';
  scope: 'layer' | 'global';
  /** Global scope only: bounds on each layer's sparsity. */
  minSparsity: number;
  maxSparsity: number;
  /** 'none' or 'N:M' (keep N of every M consecutive weights along the input dimension). */
  pattern: string;
  /** Layer (or weight) names to leave dense. */
  exclude: string[];
}

/** What one pruned layer ended up with. */
export interface LayerPruneSummary {
  layer: string;
  op: string;
  weight: string;
  shape: number[];
  /** Elements of the weight. */
  params: number;
  /** Zero elements after pruning (zeros already there included). */
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
}

/** The prune pass's report: per-layer summaries, plus the masks (in memory only). */
export interface PruneReport extends PassReport {
  layers: LayerPruneSummary[];
  masks: PruneMask[];
}

/** How a weight's input dimension lies in memory, for N:M groups: `outIn` = axis 1 of [O, I, ...], `inOut` = every axis but the last of [..., O]. */
export type NMLayout = 'outIn' | 'inOut';

const patternRe = /^(\d+):(\d+)$/;

/** The pass's parameter table: drives the CLI flags, the recipe schema, the wizard and the tests. */
export const pruneParams: ParamSpec[] = [
  { name: 'sparsity', type: 'number', min: 0, max: 1, placeholder: 'S', help: 'fraction of weights to zero in each pruned layer (layer scope) or overall (global scope)' },
  { name: 'method', type: 'enum', choices: ['magnitude', 'wanda', 'sparsegpt'], planned: ['wanda', 'sparsegpt'], default: 'magnitude', placeholder: 'METHOD', help: 'importance score' },
  { name: 'scope', type: 'enum', choices: ['layer', 'global', 'sensitivity'], planned: ['sensitivity'], default: 'layer', placeholder: 'SCOPE', help: 'layer: the same sparsity in every layer; global: one |w| threshold across layers' },
  { name: 'minSparsity', type: 'number', min: 0, max: 1, default: 0, placeholder: 'S', help: 'global scope: lowest sparsity of any layer' },
  { name: 'maxSparsity', type: 'number', min: 0, max: 1, default: 1, placeholder: 'S', help: 'global scope: highest sparsity of any layer' },
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
  { name: 'structured', type: 'enum', choices: ['channels'], planned: ['channels'], placeholder: 'KIND', help: 'structured pruning that removes whole channels' },
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

/** Magnitude pruning, per layer or global, or N:M along the input dimension. Edits the model's weights in place. */
export const prunePass: Pass<PruneOptions, PruneReport> = {
  name: 'prune',
  summary: 'unstructured magnitude or N:M semi-structured pruning of Conv, Gemm and MatMul weights',
  params: pruneParams,
  async apply(model, p, ctx) {
    const nm = p.pattern !== 'none' ? patternRe.exec(p.pattern) : null;
    const [n, m] = nm ? [Number(nm[1]), Number(nm[2])] : [0, 0];
    if (nm && p.sparsity !== undefined && Math.abs(p.sparsity - (1 - n / m)) > 1e-9) {
      throw new InputError(undefined, `--pattern ${p.pattern} fixes the sparsity at ${1 - n / m}; leave out --sparsity or set it to that`);
    }
    if (!nm && p.sparsity === undefined) throw new InputError(undefined, 'option --sparsity is required (a fraction between 0 and 1), unless --pattern N:M is given');
    if (p.minSparsity > p.maxSparsity) throw new InputError(undefined, `--min-sparsity ${p.minSparsity} is above --max-sparsity ${p.maxSparsity}`);
    if (p.scope !== 'global' && (p.minSparsity !== 0 || p.maxSparsity !== 1)) ctx.warnings.push('--min-sparsity and --max-sparsity apply to --scope global only; ignored');

    const layers = selectTargets(model, p.exclude, ctx);
    if (layers.length === 0) throw new InputError(model.file, 'no layer to prune: no float32 Conv, Gemm or MatMul weights left after --exclude');
    const targets: Target[] = layers.map((layer) => ({ layer, values: layer.weight.toFloat32() }));
    const zerosBefore = targets.map((t) => zerosOf(t.values));

    let counts: number[] | undefined;
    const sorted = !nm ? targets.map((t) => sortedMagnitudes(t.values)) : [];
    if (!nm && p.scope === 'global') counts = globalCounts(targets, sorted, p.sparsity!, p.minSparsity, p.maxSparsity);

    const report: PruneReport = { pass: 'prune', params: { ...p, sparsity: p.sparsity ?? 1 - n / m } as unknown as PruneReport['params'], layers: [], masks: [] };
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
        pruned = values.slice();
        pruneNM(pruned, shape, layout, n, m);
      } else {
        pruned = new Float32Array(values.length);
        const s = counts ? counts[i] / values.length : p.sparsity!;
        magnitudePrune(values, sorted[i], s, pruned);
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
