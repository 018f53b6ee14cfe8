/**
 * SparseGPT (Frantar and Alistarh, 2023): prune a layer, then update its remaining weights so the layer's
 * output on calibration data moves as little as possible, min ||WX - ŴX||², using the input Hessian
 * H = 2XXᵀ/n. The weights are swept column by column (input feature by input feature) with the upper Cholesky
 * factor of H⁻¹, which turns the optimal-brain-surgeon update for one removed weight into a row of that factor.
 * Gemm and MatMul read their input's last axis; Conv is the same thing on im2col columns (each output position's
 * receptive field), one Hessian per group.
 */
import * as ort from 'onnxruntime-node';
import type { NodeProto } from 'onnx-buf';
import { CancelledError } from '../../../protocol/rpc';
import { openDataset } from '../../data';
import { topologicalOrder } from '../../formats/onnx/edit';
import type { OnnxModel } from '../../formats/onnx/model';
import type { Layer } from '../../model/layers';
import { modelInputs, openSession } from '../../runtime/session';
import { outputFloats, toOrt } from '../../runtime/tensors';
import type { Calibration, PassContext } from '../pass';

/** 2-D convolution geometry, as the Conv node and its weight give it. */
export interface ConvGeometry {
  /** Kernel height and width. */
  kernel: [number, number];
  strides: [number, number];
  /** [top, left, bottom, right]. */
  pads: [number, number, number, number];
  dilations: [number, number];
  group: number;
  /** ONNX auto_pad: NOTSET (use pads), VALID, SAME_UPPER or SAME_LOWER. */
  autoPad: string;
}

/** Output size and the begin pads actually used, per spatial axis, for an input of `size` [H, W]. */
export function convOutput(g: ConvGeometry, size: [number, number]): { out: [number, number]; padBegin: [number, number] } {
  const out: [number, number] = [0, 0];
  const padBegin: [number, number] = [0, 0];
  for (const a of [0, 1] as const) {
    const span = g.dilations[a] * (g.kernel[a] - 1) + 1;
    if (g.autoPad === 'SAME_UPPER' || g.autoPad === 'SAME_LOWER') {
      out[a] = Math.ceil(size[a] / g.strides[a]);
      const total = Math.max(0, (out[a] - 1) * g.strides[a] + span - size[a]);
      padBegin[a] = g.autoPad === 'SAME_UPPER' ? Math.floor(total / 2) : Math.ceil(total / 2);
    } else {
      const [begin, end] = g.autoPad === 'VALID' ? [0, 0] : [g.pads[a], g.pads[a + 2]];
      out[a] = Math.floor((size[a] + begin + end - span) / g.strides[a]) + 1;
      padBegin[a] = begin;
    }
  }
  return { out, padBegin };
}

/**
 * im2col of one sample [C, H, W] for one group of a Conv: a [positions, d] row-major matrix whose row p is the
 * receptive field of output position p (row-major over the output H x W), d = C/group x kh x kw in the weight's
 * own order (channel, then kernel row, then kernel column), zeros where the field reaches into padding. So the
 * conv output at p for output channel o of the group is the dot product of row p with row o of the weight
 * viewed as [O, d].
 */
export function im2col(x: Float32Array, chw: [number, number, number], g: ConvGeometry, group: number): { cols: Float32Array; positions: number; d: number } {
  const [c, h, w] = chw;
  const cg = c / g.group;
  const [kh, kw] = g.kernel;
  const { out, padBegin } = convOutput(g, [h, w]);
  const positions = out[0] * out[1];
  const d = cg * kh * kw;
  const cols = new Float32Array(positions * d);
  for (let oy = 0; oy < out[0]; oy++) {
    for (let ox = 0; ox < out[1]; ox++) {
      const row = (oy * out[1] + ox) * d;
      for (let ci = 0; ci < cg; ci++) {
        const plane = (group * cg + ci) * h * w;
        for (let ky = 0; ky < kh; ky++) {
          const iy = oy * g.strides[0] - padBegin[0] + ky * g.dilations[0];
          if (iy < 0 || iy >= h) continue;
          for (let kx = 0; kx < kw; kx++) {
            const ix = ox * g.strides[1] - padBegin[1] + kx * g.dilations[1];
            if (ix >= 0 && ix < w) cols[row + (ci * kh + ky) * kw + kx] = x[plane + iy * w + ix];
          }
        }
      }
    }
  }
  return { cols, positions, d };
}

