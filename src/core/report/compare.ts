import * as path from 'node:path';
import { InputError } from '../errors';
import { detectFormat } from '../formats/detect';
import type { EpName } from '../runtime/ep';
import { evaluate, type Progress } from '../runtime/evaluate';
import { buildReport } from './build';
import type { ReportData } from './types';

/** How to compare two models. */
export interface CompareOptions {
  /** A --data SPEC; random inputs (with a warning) when absent. */
  data?: string;
  ep?: EpName;
  limit?: number;
  seed?: number;
  shapes?: Record<string, number[]>;
}

/**
 * Compares two ONNX models (`b` against `a`, e.g. a compressed model against its source): both are evaluated
 * on the same data, `b` with `a` as the reference, and the report shows sizes, parameters, sparsity, latency,
 * accuracy or agreement, and what changed per layer (matched by layer name).
 */
export async function compareModels(a: string, b: string, o: CompareOptions = {}, signal?: AbortSignal, progress: Progress = () => {}): Promise<ReportData> {
  for (const f of [a, b]) if (detectFormat(f) !== 'onnx') throw new InputError(f, 'Compare Models takes ONNX models in this version');
  const common = { data: o.data ?? 'random', ep: o.ep, limit: o.limit, seed: o.seed, shapes: o.shapes };
  progress(undefined, `evaluating ${path.basename(a)}`);
  const before = await evaluate({ ...common, model: a }, signal, progress);
  progress(undefined, `evaluating ${path.basename(b)}`);
  const after = await evaluate({ ...common, model: b, reference: a }, signal, progress);
  return buildReport({
    title: `Compare: ${path.basename(a)} and ${path.basename(b)}`,
    before: a,
    after: b,
    evalBefore: before,
    evalAfter: after,
    warnings: o.data ? [] : ['no data given: metrics were measured on random inputs, so accuracy is unknown and agreement only indicative'],
  });
}
