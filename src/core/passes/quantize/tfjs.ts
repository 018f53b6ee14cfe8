import * as fs from 'node:fs';
import { commandRecipe, recipeStep, recipeText } from '../../recipe/write';
import { quantizeParams } from './params';
import { quantizeExtra } from '../../recipe/params';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { writeFileAtomic } from '../../atomicWrite';
import { openDataset } from '../../data';
import { InputError } from '../../errors';
import { dequantize, TfjsModel } from '../../formats/tfjs/read';
import { encodeTfjs, encodeWeight, writeTfjs, type TfjsEncoding } from '../../formats/tfjs/write';
import { outputDir } from '../../output';
import type { EvalResult, Progress } from '../../runtime/evaluate';
import { runTfjs } from '../../runtime/evaluateTfjs';
import { loadTfjs, type TfjsRunner } from '../../runtime/tfjs';

/** The stored forms `whittle quantize` offers for TF.js: one for every float weight, or a per-layer uint8/float16 mix. */
export type TfjsQuantDtype = 'uint8' | 'uint16' | 'float16' | 'mix';

/** What `whittle quantize` takes for a TF.js model. */
export interface TfjsQuantizeParams {
  model: string;
  dtype: TfjsQuantDtype;
  /** Evaluation data (--data); also the sensitivity data of `mix` unless `calibData` is given. */
  data?: string;
  /** Data the mix is chosen on (--calib-data); keep it apart from the evaluation data. */
  calibData?: string;
  calibLimit?: number;
  /** mix: largest accuracy drop in points on the choosing data (default 0.2). */
  maxDrop?: number;
  /** Layers kept as they are (float32). */
  exclude?: string[];
  /** The output to score (default: the last). */
  output?: string;
  shardBytes?: number;
  out?: string;
  limit?: number;
  seed?: number;
  shapes?: Record<string, number[]>;
}

/** One layer of a TF.js quantize run. */
export interface TfjsQuantLayer {
  layer: string;
  op: string;
  encoding: TfjsEncoding;
  /** Stored bytes of the layer's weights. */
  bytes: number;
  /** SQNR (dB) of the layer's stored weights against the float32 ones (all its tensors together). */
  sqnrDb: number | 'inf';
  /** SQNR (dB) each candidate form would give (uint8, float16), which the Python converter never shows. */
  candidates: Record<string, number | 'inf'>;
  /** mix: accuracy drop (points) on the choosing data with this layer alone in uint8. */
  uint8DropPt?: number;
  /** mix: KL of the scored output against float with this layer alone in uint8. */
  uint8Kl?: number;
  reason?: string;
}

/** The CLI contract object of a command that writes a model (DESIGN.md section 7), for TF.js quantize. */
export interface TfjsQuantizeResult {
  output: string;
  format: 'tfjs';
  dtype: TfjsQuantDtype;
  sizeBytes: { before: number; after: number; gzip: number; gzipBefore: number };
  shards: Array<{ file: string; bytes: number }>;
  params: { before: number; after: number };
  sparsity: number;
  metrics: {
    before: { samples: number; accuracy?: number };
    after: { samples: number; accuracy?: number };
    top1Agreement?: number;
    cosine?: number | string | null;
    sqnrDb?: number | string | null;
    accuracy?: { before: number; after: number; dropPt: number };
  };
  latencyMs: { before: number; after: number };
  ep: string;
  layers: TfjsQuantLayer[];
  mix?: { maxDropPt: number; reached: boolean; chosenOn: string; tries: Array<{ float16: string[]; dropPt: number }> };
  warnings: string[];
  recipe: string;
  report: string;
  data?: string;
  scoredOutput: string;
}

const dbOf = (x: number): number | 'inf' => (Number.isFinite(x) ? Math.round(x * 100) / 100 : 'inf');

/**
 * Quantizes a TF.js model's weights into TF.js's own stored forms and writes the run folder: model.json and
 * shards, recipe.whittle.json, report.json and report.md. `mix` ranks layers by the accuracy cost of uint8
 * (each layer alone, on the choosing data) and moves the worst to float16 until the drop holds.
 */