/**
 * Adds XᵀX of `rows` row vectors of length d (row-major in `x`, from `offset`) to the upper triangle of the
 * d x d `h`. Zero entries (common after ReLU) are skipped, which is most of the work on sparse activations.
 */
export function accumulateGram(h: Float64Array, d: number, x: Float32Array, rows: number, offset = 0): void {
  for (let r = 0; r < rows; r++) {
    const base = offset + r * d;
    for (let i = 0; i < d; i++) {
      const xi = x[base + i];
      if (xi === 0) continue;
      const hi = i * d;
      for (let j = i; j < d; j++) h[hi + j] += xi * x[base + j];
    }
  }
}

/** Lower Cholesky factor of a symmetric positive-definite d x d matrix (row-major), or undefined when it is not. */
function cholesky(a: Float64Array, d: number): Float64Array | undefined {
  const l = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * d + j];
      for (let k = 0; k < j; k++) s -= l[i * d + k] * l[j * d + k];
      if (i === j) {
        if (!(s > 0)) return undefined;
        l[i * d + i] = Math.sqrt(s);
      } else l[i * d + j] = s / l[j * d + j];
    }
  }
  return l;
}

/** Inverse of a lower-triangular matrix (lower-triangular again). */
function invertLower(l: Float64Array, d: number): Float64Array {
  const inv = new Float64Array(d * d);
  for (let j = 0; j < d; j++) {
    inv[j * d + j] = 1 / l[j * d + j];
    for (let i = j + 1; i < d; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s += l[i * d + k] * inv[k * d + j];
      inv[i * d + j] = -s / l[i * d + i];
    }
  }
  return inv;
}

/**
 * The upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU), from H = LLᵀ: H⁻¹ = L⁻ᵀL⁻¹, then its own Cholesky. Undefined
 * when H is not positive definite even after damping.
 */
function inverseCholeskyUpper(h: Float64Array, d: number): Float64Array | undefined {
  const l = cholesky(h, d);
  if (!l) return undefined;
  const li = invertLower(l, d);
  // H⁻¹[i][j] = sum_k Li[k][i] Li[k][j], k >= max(i, j).
  const hinv = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < d; k++) s += li[k * d + i] * li[k * d + j];
      hinv[i * d + j] = s;
      hinv[j * d + i] = s;
    }
  }
  const l2 = cholesky(hinv, d);
  if (!l2) return undefined;
  const u = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j <= i; j++) u[j * d + i] = l2[i * d + j];
  return u;
}

/** How `sparsegptPrune` chooses what to zero. */
export interface SparseGptOptions {
  /** Elements of `w` to zero (unstructured); ignored when `nm` is given. */
  zeros?: number;
  /** Keep n of every m consecutive columns in each row. */
  nm?: [number, number];
  /** Damping as a fraction of the mean diagonal of H (default 0.01). */
  damp?: number;
  /** Columns per lazy-update block (default 128; rounded down to a multiple of m for N:M). */
  blockSize?: number;
}

/**
 * SparseGPT on one weight matrix `w` [rows, d] (row-major, rows = outputs, columns = input features), in place,
 * given H = XᵀX-proportional Gram matrix of its inputs (full symmetric or upper triangle; it is copied, not
 * changed). Dead inputs (H_ii = 0) get H_ii = 1 and their weights zeroed; then λ = damp x mean(diag H) is added.
 * The columns are swept in blocks: at each block's start the block's mask is chosen from the current weights
 * by w² / U_jj² over all its rows and columns (the block's share of `zeros`, so the total is exact), or per
 * row and group of m for N:M as the sweep reaches each group; every pruned weight's error, divided by U_jj, is
 * spread over the row's later columns along row j of U. Returns false (w unchanged) when H cannot be factored.
 */
