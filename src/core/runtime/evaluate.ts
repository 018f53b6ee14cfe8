import type * as ort from 'onnxruntime-node';
import { ClassificationMetrics, isClassifierOutput, jsonNumber, latencyStats, OutputComparison, type OutputTensor } from '../analysis/metrics';
import { openDataset } from '../data';
import type { Batch } from '../data/types';
import { CancelledError } from '../../protocol/rpc';
import { InputError } from '../errors';
import { detectFormat } from '../formats/detect';
import { OnnxModel } from '../formats/onnx/model';
import type { EpName } from './ep';
import { measureLatency, modelInputs, openSession, type ModelSession } from './session';
import { outputFloats, toOrt } from './tensors';

/** What `whittle eval` takes. */
export interface EvalParams {
  model: string;
  /** A --data SPEC (DESIGN.md section 7). */
  data: string;
  /** Another model to compare against on the same data. */
  reference?: string;
  ep?: EpName;
  limit?: number;
  seed?: number;
  shapes?: Record<string, number[]>;
  /** Samples per run when the model takes batches (default 32). */
  batch?: number;
  threads?: number;
  /** TF.js: the output to score (default: the last). */
  output?: string;
}

/** Per-output comparison with the reference; infinities as the strings 'inf'/'-inf' (JSON has none). */
export interface OutputFigures {
  cosine: number | string | null;
  sqnrDb: number | string | null;
  maxAbs: number | string | null;
  meanAbs: number | string | null;
  nonFinite: number;
}

/** What `whittle eval` returns (DESIGN.md section 7), plus top5, per-output figures, batch and data facts. */
export interface EvalResult {
  samples: number;
  accuracy?: number;
  top5?: number;
  top1Agreement?: number;
  kl?: number;
  /** Cosine similarity of the first output with the reference's. */
  cosine?: number | string | null;
  /** SQNR (dB) of the first output against the reference's; 'inf' when identical. */
  sqnrDb?: number | string | null;
  outputs?: Record<string, OutputFigures>;
  latencyMs: { median: number; p90: number; runs: number };
  ep: string;
  /** How `auto` chose the provider (absent or slower providers). */
  epNotes: string[];
  referenceEp?: string;
  batchSize: number;
  data: string;
  warnings: string[];
  /** TF.js: the output that was scored. */
  output?: string;
}

/** Progress of a job: fraction done when known, and what it is doing. */
export type Progress = (fraction: number | undefined, message: string) => void;

/**
 * Runs a model over a dataset and measures it: accuracy when there are labels, agreement, KL, cosine and SQNR
 * against a reference model when one is given, and warm latency. Samples stream in batches; `signal` stops
 * it between batches (the worker that runs it is terminated for an immediate stop).
 */
