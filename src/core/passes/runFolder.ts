import * as fs from 'node:fs';
import { gzipSync } from 'node:zlib';
import type { OnnxModel } from '../formats/onnx/model';
import { outputDir } from '../output';

/** The external data files a model's weights live in. */
export function externalFiles(model: OnnxModel): string[] {
  return [...new Set([...model.weights().values()].flatMap((w) => (w.ref.storage.kind === 'external' ? [w.ref.storage.file] : [])))];
}

/** Bytes of a model file plus its external data files. */
export function modelBytes(model: OnnxModel): number {
  return externalFiles(model).reduce((a, f) => a + fs.statSync(f).size, fs.statSync(model.file).size);
}

/** Bytes of the files gzipped at level 9: what a compressed download would take. */
export function gzipBytes(files: string[]): number {
  return files.reduce((a, f) => a + gzipSync(fs.readFileSync(f), { level: 9 }).byteLength, 0);
}

/**
 * The folder a model-writing run writes to (`--out`, else a fresh `<name>.whittle/<command>-<stamp>` that a
 * run in the same second does not share), and whether this run creates it, so a failed run removes only
 * what it made.
 */
export function runFolder(source: string, command: string, out?: string): { dir: string; created: boolean } {
  const base = outputDir(source, command, out);
  let dir = base;
  for (let i = 2; !out && fs.existsSync(dir); i++) dir = `${base}-${i}`;
  return { dir, created: !fs.existsSync(dir) };
}
