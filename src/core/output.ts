import * as path from 'node:path';

/** A run name: the command and a UTC timestamp, e.g. `prune-20261127-193012`. */
export function runName(command: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${command}-${stamp}`;
}

/** The output folder of a run: `--out`, else `<model dir>/<model name>.whittle/<run name>/` (DESIGN.md section 4). */
export function outputDir(model: string, command: string, out?: string): string {
  if (out) return path.resolve(out);
  const base = path.basename(model).replace(/\.(onnx|json)$/i, '');
  return path.join(path.dirname(path.resolve(model)), `${base}.whittle`, runName(command));
}
