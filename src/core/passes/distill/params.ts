/**
 * The parameter table of `whittle distill`: one row per option, shared by the CLI flags (flagSpecs), the recipe
 * schema and validation (parseParams). Paths (--teacher, --student, --data...) and the run's common options
 * (--out, --ep, --limit, --seed, --json) are the command's own and not in the table.
 */
import type { ParamSpec } from '../pass';

/** Distillation parameters. */
export const distillParams: ParamSpec[] = [
  { name: 'epochs', type: 'number', default: 1, min: 1, placeholder: 'E', help: 'passes over the training data' },
  { name: 'batch', type: 'number', default: 64, min: 1, help: 'samples per step' },
  { name: 'lr', type: 'number', min: 0, placeholder: 'LR', help: 'learning rate (default 0.001 for adam/adamw, 0.01 for sgd)' },
  { name: 'optimizer', type: 'enum', default: 'adam', choices: ['sgd', 'adam', 'adamw'], help: 'optimizer' },
  { name: 'momentum', type: 'number', min: 0, max: 1, help: 'SGD momentum (default 0.9)' },
  { name: 'weightDecay', type: 'number', min: 0, help: 'weight decay (default 0)' },
  { name: 'schedule', type: 'enum', default: 'constant', choices: ['constant', 'cosine'], help: 'learning-rate schedule' },
  { name: 'warmupSteps', type: 'number', min: 0, help: 'linear learning-rate warm-up steps (default 0)' },
  { name: 'temperature', type: 'number', default: 4, min: 0.05, max: 100, placeholder: 'T', help: 'softmax temperature of the soft targets' },
  { name: 'alpha', type: 'number', default: 0.5, min: 0, max: 1, help: 'weight of the hard-label cross-entropy; the KD term gets 1 - alpha (0 on unlabelled data)' },
  { name: 'alphaSchedule', type: 'enum', default: 'constant', choices: ['constant', 'linear'], help: 'how alpha moves over training: constant, or linearly to --alpha-end' },
  { name: 'alphaEnd', type: 'number', min: 0, max: 1, help: 'final alpha of a linear alpha schedule (default: --alpha)' },
  { name: 'features', type: 'list', default: [], placeholder: 'T:S,...', help: 'feature pairs teacherTensor:studentTensor; a learned projection matches channel counts' },
  { name: 'featureLoss', type: 'enum', default: 'mse', choices: ['mse', 'cosine', 'attention'], help: 'loss on the feature pairs: MSE, cosine, or attention transfer (maps of |F|^p, or Softmax probabilities)' },
  { name: 'featureWeight', type: 'number', default: 1, min: 0, help: 'weight of the feature term' },
  { name: 'attentionP', type: 'number', default: 2, min: 0.5, max: 8, placeholder: 'P', help: 'exponent p of the attention maps' },
  { name: 'studentInit', type: 'enum', default: 'keep', choices: ['keep', 'random'], help: "the student's starting weights: its own (or the pruned teacher's), or seeded random ones" },
  { name: 'evalEvery', type: 'number', min: 1, help: 'evaluate every N steps and keep the best weights (default: once per epoch, with --eval-data)' },
  { name: 'cacheMaxMb', type: 'number', default: 512, min: 0, placeholder: 'MB', help: "bound on the teacher-output cache on disk; 0 turns it off" },
];