export async function runQuantizeTfjs(p: TfjsQuantizeParams, signal?: AbortSignal, progress: Progress = () => {}): Promise<TfjsQuantizeResult> {
  const model = TfjsModel.open(p.model);
  const warnings: string[] = [];
  const exclude = new Set(p.exclude ?? []);
  const layers = model.layers();
  for (const e of exclude) if (!layers.some((l) => l.name === e)) throw new InputError(p.model, `--exclude: no layer named '${e}'`);
  const floatWeights = [...model.weights().values()].filter((w) => w.spec.dtype === 'float32');
  const owner = new Map<string, string>();
  for (const l of layers) for (const t of Object.values(l.tensors)) owner.set(t.name, l.name);
  const maxDrop = p.maxDrop ?? 0.2;
  if (p.dtype === 'mix' && !p.data && !p.calibData) throw new InputError(undefined, '--tfjs-dtype mix chooses per layer from measured accuracy: give --data (and ideally --calib-data apart from it)');

  /** Encodings of every float weight: a layer's form for its weights, `rest` for the others. */
  const plan = (perLayer: Map<string, TfjsEncoding>, rest: TfjsEncoding): Record<string, TfjsEncoding> => {
    const out: Record<string, TfjsEncoding> = {};
    for (const w of floatWeights) {
      const l = owner.get(w.spec.name);
      if (l && exclude.has(l)) continue;
      out[w.spec.name] = (l ? perLayer.get(l) : undefined) ?? rest;
    }
    return out;
  };
  const load = async (encodings: Record<string, TfjsEncoding>): Promise<TfjsRunner> => {
    const enc = encodeTfjs(model, { encodings });
    return loadTfjs(model, { output: p.output, override: { weightSpecs: enc.specs, weightData: enc.data.slice().buffer } });
  };

  const dataOpts = { limit: p.limit, seed: p.seed, shapes: p.shapes };
  const original = await loadTfjs(model, { output: p.output });
  warnings.push(...original.notes, ...original.backend.warnings);
  const runners: TfjsRunner[] = [original];
  try {
    const perLayer = new Map<string, TfjsEncoding>();
    let rest: TfjsEncoding = p.dtype === 'mix' ? 'uint8' : p.dtype;
    const sens = new Map<string, { dropPt: number; kl?: number }>();
    let mix: TfjsQuantizeResult['mix'];
    if (p.dtype === 'mix') {
      const chooseSpec = p.calibData ?? p.data!;
      if (!p.calibData) warnings.push('mix chosen on --data itself (no --calib-data): the reported accuracy is not independent of the choice');
      // One dataset for every try: batches() starts over each time, and an idx file is inflated once.
      const chooseData = await openDataset(chooseSpec, model.inputs(), { ...dataOpts, limit: p.calibLimit ?? p.limit });
      const choose = async () => chooseData;
      const base = await runTfjs(original, undefined, await choose(), { data: chooseSpec }, signal);
      const drop = (r: EvalResult) => (base.accuracy !== undefined && r.accuracy !== undefined ? (base.accuracy - r.accuracy) * 100 : (1 - (r.top1Agreement ?? 1)) * 100);
      const measure = async (encodings: Record<string, TfjsEncoding>) => {
        const r = await load(encodings);
        try {
          return await runTfjs(r, original, await choose(), { data: chooseSpec }, signal);
        } finally {
          r.dispose();
        }
      };
      const quantizable = layers.filter((l) => !exclude.has(l.name));
      for (const [i, l] of quantizable.entries()) {
        progress(i / quantizable.length, `sensitivity of ${l.name} to uint8`);
        const only = new Map(quantizable.map((x) => [x.name, (x.name === l.name ? 'uint8' : 'float32') as TfjsEncoding]));
        const r = await measure(plan(only, 'float32'));
        sens.set(l.name, { dropPt: round(drop(r), 4), kl: r.kl });
      }
      // Most sensitive first: accuracy cost, then output divergence.
      const ranked = [...quantizable].sort((a, b) => sens.get(b.name)!.dropPt - sens.get(a.name)!.dropPt || (sens.get(b.name)!.kl ?? 0) - (sens.get(a.name)!.kl ?? 0));
      const tries: Array<{ float16: string[]; dropPt: number }> = [];
      const f16: string[] = [];
      for (;;) {
        for (const l of quantizable) perLayer.set(l.name, f16.includes(l.name) ? 'float16' : 'uint8');
        const r = await measure(plan(perLayer, 'uint8'));
        const d = round(drop(r), 4);
        tries.push({ float16: [...f16], dropPt: d });
        progress(undefined, `mix with ${f16.length} float16 layer(s): drop ${d} pt`);
        if (d <= maxDrop || f16.length === ranked.length) break;
        f16.push(ranked[f16.length].name);
      }
      mix = { maxDropPt: maxDrop, reached: tries[tries.length - 1].dropPt <= maxDrop, chosenOn: chooseSpec, tries };
      rest = 'uint8';
    }

    const encodings = plan(perLayer, rest);
    const outDir = outputDir(p.model, 'quantize', p.out);
    const createdDir = !fs.existsSync(outDir);
    try {
      const written = writeTfjs(model, path.join(outDir, path.basename(p.model)), { encodings, shardBytes: p.shardBytes });
      const quantized = TfjsModel.open(written.file);
      const after = await loadTfjs(quantized, { output: p.output });
      runners.push(after);
      let before: EvalResult | undefined;
      let afterEval: EvalResult | undefined;
      if (p.data) {
        progress(undefined, 'evaluating the original');
        before = await runTfjs(original, undefined, await openDataset(p.data, model.inputs(), dataOpts), { data: p.data }, signal);
        progress(undefined, 'evaluating the quantized model');
        afterEval = await runTfjs(after, original, await openDataset(p.data, model.inputs(), dataOpts), { data: p.data }, signal);
      }

      const byWeight = new Map(written.weights.map((w) => [w.name, w]));
      const layerRows: TfjsQuantLayer[] = layers.map((l) => {
        const tensors = Object.values(l.tensors).filter((t) => t.dtype === 1);
        const enc = encodings[l.weight.name] ?? 'float32';
        const ref = tensors.map((t) => t.toFloat32());
        const candidates: Record<string, number | 'inf'> = {};
        for (const c of ['uint8', 'uint16', 'float16'] as const) {
          const back = ref.map((v) => {
            const e = encodeWeight(v, c);
            return Float32Array.from(dequantize(e.bytes, e.quantization!, 'float32'));
          });
          candidates[c] = dbOf(sqnrOf(ref, back));
        }
        const stored = tensors.map((t) => quantized.weights().get(t.name)!.ref.toFloat32());
        const s = sens.get(l.name);
        return {
          layer: l.name,
          op: l.op,
          encoding: enc,
          bytes: tensors.reduce((a, t) => a + (byWeight.get(t.name)?.bytes ?? 0), 0),
          sqnrDb: dbOf(sqnrOf(ref, stored)),
          candidates,
          ...(s ? { uint8DropPt: s.dropPt, ...(s.kl !== undefined ? { uint8Kl: s.kl } : {}) } : {}),
          ...(exclude.has(l.name) ? { reason: 'excluded' } : enc === 'float16' && p.dtype === 'mix' ? { reason: 'sensitive: kept float16' } : {}),
        };
      });

      const sourceBytes = model.shards.map((f) => fs.readFileSync(f));
      const outBytes = written.shards.map((s) => fs.readFileSync(s.file));
      const gz = (parts: Buffer[]) => zlib.gzipSync(Buffer.concat(parts), { level: 9 }).byteLength;
      const params = floatWeights.reduce((a, w) => a + w.ref.count, 0);
      let zeros = 0;
      for (const w of floatWeights) for (const v of w.ref.toFloat32()) if (v === 0) zeros++;
      const result: TfjsQuantizeResult = {
        output: written.file,
        format: 'tfjs',
        dtype: p.dtype,
        sizeBytes: {
          before: sourceBytes.reduce((a, b) => a + b.byteLength, 0) + fs.statSync(p.model).size,
          after: outBytes.reduce((a, b) => a + b.byteLength, 0) + fs.statSync(written.file).size,
          gzip: gz(outBytes),
          gzipBefore: gz(sourceBytes),
        },
        shards: written.shards,
        params: { before: params, after: params },
        sparsity: params ? zeros / params : 0,
        metrics: {
          before: { samples: before?.samples ?? 0, ...(before?.accuracy !== undefined ? { accuracy: before.accuracy } : {}) },
          after: { samples: afterEval?.samples ?? 0, ...(afterEval?.accuracy !== undefined ? { accuracy: afterEval.accuracy } : {}) },
          ...(afterEval?.top1Agreement !== undefined ? { top1Agreement: afterEval.top1Agreement } : {}),
          ...(afterEval?.cosine !== undefined ? { cosine: afterEval.cosine, sqnrDb: afterEval.sqnrDb } : {}),
          ...(before?.accuracy !== undefined && afterEval?.accuracy !== undefined
            ? { accuracy: { before: before.accuracy, after: afterEval.accuracy, dropPt: round((before.accuracy - afterEval.accuracy) * 100, 4) } }
            : {}),
        },
        latencyMs: { before: before?.latencyMs.median ?? 0, after: afterEval?.latencyMs.median ?? 0 },
        ep: `tfjs-${original.backend.backend}`,
        layers: layerRows,
        ...(mix ? { mix } : {}),
        warnings: [...new Set([...warnings, ...(before?.warnings ?? [])])],
        recipe: path.join(outDir, 'recipe.whittle.json'),
        report: path.join(outDir, 'report.json'),
        ...(p.data ? { data: p.data } : {}),
        scoredOutput: original.outputs[original.scored],
      };
      if (!p.data) result.warnings.push('no --data: accuracy before and after was not measured');
      const recipe = commandRecipe({
        dir: outDir,
        source: p.model,
        data: p.data,
        seed: p.seed,
        limit: p.limit,
        shapes: p.shapes,
        passes: [recipeStep('quantize', { tfjsDtype: p.dtype, ...(p.dtype === 'mix' ? { maxDrop, calibData: p.calibData } : {}), calibLimit: p.calibLimit, exclude: p.exclude, output: p.output, shardSize: p.shardBytes }, outDir, [...quantizeParams, ...quantizeExtra])],
      });
      writeFileAtomic(result.recipe, recipeText(recipe));
      writeFileAtomic(result.report, JSON.stringify(result, null, 2) + '\n');
      writeFileAtomic(path.join(outDir, 'report.md'), tfjsQuantizeMarkdown(result));
      return result;
    } catch (err) {
      if (createdDir) fs.rmSync(outDir, { recursive: true, force: true });
      throw err;
    }
  } finally {
    for (const r of runners) r.dispose();
  }
}

