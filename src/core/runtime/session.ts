import * as os from 'node:os';
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, type GraphProto, type ModelProto, type TensorProto, type ValueInfoProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import type { ModelInput } from '../data/types';
import { InputError } from '../errors';
import { addOutputs, initializersToInputs } from '../formats/onnx/edit';
import type { OnnxModel } from '../formats/onnx/model';
import { normal, seededRandom } from '../random';
import { autoCandidates, providerConfig, toleranceOf, type ConcreteEp, type EpName, type ModelPrecision } from './ep';
import { ortTypeOf, weightTensor } from './tensors';

// Failures of optional providers are reported by openSession in its own words; ORT's raw log would repeat them.
ort.env.logLevel = 'fatal';

/** How to open a model for running. */
export interface SessionOptions {
  /** Execution provider (default 'auto'). */
  ep?: EpName;
  /** Initializers to turn into pure graph inputs, fed at run() (their original values are in `weightFeeds`). */
  weightInputs?: string[];
  /** Intermediate values to fetch as extra outputs. */
  extraOutputs?: string[];
  /** Make a fixed batch dimension of 1 dynamic, when the model still gives the same results that way. */
  dynamicBatch?: boolean;
  /** intraOpNumThreads (default: cores - 1, at least 1: steady timings on busy machines). */
  threads?: number;
  /** Samples for the EP self-check; default: seeded synthetic inputs. */
  checkFeeds?: Record<string, ort.Tensor>;
}

/** An open session and what was decided while opening it. */
export interface ModelSession {
  session: ort.InferenceSession;
  /** The provider in use. */
  ep: ConcreteEp;
  /** True when the batch dimension is dynamic (several samples per run). */
  batched: boolean;
  /** The model's real inputs (weights fed as inputs are not listed). */
  inputs: ModelInput[];
  outputs: string[];
  /** The original values of `weightInputs`, ready to feed. */
  weightFeeds: Record<string, ort.Tensor>;
  /** Things the user must hear: a provider that failed its check, a batch that could not be made dynamic. */
  warnings: string[];
  /** How `auto` chose: providers that were absent or slower than CPU. Informational. */
  notes: string[];
  /** Releases the session. */
  release(): Promise<void>;
}

/** Ops that compute in integers: a model holding any of them is checked with the int8 allowance. */
const integerOps = /^(QuantizeLinear|DequantizeLinear|DynamicQuantizeLinear|MatMulInteger|ConvInteger|MatMulNBits|QLinear\w+|QGemm)$/;

/** int8 when the model quantizes anything, fp16 when it stores float16 weights, else fp32. */
export function modelPrecision(model: OnnxModel): ModelPrecision {
  if (model.graph.node.some((n) => integerOps.test(n.opType))) return 'int8';
  if (model.graph.initializer.some((t) => t.dataType === 10)) return 'fp16';
  return 'fp32';
}

/** The model's non-weight inputs, as datasets need them. */
export function modelInputs(model: OnnxModel): ModelInput[] {
  const weights = new Set(model.graph.initializer.map((t) => t.name));
  return model.graph.input.filter((v) => !weights.has(v.name)).map(inputOf);
}

function inputOf(v: ValueInfoProto): ModelInput {
  const t = v.type?.value.case === 'tensorType' ? v.type.value.value : undefined;
  return {
    name: v.name,
    elemType: t?.elemType ?? 0,
    shape: t?.shape ? t.shape.dim.map((d) => (d.value.case === 'dimValue' ? Number(d.value.value) : d.value.case === 'dimParam' ? d.value.value : null)) : [],
  };
}

/**
 * The bytes onnxruntime should load: the model re-encoded with the requested changes, on shallow copies so
 * the caller's model is untouched. External data is inlined when anything changes (ORT resolves it from a path
 * only); undefined means "load the file itself".
 */
