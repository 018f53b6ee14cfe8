import { InputError } from '../core/errors';

/** A command-line flag: its name, whether it takes a value, and help text. */
export interface FlagSpec {
  name: string;
  value?: string;
  repeat?: boolean;
  choices?: string[];
  help: string;
}

/** Flags every command accepts (DESIGN.md section 7). */
export const commonFlags: FlagSpec[] = [
  { name: 'json', help: 'print exactly one JSON object on stdout; logs go to stderr' },
  { name: 'out', value: 'DIR', help: 'output folder (default <model dir>/<model name>.whittle/<run name>/)' },
  { name: 'ep', value: 'EP', choices: ['auto', 'cpu', 'cuda', 'webgpu', 'dml', 'coreml'], help: 'execution provider (default auto)' },
  { name: 'data', value: 'SPEC', help: 'calibration/evaluation data: *.dataset.json, an image folder, an idx file, a folder of input_N.pb, or random' },
  { name: 'limit', value: 'N', help: 'cap the number of samples' },
  { name: 'shape', value: 'NAME=1x3x224x224', repeat: true, help: 'fix a dynamic input shape (repeatable)' },
  { name: 'seed', value: 'N', help: 'random seed (default 0)' },
  { name: 'help', help: 'show help' },
];

/** Parsed command line: positionals and flags (repeatable flags collect arrays). */
export interface ParsedArgs {
  positionals: string[];
  flags: Record<string, string | boolean | string[]>;
}

/** Parses `--name value`, `--name=value` and boolean `--name`; rejects unknown flags and bad choices. */
export function parseArgs(argv: string[], specs: FlagSpec[]): ParsedArgs {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const positionals: string[] = [];
  const flags: ParsedArgs['flags'] = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const spec = byName.get(name);
    if (!spec) throw new InputError(undefined, `unknown option --${name} (see --help)`);
    let value: string | boolean = true;
    if (spec.value) {
      if (eq >= 0) value = arg.slice(eq + 1);
      else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) value = argv[++i];
      else throw new InputError(undefined, `option --${name} needs a value (${spec.value})`);
      if (spec.choices && !spec.choices.includes(value)) {
        throw new InputError(undefined, `option --${name} must be one of ${spec.choices.join(', ')}, not '${value}'`);
      }
    } else if (eq >= 0) {
      throw new InputError(undefined, `option --${name} takes no value`);
    }
    if (spec.repeat) flags[name] = [...((flags[name] as string[] | undefined) ?? []), String(value)];
    else flags[name] = value;
  }
  return { positionals, flags };
}

/** Help text for a list of flags. */
export function flagHelp(specs: FlagSpec[]): string {
  return specs.map((s) => `  --${s.name}${s.value ? ` ${s.value}` : ''}`.padEnd(30) + s.help).join('\n');
}
