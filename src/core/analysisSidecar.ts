import * as fs from 'node:fs';
import { sha256File } from './hash';
import * as path from 'node:path';
import type { AnalyzeParams, AnalyzeResult } from '../protocol/analysis';
import { writeFileAtomic } from './atomicWrite';

/**
 * The sensitivity sidecar, `<model dir>/<model name>.whittle/analysis.json`: the last analysis of a model and the
 * user's per-layer choices, which the compression wizard reads. Plain Node, so the CLI can read it too.
 */

/** What the user decided for one layer in the Layer Sensitivity panel. */
export interface LayerChoice {
  /** Leave the layer out of compression. */
  exclude?: true;
  /** Target sparsity in [0, 1). */
  sparsity?: number;
  /** Target weight bits. */
  bits?: number;
}

/** The sidecar's content. */
export interface AnalysisSidecar {
  /** The model's file name (relative to the sidecar's folder's parent). */
  model: string;
  /** SHA-256 of the model file when the analysis ran, so a reader can tell a stale analysis. */
  sha256?: string;
  data: string;
  kind: AnalyzeParams['kind'];
  result: AnalyzeResult;
  choices: Record<string, LayerChoice>;
}


/** Where a model's sidecar lives (beside the run folders of DESIGN.md section 4). */
export function sidecarPath(model: string): string {
  const base = path.basename(model).replace(/\.(onnx|json)$/i, '');
  return path.join(path.dirname(path.resolve(model)), `${base}.whittle`, 'analysis.json');
}

/** Reads a model's sidecar; undefined when there is none or it cannot be parsed. */
export function readSidecar(model: string): AnalysisSidecar | undefined {
  try {
    const parsed = JSON.parse(fs.readFileSync(sidecarPath(model), 'utf8')) as AnalysisSidecar;
    return parsed && typeof parsed === 'object' && parsed.result && Array.isArray(parsed.result.layers) ? { ...parsed, choices: parsed.choices ?? {} } : undefined;
  } catch {
    return undefined;
  }
}

/** Writes a new analysis, keeping the choices already made for layers the model still has. */
export function writeAnalysis(model: string, run: { data: string; kind: AnalyzeParams['kind']; result: AnalyzeResult }): AnalysisSidecar {
  const old = readSidecar(model);
  const names = new Set(run.result.layers.map((l) => l.name));
  const choices = Object.fromEntries(Object.entries(old?.choices ?? {}).filter(([layer]) => names.has(layer)));
  let sha256: string | undefined;
  try {
    sha256 = sha256File(model);
  } catch {
    sha256 = undefined;
  }
  const sidecar: AnalysisSidecar = { model: path.basename(model), ...(sha256 ? { sha256 } : {}), data: run.data, kind: run.kind, result: run.result, choices };
  writeFileAtomic(sidecarPath(model), JSON.stringify(sidecar, null, 2) + '\n');
  return sidecar;
}

/** Sets (or with `null` clears) one layer's choice; needs an analysis to attach to. */
export function writeChoice(model: string, layer: string, choice: LayerChoice | null): AnalysisSidecar {
  const sidecar = readSidecar(model);
  if (!sidecar) throw new Error(`no sensitivity analysis of ${path.basename(model)} yet: run one first (${sidecarPath(model)})`);
  const choices = { ...sidecar.choices };
  const clean: LayerChoice = {};
  if (choice?.exclude) clean.exclude = true;
  if (choice?.sparsity !== undefined && Number.isFinite(choice.sparsity)) {
    if (choice.sparsity < 0 || choice.sparsity >= 1) throw new Error(`sparsity must be in [0, 1), not ${choice.sparsity}`);
    clean.sparsity = choice.sparsity;
  }
  if (choice?.bits !== undefined && Number.isFinite(choice.bits)) {
    if (!Number.isInteger(choice.bits) || choice.bits < 1 || choice.bits > 16) throw new Error(`bits must be a whole number from 1 to 16, not ${choice.bits}`);
    clean.bits = choice.bits;
  }
  if (Object.keys(clean).length) choices[layer] = clean;
  else delete choices[layer];
  const next = { ...sidecar, choices };
  writeFileAtomic(sidecarPath(model), JSON.stringify(next, null, 2) + '\n');
  return next;
}