export function preparedBytes(model: OnnxModel, opts: { weightInputs?: string[]; extraOutputs?: string[]; dynamicBatch?: boolean }): Uint8Array | undefined {
  const changes = (opts.weightInputs?.length ?? 0) > 0 || (opts.extraOutputs?.length ?? 0) > 0 || opts.dynamicBatch;
  const external = [...model.weights().values()].filter((w) => w.ref.storage.kind === 'external');
  if (!changes && external.length === 0) return toBinary(ModelProtoSchema, model.proto, { writeUnknownFields: true });
  if (!changes) return undefined;
  const graph: GraphProto = { ...model.graph, initializer: [...model.graph.initializer], input: [...model.graph.input], output: [...model.graph.output] };
  const inlined = new Map<TensorProto, TensorProto>();
  for (const w of external) {
    if (w.origin.kind !== 'initializer' || w.scope) throw new InputError(model.file, `cannot inline external data of '${w.ref.name}' (a Constant or subgraph tensor)`);
    inlined.set(w.origin.tensor, { ...w.origin.tensor, rawData: w.ref.bytes()! as Uint8Array<ArrayBuffer>, dataLocation: 0, externalData: [] });
  }
  graph.initializer = graph.initializer.map((t) => inlined.get(t) ?? t);
  if (opts.weightInputs?.length) initializersToInputs(graph, opts.weightInputs);
  if (opts.extraOutputs?.length) addOutputs(graph, opts.extraOutputs);
  if (opts.dynamicBatch) {
    graph.input = graph.input.map((v) => withDynamicBatch(v, new Set(opts.weightInputs)));
    graph.output = graph.output.map((v) => withDynamicBatch(v, new Set()));
    graph.valueInfo = [];
  }
  const proto: ModelProto = { ...model.proto, graph };
  return toBinary(ModelProtoSchema, proto, { writeUnknownFields: true });
}

/** A value whose first dimension is a fixed 1, with that dimension made symbolic. */
function withDynamicBatch(v: ValueInfoProto, skip: Set<string>): ValueInfoProto {
  if (skip.has(v.name) || v.type?.value.case !== 'tensorType') return v;
  const tt = v.type.value.value;
  const first = tt.shape?.dim[0];
  if (!tt.shape || !first || first.value.case !== 'dimValue' || first.value.value !== 1n) return v;
  const dim = [{ ...first, value: { case: 'dimParam' as const, value: 'whittle_batch' } }, ...tt.shape.dim.slice(1)];
  return { ...v, type: { ...v.type, value: { case: 'tensorType', value: { ...tt, shape: { ...tt.shape, dim } } } } };
}

/** Seeded synthetic feeds for the model's inputs at the given batch size (symbolic dims become 1). */
export function syntheticFeeds(inputs: ModelInput[], batch = 1, seed = 0): Record<string, ort.Tensor> {
  const randn = normal(seededRandom(seed));
  const feeds: Record<string, ort.Tensor> = {};
  for (const input of inputs) {
    const shape = input.shape.map((d, i) => (i === 0 ? (typeof d === 'number' && d > 1 ? d : batch) : typeof d === 'number' && d > 0 ? d : 1));
    const n = shape.reduce((a, b) => a * b, 1);
    const type = ortTypeOf[input.elemType];
    if (!type) throw new InputError(undefined, `input '${input.name}' has an element type onnxruntime's JS API cannot feed`);
    let data: ort.Tensor['data'];
    if (type === 'float32') data = Float32Array.from({ length: n }, randn);
    else if (type === 'float64') data = Float64Array.from({ length: n }, randn);
    else if (type === 'float16') data = new Uint16Array(n).fill(0x3c00);
    else if (type === 'int64' || type === 'uint64') data = new BigInt64Array(n);
    else if (type === 'bool') data = new Uint8Array(n);
    else data = new Int32Array(n) as never;
    if (type === 'int8') data = new Int8Array(n);
    if (type === 'uint8') data = new Uint8Array(n);
    feeds[input.name] = new ort.Tensor(type, data as never, shape);
  }
  return feeds;
}

