import type { ParamSpec } from '../passes/pass';
import type { FinetuneParams } from './finetune';

const whole = (v: unknown) => (Number.isSafeInteger(v) ? undefined : `must be a whole number, not ${String(v)}`);

/**
 * The finetune command's parameter table: CLI flags (`whittle finetune`), recipe fields and validation in one
 * place. Names are the flags in camelCase (`--no-masks` is `noMasks`, `--warmup` is `warmup`); finetuneOptions
 * maps them onto FinetuneParams. Defaults that depend on other values (lr) stay with runFinetune.
 */
export const finetuneParams: ParamSpec[] = [
  { name: 'epochs', type: 'number', min: 1, placeholder: 'E', check: whole, help: 'passes over --data (default 1)' },
  { name: 'lr', type: 'number', min: 0, placeholder: 'LR', check: (v) => (Number(v) > 0 ? undefined : 'must be a positive number'), help: 'learning rate (default 0.001 for adam/adamw, 0.01 for sgd)' },
  { name: 'batch', type: 'number', min: 1, placeholder: 'N', check: whole, help: 'samples per step (default 64)' },
  { name: 'optimizer', type: 'enum', choices: ['sgd', 'adam', 'adamw'], placeholder: 'OPT', help: 'sgd (momentum 0.9), adam or adamw (default adam)' },
  { name: 'momentum', type: 'number', min: 0, placeholder: 'M', help: 'sgd momentum (default 0.9)' },
  { name: 'weightDecay', type: 'number', min: 0, placeholder: 'WD', help: 'weight decay (default 0)' },
  { name: 'schedule', type: 'enum', choices: ['constant', 'cosine'], placeholder: 'S', help: 'learning-rate schedule (default constant)' },
  { name: 'warmup', type: 'number', min: 0, placeholder: 'STEPS', check: whole, help: 'linear warm-up steps (default 0)' },
  { name: 'evalData', type: 'string', placeholder: 'SPEC', help: 'held-out labelled data: before/after accuracy and the best checkpoint (default: the first 1000 samples of --data, with a warning)' },
  { name: 'evalEvery', type: 'number', min: 0, placeholder: 'STEPS', check: whole, help: 'evaluate on --eval-data every STEPS steps and keep the best weights (default: once per epoch)' },
  { name: 'evalLimit', type: 'number', min: 0, placeholder: 'N', check: whole, help: 'cap on evaluation samples' },
  { name: 'noMasks', type: 'boolean', help: 'let pruned (exactly zero) weights change' },
  { name: 'qat', type: 'enum', choices: ['8', '4'], placeholder: 'BITS', help: 'quantization-aware training: per-channel weight fake-quant at 8 or 4 bits, then export (8: static U8S8 QDQ; 4: 4-bit weights) and evaluate it' },
  { name: 'qatExclude', type: 'list', placeholder: 'LAYERS', help: 'with --qat: comma-separated layer names (or weight names, op types) kept in float, in training and in the export' },
  { name: 'qatActivations', type: 'boolean', help: "with --qat: fake-quantize the layers' input activations too (uint8, ranges calibrated as static quantize does)" },
  { name: 'prune', type: 'number', min: 0, max: 1, placeholder: 'S', help: 'gradual magnitude pruning during the run to sparsity S of the kernels and matrices (cubic schedule), then fine-tuning at it' },
  { name: 'pruneScope', type: 'enum', choices: ['global', 'layer', 'lamp'], placeholder: 'SCOPE', help: 'with --prune: one magnitude threshold across layers (global, default), S in every layer, or one threshold on LAMP scores' },
  { name: 'pruneStart', type: 'number', min: 0, max: 1, placeholder: 'F', help: 'with --prune: fraction of the run at which pruning starts (default 0)' },
  { name: 'pruneEnd', type: 'number', min: 0, max: 1, placeholder: 'F', help: 'with --prune: fraction of the run at which S is reached (default 0.5)' },
  { name: 'logitScale', type: 'string', placeholder: 'X', check: (v) => (v === 'auto' || Number(v) > 0 ? undefined : `must be auto or a positive number, not '${String(v)}'`), help: "cross-entropy trains on logits times X (default auto: 5/RMS of the first batch's logits when that RMS exceeds 20)" },
];

/** Parsed finetuneParams values as FinetuneParams fields (only the ones given). */
export function finetuneOptions(v: Record<string, unknown>): Partial<FinetuneParams> {
  const num = (k: string) => (v[k] === undefined ? undefined : Number(v[k]));
  const out: Partial<FinetuneParams> = {
    evalData: v.evalData as string | undefined,
    epochs: num('epochs'),
    batch: num('batch'),
    lr: num('lr'),
    optimizer: v.optimizer as FinetuneParams['optimizer'],
    momentum: num('momentum'),
    weightDecay: num('weightDecay'),
    schedule: v.schedule as FinetuneParams['schedule'],
    warmupSteps: num('warmup'),
    evalEvery: num('evalEvery'),
    evalLimit: num('evalLimit'),
    keepMasks: v.noMasks === true ? false : true,
    ...(v.qat !== undefined ? { qat: Number(v.qat) as 8 | 4 } : {}),
    prune: num('prune'),
    pruneScope: v.pruneScope as FinetuneParams['pruneScope'],
    pruneStart: num('pruneStart'),
    pruneEnd: num('pruneEnd'),
    qatExclude: v.qatExclude as string[] | undefined,
    qatActivations: v.qatActivations === true ? true : undefined,
    logitScale: v.logitScale === undefined || v.logitScale === 'auto' ? undefined : Number(v.logitScale),
  };
  return out;
}
