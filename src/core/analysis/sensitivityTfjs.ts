import { ClassificationMetrics, isClassifierOutput } from './metrics';
import { fakeQuantize, magnitudePrune, sortedMagnitudes, VariantScore } from './sensitivity';
import { openDataset, type HostTensor } from '../data';
import { InputError } from '../errors';
import { TfjsModel } from '../formats/tfjs/read';
import { encodeTfjs } from '../formats/tfjs/write';
import type { LayerKind } from '../model/layers';
import type { Progress } from '../runtime/evaluate';
import { loadTfjs, type TfjsRunner } from '../runtime/tfjs';
import { CancelledError } from '../../protocol/rpc';
import type { AnalyzeParams, AnalyzeResult, LayerDoneEvent, LayerSensitivity, SweepPoint } from '../../protocol/analysis';

/** Layers whose main weight the sweeps perturb (as for ONNX). */
const studiedKinds = new Set<LayerKind>(['conv', 'convTranspose', 'gemm', 'matmul', 'embedding']);

/** One cached batch: feeds in the model's input order, labels, and the unmodified model's scored output. */
interface Prepared {
  feeds: HostTensor[];
  labels?: Int32Array;
  base: Float32Array;
  dims: readonly number[];
}

/**
 * Per-layer sensitivity of a TF.js model, with the same levels, metrics and result as the ONNX sweep
 * (sensitivity.ts): each studied layer alone is magnitude-pruned and fake-quantized (symmetric, per output
 * channel) and the model, reloaded from memory with that one weight replaced, is measured against the
 * unmodified one on the same cached batches.
 */
export async function sweepLayersTfjs(
  p: AnalyzeParams & { output?: string },
  levels: { sparsities: number[]; bits: number[]; limit: number; batch: number },
  signal?: AbortSignal,
  onLayer?: (e: LayerDoneEvent) => void,
  progress: Progress = () => {},
): Promise<AnalyzeResult> {
  const model = TfjsModel.open(p.model);
  const warnings: string[] = [];
  const exclude = new Set(p.exclude ?? []);
  const unknown = [...exclude].filter((n) => !model.layers().some((l) => l.name === n));
  if (unknown.length) warnings.push(`--exclude names no layer: ${unknown.join(', ')}`);
  const layers = model.layers().filter((l) => studiedKinds.has(l.kind) && !exclude.has(l.name) && l.weight.dtype === 1);
  if (!layers.length) throw new InputError(p.model, 'the model has no layer whose weights can be swept (float Conv, Dense, MatMul or Embedding weights)');
  const dataset = await openDataset(p.data, model.inputs(), { limit: levels.limit, seed: p.seed, shapes: p.shapes, randomCount: levels.limit });
  warnings.push(...dataset.warnings);
  const base = await loadTfjs(model, { output: p.output });
  warnings.push(...base.notes, ...base.backend.warnings);
  const runners: TfjsRunner[] = [base];
  try {
    const cached: Prepared[] = [];
    for await (const batch of dataset.batches(levels.batch, signal)) {
      if (signal?.aborted) throw new CancelledError();
      const feeds = base.inputs.map((name, i) => batch.inputs[name] ?? Object.values(batch.inputs)[i]);
      const out = (await base.run(feeds))[base.scored];
      cached.push({ feeds, labels: batch.labels, base: out.data, dims: out.dims });
    }
    if (!cached.length) throw new InputError(p.data, 'the dataset has no samples');
    const samples = cached.reduce((a, b) => a + b.dims[0], 0);
    const classifier = isClassifierOutput(cached[0].dims);
    const useLabels = classifier && dataset.hasLabels;
    let baseAccuracy: number | undefined;
    if (useLabels) {
      const m = new ClassificationMetrics();
      for (const b of cached) m.add({ data: b.base, dims: b.dims }, undefined, b.labels);
      baseAccuracy = m.result().accuracy;
    }
    const metricName = useLabels ? 'accuracy drop' : classifier ? '1 - top-1 agreement' : '1 - cosine';
    const scored = base.outputs[base.scored];
    if (!classifier && dataset.hasLabels) warnings.push(`output '${scored}' does not look like class scores, so labels were not used`);

    const measure = async (name: string, values: Float32Array): Promise<SweepPoint> => {
      const enc = encodeTfjs(model, { values: new Map([[name, values]]) });
      const r = await loadTfjs(model, { output: p.output, override: { weightSpecs: enc.specs, weightData: enc.data.slice().buffer } });
      try {
        const score = new VariantScore(classifier, useLabels);
        for (const b of cached) {
          if (signal?.aborted) throw new CancelledError();
          score.add((await r.run(b.feeds))[r.scored].data, b.base, b.dims, b.labels);
        }
        return score.point(baseAccuracy);
      } finally {
        r.dispose();
      }
    };
    const unchanged = (): SweepPoint => ({ metric: 0, cosine: 1, ...(classifier ? { top1Agreement: 1, kl: 0 } : {}), ...(useLabels ? { accuracy: baseAccuracy } : {}) });

    const total = layers.length * (levels.sparsities.length + levels.bits.length);
    let done = 0;
    let lastReport = 0;
    const tick = (layer: string) => {
      done++;
      if (performance.now() - lastReport < 250 && done < total) return;
      lastReport = performance.now();
      progress(done / total, `layer ${layer}: ${done} of ${total} variants`);
    };
    const results: LayerSensitivity[] = [];
    for (const layer of layers) {
      const ref = layer.weight;
      const original = ref.toFloat32();
      const variant = new Float32Array(original.length);
      const entry: LayerSensitivity = { name: layer.name, op: layer.op, params: ref.count, score: 0 };
      if (levels.sparsities.length) {
        const sorted = sortedMagnitudes(original);
        entry.prune = [];
        for (const sparsity of levels.sparsities) {
          const changed = magnitudePrune(original, sorted, sparsity, variant);
          entry.prune.push({ sparsity, ...(changed === 0 ? unchanged() : await measure(ref.name, variant)) });
          tick(layer.name);
        }
      }
      if (levels.bits.length) {
        entry.quant = [];
        for (const bits of levels.bits) {
          const changed = fakeQuantize(original, ref.shape, layer.outputAxis, bits, variant);
          entry.quant.push({ bits, ...(changed === 0 ? unchanged() : await measure(ref.name, variant)) });
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
      ep: `tfjs-${base.backend.backend}`,
      data: dataset.description,
      warnings,
    };
  } finally {
    for (const r of runners) r.dispose();
  }
}
