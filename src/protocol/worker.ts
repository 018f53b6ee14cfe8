import type { Accumulator } from '../core/analysis/stats';
import type { ModelSummary } from '../core/inspect';
import type { EventMessage } from './rpc';

/** Requests the extension host (or CLI) makes of the compute worker. */
export type WorkerRequests = {
  /** Reads a model and summarises it (the Model Inspector's first page). */
  inspect: { params: { file: string }; result: ModelSummary };
  /** Partial statistics of tensor element ranges (one big tensor can be shared among workers). */
  weightStats: { params: { tasks: StatsTask[] }; result: Accumulator[] };
};

/** One range of one tensor whose bytes the worker can reach without a copy. */
export interface StatsTask {
  name: string;
  dtype: number;
  shape: number[];
  source: string;
  start: number;
  end: number;
  storage:
    | { kind: 'shared'; buffer: SharedArrayBuffer; byteOffset: number; byteLength: number }
    | { kind: 'external'; modelFile: string; file: string; offset: number; length: number };
}

/** Requests the worker makes of its host: none yet. */
export type WorkerHostRequests = Record<never, never>;

/** Progress of a long job, at most every ~250 ms. */
export interface ProgressEvent extends EventMessage {
  type: 'progress';
  /** Fraction done in [0, 1], when known. */
  fraction?: number;
  message: string;
}

/** Events the worker sends to its host. */
export type FromWorkerEvent = ProgressEvent;

/** Events the host sends to the worker: none yet. */
export type ToWorkerEvent = never;
