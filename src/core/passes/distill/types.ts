/**
 * Types of `whittle distill` (knowledge distillation): its parameters, the progress events a run sends and the result
 * it returns, with the diagnostics the Distill panel renders. Names here are stable; fields may be added.
 */
import type { EventMessage } from '../../../protocol/rpc';
import type { EpName } from '../../runtime/ep';
import type { ModelFigures, WriteCommandResult } from '../pass';

/** How a feature pair is compared. */
export type FeatureLossKind = 'mse' | 'cosine' | 'attention';

/** One teacher tensor matched with one student tensor (`--features teacher:student`). */
export interface FeaturePair {
  teacher: string;
  student: string;
}

/** What `whittle distill` takes. */
export interface DistillParams {
  /** The frozen teacher model (.onnx). */
  teacher: string;
  /** The student model (.onnx), or `derive:RATIO`: the teacher's width structured-pruned to about RATIO of its parameters. */
  student: string;
  /** Training data (labels optional: without them the loss is pure distillation). */
  data: string;
  /** Evaluation data for before/after metrics and the best checkpoint. */
  evalData?: string;
  epochs?: number;
  lr?: number;
  batch?: number;
  optimizer?: 'sgd' | 'adam' | 'adamw';
  momentum?: number;
  weightDecay?: number;
  /** Learning-rate schedule. */
  schedule?: 'constant' | 'cosine';
  warmupSteps?: number;
  /** Softmax temperature T of the KD term (default 4). */
  temperature?: number;
  /** Weight of the hard-label cross-entropy: loss = alpha·CE + (1−alpha)·T²·KL (default 0.5; 0 without labels). */
  alpha?: number;
  /** How alpha moves over training: constant, or linearly from `alpha` to `alphaEnd`. */
  alphaSchedule?: 'constant' | 'linear';
  /** Final alpha of a linear alpha schedule (default: alpha). */
  alphaEnd?: number;
  /** Feature pairs as `teacherTensor:studentTensor` strings. */
  features?: string[];
  /** Loss on the feature pairs (default mse). */
  featureLoss?: FeatureLossKind;
  /** Weight of the feature term added to the loss (default 1). */
  featureWeight?: number;
  /** Exponent p of the attention maps (mean over channels of |F|^p; default 2). */
  attentionP?: number;
  /** The student's starting weights: its own (the pruned teacher's with derive:), or seeded random ones (default keep). */
  studentInit?: 'keep' | 'random';
  /** Teacher-output cache folder (default: beside the run folder in the teacher's .whittle folder). */
  cacheDir?: string;
  /** Cap on the cache's size on disk in MiB (default 512). */
  cacheMaxMb?: number;
  limit?: number;
  evalLimit?: number;
  evalEvery?: number;
  seed?: number;
  out?: string;
  /** Provider for the teacher and the evaluations; training runs on the CPU EP in this version. */
  ep?: EpName;
  threads?: number;
}

/** The loss and its parts at one step (means over the batch; absent parts are not in the loss). */
export interface DistillLossParts {
  total: number;
  /** Hard-label cross-entropy (weighted by alpha in the total). */
  ce?: number;
  /** T²·KL(teacher ‖ student) at temperature T (weighted by 1−alpha in the total). */
  kd: number;
  /** Feature term (already multiplied by featureWeight). */
  feature?: number;
}

/** What a progress event of a distillation run carries (at most every ~250 ms). */
export interface DistillProgress {
  epoch: number;
  step: number;
  totalSteps: number;
  loss: DistillLossParts;
  lr: number;
  alpha: number;
  temperature: number;
  samplesPerSec: number;
}

/** The worker event that carries a DistillProgress (besides the plain progress event). */
export interface DistillStepEvent extends EventMessage {
  type: 'distillStep';
  progress: DistillProgress;
}

/** One logged interval of training: mean loss parts, and batch accuracy and teacher agreement over the interval. */
export interface DistillStepLog {
  step: number;
  epoch: number;
  loss: DistillLossParts;
  lr: number;
  alpha: number;
  /** Student top-1 accuracy on the training batches of the interval (labelled data only). */
  accuracy?: number;
  /** Fraction of samples where the student's top-1 equals the teacher's. */
  agreement: number;
}

/** Per-class confusion of the student against the teacher: matrix[teacherClass][studentClass] = samples. */
export interface ConfusionMatrix {
  classes: number;
  samples: number;
  matrix: number[][];
}

/** Similarity between teacher and student features on a few evaluation batches. */
export interface LayerSimilarity {
  metric: 'cka';
  /** Teacher tensors (rows). */
  teacher: string[];
  /** Student tensors (columns). */
  student: string[];
  /** Linear CKA in [0, 1], matrix[i][j] between teacher[i] and student[j]. */
  matrix: number[][];
  samples: number;
}

/** Teacher and student probabilities (at T = 1) for one evaluation sample. */
export interface SoftLabelRow {
  sample: number;
  label?: number;
  teacher: number[];
  student: number[];
}

/** What the Distill panel draws. */
export interface DistillDiagnostics {
  steps: DistillStepLog[];
  confusion: ConfusionMatrix;
  similarity?: LayerSimilarity;
  softLabels: SoftLabelRow[];
}

/** The teacher-output cache's use in a run. */
export interface TeacherCacheStats {
  dir: string;
  hits: number;
  misses: number;
  bytes: number;
  /** Why the cache was off or capped, if it was. */
  note?: string;
}

/** The write-command contract object (DESIGN.md section 7) plus the distillation record and diagnostics. */
export interface DistillResult extends WriteCommandResult {
  /** Teacher parameters (before) and student parameters (after). */
  params: { before: number; after: number };
  /** before: the teacher; after: the distilled student; top1Agreement and cosine: student against teacher. */
  metrics: WriteCommandResult['metrics'] & {
    accuracy?: { before: number; after: number; gainPt: number };
    /** The student before distillation (its starting weights). */
    studentBefore?: ModelFigures;
  };
  recipe: string;
  report: string;
  data: string;
  distill: {
    teacher: string;
    student: string;
    /** With `derive:RATIO`: the asked ratio and the parameter fraction reached. */
    derived?: { ratio: number; paramFraction: number; channelsKept: number };
    temperature: number;
    alpha: number;
    alphaEnd: number;
    alphaSchedule: 'constant' | 'linear';
    features: Array<FeaturePair & { projection?: [number, number]; loss: FeatureLossKind }>;
    featureWeight: number;
    hasLabels: boolean;
    epochs: number;
    batch: number;
    lr: number;
    optimizer: string;
    steps: number;
    samplesPerSec: number;
    best?: { step: number; accuracy: number };
    evals: Array<{ step: number; accuracy: number }>;
    cache: TeacherCacheStats;
  };
  diagnostics: DistillDiagnostics;
}