export function sparsegptPrune(w: Float64Array, rows: number, d: number, gram: Float64Array, o: SparseGptOptions): boolean {
  const h = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = i; j < d; j++) h[i * d + j] = h[j * d + i] = gram[i * d + j];
  let mean = 0;
  for (let i = 0; i < d; i++) {
    if (h[i * d + i] === 0) {
      h[i * d + i] = 1;
      for (let r = 0; r < rows; r++) w[r * d + i] = 0;
    }
    mean += h[i * d + i] / d;
  }
  const lambda = (o.damp ?? 0.01) * mean;
  for (let i = 0; i < d; i++) h[i * d + i] += lambda;
  const u = inverseCholeskyUpper(h, d);
  if (!u) return false;

  const [n, m] = o.nm ?? [0, 0];
  const block = m ? Math.max(m, Math.floor((o.blockSize ?? 128) / m) * m) : (o.blockSize ?? 128);
  const total = Math.min(rows * d, Math.max(0, Math.round(o.zeros ?? 0)));
  const w1 = new Float64Array(rows * block);
  const err = new Float64Array(rows * block);
  const mask = new Uint8Array(rows * block);
  for (let i1 = 0; i1 < d; i1 += block) {
    const i2 = Math.min(d, i1 + block);
    const count = i2 - i1;
    for (let r = 0; r < rows; r++) for (let j = 0; j < count; j++) w1[r * count + j] = w[r * d + i1 + j];
    mask.fill(0);
    if (!m) {
      // This block's share of the zeros, by cumulative rounding, so the blocks add up to exactly `total`.
      const k = Math.round((total * i2) / d) - Math.round((total * i1) / d);
      if (k > 0) {
        const score = new Float64Array(rows * count);
        for (let r = 0; r < rows; r++) for (let j = 0; j < count; j++) score[r * count + j] = (w1[r * count + j] / u[(i1 + j) * d + i1 + j]) ** 2;
        const order = Array.from({ length: rows * count }, (_, e) => e).sort((a, b) => score[a] - score[b] || a - b);
        for (let e = 0; e < k; e++) mask[order[e]] = 1;
      }
    }
    for (let j = 0; j < count; j++) {
      const ujj = u[(i1 + j) * d + i1 + j];
      if (m && j % m === 0) {
        // N:M: the group's mask from the weights as updated so far (the paper's choice, not the original |w|).
        for (let r = 0; r < rows; r++) {
          const idx = Array.from({ length: m }, (_, t) => j + t);
          const s = (t: number) => (w1[r * count + t] / u[(i1 + t) * d + i1 + t]) ** 2;
          idx.sort((a, b) => s(a) - s(b) || a - b);
          for (let t = 0; t < m - n; t++) mask[r * count + idx[t]] = 1;
        }
      }
      for (let r = 0; r < rows; r++) {
        const at = r * count + j;
        const q = mask[at] ? 0 : w1[at];
        const e = (w1[at] - q) / ujj;
        err[at] = e;
        w1[at] = q;
        if (e === 0) continue;
        const urow = (i1 + j) * d + i1;
        for (let t = j + 1; t < count; t++) w1[r * count + t] -= e * u[urow + t];
      }
    }
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < count; j++) w[r * d + i1 + j] = w1[r * count + j];
      // The lazy update of every later column from this block's errors: W[:, i2:] -= Err · U[i1:i2, i2:].
      for (let j = 0; j < count; j++) {
        const e = err[r * count + j];
        if (e === 0) continue;
        const urow = (i1 + j) * d;
        for (let t = i2; t < d; t++) w[r * d + t] -= e * u[urow + t];
      }
    }
  }
  return true;
}

