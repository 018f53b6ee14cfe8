import type * as ort from 'onnxruntime-node';
import { CancelledError } from '../../../protocol/rpc';
import { openDataset } from '../../data';
import type { OnnxModel } from '../../formats/onnx/model';
import type { Layer } from '../../model/layers';
import { modelInputs, openSession } from '../../runtime/session';
import { outputFloats, toOrt } from '../../runtime/tensors';
import { nodeOf } from './sparsegpt';
import type { Calibration, PassContext } from '../pass';

/** Where a layer's input features lie: the activation tensor to fetch and the axis that indexes features. */
interface InputSite {
  layer: Layer;
  tensor: string;
  /** 'channel1': axis 1 of [N, C, ...] (Conv); 'last': the last axis of [..., K] (Gemm, MatMul). */
  axis: 'channel1' | 'last';
}

/** The activation feeding a layer's input features, or the reason Wanda cannot use it. */
function inputSite(model: OnnxModel, layer: Layer): InputSite | string {
  const node = nodeOf(model, layer);
  if (!node) return 'its node was not found';
  const int = (name: string) => Number(node.attribute.find((a) => a.name === name)?.i ?? 0);
  if (node.opType === 'Conv') return { layer, tensor: node.input[0], axis: 'channel1' };
  if (node.opType === 'Gemm') return int('transA') ? 'Gemm with transA=1 is not handled yet' : { layer, tensor: node.input[0], axis: 'last' };
  // A MatMul weight on the right ([K, N], or a Reshape'd [..., N]: outputs on its last axis) multiplies input[0]'s last axis.
  if (node.opType === 'MatMul') return layer.outputAxis === layer.weight.shape.length - 1 && layer.weight.shape.length >= 2 ? { layer, tensor: node.input[0], axis: 'last' } : 'its weight is the left operand of MatMul';
  return `op ${node.opType} is not handled`;
}

/**
 * Per-input-feature L2 norms of each layer's input over the calibration data: ||x_j||_2 over every sample and
 * position (N, H, W for Conv; every leading axis for Gemm and MatMul). Layers Wanda cannot handle are absent
 * from the map, with a warning. The model is run unmodified, with the inputs fetched as extra outputs.
 */
export async function inputNorms(model: OnnxModel, layers: Layer[], calib: Calibration, ctx: PassContext): Promise<Map<string, Float64Array>> {
  const sites: InputSite[] = [];
  for (const l of layers) {
    const site = inputSite(model, l);
    if (typeof site === 'string') ctx.warnings.push(`layer '${l.name}' pruned by magnitude instead of Wanda: ${site}`);
    else sites.push(site);
  }
  const out = new Map<string, Float64Array>();
  if (sites.length === 0) return out;
  const inputNames = new Set(model.graph.input.map((i) => i.name));
  const fetch = [...new Set(sites.map((s) => s.tensor).filter((t) => !inputNames.has(t)))];
  const dataset = await openDataset(calib.data, modelInputs(model), { limit: calib.limit, seed: calib.seed, shapes: calib.shapes, randomCount: calib.limit ?? 64 });
  for (const w of dataset.warnings) if (!ctx.warnings.includes(w)) ctx.warnings.push(w);
  const session = await openSession(model, { ep: calib.ep ?? 'auto', extraOutputs: fetch, dynamicBatch: true });
  try {
    const sums = new Map<string, Float64Array>();
    const perRun = session.batched ? 64 : 1;
    for await (const batch of dataset.batches(perRun, ctx.signal)) {
      if (ctx.signal?.aborted) throw new CancelledError();
      const feeds = Object.fromEntries(Object.entries(batch.inputs).map(([k, v]) => [k, toOrt(v)]));
      const got: Record<string, ort.Tensor> = fetch.length ? await session.session.run(feeds, fetch) : {};
      for (const site of sites) {
        const t = got[site.tensor] ?? feeds[site.tensor];
        const data = outputFloats(t);
        const dims = t.dims;
        const features = site.axis === 'channel1' ? dims[1] : dims[dims.length - 1];
        const inner = site.axis === 'channel1' ? dims.slice(2).reduce((a, b) => a * b, 1) : 1;
        let sum = sums.get(site.tensor);
        if (!sum) sums.set(site.tensor, (sum = new Float64Array(features)));
        for (let i = 0; i < data.length; i++) {
          const j = Math.floor(i / inner) % features;
          sum[j] += data[i] * data[i];
        }
      }
    }
    for (const site of sites) out.set(site.layer.name, sums.get(site.tensor)!.map(Math.sqrt));
  } finally {
    await session.release().catch(() => {});
  }
  return out;
}

/**
 * Wanda pruning of one weight in place: score |w_ij| x ||x_j||, and in every output's comparison group (the
 * weights that feed one output channel) zero the round(sparsity x group size) lowest scores, ties by position.
 * `layout` is where the input features lie: 'outIn' = [O, I/groups, ...] (Conv, Gemm transB=1), 'inOut' =
 * [..., O] flattened to [K, O] (MatMul, Gemm transB=0). For a grouped Conv, output o reads input channels of
 * its own group.
 */
export function wandaPrune(weights: Float32Array, shape: readonly number[], layout: 'outIn' | 'inOut', norms: Float64Array, sparsity: number, groups = 1): void {
  const count = weights.length;
  let rows: number, len: number, post: number;
  if (layout === 'outIn') [rows, len, post] = [shape[0] ?? 1, shape[1] ?? 1, count / ((shape[0] ?? 1) * (shape[1] ?? 1))];
  else [rows, len, post] = [shape.at(-1) ?? 1, count / (shape.at(-1) ?? 1), 1];
  // In outIn each output row is a contiguous block of len * post; in inOut output q owns the column q of [K, O].
  const size = layout === 'outIn' ? len * post : len;
  const k = Math.min(size, Math.max(0, Math.round(sparsity * size)));
  if (k === 0) return;
  const idx = new Array<number>(size);
  const score = new Float64Array(count);
  const perGroup = rows / groups;
  for (let r = 0; r < rows; r++) {
    const channelBase = layout === 'outIn' ? Math.floor(r / perGroup) * len : 0;
    for (let e = 0; e < size; e++) {
      const i = layout === 'outIn' ? r * size + e : e * rows + r;
      const feature = layout === 'outIn' ? channelBase + Math.floor(e / post) : e;
      idx[e] = i;
      score[i] = Math.abs(weights[i]) * (norms[feature] ?? 0);
    }
    const order = idx.slice().sort((a, b) => score[a] - score[b] || a - b);
    for (let j = 0; j < k; j++) weights[order[j]] = 0;
  }
}
