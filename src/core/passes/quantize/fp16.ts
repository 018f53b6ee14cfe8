/**
 * fp16 conversion: float32 weights, constants and intermediate values become float16; the model's inputs and
 * outputs stay float32 behind Casts, so callers feed and read it as before.
 *
 * On onnxruntime's CPU EP this halves the file and changes nothing else (DESIGN.md section 4): ORT inserts
 * its own Casts around ops with no float16 kernel, so those need no special handling here. GPUs run it natively.
 */
import { create } from '@bufbuild/protobuf';
import { TensorProtoSchema, type NodeProto, type TensorProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { CancelledError } from '../../../protocol/rpc';
import { InputError, NotImplementedError } from '../../errors';
import { node } from '../../formats/onnx/build';
import { subgraphs } from '../../formats/onnx/edit';
import type { OnnxModel } from '../../formats/onnx/model';
import { tensorRefOf } from '../../formats/onnx/model';
import { halfToFloat } from '../../model/dtype';
import { modelInputs, preparedBytes, syntheticFeeds } from '../../runtime/session';
import { ortTypeOf } from '../../runtime/tensors';
import type { PassContext } from '../pass';
import { addInitializers, defaultOpset, freshName, keptFloat, nodeOfLayer, reportParams, step, usedNames, weightError } from './common';
import type { QuantizeOptions, QuantizeReport } from './params';

const FLOAT = 1;
const FLOAT16 = 10;

/** Ops whose float output type is fixed by the op (an attribute or a scale), not by a float input: kept float32. */
const fixedTypeOps = new Set(['DequantizeLinear', 'QuantizeLinear', 'DynamicQuantizeLinear', 'RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike', 'Multinomial', 'EyeLike']);

/** Inputs that the ONNX spec types as tensor(float) only, whatever the data's type: they stay float32. */
function float32Inputs(op: string, opset: number): number[] {
  if (op === 'Resize') return opset >= 11 ? [2] : [1];
  if (op === 'Upsample') return [1];
  return [];
}

/**
 * Converts the model to float16 in place (see the module comment). `p.keepFp32` (op types or node names) and
 * `p.exclude` keep nodes in float32 with Casts around them. Every weight-bearing layer is reported with the
 * SQNR of its weight's float16 rounding, or kept float with the reason. Values outside float16's range are
 * clamped to ±65504 with a warning. Models with control flow (If/Loop/Scan) are not converted yet.
 */
export async function convertFp16(model: OnnxModel, p: QuantizeOptions, ctx: PassContext): Promise<QuantizeReport> {
  const g = model.graph;
  const report: QuantizeReport = { pass: 'quantize', params: reportParams(p), mode: 'fp16', layers: [], errors: [] };
  if (g.node.some((n) => subgraphs(n).length > 0)) throw new NotImplementedError('fp16 conversion of models with control flow (If, Loop, Scan)');
  const keep = new Set([...p.keepFp32, ...p.exclude]);
  const opset = defaultOpset(model);
  step(ctx, 0, 3, 'finding the element type of every value');
  const types = await valueTypes(model);

  const converted = (n: NodeProto): boolean => {
    if ((n.domain && n.domain !== 'ai.onnx') || keep.has(n.opType) || keep.has(n.name) || fixedTypeOps.has(n.opType)) return false;
    if (n.opType === 'Constant') return types.get(n.output[0]) === FLOAT && n.attribute.some((a) => a.name === 'value' && a.t);
    return [...n.input, ...n.output].some((v) => v && types.get(v) === FLOAT);
  };
  const isConverted = new Map(g.node.map((n) => [n, converted(n)]));

  // Initializers: float16 for the converted readers, float32 for the rest; a copy only when both read it.
  const initializers = new Map(g.initializer.map((t) => [t.name, t]));
  const wants = new Map<string, Set<number>>();
  for (const n of g.node) {
    const fixed = float32Inputs(n.opType, opset);
    n.input.forEach((name, i) => {
      const t = initializers.get(name);
      if (!t || t.dataType !== FLOAT) return;
      const want = isConverted.get(n) && !fixed.includes(i) ? FLOAT16 : FLOAT;
      wants.set(name, (wants.get(name) ?? new Set()).add(want));
    });
  }
  const taken = usedNames(g);
  const halfName = new Map<string, string>();
  let clamped = 0;
  const original = new Map<string, Float32Array>();
  for (const [name, want] of wants) {
    if (!want.has(FLOAT16)) continue;
    const t = initializers.get(name)!;
    const values = tensorRefOf(t, name, model.external, model.file).toFloat32();
    original.set(name, values);
    const half = toHalf(values, name);
    if (want.has(FLOAT)) {
      const copy = freshName(g, `${name}_fp16`, taken);
      addInitializers(model, [create(TensorProtoSchema, { name: copy, dims: t.dims, dataType: FLOAT16, rawData: new Uint8Array(half.buffer as ArrayBuffer) })]);
      halfName.set(name, copy);
    } else {
      replaceWithHalf(t, half);
      const declared = g.input.find((v) => v.name === name);
      if (declared?.type?.value.case === 'tensorType') declared.type.value.value.elemType = FLOAT16;
    }
  }

  step(ctx, 1, 3, 'converting nodes');
  // The current element type of every float value as the walk goes; Casts are made once per value and type.
  const cur = new Map<string, number>();
  for (const [name, type] of types) if (type === FLOAT) cur.set(name, FLOAT);
  for (const name of wants.keys()) if (wants.get(name)!.has(FLOAT16) && !halfName.has(name)) cur.set(name, FLOAT16);
  const casts = new Map<string, string>();
  const out: NodeProto[] = [];
  const castTo = (name: string, to: number): string => {
    const key = `${name}\u0000${to}`;
    let c = casts.get(key);
    if (!c) {
      c = freshName(g, `${name}_${to === FLOAT16 ? 'fp16' : 'fp32'}`, taken);
      out.push(node('Cast', [name], [c], { to }, freshName(g, `${name}_Cast_${to === FLOAT16 ? 'fp16' : 'fp32'}`, taken)));
      casts.set(key, c);
    }
    return c;
  };
  for (const n of g.node) {
    if (ctx.signal?.aborted) throw new CancelledError();
    const conv = isConverted.get(n)!;
    const fixed = float32Inputs(n.opType, opset);
    n.input = n.input.map((name, i) => {
      if (!name || !cur.has(name)) return name;
      const want = conv && !fixed.includes(i) ? FLOAT16 : FLOAT;
      if (want === FLOAT16 && halfName.has(name)) return halfName.get(name)!;
      return cur.get(name) === want ? name : castTo(name, want);
    });
    if (conv) {
      for (const o of n.output) if (o && cur.get(o) === FLOAT) cur.set(o, FLOAT16);
      if (n.opType === 'Cast') for (const a of n.attribute) if (a.name === 'to' && Number(a.i) === FLOAT) a.i = BigInt(FLOAT16);
      if (n.opType === 'Constant' || n.opType === 'ConstantOfShape') {
        for (const a of n.attribute) {
          if (a.name !== 'value' || !a.t || a.t.dataType !== FLOAT) continue;
          const values = tensorRefOf(a.t, n.output[0], model.external, model.file).toFloat32();
          replaceWithHalf(a.t, toHalf(values, n.output[0]));
        }
      }
    }
    out.push(n);
  }
  // The interface stays float32: float16 graph outputs get a Cast back under their own name.
  for (const o of g.output) {
    if (cur.get(o.name) !== FLOAT16) continue;
    const inner = freshName(g, `${o.name}_fp16`, taken);
    for (const n of out) {
      n.output = n.output.map((x) => (x === o.name ? inner : x));
      n.input = n.input.map((x) => (x === o.name ? inner : x));
    }
    out.push(node('Cast', [inner], [o.name], { to: FLOAT }, freshName(g, `${o.name}_Cast_fp32`, taken)));
    cur.set(inner, FLOAT16);
    cur.set(o.name, FLOAT);
  }
  g.node = out;
  for (const v of g.valueInfo) {
    if (v.type?.value.case === 'tensorType' && v.type.value.value.elemType === FLOAT && cur.get(v.name) === FLOAT16) v.type.value.value.elemType = FLOAT16;
  }
  if (clamped) ctx.warnings.push(`${clamped} weight or constant values were outside float16's range and were clamped to ±65504`);

  step(ctx, 2, 3, 'reporting');
  for (const layer of model.layers()) {
    const n = nodeOfLayer(model, layer);
    const values = original.get(layer.weight.name);
    if (!n || !isConverted.get(n) || !values) {
      const reason = n && keep.has(n.opType) ? `${n.opType} is kept in float32 (--keep-fp32)` : n && keep.has(n.name) ? 'kept in float32 (--keep-fp32 or --exclude)' : layer.weight.dtype !== FLOAT ? `its weight is ${layer.weight.dtypeName}, not float32` : n ? 'its weight is not a float32 initializer read as float16' : 'its node is inside a subgraph';
      report.layers.push(keptFloat(layer, reason));
      continue;
    }
    const half = halfOf(values);
    const e = weightError(layer.name, layer.weight.name, [...layer.weight.shape], values, half, layer.outputAxis);
    report.errors.push(e.error);
    report.layers.push({ layer: layer.name, op: layer.op, weight: layer.weight.name, shape: [...layer.weight.shape], format: 'fp16', bits: 16, sqnrDb: e.sqnr });
  }
  step(ctx, 3, 3, 'converted to float16');
  return report;

  function toHalf(values: Float32Array, name: string): Uint16Array {
    const out = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) {
      let v = values[i];
      if (Number.isNaN(v) || !Number.isFinite(v)) throw new InputError(model.file, `'${name}' holds ${v} at element ${i}; it cannot be converted to float16`);
      if (Math.abs(v) > 65504) {
        v = Math.sign(v) * 65504;
        clamped++;
      }
      out[i] = floatToHalf(v);
    }
    return out;
  }
}

