/**
 * Teacher/student compatibility and feature pairs: checks that both models take the same inputs and give the same
 * number of classes, resolves `teacher:student` tensor pairs, and appends the heads that make a pair comparable:
 * average pooling when spatial sizes differ by an integer factor, a learned 1x1 (or linear) projection on the student
 * side when channel counts differ (dropped at export: it lives only in the training graph), and attention maps
 * (channel mean of |F|^p, L2-normalised) for attention transfer. Heads use only ops whose meaning is the same at every
 * opset (Conv, MatMul, Mul, Pow, Flatten, AveragePool, Sqrt, Div, Add), so opset-8 models such as mnist-8 train as they are.
 */
import type { GraphProto, ModelProto } from 'onnx-buf';
import { InputError } from '../../errors';
import { floatTensor, node } from '../../formats/onnx/build';
import { inferShapes, type Dim } from '../../formats/onnx/shapes';
import { normal, seededRandom } from '../../random';
import type { FeatureTerm } from '../../train/losses';
import type { FeatureLossKind, FeaturePair } from './types';

/** One planned feature pair: the values the loss reads on each side and the projection, if any. */
export interface FeatureHead {
  pair: FeaturePair;
  kind: FeatureLossKind;
  /** Value in the student graph (after its head) the loss reads. */
  studentValue: string;
  /** Value in the teacher graph (after its head) that becomes the target. */
  teacherValue: string;
  /** Per-sample shape of both values. */
  shape: number[];
  /** Learned projection on the student side: weight name and [in, out] channels. */
  projection?: { weight: string; channels: [number, number] };
  term: FeatureTerm;
}

/** Both models with their heads appended, and the plan. */
export interface FeaturePlan {
  teacher: ModelProto;
  student: ModelProto;
  heads: FeatureHead[];
  /** Projection weights added to the student (trainable, not exported). */
  projections: string[];
}

/** Parses `--features a:b,c:d`. A name holding ':' is split where both sides exist, when `exists` can tell. */
export function parsePairs(list: string[], exists?: { teacher: (n: string) => boolean; student: (n: string) => boolean }): FeaturePair[] {
  return list.map((item) => {
    const cuts = [...item].map((c, i) => (c === ':' ? i : -1)).filter((i) => i > 0 && i < item.length - 1);
    if (cuts.length === 0) throw new InputError(undefined, `--features: '${item}' is not a teacher:student pair (e.g. /layer3/Relu_output_0:/layer2/Relu_output_0)`);
    const found = exists && cuts.find((i) => exists.teacher(item.slice(0, i)) && exists.student(item.slice(i + 1)));
    const at = found ?? cuts[0];
    return { teacher: item.slice(0, at), student: item.slice(at + 1) };
  });
}

type Shapes = Map<string, { shape?: Dim[]; dtype?: number }>;

const fmt = (s: Dim[] | undefined) => (s ? `[${s.map((d) => (typeof d === 'number' ? d : (d ?? '?'))).join(', ')}]` : '[unknown]');

/** Names of every value of a graph: inputs, initializers and node outputs. */
export function valueNames(g: GraphProto): Set<string> {
  return new Set([...g.input.map((v) => v.name), ...g.initializer.map((t) => t.name), ...g.node.flatMap((n) => n.output)]);
}

/** Same inputs (names, types, per-sample shapes) and the same output class count: else an InputError naming both. */
export function checkSignatures(teacher: ModelProto, student: ModelProto, files: { teacher: string; student: string }): string[] {
  const warnings: string[] = [];
  const realInputs = (m: ModelProto) => {
    const inits = new Set(m.graph!.initializer.map((t) => t.name));
    return m.graph!.input.filter((v) => !inits.has(v.name));
  };
  const sig = (v: GraphProto['input'][number]) => {
    const tt = v.type?.value.case === 'tensorType' ? v.type.value.value : undefined;
    return { elem: tt?.elemType ?? 0, shape: (tt?.shape?.dim ?? []).map((d) => (d.value.case === 'dimValue' ? Number(d.value.value) : null)) };
  };
  const ti = realInputs(teacher);
  const si = realInputs(student);
  if (ti.length !== si.length) throw new InputError(files.student, `the student has ${si.length} input(s) (${si.map((v) => v.name).join(', ')}) and the teacher ${ti.length} (${ti.map((v) => v.name).join(', ')}); both must take the same inputs`);
  for (const t of ti) {
    const s = si.find((v) => v.name === t.name);
    if (!s) throw new InputError(files.student, `the teacher's input '${t.name}' is not an input of the student (its inputs: ${si.map((v) => v.name).join(', ')})`);
    const [a, b] = [sig(t), sig(s)];
    if (a.elem !== b.elem) throw new InputError(files.student, `input '${t.name}' has element type ${b.elem} in the student and ${a.elem} in the teacher`);
    const same = a.shape.length === b.shape.length && a.shape.every((d, i) => i === 0 || d === null || b.shape[i] === null || d === b.shape[i]);
    if (!same) throw new InputError(files.student, `input '${t.name}' is ${fmt(b.shape)} in the student and ${fmt(a.shape)} in the teacher`);
  }
  const to = teacher.graph!.output[0];
  const so = student.graph!.output[0];
  if (!to || !so) throw new InputError(!to ? files.teacher : files.student, 'the model has no outputs');
  const [a, b] = [sig(to), sig(so)];
  const ca = a.shape.at(-1);
  const cb = b.shape.at(-1);
  if (a.shape.length !== b.shape.length || (ca !== null && cb !== null && ca !== cb)) throw new InputError(files.student, `the student's output '${so.name}' is ${fmt(b.shape)} and the teacher's '${to.name}' is ${fmt(a.shape)}; both must give the same number of classes`);
  if (a.elem !== b.elem) throw new InputError(files.student, `the student's output '${so.name}' has element type ${b.elem} and the teacher's ${a.elem}`);
  if (to.name !== so.name) warnings.push(`the teacher's output is '${to.name}' and the student's '${so.name}'; distilling the first output of each`);
  return warnings;
}