/** SQNR over several tensors taken together. */
function sqnrOf(ref: Float32Array[], test: Float32Array[]): number {
  let signal = 0;
  let noise = 0;
  ref.forEach((r, k) => {
    const t = test[k];
    for (let i = 0; i < r.length; i++) {
      signal += r[i] * r[i];
      noise += (r[i] - t[i]) ** 2;
    }
  });
  return noise === 0 ? Infinity : 10 * Math.log10(signal / noise);
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** report.md of a TF.js quantize run. */
export function tfjsQuantizeMarkdown(r: TfjsQuantizeResult): string {
  const pct = (x?: number) => (x === undefined ? '' : `${(x * 100).toFixed(2)}%`);
  const m = r.metrics;
  return [
    `# TF.js quantization: ${r.dtype}`,
    '',
    `Output: \`${r.output}\` (${r.shards.length} shard(s)); backend ${r.ep}; scored output \`${r.scoredOutput}\`.`,
    '',
    '| | before | after |',
    '|---|---:|---:|',
    `| bytes (model.json + shards) | ${r.sizeBytes.before} | ${r.sizeBytes.after} |`,
    `| gzip -9 of the shards | ${r.sizeBytes.gzipBefore} | ${r.sizeBytes.gzip} |`,
    ...(m.accuracy ? [`| accuracy | ${pct(m.accuracy.before)} | ${pct(m.accuracy.after)} |`] : []),
    `| latency median (ms, batch 1) | ${r.latencyMs.before} | ${r.latencyMs.after} |`,
    '',
    ...(m.top1Agreement !== undefined ? [`Top-1 agreement with the original ${pct(m.top1Agreement)}, output cosine ${m.cosine}.`, ''] : []),
    ...(r.mix ? [`Mix chosen on \`${r.mix.chosenOn}\` for a drop of at most ${r.mix.maxDropPt} pt: ${r.mix.tries.map((t) => `${t.float16.length} float16 -> ${t.dropPt} pt`).join(', ')}.`, ''] : []),
    '| layer | op | stored as | bytes | SQNR dB | uint8 SQNR | float16 SQNR | uint8 alone: drop pt |',
    '|---|---|---|---:|---:|---:|---:|---:|',
    ...r.layers.map((l) => `| ${l.layer} | ${l.op} | ${l.encoding} | ${l.bytes} | ${l.sqnrDb} | ${l.candidates.uint8} | ${l.candidates.float16} | ${l.uint8DropPt ?? ''} |`),
    '',
    ...r.warnings.map((w) => `- warning: ${w}`),
    '',
  ].join('\n');
}