/** A layer SparseGPT will reconstruct: its weight, the zeros it should end with, and where its input comes from. */
export interface GptTarget {
  layer: Layer;
  values: Float32Array;
  /** Elements to zero (unstructured); unused for N:M. */
  zeros: number;
}

/** How one layer's weight maps to SparseGPT matrices, and the input that feeds it. */
interface Plan {
  target: GptTarget;
  node: NodeProto;
  tensor: string;
  /** 'outIn': [O, d] rows contiguous (Gemm transB=1, Conv); 'inOut': [d, O] (MatMul, Gemm transB=0). */
  layout: 'outIn' | 'inOut';
  rows: number;
  d: number;
  conv?: ConvGeometry;
  /** Conv with N:M: column order (kernel position, then channel) so m consecutive columns are m channels. */
  perm?: Int32Array;
}

/**
 * The largest input dimension SparseGPT takes on: a layer holds about five d x d Float64 matrices at once
 * (its Gram matrix, the damped copy and the factorisations: some 360 MB at 3072) and the factorisations are
 * O(d³) in plain JS. Wider layers fall back to magnitude with a warning.
 */
const maxColumns = 3072;

/** The graph node of a layer: by name, or by the `Op_index` name OnnxModel gives unnamed nodes. */
export function nodeOf(model: OnnxModel, layer: Layer): NodeProto | undefined {
  const named = model.graph.node.find((n) => n.name === layer.name);
  if (named) return named;
  const m = /^(\w+)_(\d+)'*$/.exec(layer.name);
  const n = m ? model.graph.node[Number(m[2])] : undefined;
  return n && n.opType === m![1] && !n.name ? n : undefined;
}

function planFor(model: OnnxModel, t: GptTarget, nm: [number, number] | undefined): Plan | string {
  const node = nodeOf(model, t.layer);
  if (!node) return 'its node was not found';
  const ints = (name: string) => node.attribute.find((a) => a.name === name)?.ints.map(Number);
  const int = (name: string, dflt: number) => Number(node.attribute.find((a) => a.name === name)?.i ?? dflt);
  const shape = t.layer.weight.shape;
  const count = t.values.length;
  if (node.opType === 'Conv') {
    if (shape.length !== 4) return `SparseGPT handles 2-D Conv only; this weight is ${shape.length}-D`;
    const group = int('group', 1) || 1;
    const padBytes = node.attribute.find((a) => a.name === 'auto_pad')?.s;
    const autoPad = padBytes?.length ? new TextDecoder().decode(padBytes) : 'NOTSET';
    const p = ints('pads');
    const conv: ConvGeometry = {
      kernel: [shape[2], shape[3]],
      strides: (ints('strides')?.length === 2 ? ints('strides') : [1, 1]) as [number, number],
      pads: (p?.length === 4 ? p : [0, 0, 0, 0]) as [number, number, number, number],
      dilations: (ints('dilations')?.length === 2 ? ints('dilations') : [1, 1]) as [number, number],
      group,
      autoPad,
    };
    const d = shape[1] * shape[2] * shape[3];
    let perm: Int32Array | undefined;
    if (nm) {
      // Weight columns are (channel, ky, kx); N:M groups run along channels at one kernel position.
      const post = shape[2] * shape[3];
      perm = new Int32Array(d);
      for (let s = 0; s < post; s++) for (let c = 0; c < shape[1]; c++) perm[s * shape[1] + c] = c * post + s;
    }
    return { target: t, node, tensor: node.input[0], layout: 'outIn', rows: shape[0], d, conv, perm };
  }
  if (node.opType === 'Gemm') {
    if (int('transA', 0)) return 'Gemm with transA=1 is not handled yet';
    const transB = int('transB', 0) === 1;
    return transB ? { target: t, node, tensor: node.input[0], layout: 'outIn', rows: shape[0], d: count / shape[0] } : { target: t, node, tensor: node.input[0], layout: 'inOut', rows: shape.at(-1)!, d: count / shape.at(-1)! };
  }
  if (node.opType === 'MatMul') {
    // A right operand [K, N] has its outputs on the last axis; mnist-8's [16,4,4,10] reaches MatMul through a
    // Reshape to [256, 10], so every leading axis is K. Fed directly, a weight of more than 2-D is a batched MatMul.
    if (shape.length < 2 || t.layer.outputAxis !== shape.length - 1) return 'its weight is the left operand of MatMul';
    if (node.input[1] === t.layer.weight.name && shape.length !== 2) return `a batched (${shape.length}-D) MatMul weight is not handled`;
    return { target: t, node, tensor: node.input[0], layout: 'inOut', rows: shape.at(-1)!, d: count / shape.at(-1)! };
  }
  return `op ${node.opType} is not handled`;
}