/** Per-sample static shape of a value, or an InputError naming the tensor. */
function sampleShape(shapes: Shapes, name: string, file: string, side: string): number[] {
  const s = shapes.get(name)?.shape;
  if (!s || s.length < 2 || s.slice(1).some((d) => typeof d !== 'number')) throw new InputError(file, `--features: the ${side} tensor '${name}' needs a static shape [batch, ...] to be distilled; its shape is ${fmt(s)}`);
  return s.slice(1) as number[];
}

/**
 * Checks the pairs and appends their heads to copies of both graphs. Errors name the tensor and both shapes.
 * `attentionP` is the exponent of the attention maps.
 */
export function planFeatures(teacher: ModelProto, student: ModelProto, pairs: FeaturePair[], kind: FeatureLossKind, o: { files: { teacher: string; student: string }; attentionP?: number; weight?: number; seed?: number }): FeaturePlan {
  const tg: GraphProto = { ...teacher.graph!, node: [...teacher.graph!.node], initializer: [...teacher.graph!.initializer] };
  const sg: GraphProto = { ...student.graph!, node: [...student.graph!.node], initializer: [...student.graph!.initializer] };
  const tNames = valueNames(tg);
  const sNames = valueNames(sg);
  const tShapes = pairs.length ? inferShapes(teacher) : new Map();
  const sShapes = pairs.length ? inferShapes(student) : new Map();
  const tProducer = new Map(tg.node.flatMap((n) => n.output.map((out) => [out, n.opType] as const)));
  const sProducer = new Map(sg.node.flatMap((n) => n.output.map((out) => [out, n.opType] as const)));
  const randn = normal(seededRandom(o.seed ?? 0));
  const heads: FeatureHead[] = [];
  const projections: string[] = [];
  const p = o.attentionP ?? 2;
  if (!(p > 0)) throw new InputError(undefined, `--attention-p must be positive, not ${p}`);
  pairs.forEach((pair, k) => {
    const label = `feature pair '${pair.teacher}:${pair.student}'`;
    if (!tNames.has(pair.teacher)) throw new InputError(o.files.teacher, `${label}: the teacher has no tensor named '${pair.teacher}'${near(pair.teacher, tNames)}`);
    if (!sNames.has(pair.student)) throw new InputError(o.files.student, `${label}: the student has no tensor named '${pair.student}'${near(pair.student, sNames)}`);
    const ts = sampleShape(tShapes, pair.teacher, o.files.teacher, 'teacher');
    const ss = sampleShape(sShapes, pair.student, o.files.student, 'student');
    const both = `the teacher's '${pair.teacher}' is [N, ${ts.join(', ')}] and the student's '${pair.student}' is [N, ${ss.join(', ')}]`;
    const incompatible = (why: string) => new InputError(o.files.student, `${label}: ${both}; ${why}`);
    const prefix = `whittle_kd/${k}`;
    let tv = pair.teacher;
    let sv = pair.student;
    let shape: number[];
    let projection: FeatureHead['projection'];
    const add = (g: GraphProto, side: string, op: string, inputs: string[], attrs: Parameters<typeof node>[3] = {}) => {
      const out = `${prefix}/${side}/${op}_${g.node.length}`;
      g.node.push(node(op, inputs, [out], attrs, out));
      return out;
    };
    const constant = (g: GraphProto, side: string, name: string, dims: number[], values: Float32Array) => {
      const full = `${prefix}/${side}/${name}`;
      g.initializer.push(floatTensor(full, dims, values));
      return full;
    };
    if (ts.length !== ss.length) throw incompatible('their ranks differ, so no projection can match them');
    // Pool the larger spatial map down to the smaller one when they differ by a whole factor.
    let spatial = ts.length === 3 ? [ts.slice(1), ss.slice(1)] : undefined;
    if (spatial && spatial[0].join() !== spatial[1].join()) {
      const [a, b] = spatial;
      const teacherBigger = a[0] >= b[0] && a[1] >= b[1];
      const [big, small] = teacherBigger ? [a, b] : [b, a];
      const f = [big[0] / small[0], big[1] / small[1]];
      if (!f.every((x) => Number.isInteger(x) && x >= 1) || (!teacherBigger && !(b[0] >= a[0] && b[1] >= a[1]))) throw incompatible('their spatial sizes do not differ by a whole factor, so no pooling can match them');
      const attrs = { kernel_shape: f, strides: f };
      if (teacherBigger) tv = add(tg, 'teacher', 'AveragePool', [tv], attrs);
      else sv = add(sg, 'student', 'AveragePool', [sv], attrs);
      spatial = [small, small];
    }
    if (kind === 'attention') {
      const softmax = tProducer.get(pair.teacher) === 'Softmax' && sProducer.get(pair.student) === 'Softmax';
      if (softmax) {
        // Attention probabilities of transformers: compared as they are.
        if (ts.join() !== ss.join()) throw incompatible('attention probabilities (Softmax outputs) must have the same shape');
        shape = ts;
      } else {
        if (ts.length !== 3) throw incompatible('attention maps need [N, C, H, W] feature maps (or Softmax outputs on both sides)');
        const hw = spatial![0][0] * spatial![0][1];
        const map = (g: GraphProto, side: string, v: string, channels: number) => {
          let sq = add(g, side, 'Mul', [v, v]);
          if (p !== 2) sq = add(g, side, 'Pow', [sq, constant(g, side, 'half_p', [], Float32Array.from([p / 2]))]);
          // Channel mean as a 1x1 conv with weights 1/C: no ReduceMean, whose signature changed across opsets.
          const mean = add(g, side, 'Conv', [sq, constant(g, side, 'channel_mean', [1, channels, 1, 1], new Float32Array(channels).fill(1 / channels))]);
          const flat = add(g, side, 'Flatten', [mean], { axis: 1 });
          const sumSq = add(g, side, 'MatMul', [add(g, side, 'Mul', [flat, flat]), constant(g, side, 'ones', [hw, 1], new Float32Array(hw).fill(1))]);
          const norm = add(g, side, 'Sqrt', [add(g, side, 'Add', [sumSq, constant(g, side, 'eps', [], Float32Array.from([1e-12]))])]);
          return add(g, side, 'Div', [flat, norm]);
        };
        tv = map(tg, 'teacher', tv, ts[0]);
        sv = map(sg, 'student', sv, ss[0]);
        shape = [hw];
      }
    } else {
      const [ct, cs] = ts.length === 3 ? [ts[0], ss[0]] : [ts.at(-1)!, ss.at(-1)!];
      if (ts.length !== 3 && ts.slice(0, -1).join() !== ss.slice(0, -1).join()) throw incompatible('all but their last axis must match (only the last axis can be projected)');
      if (ct !== cs) {
        const weight = `${prefix}/projection`;
        const std = Math.sqrt(1 / cs);
        if (ts.length === 3) {
          sg.initializer.push(floatTensor(weight, [ct, cs, 1, 1], Float32Array.from({ length: ct * cs }, () => randn() * std)));
          sv = add(sg, 'student', 'Conv', [sv, weight]);
        } else {
          sg.initializer.push(floatTensor(weight, [cs, ct], Float32Array.from({ length: ct * cs }, () => randn() * std)));
          sv = add(sg, 'student', 'MatMul', [sv, weight]);
        }
        projections.push(weight);
        projection = { weight, channels: [cs, ct] };
      }
      shape = ts.length === 3 ? [ct, ...spatial![0]] : ts;
    }
    heads.push({ pair, kind, studentValue: sv, teacherValue: tv, shape, ...(projection ? { projection } : {}), term: { student: sv, shape, kind: kind === 'cosine' ? 'cosine' : 'mse', weight: o.weight } });
  });
  return { teacher: { ...teacher, graph: tg }, student: { ...student, graph: sg }, heads, projections };
}

/** ", did you mean 'x'?" for the closest names sharing the last path part, when any. */
function near(name: string, names: Set<string>): string {
  const tail = name.split('/').pop()!.toLowerCase();
  const hits = [...names].filter((n) => n.toLowerCase().includes(tail) || tail.includes(n.split('/').pop()!.toLowerCase())).slice(0, 3);
  return hits.length ? ` (did you mean ${hits.map((h) => `'${h}'`).join(', ')}?)` : '';
}