/** A float32 tensor rewritten in place as float16 raw data. */
function replaceWithHalf(t: TensorProto, half: Uint16Array): void {
  t.dataType = FLOAT16;
  t.rawData = new Uint8Array(half.buffer, half.byteOffset, half.byteLength).slice();
  t.floatData = [];
  t.int32Data = [];
  t.externalData = [];
  t.dataLocation = 0;
}

/** Values rounded to float16 and back (what the converted weight holds). */
function halfOf(values: Float32Array): Float32Array {
  return values.map((v) => halfToFloat(floatToHalf(Math.max(-65504, Math.min(65504, v)))));
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE float16 bits of a number, rounded to nearest even (as numpy and onnxruntime's Cast do). */
export function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal or zero: shift the mantissa (with its implicit 1) right and round half to even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && half & 1) ? 1 : 0));
  }
  const rest = mant & 0x1fff;
  mant >>>= 13;
  if (rest > 0x1000 || (rest === 0x1000 && mant & 1)) {
    mant++;
    if (mant === 0x400) {
      mant = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | mant;
}

/**
 * The element type of every value of the main graph: declared types, initializers, and the rest from one
 * onnxruntime run on synthetic inputs with every node output fetched (exact where static inference guesses).
 */
async function valueTypes(model: OnnxModel): Promise<Map<string, number>> {
  const g = model.graph;
  const types = new Map<string, number>();
  for (const v of [...g.input, ...g.valueInfo, ...g.output]) if (v.type?.value.case === 'tensorType' && v.type.value.value.elemType) types.set(v.name, v.type.value.value.elemType);
  for (const t of g.initializer) types.set(t.name, t.dataType);
  const outputs = [...new Set(g.node.flatMap((n) => n.output.filter(Boolean)))];
  const byType = new Map(Object.entries(ortTypeOf).map(([code, name]) => [name as string, Number(code)]));
  let session: ort.InferenceSession | undefined;
  try {
    session = await ort.InferenceSession.create(preparedBytes(model, { extraOutputs: outputs })!, { logSeverityLevel: 4, intraOpNumThreads: 1 });
    const result = await session.run(syntheticFeeds(modelInputs(model), 1, 0));
    for (const [name, t] of Object.entries(result)) {
      const code = byType.get(t.type);
      if (code) types.set(name, code);
    }
  } catch (err) {
    throw new InputError(model.file, `onnxruntime could not run the model to find its value types: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  } finally {
    await session?.release();
  }
  return types;
}