async function create(bytes: Uint8Array | undefined, file: string, ep: ConcreteEp, threads: number): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = { executionProviders: providerConfig(ep), intraOpNumThreads: threads, logSeverityLevel: 4 };
  return bytes ? ort.InferenceSession.create(bytes, options) : ort.InferenceSession.create(file, options);
}

/** Largest element-wise violation of |a - b| <= atol + rtol * |b| over all outputs, as a multiple of the allowance (<= 1 passes). */
export function toleranceRatio(got: ort.InferenceSession.OnnxValueMapType, want: ort.InferenceSession.OnnxValueMapType, tol: { atol: number; rtol: number }): number {
  let worst = 0;
  for (const [name, w] of Object.entries(want)) {
    const g = got[name];
    if (!g || g.dims.join() !== w.dims.join()) return Infinity;
    const a = g.data as ArrayLike<number | bigint>;
    const b = w.data as ArrayLike<number | bigint>;
    for (let i = 0; i < b.length; i++) {
      const x = Number(a[i]);
      const y = Number(b[i]);
      if (Number.isNaN(x) !== Number.isNaN(y)) return Infinity;
      if (Number.isNaN(y)) continue;
      const r = Math.abs(x - y) / (tol.atol + tol.rtol * Math.abs(y) || Number.MIN_VALUE);
      if (r > worst) worst = r;
    }
  }
  return worst;
}

async function timeRuns(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, runs: number): Promise<number> {
  await session.run(feeds);
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await session.run(feeds);
  return (performance.now() - t0) / runs;
}

/**
 * Opens a model in onnxruntime on the chosen provider. Any provider other than CPU is trusted only after its
 * outputs match CPU's on the check samples within the tolerance in epTolerances.json; otherwise the session
 * falls back to CPU with a warning. `auto` also falls back when a provider is slower than CPU on the check.
 */