/** The rows of group `g` of a weight as a [rowsPerGroup, d] Float64 matrix, columns permuted by `perm`. */
function matrixOf(plan: Plan, values: Float32Array, g: number, groups: number): Float64Array {
  const rows = plan.rows / groups;
  const { d } = plan;
  const out = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    const o = g * rows + r;
    for (let c = 0; c < d; c++) {
      const src = plan.perm ? plan.perm[c] : c;
      out[r * d + c] = plan.layout === 'outIn' ? values[o * d + src] : values[src * plan.rows + o];
    }
  }
  return out;
}

function writeBack(plan: Plan, values: Float32Array, mat: Float64Array, g: number, groups: number): void {
  const rows = plan.rows / groups;
  const { d } = plan;
  for (let r = 0; r < rows; r++) {
    const o = g * rows + r;
    for (let c = 0; c < d; c++) {
      const dst = plan.perm ? plan.perm[c] : c;
      values[plan.layout === 'outIn' ? o * d + dst : dst * plan.rows + o] = mat[r * d + c];
    }
  }
}

/** Permutes the rows and columns of a symmetric upper-triangle Gram matrix into `perm` order (full matrix out). */
function permuteGram(h: Float64Array, d: number, perm: Int32Array): Float64Array {
  const out = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      const [a, b] = perm[i] <= perm[j] ? [perm[i], perm[j]] : [perm[j], perm[i]];
      out[i * d + j] = h[a * d + b];
    }
  }
  return out;
}

/**
 * SparseGPT for every target it can handle: the layers in topological order, each one's Hessian collected by
 * running the calibration data through the model with the layers before it already pruned (their new weights
 * fed as graph inputs to one session), so each layer compensates for the error upstream of it. Returns the
 * pruned weights by layer name; layers it cannot handle are absent, with a warning, and the caller prunes them
 * by magnitude. One pass over the calibration data per layer.
 */
