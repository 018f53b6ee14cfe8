import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../../atomicWrite';
import { InputError } from '../../errors';
import { OnnxModel, isParameter } from '../../formats/onnx/model';
import { sha256File, writeOnnx } from '../../formats/onnx/write';
import type { EpName } from '../../runtime/ep';
import { evaluate, type EvalResult, type Progress } from '../../runtime/evaluate';
import { compareLatency, type LatencyComparison } from '../../runtime/timing';
import { commandRecipe, recipeStep, recipeText } from '../../recipe/write';
import { quantizeExtra } from '../../recipe/params';
import { parseParams, type PassContext } from '../pass';
import { externalFiles, gzipBytes, modelBytes, runFolder } from '../runFolder';
import { normalizeQuantizeOptions, quantizePass } from './index';
import type { QuantizeOptions, QuantizeReport, QuantLayerSummary } from './params';

/** What `whittle quantize` takes: the pass's parameters (raw or parsed; validated here) and the run's own. */
export interface QuantizeParams extends Partial<Omit<QuantizeOptions, 'exclude' | 'keepFp32' | 'bits'>> {
  model: string;
  bits?: 8 | 4 | '8' | '4';
  exclude?: string[] | string;
  keepFp32?: string[] | string;
  /** Evaluation data (--data SPEC); also the calibration data unless `calibData` is given. */
  data?: string;
  /** Calibration data (--calib-data SPEC), e.g. `t10k-images-idx3-ubyte.gz#:512`. */
  calibData?: string;
  out?: string;
  ep?: EpName;
  limit?: number;
  /** Calibration samples cap (default: `limit`). */
  calibLimit?: number;
  seed?: number;
  shapes?: Record<string, number[]>;
  /** `--max-drop`: how many quantize-and-evaluate tries the fallback may spend (default 8). */
  maxTries?: number;
  /** `--max-drop`: seconds after which the fallback starts no new try (default: no limit). */
  maxSeconds?: number;
}

/** Accuracy (when labelled) and sample count of one model on the evaluation data. */
export interface QuantFigures {
  samples: number;
  accuracy?: number;
}

/** One try of the accuracy-aware fallback: which layers stayed float, which activation ranges were widened, and what it cost. */
export interface FallbackTry {
  float: string[];
  fullRange?: string[];
  dropPt: number;
}

/**
 * The CLI contract object of a command that writes a model (DESIGN.md section 7), for quantize, plus the
 * mode's own report: per-layer formats and weight SQNR, calibration, the preflight timing and the fallback.
 * `sparsity` is the share of weight elements that are exactly zero in the source (quantization keeps them:
 * symmetric weights map 0 to 0). `params` counts parameter elements, which quantization does not change.
 */
export interface QuantizeResult {
  output: string;
  sizeBytes: { before: number; after: number; gzip: number; gzipBefore: number };
  params: { before: number; after: number };
  sparsity: number;
  metrics: {
    before: QuantFigures;
    after: QuantFigures;
    top1Agreement?: number;
    cosine?: number | string | null;
    sqnrDb?: number | string | null;
    accuracy?: { before: number; after: number; dropPt: number };
  };
  latencyMs: { before: number; after: number };
  ep: string;
  warnings: string[];
  recipe: string;
  report: string;
  mode: QuantizeOptions['mode'];
  layers: QuantLayerSummary[];
  calibration?: QuantizeReport['calibration'];
  weightBits?: QuantizeReport['weightBits'];
  floatOps?: QuantizeReport['floatOps'];
  optimizedOps?: QuantizeReport['optimizedOps'];
  activations?: QuantizeReport['activations'];
  /** Static: each calibrated activation's range, the other calibrators' ranges and its histogram. */
  ranges?: QuantizeReport['ranges'];
  /** Latency of the written model against the source at batch 1, interleaved in one process, before this returns. */
  preflight: LatencyComparison & { faster: boolean; advice?: string };
  fallback?: { maxDropPt: number; reached: boolean; tries: FallbackTry[]; float: string[]; fullRange?: Array<{ tensor: string; reason: string }> };
  data: string;
  calibData: string;
}