export async function openSession(model: OnnxModel, opts: SessionOptions = {}): Promise<ModelSession> {
  const threads = opts.threads ?? Math.max(1, os.availableParallelism() - 1);
  const inputs = modelInputs(model);
  const outputs = [...model.graph.output.map((o) => o.name), ...(opts.extraOutputs ?? []).filter((n) => !model.graph.output.some((o) => o.name === n))];
  const weights = model.weights();
  const weightFeeds: Record<string, ort.Tensor> = {};
  for (const name of opts.weightInputs ?? []) {
    const w = weights.get(name);
    if (!w || w.origin.kind !== 'initializer' || w.scope) throw new InputError(model.file, `'${name}' is not an initializer of the main graph, so it cannot be fed as an input`);
    weightFeeds[name] = weightTensor(w.ref);
  }
  const warnings: string[] = [];
  const notes: string[] = [];
  const base = { weightInputs: opts.weightInputs, extraOutputs: opts.extraOutputs };
  let bytes = preparedBytes(model, base);
  // Batched when every input's first dimension is already symbolic.
  let batched = inputs.every((i) => typeof i.shape[0] !== 'number');
  let cpu: ort.InferenceSession;
  try {
    cpu = await create(bytes, model.file, 'cpu', threads);
  } catch (err) {
    throw new InputError(model.file, `onnxruntime cannot load this model: ${firstLine(err)}`);
  }

  if (opts.dynamicBatch && !batched && inputs.length > 0) {
    // Try the model with a symbolic batch; keep it only if two samples at once equal two single runs.
    const dynamic = preparedBytes(model, { ...base, dynamicBatch: true });
    try {
      const trial = await create(dynamic, model.file, 'cpu', threads);
      const one = [syntheticFeeds(inputs, 1, 1), syntheticFeeds(inputs, 1, 2)];
      const two = Object.fromEntries(inputs.map((i) => [i.name, concat(one[0][i.name], one[1][i.name])]));
      const together = await trial.run({ ...two, ...weightFeeds });
      const apart = [await cpu.run({ ...one[0], ...weightFeeds }), await cpu.run({ ...one[1], ...weightFeeds })];
      const same = Object.keys(apart[0]).every((k) => {
        const joined = concat(apart[0][k], apart[1][k]);
        return toleranceRatio({ [k]: together[k] }, { [k]: joined }, { atol: 1e-5, rtol: 1e-4 }) <= 1;
      });
      if (same) {
        await cpu.release();
        cpu = trial;
        bytes = dynamic;
        batched = true;
      } else {
        await trial.release();
        warnings.push('the model gives different results with a dynamic batch dimension; running one sample at a time');
      }
    } catch (err) {
      warnings.push(`the batch dimension cannot be made dynamic (${firstLine(err)}); running one sample at a time`);
    }
  }

  const requested = opts.ep ?? 'auto';
  const candidates: ConcreteEp[] = requested === 'auto' ? autoCandidates() : requested === 'cpu' ? [] : [requested];
  const check = { ...(opts.checkFeeds ?? syntheticFeeds(inputs, 1, 7)), ...weightFeeds };
  for (const ep of candidates) {
    let session: ort.InferenceSession | undefined;
    try {
      session = await create(bytes, model.file, ep, threads);
      const want = await cpu.run(check);
      const got = await session.run(check);
      const ratio = toleranceRatio(got, want, toleranceOf(ep, modelPrecision(model)));
      if (ratio > 1) {
        warnings.push(`${ep} gave outputs outside its tolerance against CPU (worst element ${ratio.toFixed(1)}x the allowance); using CPU`);
        await session.release();
        continue;
      }
      if (requested === 'auto') {
        const [mine, theirs] = [await timeRuns(session, check, 3), await timeRuns(cpu, check, 3)];
        if (mine > theirs) {
          notes.push(`${ep} passed its check but ran slower than CPU (${mine.toFixed(2)} ms against ${theirs.toFixed(2)} ms); using CPU`);
          await session.release();
          continue;
        }
      }
      await cpu.release();
      return finish(session, ep);
    } catch (err) {
      await session?.release().catch(() => {});
      // An EP that is simply absent is expected under 'auto': a note; asked for by name, it is a warning.
      (requested === 'auto' ? notes : warnings).push(`${ep} is not available here (${firstLine(err)}); using CPU`);
    }
  }
  return finish(cpu, 'cpu');

  function finish(session: ort.InferenceSession, ep: ConcreteEp): ModelSession {
    return { session, ep, batched, inputs, outputs, weightFeeds, warnings, notes, release: () => session.release() };
  }
}

/** ORT's message without its source-file detail: "Non-zero status code ... Name:'X'". */
function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0].replace(/ Status Message:.*$/, '').slice(0, 200);
}

/** Two tensors joined along axis 0. */
export function concat(a: ort.Tensor, b: ort.Tensor): ort.Tensor {
  const data = a.data as unknown as { constructor: new (n: number) => { set(x: unknown, o: number): void }; length: number };
  const out = new data.constructor(a.data.length + b.data.length);
  out.set(a.data, 0);
  out.set(b.data, a.data.length);
  return new ort.Tensor(a.type, out as never, [a.dims[0] + b.dims[0], ...a.dims.slice(1)]);
}

/** Median and p90 latency of warm runs (after `warmup` runs), in milliseconds. */
export async function measureLatency(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, opts: { warmup?: number; runs?: number; maxMs?: number; signal?: AbortSignal } = {}): Promise<number[]> {
  for (let i = 0; i < (opts.warmup ?? 3); i++) await session.run(feeds);
  const times: number[] = [];
  const deadline = performance.now() + (opts.maxMs ?? 5000);
  for (let i = 0; i < (opts.runs ?? 30) && (times.length < 5 || performance.now() < deadline); i++) {
    if (opts.signal?.aborted) break;
    const t0 = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t0);
  }
  return times;
}
