// The distillation loss (src/core/train/losses.ts): its KL term vanishes when the student is the teacher, and the
// gradients of the whole loss (CE + T²·KL + MSE and cosine feature terms) match float64 central differences.
import assert from 'node:assert/strict';
import { create, toBinary } from '@bufbuild/protobuf';
import { describe, test } from 'node:test';
import { ModelProtoSchema, TensorProtoSchema, type TensorProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { graph, model, node, valueInfo } from '../../src/core/formats/onnx/build';
import { normal, seededRandom } from '../../src/core/random';
import { buildTrainingGraph } from '../../src/core/train/grad';
import type { FeatureTerm } from '../../src/core/train/losses';

const f64 = (name: string, dims: number[], v: Float64Array): TensorProto => create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType: 11, rawData: new Uint8Array(Float64Array.from(v).buffer) });
const N = 3;
const shapes: Record<string, number[]> = { A: [N, 4], W1: [4, 6], W2: [6, 5] };

/** logits = Relu(A·W1)·W2 with the hidden H = A·W1 as the feature the terms read. */
function buildCase(features: FeatureTerm[]) {
  const randn = normal(seededRandom(3));
  const values: Record<string, Float64Array> = {};
  for (const [k, s] of Object.entries(shapes)) values[k] = Float64Array.from({ length: s.reduce((a, b) => a * b, 1) }, randn);
  const g = graph('g', [node('MatMul', ['A', 'W1'], ['H']), node('Relu', ['H'], ['R']), node('MatMul', ['R', 'W2'], ['Y'])], [], [valueInfo('Y', 11, [N, 5])], Object.entries(shapes).map(([k, s]) => f64(k, s, values[k])));
  const tg = buildTrainingGraph(model(g, 17), { loss: 'distill', trainable: Object.keys(shapes), distill: { features } });
  return { tg, values, randn };
}

function feedsOf(tg: ReturnType<typeof buildCase>['tg'], values: Record<string, Float64Array>, extra: Record<string, ort.Tensor>): Record<string, ort.Tensor> {
  const f: Record<string, ort.Tensor> = { ...extra };
  for (const [k, s] of Object.entries(shapes)) f[k] = new ort.Tensor('float64', Float64Array.from(values[k]), s);
  return f;
}

describe('distillation loss', () => {
  test('the KL term is zero, with zero gradient, when the student is the teacher', async () => {
    const { tg, values } = buildCase([]);
    const d = tg.distill!;
    const session = await ort.InferenceSession.create(toBinary(ModelProtoSchema, tg.proto), { intraOpNumThreads: 1 });
    const scalar = (v: number) => new ort.Tensor('float64', Float64Array.from([v]), []);
    const common = { [d.label]: new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n]), [N]), [d.alpha]: scalar(0), [d.temperature]: scalar(4) };
    // First run: any teacher, to read the student's own logits.
    const first = await session.run(feedsOf(tg, values, { ...common, [d.teacherLogits]: new ort.Tensor('float64', new Float64Array(N * 5), [N, 5]) }));
    const own = first[tg.output].data as Float64Array;
    assert.ok(Number(first[d.kd].data[0]) > 1e-3, 'a uniform teacher must give a positive KL, else the test proves nothing');
    const same = await session.run(feedsOf(tg, values, { ...common, [d.teacherLogits]: new ort.Tensor('float64', Float64Array.from(own), [N, 5]) }));
    assert.ok(Math.abs(Number(same[d.kd].data[0])) < 1e-12, `KL(student || student) = ${same[d.kd].data[0]}`);
    assert.ok(Math.abs(Number(same[tg.loss].data[0])) < 1e-12);
    for (const gname of tg.gradients) for (const x of same[gname].data as Float64Array) assert.ok(Math.abs(x) < 1e-12, `${gname} is ${x}`);
    await session.release();
  });

  for (const kind of ['mse', 'cosine'] as const) {
    test(`gradient of CE + T²·KL + ${kind} feature term matches float64 central differences`, async () => {
      const { tg, values, randn } = buildCase([{ student: 'H', shape: [6], kind, weight: 0.7 }]);
      const d = tg.distill!;
      assert.equal(d.teacherFeatures.length, 1);
      const session = await ort.InferenceSession.create(toBinary(ModelProtoSchema, tg.proto), { intraOpNumThreads: 1 });
      const extra = {
        [d.label]: new ort.Tensor('int64', BigInt64Array.from([4n, 1n, 2n]), [N]),
        [d.alpha]: new ort.Tensor('float64', Float64Array.from([0.3]), []),
        [d.temperature]: new ort.Tensor('float64', Float64Array.from([2.5]), []),
        [d.teacherLogits]: new ort.Tensor('float64', Float64Array.from({ length: N * 5 }, () => 2 * randn()), [N, 5]),
        [d.teacherFeatures[0]]: new ort.Tensor('float64', Float64Array.from({ length: N * 6 }, randn), [N, 6]),
      };
      const base = await session.run(feedsOf(tg, values, extra));
      const parts = ['ce', 'kd', 'feature'].map((p) => Number(base[d[p as 'ce']].data[0]));
      assert.ok(parts.every((x) => x > 0), `every part must be positive: ${parts}`);
      const total = Number(base[tg.loss].data[0]);
      assert.ok(Math.abs(total - (0.3 * parts[0] + 0.7 * parts[1] + parts[2])) < 1e-12, 'the total is alpha·CE + (1 − alpha)·KD + feature');
      const eps = 1e-6;
      for (const [k, name] of tg.weights.entries()) {
        const got = base[tg.gradients[k]].data as Float64Array;
        let diff = 0;
        let norm = 0;
        for (let i = 0; i < got.length; i++) {
          const at = (delta: number) => ({ ...values, [name]: Float64Array.from(values[name], (v, j) => (j === i ? v + delta : v)) });
          const lp = Number((await session.run(feedsOf(tg, at(eps), extra)))[tg.loss].data[0]);
          const lm = Number((await session.run(feedsOf(tg, at(-eps), extra)))[tg.loss].data[0]);
          const fd = (lp - lm) / (2 * eps);
          diff += (got[i] - fd) ** 2;
          norm += fd ** 2;
        }
        assert.ok(norm > 1e-12, `${name}: zero finite-difference gradient proves nothing`);
        assert.ok(Math.sqrt(diff / norm) < 1e-6, `${name}: relative gradient error ${Math.sqrt(diff / norm)}`);
      }
      await session.release();
    });
  }
});
