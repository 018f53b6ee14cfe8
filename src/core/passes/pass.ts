import { InputError } from '../errors';
import type { OnnxModel } from '../formats/onnx/model';
import type { EpName } from '../runtime/ep';

/** A parameter value as passes see it after parsing. */
export type ParamValue = number | string | boolean | string[];

/**
 * One row of a pass's parameter table. The same row makes the CLI flag, the recipe field, the wizard input
 * and the validation, so they cannot drift apart.
 */
export interface ParamSpec {
  /** camelCase name; the CLI flag is its kebab-case form. */
  name: string;
  type: 'number' | 'string' | 'enum' | 'list' | 'boolean';
  default?: ParamValue;
  min?: number;
  max?: number;
  /** Accepted values of an enum, planned ones included (those are rejected as not available yet). */
  choices?: string[];
  /** Enum values the schema knows but this version does not implement: a clear error, never a silent stand-in. */
  planned?: string[];
  /** Extra check of a parsed value; returns the problem, or undefined when it is fine. */
  check?: (value: ParamValue) => string | undefined;
  /** Placeholder shown in CLI help (e.g. 'S', 'N:M'). */
  placeholder?: string;
  help: string;
}

/** Progress of a pass: fraction done when known, and what it is doing. */
export type PassProgress = (fraction: number | undefined, message: string) => void;

/** What a pass gets besides the model and its parameters. */
export interface PassContext {
  signal?: AbortSignal;
  progress?: PassProgress;
  /** Things the user should know (skipped layers, unknown names); the pass appends to it. */
  warnings: string[];
  /** Data for passes that look at the model running (sensitivity curves, Wanda norms); absent = random inputs. */
  calibration?: Calibration;
}

/** Calibration data: a --data SPEC and how much of it to read. */
export interface Calibration {
  data: string;
  limit?: number;
  seed?: number;
  shapes?: Record<string, number[]>;
  ep?: EpName;
}

/** Sample count and accuracy (with labels) of one model on the data. */
export interface ModelFigures {
  samples: number;
  accuracy?: number;
}

/**
 * The object every model-writing command returns (DESIGN.md section 7); each command extends it with its own
 * record. `metrics.top1Agreement` and `cosine` compare the written model with the one before.
 */
export interface WriteCommandResult {
  output: string;
  sizeBytes: { before: number; after: number };
  params: { before: number; after: number };
  sparsity: number;
  metrics: { before: ModelFigures; after: ModelFigures; top1Agreement?: number; cosine?: number | string | null };
  latencyMs: { before: number; after: number };
  ep: string;
  warnings: string[];
}

/** What every pass reports: its name and the parameters it ran with. */
export interface PassReport {
  pass: string;
  params: Record<string, ParamValue>;
}

/** A model transformation: a declarative parameter table plus one apply function that edits the model in place. */
export interface Pass<P, R extends PassReport = PassReport> {
  name: string;
  summary: string;
  params: ParamSpec[];
  apply(model: OnnxModel, params: P, ctx: PassContext): Promise<R>;
}

/** The CLI flag of a parameter: `minSparsity` -> `min-sparsity`. */
export function flagName(spec: ParamSpec): string {
  return spec.name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** A CLI flag as `src/cli/args.ts` takes it (structurally, so core does not import the CLI). */
export interface PassFlag {
  name: string;
  value?: string;
  help: string;
}

/** CLI flags for a parameter table (enum choices are checked by the pass's parser, which knows planned values). */
export function flagSpecs(params: ParamSpec[]): PassFlag[] {
  return params.map((p) => {
    const range = p.min !== undefined || p.max !== undefined ? ` (${p.min ?? '-inf'}..${p.max ?? 'inf'})` : '';
    const choices = p.choices ? ` (${p.choices.map((c) => (p.planned?.includes(c) ? `${c} [planned]` : c)).join('|')})` : '';
    const dflt = p.default !== undefined ? `; default ${Array.isArray(p.default) ? p.default.join(',') || 'none' : p.default}` : '';
    const value = p.type === 'boolean' ? undefined : (p.placeholder ?? (p.type === 'list' ? 'A,B' : p.type === 'number' ? 'N' : 'VALUE'));
    return { name: flagName(p), ...(value ? { value } : {}), help: `${p.help}${range}${choices}${dflt}` };
  });
}

/**
 * Validates and converts raw values (CLI strings, or JSON values from a recipe) against a parameter table,
 * filling defaults. Unknown keys are ignored (the caller's own flags share the bag). Errors name the flag.
 */
export function parseParams<P>(table: ParamSpec[], raw: Record<string, unknown>): P {
  const out: Record<string, ParamValue> = {};
  for (const spec of table) {
    const flag = `--${flagName(spec)}`;
    const given = raw[spec.name] ?? raw[flagName(spec)];
    if (given === undefined || given === null) {
      if (spec.default !== undefined) out[spec.name] = spec.default;
      continue;
    }
    const bad = (problem: string) => new InputError(undefined, `option ${flag} ${problem}`);
    let value: ParamValue;
    switch (spec.type) {
      case 'number': {
        const n = typeof given === 'number' ? given : typeof given === 'string' && given.trim() !== '' ? Number(given) : NaN;
        if (!Number.isFinite(n)) throw bad(`must be a number, not '${String(given)}'`);
        if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) throw bad(`must be between ${spec.min ?? '-inf'} and ${spec.max ?? 'inf'}, not ${n}`);
        value = n;
        break;
      }
      case 'boolean':
        if (typeof given === 'boolean') value = given;
        else if (given === 'true' || given === 'false') value = given === 'true';
        else throw bad(`takes no value or true/false, not '${String(given)}'`);
        break;
      case 'list':
        value = Array.isArray(given) ? given.map(String) : String(given).split(',').map((s) => s.trim()).filter(Boolean);
        break;
      case 'enum': {
        const s = String(given);
        if (!spec.choices?.includes(s)) throw bad(`must be one of ${(spec.choices ?? []).filter((c) => !spec.planned?.includes(c)).join(', ')}, not '${s}'`);
        if (spec.planned?.includes(s)) {
          const available = (spec.choices ?? []).filter((c) => !spec.planned?.includes(c));
          throw new InputError(undefined, `${flag} ${s} is not available yet in this version of Whittle${available.length ? ` (available: ${available.join(', ')})` : ''}`);
        }
        value = s;
        break;
      }
      default:
        value = String(given);
    }
    const problem = spec.check?.(value);
    if (problem) throw bad(problem);
    out[spec.name] = value;
  }
  return out as P;
}