/** Drop in accuracy points (or top-1 disagreement in points when the data has no labels). */
function dropPt(before: EvalResult, after: EvalResult): number {
  if (before.accuracy !== undefined && after.accuracy !== undefined) return round((before.accuracy - after.accuracy) * 100, 4);
  return round((1 - (after.top1Agreement ?? 1)) * 100, 4);
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * Quantizes a model and writes the run folder (`<model dir>/<name>.whittle/quantize-<stamp>/` or --out): the
 * model with provenance, recipe.whittle.json, report.json (the contract object) and report.md, each
 * atomically. With `maxDrop`, layers go back to float, worst first, until the evaluated drop holds or the
 * tries run out; the best model found is always the one written. The source is only read; if anything fails,
 * a run folder this call created is removed.
 */
export async function runQuantize(p: QuantizeParams, signal?: AbortSignal, progress: Progress = () => {}): Promise<QuantizeResult> {
  checkMaxDrop(p);
  const options = normalizeQuantizeOptions(parseParams<QuantizeOptions>(quantizePass.params, p as unknown as Record<string, unknown>));
  const source = path.resolve(p.model);
  const warnings: string[] = [];
  const sourceModel = OnnxModel.open(source);
  const { dir, created } = runFolder(source, 'quantize', p.out);
  const out = path.join(dir, path.basename(source).replace(/\.onnx$/i, '') + '.onnx');
  const data = p.data ?? 'random';
  const calibData = p.calibData ?? data;
  if (!p.data) warnings.push('no --data given: metrics were measured on random inputs, so accuracy is unknown and agreement only indicative');
  const calibration = { data: calibData, limit: p.calibLimit ?? p.limit, seed: p.seed, shapes: p.shapes, ep: p.ep };
  const common = { data, ep: p.ep, limit: p.limit, seed: p.seed, shapes: p.shapes };
  const tryFiles: string[] = [];
  try {
    const sourceSha256 = sha256File(source);
    const params = [...sourceModel.weights().values()].filter((w) => w.ref.numeric && isParameter(w.ref));
    const paramCount = params.reduce((a, w) => a + w.ref.count, 0);
    const zeros = params.reduce((a, w) => a + (w.ref.dtype === 1 ? countZeros(w.ref.toFloat32()) : 0), 0);
    fs.mkdirSync(dir, { recursive: true });

    /** Quantizes a fresh copy of the source with `float` layers kept in float (and `fullRange` activations over their observed range), and writes it to `file`. */
    const attempt = async (float: string[], file: string, fullRange: string[] = []): Promise<{ model: OnnxModel; report: QuantizeReport; passWarnings: string[]; files: string[] }> => {
      const model = OnnxModel.open(source);
      const ctx: PassContext = { signal, progress, warnings: [], calibration };
      const report = await quantizePass.apply(model, { ...options, exclude: [...options.exclude, ...float], ...(fullRange.length ? { fullRange: [...(options.fullRange ?? []), ...fullRange] } : {}) }, ctx);
      const steps = [{ pass: quantizePass.name, params: { ...report.params, exclude: [...options.exclude, ...float] } }];
      const written = writeOnnx(model, file, { provenance: { sourceSha256, recipe: JSON.stringify(steps) } });
      return { model, report, passWarnings: ctx.warnings, files: [written.file, ...(written.dataFile ? [written.dataFile] : [])] };
    };

    progress(undefined, 'quantizing');
    let chosen = await attempt([], out);
    progress(undefined, 'evaluating the original');
    const before = await evaluate({ ...common, model: source }, signal, progress);
    progress(undefined, 'evaluating the quantized model');
    let after = await evaluate({ ...common, model: out, reference: source }, signal, progress);
    let float: string[] = [];
    let fallback: QuantizeResult['fallback'];

    if (options.maxDrop !== undefined) {
      const maxDrop = options.maxDrop;
      const tries: FallbackTry[] = [{ float: [], dropPt: dropPt(before, after) }];
      const budget = p.maxTries ?? 8;
      // Tries stop at the tries budget or the time budget, whichever comes first; the best model so far stays.
      const deadline = p.maxSeconds !== undefined ? Date.now() + p.maxSeconds * 1000 : Infinity;
      const more = () => tries.length < budget && Date.now() < deadline;
      let best = { float: [] as string[], fullRange: [] as string[], drop: tries[0].dropPt };
      const tryWith = async (floatLayers: string[], fullRange: string[]): Promise<number> => {
        const file = path.join(dir, `.try-${tries.length}.onnx`);
        tryFiles.push(file);
        progress(undefined, `fallback: ${floatLayers.length} layer(s) in float${fullRange.length ? `, ${fullRange.length} activation range(s) widened` : ''}`);
        const t = await attempt(floatLayers, file, fullRange);
        t.model.close();
        const r = await evaluate({ ...common, model: file, reference: source }, signal, progress);
        fs.rmSync(file, { force: true });
        const drop = dropPt(before, r);
        tries.push({ float: floatLayers, ...(fullRange.length ? { fullRange } : {}), dropPt: drop });
        if (drop < best.drop || (drop <= maxDrop && best.drop > maxDrop)) best = { float: floatLayers, fullRange, drop };
        return drop;
      };
      // The fewest of `count` ranked changes that hold the drop: double until a try holds, then bisect
      // between the last miss and the hit. Undefined when none held within the budget.
      const fewest = async (count: number, run: (k: number) => Promise<number>): Promise<number | undefined> => {
        let lo = 0;
        let hi: number | undefined;
        let k = 1;
        while (hi === undefined && more() && k <= count) {
          if ((await run(k)) <= maxDrop) hi = k;
          else lo = k;
          k = Math.min(k * 2, count === k ? k + 1 : count);
        }
        while (hi !== undefined && hi - lo > 1 && more()) {
          const mid = (lo + hi) >> 1;
          if ((await run(mid)) <= maxDrop) hi = mid;
          else lo = mid;
        }
        return hi;
      };

      // Static with a clipping calibrator: the error often sits in an activation's clipped range, which the
      // layers around it keep when they go to float. So first widen the worst clipped ranges to their
      // observed min..max (every layer stays int8), and return layers to float only if that is not enough.
      const clippedRanges = (chosen.report.ranges ?? []).filter((r) => !r.full && (r.range[0] > r.observed[0] || r.range[1] < r.observed[1]));
      const rangeRanking = clippedRanges.map((r) => r.tensor);
      let fullRange: string[] = [];
      let reached = tries[0].dropPt <= maxDrop;
      if (!reached && rangeRanking.length) {
        const k = await fewest(rangeRanking.length, (n) => tryWith([], rangeRanking.slice(0, n)));
        reached = k !== undefined;
        fullRange = reached ? rangeRanking.slice(0, k) : best.fullRange;
      }
      const ranked = rankedForFallback(chosen.report, chosen.model);
      const ranking = ranked.map((x) => x.layer);
      if (!reached) {
        const k = await fewest(ranking.length, (n) => tryWith(ranking.slice(0, n), fullRange));
        reached = k !== undefined;
        if (reached) float = ranking.slice(0, k);
      }
      if (!reached) {
        warnings.push(`--max-drop ${maxDrop}: no try reached it within ${tries.length} tries${Date.now() >= deadline ? ` and ${p.maxSeconds} s` : ''}; the model written is the best found (${best.drop} pt drop with ${best.float.length} layer(s) in float and ${best.fullRange.length} activation range(s) widened)`);
        float = best.float;
        fullRange = best.fullRange;
      }
      if (float.length || fullRange.length) {
        chosen.model.close();
        chosen = await attempt(float, out, fullRange);
        after = await evaluate({ ...common, model: out, reference: source }, signal, progress);
      }
      // Say why each widened range and each fallback layer is what it is: its rank and the SQNR that put it there.
      const widened = fullRange.map((tensor) => {
        const i = rangeRanking.indexOf(tensor);
        const r = clippedRanges[i];
        return { tensor, reason: `range widened to its observed min..max by --max-drop ${maxDrop}: the ${i ? `${ordinal(i + 1)} ` : ''}worst of ${rangeRanking.length} clipped activation ranges by expected SQNR (${r.sqnrDb.toFixed(1)} dB over the ${options.calibration} range [${r.range.map((x) => x.toPrecision(4)).join(', ')}], clipping ${(r.clipped * 100).toFixed(3)}% of calibration values; ${r.fullRangeSqnrDb.toFixed(1)} dB over [${r.observed.map((x) => x.toPrecision(4)).join(', ')}])` };
      });
      fallback = { maxDropPt: maxDrop, reached, tries, float, ...(widened.length ? { fullRange: widened } : {}) };
      for (const l of chosen.report.layers) {
        const i = ranking.indexOf(l.layer);
        if (i >= 0 && float.includes(l.layer)) l.reason = `kept in float by --max-drop ${maxDrop}: the ${i ? `${ordinal(i + 1)} ` : ''}worst of ${ranking.length} quantized layers by ${ranked[i].by} SQNR (${ranked[i].db.toFixed(1)} dB)`;
      }
    }
    for (const w of [...chosen.passWarnings, ...after.warnings]) if (!warnings.includes(w)) warnings.push(w);

    progress(undefined, 'timing the quantized model against the original');
    const written = OnnxModel.open(out);
    let preflight: QuantizeResult['preflight'];
    try {
      const timing = await compareLatency(sourceModel, written, { ep: p.ep, shapes: p.shapes, signal });
      preflight = { ...timing, faster: timing.ratio < 0.97, ...slowerAdvice(timing, options, sourceModel) };
    } finally {
      written.close();
    }
    if (preflight.advice) warnings.push(preflight.advice);

    const outFiles = chosen.files;
    const given = { ...chosen.report.params, exclude: [...options.exclude, ...float], calibData: p.calibData, calibLimit: p.calibLimit, maxTries: p.maxTries, maxSeconds: p.maxSeconds } as unknown as Record<string, unknown>;
    const recipe = commandRecipe({ dir, source, sourceSha256, data: p.data, seed: p.seed, ep: p.ep, limit: p.limit, shapes: p.shapes, passes: [recipeStep('quantize', given, dir, [...quantizePass.params, ...quantizeExtra])] });
    const result: QuantizeResult = {
      output: out,
      sizeBytes: { before: modelBytes(sourceModel), after: outFiles.reduce((a, f) => a + fs.statSync(f).size, 0), gzip: gzipBytes(outFiles), gzipBefore: gzipBytes([source, ...externalFiles(sourceModel)]) },
      params: { before: paramCount, after: paramCount },
      sparsity: paramCount ? zeros / paramCount : 0,
      metrics: {
        before: figures(before),
        after: figures(after),
        ...(after.top1Agreement !== undefined ? { top1Agreement: after.top1Agreement } : {}),
        ...(after.cosine !== undefined ? { cosine: after.cosine } : {}),
        ...(after.sqnrDb !== undefined ? { sqnrDb: after.sqnrDb } : {}),
        ...(before.accuracy !== undefined && after.accuracy !== undefined ? { accuracy: { before: before.accuracy, after: after.accuracy, dropPt: dropPt(before, after) } } : {}),
      },
      latencyMs: { before: before.latencyMs.median, after: after.latencyMs.median },
      ep: after.ep,
      warnings,
      recipe: path.join(dir, 'recipe.whittle.json'),
      report: path.join(dir, 'report.json'),
      mode: options.mode,
      layers: chosen.report.layers,
      ...(chosen.report.calibration ? { calibration: chosen.report.calibration } : {}),
      ...(chosen.report.weightBits ? { weightBits: chosen.report.weightBits } : {}),
      ...(chosen.report.floatOps ? { floatOps: chosen.report.floatOps } : {}),
      ...(chosen.report.optimizedOps ? { optimizedOps: chosen.report.optimizedOps } : {}),
      ...(chosen.report.activations ? { activations: chosen.report.activations } : {}),
      ...(chosen.report.ranges ? { ranges: chosen.report.ranges } : {}),
      preflight,
      ...(fallback ? { fallback } : {}),
      data: after.data,
      calibData,
    };
    chosen.model.close();
    writeFileAtomic(result.recipe, recipeText(recipe));
    writeFileAtomic(path.join(dir, 'report.md'), quantizeMarkdown(result));
    writeFileAtomic(result.report, JSON.stringify(result, null, 2) + '\n');
    return result;
  } catch (err) {
    if (created) fs.rmSync(dir, { recursive: true, force: true });
    else for (const f of tryFiles) fs.rmSync(f, { force: true });
    throw err;
  } finally {
    sourceModel.close();
  }
}

function ordinal(n: number): string {
  return n === 2 ? '2nd' : n === 3 ? '3rd' : `${n}th`;
}

function figures(r: EvalResult): QuantFigures {
  return { samples: r.samples, ...(r.accuracy !== undefined ? { accuracy: r.accuracy } : {}) };
}

function countZeros(v: Float32Array): number {
  let z = 0;
  for (let i = 0; i < v.length; i++) if (v[i] === 0) z++;
  return z;
}

/**
 * Quantized layers, worst first, for the fallback to return to float: by the SQNR of the layer's output
 * activation when the mode measured it (what the next layers see), else by its weight's SQNR.
 */
export function rankForFallback(report: QuantizeReport, model: OnnxModel): string[] {
  return rankedForFallback(report, model).map((x) => x.layer);
}

/** rankForFallback with each layer's score (dB) and what it measures. */
function rankedForFallback(report: QuantizeReport, model: OnnxModel): Array<{ layer: string; db: number; by: 'activation' | 'weight' }> {
  const acts = new Map((report.activations ?? []).map((a) => [a.tensor, a.sqnrDb]));
  const outputOf = new Map(model.graph.node.map((n) => [n.name, n.output[0]]));
  const score = (l: QuantLayerSummary): { db: number; by: 'activation' | 'weight' } => {
    // The tensor whose Q follows the layer (after a folded Relu); the node's own output is renamed or unquantized then.
    const out = l.activation ?? outputOf.get(l.layer);
    const a = out === undefined ? undefined : acts.get(out);
    return a !== undefined ? { db: a, by: 'activation' } : { db: l.sqnrDb ?? Infinity, by: 'weight' };
  };
  return report.layers
    .filter((l) => l.format !== 'float')
    .map((l) => ({ layer: l.layer, ...score(l) }))
    .sort((a, b) => a.db - b.db || a.layer.localeCompare(b.layer));
}

/** Why a quantized model is not faster here, and what would help instead; nothing when it is faster. */
function slowerAdvice(t: LatencyComparison, p: QuantizeOptions, model: OnnxModel): { advice?: string } {
  if (t.candidateEp !== t.baselineEp) {
    return { advice: `Preflight: the quantized model ran on ${t.candidateEp}, not ${t.baselineEp} like the original (${t.candidateNote ?? 'the provider could not take it'}), so the timing compares providers: ${t.ratio.toFixed(2)}x the original's latency (${t.candidateMs.toFixed(3)} ms against ${t.baselineMs.toFixed(3)} ms at batch 1).` };
  }
  if (t.ratio < 0.97) return {};
  const ratio = `${t.ratio.toFixed(2)}x the original's latency on ${t.ep} (${t.candidateMs.toFixed(3)} ms against ${t.baselineMs.toFixed(3)} ms at batch 1)`;
  const depthwise = model.graph.node.filter((n) => {
    if (n.opType !== 'Conv') return false;
    const g = Number(n.attribute.find((a) => a.name === 'group')?.i ?? 1);
    return g > 1;
  }).length;
  const reasons: string[] = [];
  if (t.ep !== 'cpu' && (p.mode === 'static' || p.mode === 'dynamic')) reasons.push(`on ${t.ep} int8 QDQ runs as separate Quantize and Dequantize steps around float kernels (it has no int8 kernels without TensorRT)`);
  if (p.mode === 'static' && depthwise && t.ep === 'cpu') reasons.push(`its ${depthwise} depthwise or grouped convolutions run slower in onnxruntime's int8 kernel than in its fp32 one`);
  if (p.mode === 'fp16' && t.ep === 'cpu') reasons.push('the CPU provider computes fp16 models in fp32 after casting at load, so fp16 only halves the file');
  if (p.mode === 'weight-only' && p.bits === 8) reasons.push('weight-only int8 dequantizes the weights at run time: it saves size, not time');
  if (p.mode === 'dynamic') reasons.push('dynamic quantization computes activation scales at every run');
  if (t.baselineMs < 0.2 && (p.mode === 'static' || p.mode === 'dynamic')) reasons.push(`a model this small (${t.baselineMs.toFixed(3)} ms) spends more on quantizing its input and dequantizing its output than int8 arithmetic saves`);
  const instead = 'For a smaller file, weight-only int8 or fp16 keep the fp32 kernels; for speed, structured channel pruning (whittle prune --structured channels) shrinks the compute itself.';
  return { advice: `Preflight: the quantized model is ${t.ratio < 1.03 ? 'no faster' : 'slower'} here: ${ratio}${reasons.length ? `, because ${reasons.join('; and ')}` : ''}. ${instead}` };
}

/** report.md: the run in a readable table. */
export function quantizeMarkdown(r: QuantizeResult): string {
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const kb = (x: number) => `${(x / 1024).toFixed(1)} KiB`;
  const m = r.metrics;
  const db = (x: number | undefined) => (x === undefined ? '' : Number.isFinite(x) ? x.toFixed(1) : 'exact');
  return [
    `# Quantize (${r.mode}): ${path.basename(r.output)}`,
    '',
    `Evaluation data: ${r.data}; calibration data: ${r.calibData}; execution provider: ${r.ep}.`,
    ...(r.weightBits ? ['', `Weights: ${r.weightBits.bits}-bit (${r.weightBits.reason}).`] : []),
    '',
    '| | before | after |',
    '|---|---:|---:|',
    `| file size | ${kb(r.sizeBytes.before)} | ${kb(r.sizeBytes.after)} |`,
    `| gzip -9 | ${kb(r.sizeBytes.gzipBefore)} | ${kb(r.sizeBytes.gzip)} |`,
    ...(m.accuracy ? [`| accuracy | ${pct(m.accuracy.before)} | ${pct(m.accuracy.after)} |`] : []),
    `| latency median (batch 1, evaluation) | ${r.latencyMs.before.toFixed(3)} ms | ${r.latencyMs.after.toFixed(3)} ms |`,
    `| preflight latency, interleaved | ${r.preflight.baselineMs.toFixed(3)} ms | ${r.preflight.candidateMs.toFixed(3)} ms (${r.preflight.ratio.toFixed(2)}x) |`,
    '',
    [m.top1Agreement !== undefined ? `Top-1 agreement with the original: ${pct(m.top1Agreement)}.` : '', m.cosine !== undefined ? `Cosine of the first output: ${m.cosine}.` : '', m.sqnrDb !== undefined ? `SQNR: ${m.sqnrDb} dB.` : ''].filter(Boolean).join(' '),
    ...(r.preflight.advice ? ['', `> ${r.preflight.advice}`] : []),
    ...(r.fallback
      ? [
          '',
          `## Accuracy-aware fallback (max drop ${r.fallback.maxDropPt} pt): ${r.fallback.reached ? 'reached' : 'not reached'}`,
          '',
          `Layers kept in float: ${r.fallback.float.length ? r.fallback.float.join(', ') : 'none'} (ranked worst first by ${r.activations ? 'output activation SQNR' : 'weight SQNR'}).`,
          ...(r.fallback.fullRange ? ['', 'Activation ranges widened to their observed min..max (the layers around them stay int8):', '', ...r.fallback.fullRange.map((x) => `- ${x.tensor}: ${x.reason}`)] : []),
          '',
          '| try | layers in float | ranges widened | drop (pt) |',
          '|---:|---:|---:|---:|',
          ...r.fallback.tries.map((t, i) => `| ${i + 1} | ${t.float.length} | ${t.fullRange?.length ?? 0} | ${t.dropPt} |`),
        ]
      : []),
    ...(r.optimizedOps ? ['', `onnxruntime's optimized graph: ${Object.entries(r.optimizedOps).map(([op, n]) => `${op} x${n}`).join(', ')}. ${r.floatOps && Object.keys(r.floatOps).length ? `Compute ops that stayed float: ${Object.entries(r.floatOps).map(([op, n]) => `${op} x${n}`).join(', ')}.` : 'No compute op stayed float.'}`] : []),
    '',
    '| layer | op | weight | format | bits | granularity | weight SQNR (dB) | note |',
    '|---|---|---|---|---:|---|---:|---|',
    ...r.layers.map((l) => `| ${l.layer} | ${l.op} | ${l.weight} | ${l.format} | ${l.bits ?? ''} | ${l.granularity ?? ''} | ${db(l.sqnrDb)} | ${l.reason ?? ''} |`),
    ...(r.activations?.length ? ['', '## Activation SQNR, worst first', '', '| tensor | SQNR (dB) |', '|---|---:|', ...r.activations.slice(0, 30).map((a) => `| ${a.tensor} | ${db(a.sqnrDb)} |`)] : []),
    ...(r.warnings.length ? ['', '## Warnings', '', ...r.warnings.map((w) => `- ${w}`)] : []),
    '',
  ].join('\n');
}

/** Checks a `--max-drop` run can measure a drop at all. */
export function checkMaxDrop(p: QuantizeParams): void {
  if (p.maxDrop !== undefined && !p.data) throw new InputError(undefined, '--max-drop needs --data: the drop is measured on it');
}
