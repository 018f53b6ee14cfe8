import type { ReadyEvent } from './inspector';
import type { EventMessage } from './rpc';

/**
 * The training panel's channel (Fine-tune… and Distill…): the worker streams `trainStep` events (numbers, not
 * strings) to the host, which forwards them to the panel's live chart and ends with a final report.
 */

/** One point of a training run, as the chart plots it. */
export interface TrainingPoint {
  step: number;
  totalSteps: number;
  epoch?: number;
  /** Total training loss at this step. */
  loss: number;
  lr?: number;
  samplesPerSec?: number;
  /** Distillation's loss parts: cross-entropy on the labels, the soft-target (KD) term, the feature term. */
  ce?: number;
  kd?: number;
  feature?: number;
  /** Evaluation accuracy, when an evaluation ran at this step. */
  accuracy?: number;
  /** Accuracy on the training batches of the logged interval (distillation logs it). */
  trainAccuracy?: number;
  /** Top-1 agreement of the student with the teacher, when measured at this step. */
  agreement?: number;
}

/** A training step reached the worker's progress callback (sent at most every ~250-500 ms). */
export interface TrainStepEvent extends EventMessage {
  type: 'trainStep';
  point: TrainingPoint;
}

/** Distillation diagnostics shown after the run (all optional: the engine fills what it measured). */
export interface TrainingDiagnostics {
  /** Class names (or indices as strings) for the confusion matrix's rows and columns. */
  classes?: string[];
  /** confusion[t][s]: samples the teacher put in class t and the student in class s. */
  confusion?: number[][];
  /** Similarity (CKA or cosine, in [0, 1]) between teacher layer i and student layer j. */
  layerSimilarity?: { metric: string; teacher: string[]; student: string[]; values: number[][] };
  /** Teacher vs student probabilities for a few samples (at temperature 1 unless said). */
  softLabels?: Array<{ sample: number; label?: number; teacher: number[]; student: number[] }>;
}

/** The final report of a run, format-neutral (built from a FinetuneResult or a DistillResult). */
export interface TrainingReport {
  kind: 'finetune' | 'distill';
  output: string;
  /** report.md beside the output, when written. */
  reportFile?: string;
  samples?: number;
  /** Fine-tune: before and after. Distill: the teacher, the student before (its starting weights) and after. */
  accuracy: { before?: number; after?: number; teacher?: number };
  /** Distill: before is the teacher's, after the student's. */
  sizeBytes: { before: number; after: number };
  params?: { before: number; after: number };
  /** Distill: how the student was made and trained (shown as facts). */
  settings?: Array<[string, string]>;
  agreement?: number;
  latencyMs?: { before: number; after: number };
  steps: number;
  samplesPerSec?: number;
  /** The logged loss curve and the evaluations, so a short run still draws its whole curve. */
  curve: TrainingPoint[];
  evals: Array<{ step: number; accuracy: number }>;
  best?: { step: number; accuracy: number };
  warnings: string[];
  diagnostics?: TrainingDiagnostics;
}

/** A run started: clear the chart. */
export interface RunStartedEvent extends EventMessage {
  type: 'runStarted';
  kind: TrainingReport['kind'];
  title: string;
  /** What the run works on, shown above the chart (model, teacher/student, data, epochs...). */
  facts: Array<[string, string]>;
}

/** One more point for the live chart. */
export interface StepEvent extends EventMessage {
  type: 'step';
  point: TrainingPoint;
}

/** A status line (evaluating, exporting...). */
export interface RunProgressEvent extends EventMessage {
  type: 'runProgress';
  fraction?: number;
  message: string;
}

/** The run ended: a report, a cancel, or an error. */
export interface RunFinishedEvent extends EventMessage {
  type: 'runFinished';
  report?: TrainingReport;
  cancelled?: boolean;
  error?: string;
}

/** Events to the training panel. */
export type ToTrainingEvent = RunStartedEvent | StepEvent | RunProgressEvent | RunFinishedEvent;

/** The user pressed Cancel. */
export interface CancelTrainingEvent extends EventMessage {
  type: 'cancel';
}

/** The user asked to open a file: the output model in the Model Inspector, or the report. */
export interface OpenEvent extends EventMessage {
  type: 'open';
  file: string;
  as: 'inspector' | 'text';
}

/** Events from the training panel. */
export type FromTrainingEvent = ReadyEvent | CancelTrainingEvent | OpenEvent;

/** The panel makes no requests of the host, and the host none of it. */
export type TrainingRequests = Record<never, never>;
