// The Models tree's runs and the log's job headlines, free of 'vscode' so unit tests run them in plain Node.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Formats a message template whose `{0}`, `{1}`… are replaced by the arguments: vscode.l10n.t's contract. */
export type Translate = (message: string, ...args: Array<string | number>) => string;

/** The English fallback of `Translate`. */
export const english: Translate = (message, ...args) => message.replace(/\{(\d+)\}/g, (m, i: string) => (args[Number(i)] !== undefined ? String(args[Number(i)]) : m));

/** One `.whittle` run of a model: a folder `<model dir>/<model name>.whittle/<run>/` holding report.json. */
export interface RunInfo {
  /** The run folder's name, e.g. `prune-20261127-193012`. */
  name: string;
  /** The run folder. */
  dir: string;
  /** The model the run wrote, when report.json names one that exists. */
  output?: string;
  /** The run's figures in one line, e.g. "50.0% sparse, 0.41x size, -0.1 pt"; undefined when report.json is unreadable. */
  headline?: string;
  /** report.json's modification time (ms), newest first in the tree. */
  mtimeMs: number;
}

/** The `.whittle` folder of a model: `<dir>/<name without .onnx/.json>.whittle` (src/core/output.ts). */
export function runsDirOf(model: string): string {
  return path.join(path.dirname(model), `${path.basename(model).replace(/\.(onnx|json)$/i, '')}.whittle`);
}

/** True when `file` lies inside a run folder (`….whittle/<run>/…`): the tree lists such models under their run. */
export function isRunOutput(file: string): boolean {
  const parts = path.resolve(file).split(path.sep);
  return parts.slice(0, -2).some((p) => p.endsWith('.whittle'));
}

/** The runs of a model, newest first: every sub-folder of its `.whittle` folder that holds a report.json. */
export function listRuns(model: string, t: Translate = english): RunInfo[] {
  const root = runsDirOf(model);
  let names: string[];
  try {
    names = fs.readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
  } catch {
    return [];
  }
  const runs: RunInfo[] = [];
  for (const name of names) {
    const dir = path.join(root, name);
    const reportFile = path.join(dir, 'report.json');
    let stat: fs.Stats;
    try {
      stat = fs.statSync(reportFile);
    } catch {
      continue;
    }
    let report: Record<string, unknown> | undefined;
    try {
      report = JSON.parse(fs.readFileSync(reportFile, 'utf8')) as Record<string, unknown>;
    } catch {
      report = undefined;
    }
    const out = typeof report?.output === 'string' ? path.resolve(dir, report.output) : undefined;
    runs.push({ name, dir, mtimeMs: stat.mtimeMs, ...(out && fs.existsSync(out) ? { output: out } : {}), ...(report ? { headline: runHeadline(report, t) } : {}) });
  }
  return runs.sort((a, b) => b.mtimeMs - a.mtimeMs || b.name.localeCompare(a.name));
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const obj = (v: unknown): Record<string, unknown> | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);

/**
 * A run's figures in one line from its report.json (the write-command contract, DESIGN.md section 7): the
 * quantization mode, the sparsity (for structured pruning, the share of parameters removed), the size ratio, and
 * the accuracy change in points (else top-1 agreement).
 */
export function runHeadline(report: Record<string, unknown>, t: Translate = english): string {
  const parts: string[] = [];
  const mode = typeof report.mode === 'string' ? report.mode : typeof report.dtype === 'string' ? report.dtype : undefined;
  if (mode) parts.push(report.bits === 4 ? `${mode} int4` : mode);
  const sparsity = num(report.sparsity);
  const params = obj(report.params);
  const [pBefore, pAfter] = [num(params?.before), num(params?.after)];
  // Structured pruning removes weights rather than zeroing them: its figure is the parameters it removed.
  if (!mode && report.structured && pBefore && pAfter !== undefined) parts.push(t('{0}% fewer parameters', ((1 - pAfter / pBefore) * 100).toFixed(1)));
  else if (!mode && sparsity !== undefined && sparsity >= 0.0005) parts.push(t('{0}% sparse', (sparsity * 100).toFixed(1)));
  const size = obj(report.sizeBytes);
  const before = num(size?.before);
  const after = num(size?.after);
  if (before && after !== undefined) parts.push(t('{0}x size', (after / before).toFixed(2)));
  const metrics = obj(report.metrics);
  const accuracy = obj(metrics?.accuracy);
  const drop = num(accuracy?.dropPt);
  const gain = num(accuracy?.gainPt);
  const agreement = num(metrics?.top1Agreement);
  const change = drop !== undefined ? -drop : gain;
  if (change !== undefined) parts.push(t('{0} pt', `${change >= 0 ? '+' : '-'}${Math.abs(change).toFixed(1)}`));
  else if (agreement !== undefined) parts.push(t('top-1 agreement {0}%', (agreement * 100).toFixed(1)));
  return parts.join(', ');
}

/** A finished job's result in one English log line: a written model's figures, else the main counts. */
export function jobHeadline(result: unknown): string {
  const r = obj(result);
  if (!r) return String(result);
  if (typeof r.output === 'string' && r.sizeBytes) return `${runHeadline(r)} → ${r.output}`;
  if (Array.isArray(r.ranking)) return `ranked ${r.ranking.length} layers${r.ranking.length ? `, most sensitive first: ${String(r.ranking[0])}` : ''}`;
  const bits: string[] = [];
  if (num(r.samples) !== undefined) bits.push(`${String(r.samples)} samples`);
  if (num(r.accuracy) !== undefined) bits.push(`accuracy ${((r.accuracy as number) * 100).toFixed(2)}%`);
  if (num(r.top1Agreement) !== undefined) bits.push(`top-1 agreement ${((r.top1Agreement as number) * 100).toFixed(1)}%`);
  if (num(r.params) !== undefined) bits.push(`${String(r.params)} parameters`);
  if (typeof r.ep === 'string') bits.push(`ep ${r.ep}`);
  if (typeof r.inUse === 'string') bits.push(`provider in use ${r.inUse}`);
  return bits.length ? bits.join(', ') : 'done';
}