export async function sparsegptWeights(model: OnnxModel, targets: GptTarget[], o: { damp: number; nm?: [number, number] }, calib: Calibration, ctx: PassContext): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  const order = new Map(topologicalOrder(model.graph).map((n, i) => [n, i]));
  const plans: Plan[] = [];
  for (const t of targets) {
    const plan = planFor(model, t, o.nm);
    if (typeof plan === 'string') ctx.warnings.push(`layer '${t.layer.name}' pruned by magnitude instead of SparseGPT: ${plan}`);
    else if (plan.d > maxColumns) ctx.warnings.push(`layer '${t.layer.name}' pruned by magnitude instead of SparseGPT: ${plan.d} input features is more than the ${maxColumns} its Hessian is built for`);
    else plans.push(plan);
  }
  if (plans.length === 0) return out;
  plans.sort((a, b) => (order.get(a.node) ?? 0) - (order.get(b.node) ?? 0));
  const inputNames = new Set(model.graph.input.map((i) => i.name));
  const fetch = [...new Set(plans.map((p) => p.tensor).filter((t) => !inputNames.has(t)))];
  const weightNames = plans.map((p) => p.target.layer.weight.name);
  const session = await openSession(model, { ep: calib.ep ?? 'auto', weightInputs: weightNames, extraOutputs: fetch, dynamicBatch: true });
  for (const w of session.warnings) if (!ctx.warnings.includes(w)) ctx.warnings.push(w);
  try {
    const weights: Record<string, ort.Tensor> = { ...session.weightFeeds };
    const perRun = session.batched ? 32 : 1;
    for (let li = 0; li < plans.length; li++) {
      const plan = plans[li];
      const { layer } = plan.target;
      ctx.progress?.(li / plans.length, `SparseGPT: collecting the inputs of ${layer.name}`);
      const groups = plan.conv?.group ?? 1;
      const { d } = plan;
      const grams = Array.from({ length: groups }, () => new Float64Array(d * d));
      let n = 0;
      const dataset = await openDataset(calib.data, modelInputs(model), { limit: calib.limit, seed: calib.seed, shapes: calib.shapes, randomCount: calib.limit ?? 64 });
      if (li === 0) for (const w of dataset.warnings) if (!ctx.warnings.includes(w)) ctx.warnings.push(w);
      for await (const batch of dataset.batches(perRun, ctx.signal)) {
        if (ctx.signal?.aborted) throw new CancelledError();
        const feeds = Object.fromEntries(Object.entries(batch.inputs).map(([k, v]) => [k, toOrt(v)]));
        const t = inputNames.has(plan.tensor) ? feeds[plan.tensor] : (await session.session.run({ ...feeds, ...weights }, [plan.tensor]))[plan.tensor];
        const data = outputFloats(t);
        const dims = t.dims.map(Number);
        if (plan.conv) {
          const [batchN, c, h, w] = dims;
          const per = c * h * w;
          for (let s = 0; s < batchN; s++) {
            const sample = data.subarray(s * per, (s + 1) * per);
            for (let g = 0; g < groups; g++) {
              const { cols, positions } = im2col(sample, [c, h, w], plan.conv, g);
              accumulateGram(grams[g], d, cols, positions);
              if (g === 0) n += positions;
            }
          }
        } else {
          if (dims.at(-1) !== d) throw new Error(`SparseGPT: layer '${layer.name}' input '${plan.tensor}' has ${dims.at(-1)} features, its weight ${d}`);
          const rows = data.length / d;
          accumulateGram(grams[0], d, data, rows);
          n += rows;
        }
      }
      const values = plan.target.values.slice();
      let ok = n > 0;
      const zerosPerGroup = (g: number) => Math.round((plan.target.zeros * (g + 1)) / groups) - Math.round((plan.target.zeros * g) / groups);
      for (let g = 0; g < groups && ok; g++) {
        if (ctx.signal?.aborted) throw new CancelledError();
        const gram = grams[g];
        // 2/n scaling, as H = 2XXᵀ/n; the damping is relative, so only the conditioning depends on it.
        for (let i = 0; i < gram.length; i++) gram[i] *= 2 / n;
        const h = plan.perm ? permuteGram(gram, d, plan.perm) : gram;
        const mat = matrixOf(plan, values, g, groups);
        ok = sparsegptPrune(mat, plan.rows / groups, d, h, { zeros: zerosPerGroup(g), nm: o.nm, damp: o.damp });
        if (ok) writeBack(plan, values, mat, g, groups);
      }
      if (!ok) {
        ctx.warnings.push(`layer '${layer.name}' pruned by magnitude instead of SparseGPT: its input Hessian could not be factored (try a larger --damp)`);
        continue;
      }
      out.set(layer.name, values);
      const feed = weights[layer.weight.name];
      weights[layer.weight.name] = new ort.Tensor('float32', values, feed.dims);
    }
  } finally {
    await session.release().catch(() => {});
  }
  return out;
}
