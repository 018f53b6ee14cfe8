import * as fs from 'node:fs';
import { commandRecipe, recipeStep, recipeText } from '../../recipe/write';
import { prunePass } from './unstructured';
import { pruneExtra } from '../../recipe/params';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { writeFileAtomic } from '../../atomicWrite';
import { openDataset } from '../../data';
import { magnitudePrune, sortedMagnitudes } from '../../analysis/sensitivity';
import { InputError } from '../../errors';
import { TfjsModel } from '../../formats/tfjs/read';
import { writeTfjs, type TfjsEncoding } from '../../formats/tfjs/write';
import type { LayerKind } from '../../model/layers';
import { outputDir } from '../../output';
import type { EvalResult, Progress } from '../../runtime/evaluate';
import { runTfjs } from '../../runtime/evaluateTfjs';
import { loadTfjs, type TfjsRunner } from '../../runtime/tfjs';

/** What `whittle prune` takes for a TF.js model: magnitude pruning, per layer or with one global threshold. */
export interface TfjsPruneParams {
  model: string;
  sparsity: number;
  scope?: 'layer' | 'global';
  exclude?: string[];
  /** Stored form of the written weights (default float32: zeros that gzip well). */
  dtype?: TfjsEncoding;
  data?: string;
  output?: string;
  shardBytes?: number;
  out?: string;
  limit?: number;
  seed?: number;
  shapes?: Record<string, number[]>;
}

/** The CLI contract object of a command that writes a model (DESIGN.md section 7), for TF.js prune. */
export interface TfjsPruneResult {
  output: string;
  format: 'tfjs';
  sizeBytes: { before: number; after: number; gzip: number; gzipBefore: number };
  shards: Array<{ file: string; bytes: number }>;
  /** Parameter elements, zeros excluded after. */
  params: { before: number; after: number };
  /** Share of zeros over the pruned layers' weights. */
  sparsity: number;
  metrics: {
    before: { samples: number; accuracy?: number };
    after: { samples: number; accuracy?: number };
    top1Agreement?: number;
    cosine?: number | string | null;
    accuracy?: { before: number; after: number; dropPt: number };
  };
  latencyMs: { before: number; after: number };
  ep: string;
  layers: Array<{ layer: string; op: string; params: number; zeros: number; sparsity: number }>;
  warnings: string[];
  recipe: string;
  report: string;
  data?: string;
}

/** Layer kinds whose main weight is pruned (biases and normalisation parameters stay). */
const prunable = new Set<LayerKind>(['conv', 'convTranspose', 'gemm', 'matmul', 'rnn', 'embedding']);

/**
 * Magnitude-prunes a TF.js model's main layer weights (the smallest |w| set to zero, per layer or under one
 * global threshold) and writes the run folder; zeros are stored as float32 by default, and the gzip size,
 * which is what a web server sends, is reported.
 */
