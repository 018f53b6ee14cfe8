import * as fs from 'node:fs';
import * as path from 'node:path';
import { OnnxModel } from '../core/formats/onnx/model';
import { sha256File, writeOnnx } from '../core/formats/onnx/write';
import { outputDir } from '../core/output';
import { InputError, NotImplementedError, oneLine } from '../core/errors';
import { inspectModel, type ModelSummary } from '../core/inspect';
import { writeFileAtomic } from '../core/atomicWrite';
import { buildSampleModel } from '../core/samples/sampleModel';
import { version } from '../core/version';
import { commonFlags, flagHelp, parseArgs, type FlagSpec, type ParsedArgs } from './args';

/** A CLI command: its usage line, summary, its own flags, and what it does. */
interface Command {
  usage: string;
  summary: string;
  flags?: FlagSpec[];
  run?: (args: ParsedArgs) => Promise<unknown> | unknown;
}

const commands: Record<string, Command> = {
  inspect: {
    usage: 'inspect <model> [--json]',
    summary: 'show a model: format, opsets, inputs, outputs, parameters, and per-layer weight statistics',
    run: ({ positionals }) => inspectModel(requireModel(positionals)),
  },
  rewrite: {
    usage: 'rewrite <model> [--out DIR] [--external-data auto|always|never]',
    summary: 'write a model back losslessly (with provenance), moving weights to or from an external data file',
    flags: [{ name: 'external-data', value: 'MODE', choices: ['auto', 'always', 'never'], help: 'auto (default): external past 2 GB or when the source was; always; never' }],
    run: ({ positionals, flags }) => {
      const file = requireModel(positionals);
      const model = OnnxModel.open(file);
      try {
        const out = path.join(outputDir(file, 'rewrite', flags.out as string | undefined), path.basename(file));
        const result = writeOnnx(model, out, {
          externalData: (flags['external-data'] as 'auto' | 'always' | 'never' | undefined) ?? 'auto',
          provenance: { sourceSha256: sha256File(file) },
        });
        const sizeOf = (f: string, data?: string) => fs.statSync(f).size + (data ? fs.statSync(data).size : 0);
        const sourceData = [...new Set([...model.weights().values()].flatMap((w) => (w.ref.storage.kind === 'external' ? [w.ref.storage.file] : [])))];
        return {
          output: result.file,
          dataFile: result.dataFile ?? null,
          sizeBytes: { before: sourceData.reduce((a, f) => a + fs.statSync(f).size, fs.statSync(file).size), after: sizeOf(result.file, result.dataFile) },
        };
      } finally {
        model.close();
      }
    },
  },
  sample: {
    usage: 'sample <out.onnx>',
    summary: 'write the bundled sample model (a LeNet-style MNIST CNN with seeded weights)',
    run: ({ positionals }) => {
      const out = positionals[0];
      if (!out) throw new InputError(undefined, 'sample needs an output path, e.g. whittle sample lenet.onnx');
      const bytes = buildSampleModel();
      writeFileAtomic(out, bytes);
      return { output: path.resolve(out), sizeBytes: bytes.byteLength };
    },
  },
  eval: { usage: 'eval <model> --data D [--reference M]', summary: 'accuracy, agreement and latency on data' },
  analyze: { usage: 'analyze <model> --data D --kind prune|quant|both', summary: 'per-layer sensitivity sweeps' },
  prune: { usage: 'prune <model> --sparsity S [...]', summary: 'unstructured, N:M or structured pruning' },
  quantize: { usage: 'quantize <model> --mode weight-only|static|dynamic|fp16 [...]', summary: 'post-training quantization' },
  finetune: { usage: 'finetune <model> --data D --epochs E', summary: 'fine-tune after pruning' },
  distill: { usage: 'distill --teacher T --student S|derive:RATIO --data D', summary: 'knowledge distillation' },
  run: { usage: 'run <recipe.whittle.json>', summary: 'run a recipe headless' },
};

function requireModel(positionals: string[]): string {
  const file = positionals[0];
  if (!file) throw new InputError(undefined, 'missing <model> argument (see --help)');
  return file;
}

function helpText(): string {
  const ready = Object.entries(commands).filter(([, c]) => c.run);
  const planned = Object.entries(commands).filter(([, c]) => !c.run);
  return [
    `whittle ${version}: make neural networks smaller and faster, without Python`,
    '',
    'Usage: whittle <command> [options]',
    '',
    'Commands:',
    ...ready.map(([, c]) => `  ${c.usage.padEnd(58)}${c.summary}`),
    '',
    'Planned, not available yet in this version:',
    ...planned.map(([, c]) => `  ${c.usage.padEnd(58)}${c.summary}`),
    '',
    'Options:',
    flagHelp(commonFlags),
    '  --version                     print the version',
    '',
    'Exit codes: 0 success, 1 bad input (one line on stderr names the file and the problem), 2 internal error.',
  ].join('\n');
}

function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

function formatSummary(s: ModelSummary): string {
  const shape = (dims: Array<number | string | null> | null) => (dims ? `[${dims.map((d) => d ?? '?').join(', ')}]` : '?');
  const lines = [
    `${s.file}`,
    `  format ${s.format}, IR ${s.irVersion}, opsets ${Object.entries(s.opsets).map(([d, v]) => `${d} ${v}`).join(', ')}${s.producer ? `, producer ${s.producer}` : ''}`,
    `  ${formatCount(s.params)} parameters, ${formatCount(s.bytes)} bytes of weights, ${formatCount(s.nodes)} nodes, file ${formatCount(s.fileBytes)} bytes`,
    '  inputs:',
    ...s.inputs.map((i) => `    ${i.name}  ${i.dtype} ${shape(i.shape)}`),
    '  outputs:',
    ...s.outputs.map((o) => `    ${o.name}  ${o.dtype} ${shape(o.shape)}`),
    '  ops:',
    `    ${Object.entries(s.opCounts).sort((a, b) => b[1] - a[1]).map(([op, n]) => `${op} ${n}`).join(', ')}`,
    '  layers:',
    ...s.layers.map((l) => `    ${l.op.padEnd(14)} ${l.name}  ${l.weights.map((w) => `${w.name}${shape(w.shape)}`).join(' ')}`),
    ...s.warnings.map((w) => `  warning: ${w}`),
  ];
  return lines.join('\n');
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(helpText() + '\n');
    return name ? 0 : 1;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(version + '\n');
    return 0;
  }
  const json = rest.includes('--json');
  try {
    const command = commands[name];
    if (!command) throw new InputError(undefined, `unknown command '${name}' (see whittle --help)`);
    if (!command.run) throw new NotImplementedError(`The '${name}' command`);
    const flags = [...(command.flags ?? []), ...commonFlags];
    const args = parseArgs(rest, flags);
    if (args.flags.help) {
      process.stdout.write(`Usage: whittle ${command.usage}\n\n${command.summary}\n\nOptions:\n${flagHelp(flags)}\n`);
      return 0;
    }
    const result = await command.run(args);
    if (json) process.stdout.write(JSON.stringify(result) + '\n');
    else if (name === 'inspect') process.stdout.write(formatSummary(result as ModelSummary) + '\n');
    else process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    return 0;
  } catch (err) {
    const input = err instanceof InputError;
    process.stderr.write(`whittle: ${oneLine(err)}\n`);
    if (!input && !(err instanceof NotImplementedError) && process.env.WHITTLE_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return input ? 1 : 2;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`whittle: internal error: ${oneLine(err)}\n`);
      process.exitCode = 2;
    },
  );
}
