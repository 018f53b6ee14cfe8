/** Parameter rows of recipes besides the passes' own tables (no heavy imports: the commands' writers use them). */
import type { ParamSpec } from '../passes/pass';
import { epNames } from '../runtime/ep';

const whole = (v: unknown) => (Number.isSafeInteger(v) ? undefined : `must be a whole number, not ${String(v)}`);

/** Run settings every step takes; a step's own value wins over the recipe's top-level one. */
export const stepSettings: ParamSpec[] = [
  { name: 'data', type: 'string', placeholder: 'SPEC', help: 'evaluation (and calibration or training) data, relative to the recipe file; random when absent' },
  { name: 'seed', type: 'number', min: 0, check: whole, placeholder: 'N', help: 'random seed (default 0)' },
  { name: 'ep', type: 'enum', choices: [...epNames], placeholder: 'EP', help: 'execution provider for evaluation and timing (default auto)' },
  { name: 'limit', type: 'number', min: 1, check: whole, placeholder: 'N', help: 'cap the number of samples' },
];

export const tfjsStorage: ParamSpec[] = [
  { name: 'shardSize', type: 'number', min: 1, check: whole, placeholder: 'BYTES', help: 'TF.js: bytes per weight shard (default 4194304)' },
  { name: 'output', type: 'string', placeholder: 'NAME', help: 'TF.js: the output to score (default: the last)' },
];

/** The prune command's parameters that are not the pass's: TF.js storage. */
export const pruneExtra: ParamSpec[] = [{ name: 'tfjsDtype', type: 'enum', choices: ['float32', 'float16', 'uint8', 'uint16'], placeholder: 'D', help: 'TF.js: stored form of the pruned weights (default float32; zeros gzip well)' }, ...tfjsStorage];

/** The quantize command's parameters that are not the pass's: calibration, fallback limits and TF.js storage. */
export const quantizeExtra: ParamSpec[] = [
  { name: 'calibData', type: 'string', placeholder: 'SPEC', help: 'calibration data (default: data); a SPEC may end in #A:B to take samples A to B-1' },
  { name: 'calibLimit', type: 'number', min: 1, check: whole, placeholder: 'N', help: 'calibration samples cap (default: limit)' },
  { name: 'maxTries', type: 'number', min: 1, check: whole, placeholder: 'N', help: 'maxDrop: quantize-and-evaluate tries the fallback may spend (default 8)' },
  { name: 'maxSeconds', type: 'number', min: 0, placeholder: 'S', help: 'maxDrop: start no new try after S seconds; the best model found so far is written' },
  { name: 'tfjsDtype', type: 'enum', choices: ['uint8', 'uint16', 'float16', 'mix'], placeholder: 'D', help: 'TF.js: stored form of the weights; mix = uint8, with the layers that cost accuracy in float16' },
  ...tfjsStorage,
];