export async function runPruneTfjs(p: TfjsPruneParams, signal?: AbortSignal, progress: Progress = () => {}): Promise<TfjsPruneResult> {
  if (!(p.sparsity >= 0 && p.sparsity <= 1)) throw new InputError(undefined, `--sparsity must be between 0 and 1, not ${p.sparsity}`);
  const model = TfjsModel.open(p.model);
  const exclude = new Set(p.exclude ?? []);
  const layers = model.layers();
  for (const e of exclude) if (!layers.some((l) => l.name === e)) throw new InputError(p.model, `--exclude: no layer named '${e}'`);
  const targets = layers.filter((l) => prunable.has(l.kind) && !exclude.has(l.name) && l.weight.dtype === 1);
  if (!targets.length) throw new InputError(p.model, 'no prunable layer (conv, dense, matmul, rnn, embedding) with float32 weights');
  const values = new Map(targets.map((l) => [l.weight.name, Float32Array.from(l.weight.toFloat32())]));
  if (p.scope === 'global') {
    const all = new Float32Array([...values.values()].reduce((a, v) => a + v.length, 0));
    let o = 0;
    for (const v of values.values()) {
      for (let i = 0; i < v.length; i++) all[o + i] = Math.abs(v[i]);
      o += v.length;
    }
    const k = Math.round(p.sparsity * all.length);
    const sorted = sortedMagnitudes(all);
    const threshold = k > 0 ? sorted[k - 1] : -1;
    // Ties at the threshold are cut in order until exactly k are zero.
    let budget = k - sorted.subarray(0, k).filter((x) => x < threshold).length;
    for (const v of values.values()) {
      for (let i = 0; i < v.length; i++) {
        const a = Math.abs(v[i]);
        if (a < threshold || (a === threshold && budget-- > 0)) v[i] = 0;
      }
    }
  } else {
    for (const [name, v] of values) {
      const out = new Float32Array(v.length);
      magnitudePrune(v, sortedMagnitudes(v), p.sparsity, out);
      values.set(name, out);
    }
  }

  const dtype = p.dtype ?? 'float32';
  const encodings = dtype === 'float32' ? undefined : Object.fromEntries([...model.weights().values()].filter((w) => w.spec.dtype === 'float32').map((w) => [w.spec.name, dtype]));
  const outDir = outputDir(p.model, 'prune', p.out);
  const createdDir = !fs.existsSync(outDir);
  const runners: TfjsRunner[] = [];
  try {
    const written = writeTfjs(model, path.join(outDir, path.basename(p.model)), { values, encodings, shardBytes: p.shardBytes });
    const pruned = TfjsModel.open(written.file);
    const warnings: string[] = [];
    let before: EvalResult | undefined;
    let after: EvalResult | undefined;
    let ep = 'tfjs';
    if (p.data) {
      const original = await loadTfjs(model, { output: p.output });
      runners.push(original);
      const candidate = await loadTfjs(pruned, { output: p.output });
      runners.push(candidate);
      warnings.push(...original.notes, ...original.backend.warnings);
      ep = `tfjs-${original.backend.backend}`;
      const opts = { limit: p.limit, seed: p.seed, shapes: p.shapes };
      progress(undefined, 'evaluating the original');
      before = await runTfjs(original, undefined, await openDataset(p.data, model.inputs(), opts), { data: p.data }, signal);
      progress(undefined, 'evaluating the pruned model');
      after = await runTfjs(candidate, original, await openDataset(p.data, model.inputs(), opts), { data: p.data }, signal);
      warnings.push(...before.warnings);
    } else warnings.push('no --data: accuracy before and after was not measured');

    const rows = targets.map((l) => {
      const v = pruned.weights().get(l.weight.name)!.ref.toFloat32();
      const zeros = v.reduce((a, x) => a + (x === 0 ? 1 : 0), 0);
      return { layer: l.name, op: l.op, params: v.length, zeros, sparsity: v.length ? zeros / v.length : 0 };
    });
    const floatCount = (m: TfjsModel) => [...m.weights().values()].filter((w) => w.spec.dtype === 'float32').reduce((a, w) => a + w.ref.toFloat32().reduce((n, x) => n + (x !== 0 ? 1 : 0), 0), 0);
    const total = [...model.weights().values()].filter((w) => w.spec.dtype === 'float32').reduce((a, w) => a + w.ref.count, 0);
    const gz = (files: string[]) => zlib.gzipSync(Buffer.concat(files.map((f) => fs.readFileSync(f))), { level: 9 }).byteLength;
    const prunedParams = rows.reduce((a, r) => a + r.params, 0);
    const result: TfjsPruneResult = {
      output: written.file,
      format: 'tfjs',
      sizeBytes: {
        before: model.shards.reduce((a, f) => a + fs.statSync(f).size, fs.statSync(p.model).size),
        after: written.shards.reduce((a, s) => a + s.bytes, fs.statSync(written.file).size),
        gzip: gz(written.shards.map((s) => s.file)),
        gzipBefore: gz(model.shards),
      },
      shards: written.shards,
      params: { before: total, after: floatCount(pruned) },
      sparsity: prunedParams ? rows.reduce((a, r) => a + r.zeros, 0) / prunedParams : 0,
      metrics: {
        before: { samples: before?.samples ?? 0, ...(before?.accuracy !== undefined ? { accuracy: before.accuracy } : {}) },
        after: { samples: after?.samples ?? 0, ...(after?.accuracy !== undefined ? { accuracy: after.accuracy } : {}) },
        ...(after?.top1Agreement !== undefined ? { top1Agreement: after.top1Agreement } : {}),
        ...(after?.cosine !== undefined ? { cosine: after.cosine } : {}),
        ...(before?.accuracy !== undefined && after?.accuracy !== undefined
          ? { accuracy: { before: before.accuracy, after: after.accuracy, dropPt: Math.round((before.accuracy - after.accuracy) * 1e6) / 1e4 } }
          : {}),
      },
      latencyMs: { before: before?.latencyMs.median ?? 0, after: after?.latencyMs.median ?? 0 },
      ep,
      layers: rows,
      warnings: [...new Set(warnings)],
      recipe: path.join(outDir, 'recipe.whittle.json'),
      report: path.join(outDir, 'report.json'),
      ...(p.data ? { data: p.data } : {}),
    };
    const recipe = commandRecipe({
      dir: outDir,
      source: p.model,
      data: p.data,
      seed: p.seed,
      limit: p.limit,
      shapes: p.shapes,
      passes: [recipeStep('prune', { method: 'magnitude', sparsity: p.sparsity, scope: p.scope, exclude: p.exclude, tfjsDtype: dtype !== 'float32' ? dtype : undefined, output: p.output, shardSize: p.shardBytes }, outDir, [...prunePass.params, ...pruneExtra])],
    });
    writeFileAtomic(result.recipe, recipeText(recipe));
    writeFileAtomic(result.report, JSON.stringify(result, null, 2) + '\n');
    writeFileAtomic(path.join(outDir, 'report.md'), [
      `# TF.js magnitude pruning: ${p.sparsity} (${p.scope ?? 'layer'})`,
      '',
      `Output \`${result.output}\`; stored as ${dtype}; ${result.ep}.`,
      '',
      '| | before | after |',
      '|---|---:|---:|',
      `| bytes (model.json + shards) | ${result.sizeBytes.before} | ${result.sizeBytes.after} |`,
      `| gzip -9 of the shards | ${result.sizeBytes.gzipBefore} | ${result.sizeBytes.gzip} |`,
      ...(result.metrics.accuracy ? [`| accuracy | ${result.metrics.accuracy.before} | ${result.metrics.accuracy.after} |`] : []),
      '',
      '| layer | op | params | zeros | sparsity |',
      '|---|---|---:|---:|---:|',
      ...rows.map((r) => `| ${r.layer} | ${r.op} | ${r.params} | ${r.zeros} | ${r.sparsity.toFixed(4)} |`),
      '',
    ].join('\n'));
    return result;
  } catch (err) {
    if (createdDir) fs.rmSync(outDir, { recursive: true, force: true });
    throw err;
  } finally {
    for (const r of runners) r.dispose();
  }
}
