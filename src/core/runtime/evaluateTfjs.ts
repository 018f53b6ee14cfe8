import { ClassificationMetrics, isClassifierOutput, latencyStats, OutputComparison } from '../analysis/metrics';
import { openDataset } from '../data';
import type { Batch } from '../data/types';
import { CancelledError } from '../../protocol/rpc';
import { InputError } from '../errors';
import { detectFormat } from '../formats/detect';
import { TfjsModel } from '../formats/tfjs/read';
import { comparisonFigures, round, sliceFirst, type EvalParams, type EvalResult, type Progress } from './evaluate';
import { loadTfjs, type TfjsRunner } from './tfjs';

/**
 * `whittle eval` for TF.js models: the same figures as for ONNX (accuracy, top-1 agreement, KL, cosine, SQNR,
 * warm latency), from tfjs on the wasm backend. The scored output is the last one unless `output` names another.
 */
export async function evaluateTfjs(p: EvalParams, signal?: AbortSignal, progress: Progress = () => {}): Promise<EvalResult> {
  const model = TfjsModel.open(p.model);
  if (p.reference && detectFormat(p.reference) !== 'tfjs') throw new InputError(p.reference, 'a TF.js model can only be compared with another TF.js model');
  const reference = p.reference ? TfjsModel.open(p.reference) : undefined;
  const dataset = await openDataset(p.data, model.inputs(), { limit: p.limit, seed: p.seed, shapes: p.shapes });
  const main = await loadTfjs(model, { output: p.output });
  const ref = reference ? await loadTfjs(reference, { output: p.output ?? main.outputs[main.scored] }).catch((err) => {
    main.dispose();
    throw err;
  }) : undefined;
  try {
    const r = await runTfjs(main, ref, dataset, p, signal, progress);
    return { ...r, warnings: [...main.notes, ...main.backend.warnings, ...r.warnings] };
  } finally {
    main.dispose();
    ref?.dispose();
  }
}

/** Runs one loaded model (and a reference) over a dataset; shared by eval and quantize. */
export async function runTfjs(
  main: TfjsRunner,
  ref: TfjsRunner | undefined,
  dataset: Awaited<ReturnType<typeof openDataset>>,
  p: Pick<EvalParams, 'batch' | 'data'>,
  signal?: AbortSignal,
  progress: Progress = () => {},
): Promise<EvalResult> {
  const batchSize = Math.max(1, p.batch ?? 32);
  const warnings = [...dataset.warnings];
  const classify = new ClassificationMetrics();
  const compare = new OutputComparison();
  const scoredName = main.outputs[main.scored];
  const refScored = ref ? ref.outputs.indexOf(scoredName) : -1;
  if (ref && refScored < 0) throw new InputError(undefined, `the reference has no output named '${scoredName}'`);
  let classifier: boolean | undefined;
  let done = 0;
  let lastReport = 0;
  let firstBatch: Batch | undefined;
  for await (const batch of dataset.batches(batchSize, signal)) {
    if (signal?.aborted) throw new CancelledError();
    firstBatch ??= batch;
    const feeds = main.inputs.map((name, i) => batch.inputs[name] ?? Object.values(batch.inputs)[i]);
    const out = await main.run(feeds);
    const refOut = ref ? await ref.run(feeds) : undefined;
    const cand = out[main.scored];
    classifier ??= isClassifierOutput(cand.dims);
    if (classifier) classify.add(cand, refOut ? refOut[refScored] : undefined, batch.labels);
    if (refOut) compare.add(scoredName, cand, refOut[refScored]);
    done += batch.count;
    if (performance.now() - lastReport > 250) {
      lastReport = performance.now();
      progress(done / dataset.size, `evaluated ${done} of ${dataset.size} samples`);
    }
  }
  if (!firstBatch) throw new InputError(p.data, 'the dataset has no samples');
  if (!classifier && dataset.hasLabels) warnings.push(`output '${scoredName}' does not look like class scores, so labels were not used for accuracy`);

  progress(undefined, 'measuring latency');
  const one = main.inputs.map((name, i) => sliceFirst(firstBatch!.inputs[name] ?? Object.values(firstBatch!.inputs)[i]));
  for (let i = 0; i < 3; i++) await main.run(one);
  const times: number[] = [];
  const deadline = performance.now() + 3000;
  for (let i = 0; i < 30 && (times.length < 5 || performance.now() < deadline); i++) {
    if (signal?.aborted) throw new CancelledError();
    const t0 = performance.now();
    await main.run(one);
    times.push(performance.now() - t0);
  }
  const latency = latencyStats(times);
  const c = classify.result();
  const result: EvalResult = {
    samples: done,
    ...(classifier && c.accuracy !== undefined ? { accuracy: c.accuracy } : {}),
    ...(classifier && c.top5 !== undefined ? { top5: c.top5 } : {}),
    ...(classifier && c.top1Agreement !== undefined ? { top1Agreement: c.top1Agreement } : {}),
    ...(classifier && c.kl !== undefined ? { kl: c.kl } : {}),
    latencyMs: { median: round(latency.median), p90: round(latency.p90), runs: latency.runs },
    ep: `tfjs-${main.backend.backend}`,
    epNotes: [],
    ...(ref ? { referenceEp: `tfjs-${ref.backend.backend}` } : {}),
    batchSize,
    data: dataset.description,
    warnings,
    output: scoredName,
  };
  if (ref) Object.assign(result, comparisonFigures(compare, scoredName));
  return result;
}


