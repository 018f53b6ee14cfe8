import type * as ort from 'onnxruntime-node';
import { CancelledError } from '../../protocol/rpc';
import { latencyStats } from '../analysis/metrics';
import type { OnnxModel } from '../formats/onnx/model';
import type { EpName } from './ep';
import { measureLatency, openSession, syntheticFeeds, type ModelSession } from './session';

/** Latency of a candidate against a baseline, measured in the same process and interleaved. */
export interface LatencyComparison {
  baselineMs: number;
  candidateMs: number;
  /** candidate / baseline median: below 1 is faster. */
  ratio: number;
  /** The candidate's provider (what ran it). */
  ep: string;
  baselineEp: string;
  candidateEp: string;
  /** Why the candidate's provider differs from the one asked for, when it does. */
  candidateNote?: string;
  runs: number;
}

/**
 * Times two models with the same inputs at batch 1: a few rounds that alternate between them, so a machine
 * that slows down or speeds up mid-way affects both alike. Inputs are seeded synthetic values of the
 * baseline's input shapes (`shapes` for dynamic dims); latency of dense kernels does not depend on values.
 */
export async function compareLatency(baseline: OnnxModel, candidate: OnnxModel, opts: { ep?: EpName; shapes?: Record<string, number[]>; rounds?: number; runsPerRound?: number; signal?: AbortSignal } = {}): Promise<LatencyComparison> {
  const sessions: ModelSession[] = [];
  try {
    const a = await openSession(baseline, { ep: opts.ep });
    sessions.push(a);
    const b = await openSession(candidate, { ep: opts.ep });
    sessions.push(b);
    const inputs = a.inputs.map((i) => (opts.shapes?.[i.name] ? { ...i, shape: opts.shapes[i.name] } : i));
    const feeds: Record<string, ort.Tensor> = syntheticFeeds(inputs, 1, 1);
    const ta: number[] = [];
    const tb: number[] = [];
    const rounds = opts.rounds ?? 5;
    const runs = opts.runsPerRound ?? 10;
    for (let r = 0; r < rounds; r++) {
      if (opts.signal?.aborted) throw new CancelledError();
      ta.push(...(await measureLatency(a.session, feeds, { warmup: r === 0 ? 5 : 1, runs, maxMs: 2000, signal: opts.signal })));
      tb.push(...(await measureLatency(b.session, feeds, { warmup: r === 0 ? 5 : 1, runs, maxMs: 2000, signal: opts.signal })));
    }
    const ma = latencyStats(ta).median;
    const mb = latencyStats(tb).median;
    const note = b.warnings.find((w) => /tolerance|not available|failed/.test(w));
    return { baselineMs: ma, candidateMs: mb, ratio: mb / ma, ep: b.ep, baselineEp: a.ep, candidateEp: b.ep, ...(note ? { candidateNote: note } : {}), runs: Math.min(ta.length, tb.length) };
  } finally {
    for (const s of sessions) await s.release().catch(() => {});
  }
}