export async function evaluate(p: EvalParams, signal?: AbortSignal, progress: Progress = () => {}): Promise<EvalResult> {
  if (detectFormat(p.model) === 'tfjs') return (await import('./evaluateTfjs')).evaluateTfjs(p, signal, progress);
  const model = OnnxModel.open(p.model);
  const reference = p.reference ? OnnxModel.open(p.reference) : undefined;
  const sessions: ModelSession[] = [];
  try {
    // The data first: a bad --data is reported before any provider is probed.
    const dataset = await openDataset(p.data, modelInputs(model), { limit: p.limit, seed: p.seed, shapes: p.shapes });
    const main = await openSession(model, { ep: p.ep, dynamicBatch: true, threads: p.threads });
    sessions.push(main);
    const ref = reference ? await openSession(reference, { ep: p.ep, dynamicBatch: true, threads: p.threads }) : undefined;
    if (ref) sessions.push(ref);
    if (ref) checkSameInterface(main, ref, p);
    const batchSize = main.batched && (!ref || ref.batched) ? Math.max(1, p.batch ?? 32) : 1;
    const warnings = [...dataset.warnings, ...main.warnings, ...(ref?.warnings.map((w) => `reference: ${w}`) ?? [])];
    const classify = new ClassificationMetrics();
    const compare = new OutputComparison();
    const firstOutput = main.outputs[0];
    let classifier: boolean | undefined;
    let done = 0;
    let lastReport = 0;
    let firstBatch: Batch | undefined;
    for await (const batch of dataset.batches(batchSize, signal)) {
      if (signal?.aborted) throw new CancelledError();
      firstBatch ??= batch;
      const feeds = Object.fromEntries(Object.entries(batch.inputs).map(([k, v]) => [k, toOrt(v)]));
      const out = await main.session.run(feeds);
      const refOut = ref ? await ref.session.run(feeds) : undefined;
      const cand = tensorOf(out[firstOutput]);
      classifier ??= isClassifierOutput(cand.dims);
      if (classifier) classify.add(cand, refOut ? tensorOf(refOut[ref!.outputs[0]]) : undefined, batch.labels);
      if (refOut) for (const name of main.outputs) if (refOut[name]) compare.add(name, tensorOf(out[name]), tensorOf(refOut[name]));
      done += batch.count;
      if (performance.now() - lastReport > 250) {
        lastReport = performance.now();
        progress(done / dataset.size, `evaluated ${done} of ${dataset.size} samples`);
      }
    }
    if (!firstBatch) throw new InputError(p.data, 'the dataset has no samples');
    if (!classifier && dataset.hasLabels) warnings.push(`output '${firstOutput}' does not look like class scores, so labels were not used for accuracy`);

    progress(undefined, 'measuring latency');
    const one = Object.fromEntries(Object.entries(firstBatch.inputs).map(([k, v]) => [k, toOrt(sliceFirst(v, main.batched))]));
    const latency = latencyStats(await measureLatency(main.session, one, { signal }));
    if (signal?.aborted) throw new CancelledError();

    const c = classify.result();
    const result: EvalResult = {
      samples: done,
      ...(classifier && c.accuracy !== undefined ? { accuracy: c.accuracy } : {}),
      ...(classifier && c.top5 !== undefined ? { top5: c.top5 } : {}),
      ...(classifier && c.top1Agreement !== undefined ? { top1Agreement: c.top1Agreement } : {}),
      ...(classifier && c.kl !== undefined ? { kl: c.kl } : {}),
      latencyMs: { median: round(latency.median), p90: round(latency.p90), runs: latency.runs },
      ep: main.ep,
      epNotes: main.notes,
      ...(ref ? { referenceEp: ref.ep } : {}),
      batchSize,
      data: dataset.description,
      warnings,
    };
    if (ref) Object.assign(result, comparisonFigures(compare, firstOutput));
    return result;
  } finally {
    for (const s of sessions) await s.release().catch(() => {});
    model.close();
    reference?.close();
  }
}

/**
 * Per-output figures against the reference (JSON-safe numbers), with the scored output's cosine and SQNR
 * lifted to the top level as `whittle eval` reports them.
 */
export function comparisonFigures(compare: OutputComparison, scored: string): Pick<EvalResult, 'outputs' | 'cosine' | 'sqnrDb'> {
  const outputs = Object.fromEntries(
    Object.entries(compare.result()).map(([name, f]) => [name, { cosine: jsonNumber(f.cosine), sqnrDb: jsonNumber(f.sqnrDb), maxAbs: jsonNumber(f.maxAbs), meanAbs: jsonNumber(f.meanAbs), nonFinite: f.nonFinite }]),
  );
  const first = outputs[scored];
  return { outputs, ...(first ? { cosine: first.cosine, sqnrDb: first.sqnrDb } : {}) };
}

/** Milliseconds to the microsecond. */
export function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function tensorOf(t: ort.Tensor): OutputTensor {
  return { data: outputFloats(t), dims: t.dims };
}

/** The reference must take the same inputs and give the same outputs, or the comparison means nothing. */
function checkSameInterface(a: ModelSession, b: ModelSession, p: EvalParams): void {
  const names = (s: ModelSession) => s.inputs.map((i) => i.name).sort().join(', ');
  if (names(a) !== names(b)) throw new InputError(p.reference, `the reference takes inputs [${names(b)}], the model takes [${names(a)}]`);
  const missing = a.outputs.filter((o) => !b.outputs.includes(o));
  if (missing.length === a.outputs.length) throw new InputError(p.reference, `the reference has none of the model's outputs (${a.outputs.join(', ')})`);
}

/** The first sample of a batch, keeping the batch axis (for latency at batch 1). */
export function sliceFirst(t: Batch['inputs'][string], batched = true): Batch['inputs'][string] {
  const n = t.shape[0];
  if (!batched || !n || n === 1) return t;
  const per = t.data.length / n;
  return { ...t, shape: [1, ...t.shape.slice(1)], data: t.data.subarray(0, per) as typeof t.data };
}
