/** Inputs made up rather than read: the `random` source form, and manifest `random`, `value` and `zeros` inputs. */
import { InputError } from '../errors';
import { normal, seededRandom } from '../random';
import type { ConstantInput, SampleInput, SampleSource } from './dataset';
import { countOf, dimText, dtypeOfInput, fitSample, hasBatchAxis, isFloat, sampleTarget, writerOf } from './tensors';
import type { DatasetOptions, HostTensor, ModelInput, SampleDType } from './types';

/** The warning every random dataset carries. */
export const randomWarning = 'random calibration data is not representative of real inputs';

/** Default number of samples of `random` data. */
export const defaultRandomCount = 8;

/** Distributions random inputs can be drawn from; integers are small (0..9) whatever the distribution. */
const distributions: Record<string, (rand: () => number) => () => number> = {
  normal: (rand) => normal(rand),
  uniform: (rand) => rand,
};

/** Names of the random distributions, for manifest checks. */
export const distributionNames = Object.keys(distributions);

/** The fully known shape of one sample of `input`: --shape, else the model's (batch 1); an open dim is an error. */
export function concreteShape(input: ModelInput, shapes: DatasetOptions['shapes'], where: string | undefined): number[] {
  const target = sampleTarget(input, shapes, where);
  const open = target.findIndex((d) => d === undefined);
  if (open >= 0) {
    const example = target.map((d) => d ?? 'N').join('x');
    throw new InputError(where, `input '${input.name}' has a symbolic dim ${open} ('${dimText(input.shape[open])}'); give its size with --shape ${input.name}=${example}`);
  }
  return target as number[];
}

/** A seed for one (input, sample) pair, so each sample is the same whatever order or batch reads it. */
function sampleSeed(seed: number, input: number, sample: number): number {
  return (Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(input + 1, 0x85ebca6b) ^ Math.imul(sample + 1, 0xc2b2ae35)) >>> 0;
}

/** Random samples of a fixed shape: floats from `dist`, integers in 0..9, booleans half and half. */
export function randomInput(input: ModelInput, k: number, shape: number[], o: { seed?: number; dist?: string; dtype?: SampleDType; where?: string } = {}): SampleInput {
  const dtype = o.dtype ?? dtypeOfInput(input, o.where);
  const dist = distributions[o.dist ?? 'normal'];
  const n = countOf(shape);
  return {
    name: input.name,
    read: async (i) => {
      const rand = seededRandom(sampleSeed(o.seed ?? 0, k, i));
      const draw = isFloat(dtype) ? dist(rand) : dtype === 'bool' ? () => (rand() < 0.5 ? 1 : 0) : () => Math.floor(rand() * 10);
      const w = writerOf(dtype, n);
      for (let j = 0; j < n; j++) w.set(j, draw());
      return { dtype, shape, data: w.data };
    },
    where: () => o.where ?? 'random',
  };
}

/** The `random` form: `randomCount` samples per input, synthesised from the model's input types. */
export async function openRandom(inputs: ModelInput[], opts: DatasetOptions): Promise<SampleSource> {
  const count = opts.randomCount ?? defaultRandomCount;
  if (!Number.isSafeInteger(count) || count < 1) throw new InputError(undefined, `random data needs a sample count of at least 1, not ${count}`);
  const sampleInputs = inputs.map((input, k) => randomInput(input, k, concreteShape(input, opts.shapes, undefined), { seed: opts.seed }));
  return { description: 'random', count, inputs: sampleInputs, warnings: [randomWarning], where: 'random' };
}

/**
 * An input filled with one tensor: stacked with the other samples when the model input has a batch axis (so a
 * batch of n gets n copies), else given whole to every batch.
 */
export function filledInput(input: ModelInput, tensor: HostTensor): { sample?: SampleInput; constant?: ConstantInput } {
  if (!hasBatchAxis(input.shape)) return { constant: { name: input.name, tensor } };
  return { sample: { name: input.name, read: async () => tensor, where: () => input.name } };
}

/** A tensor of the given shape, every element `value`. */
export function valueTensor(value: number, shape: number[], dtype: SampleDType): HostTensor {
  const n = countOf(shape);
  const w = writerOf(dtype, n);
  for (let i = 0; i < n; i++) w.set(i, value);
  return { dtype, shape, data: w.data };
}

/** Checks a manifest's explicit per-sample shape against the model input. */
export function givenShape(input: ModelInput, shape: number[], where: string, shapes: DatasetOptions['shapes']): number[] {
  return fitSample(shape, sampleTarget(input, shapes, where), input, where);
}
