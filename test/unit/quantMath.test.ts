import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../../src/core/formats/onnx/build';
import { dequantizeTensor, packInt4, qRange, quantizeTensor, roundHalfEven, scaleZeroPoint, sqnrDb, sqnrPerAxis, unpackInt4 } from '../../src/core/passes/quantize/math';
import { seededRandom } from '../../src/core/random';

describe('quantization arithmetic', () => {
  test('rounds half to even, like QuantizeLinear', () => {
    assert.deepEqual([2.5, 3.5, -2.5, -3.5, 0.5, 1.5, 2.4, -2.6].map(roundHalfEven), [2, 4, -2, -4, 0, 2, 2, -3]);
  });

  test('integer ranges: narrow symmetric, full asymmetric, reduced', () => {
    assert.deepEqual(qRange({ type: 'int8', symmetric: true }), [-127, 127]);
    assert.deepEqual(qRange({ type: 'int8', symmetric: false }), [-128, 127]);
    assert.deepEqual(qRange({ type: 'int8', symmetric: true, reduceRange: true }), [-63, 63]);
    assert.deepEqual(qRange({ type: 'uint8', symmetric: false, reduceRange: true }), [0, 127]);
    assert.deepEqual(qRange({ type: 'int4', symmetric: true }), [-7, 7]);
    assert.deepEqual(qRange({ type: 'uint4', symmetric: false }), [0, 15]);
  });

  test('scale and zero point include zero and map the range ends', () => {
    const a = scaleZeroPoint(0.5, 2, { type: 'uint8', symmetric: false });
    assert.equal(a.zeroPoint, 0); // widened to [0, 2]
    assert.equal(a.scale, Math.fround(2 / 255));
    const b = scaleZeroPoint(-1, 3, { type: 'uint8', symmetric: false });
    assert.equal(b.zeroPoint, 64); // round(0 - (-1) / (4/255)) = round(63.75)
    const c = scaleZeroPoint(-0.2, 1.27, { type: 'int8', symmetric: true });
    assert.equal(c.zeroPoint, 0);
    assert.equal(c.scale, Math.fround(1.27 / 127));
    assert.deepEqual(scaleZeroPoint(0, 0, { type: 'int8', symmetric: true }), { scale: 1, zeroPoint: 0 });
  });

  test('per-axis and blocked quantization round-trip within half a step, and reject NaN', () => {
    const rnd = seededRandom(7);
    const shape = [4, 64];
    const w = Float32Array.from({ length: 256 }, (_, i) => (rnd() - 0.5) * 3 ** (i >> 6));
    for (const g of [{}, { axis: 0 }, { axis: 1, blockSize: 32 }]) {
      const q = quantizeTensor(w, shape, { type: 'int8', symmetric: true }, g);
      const back = dequantizeTensor(q);
      const { scales } = q;
      const maxStep = Math.max(...scales);
      for (let i = 0; i < w.length; i++) assert.ok(Math.abs(back[i] - w[i]) <= maxStep / 2 + 1e-7, `element ${i}`);
      assert.ok(sqnrDb(w, back) > 35, `SQNR ${sqnrDb(w, back)} for ${JSON.stringify(g)}`);
    }
    assert.deepEqual(quantizeTensor(w, shape, { type: 'int4', symmetric: false }, { axis: 1, blockSize: 32 }).scaleShape, [4, 2]);
    // Finer granularity cannot be worse here: rows have different ranges.
    const perTensor = sqnrDb(w, dequantizeTensor(quantizeTensor(w, shape, { type: 'int8', symmetric: true })));
    const perRow = sqnrDb(w, dequantizeTensor(quantizeTensor(w, shape, { type: 'int8', symmetric: true }, { axis: 0 })));
    assert.ok(perRow > perTensor + 3, `per-row ${perRow} vs per-tensor ${perTensor}`);
    const bad = w.slice();
    bad[3] = NaN;
    assert.throws(() => quantizeTensor(bad, shape, { type: 'int8', symmetric: true }), /element 3 is NaN/);
  });

  test('int4 packing puts the first element in the low nibble', () => {
    const v = Int32Array.from([1, -2, 7, -8, 3]);
    const bytes = packInt4(v);
    assert.deepEqual([...bytes], [0xe1, 0x87, 0x03]);
    assert.deepEqual([...unpackInt4(bytes, 5, true)], [...v]);
  });

  test('SQNR per channel', () => {
    const ref = Float32Array.from([1, 1, 2, 2]);
    const test = Float32Array.from([1, 1, 2, 2.2]);
    const s = sqnrPerAxis(ref, test, [2, 2], 0);
    assert.equal(s[0], Infinity);
    assert.ok(Math.abs(s[1] - 10 * Math.log10(8 / 0.04)) < 1e-4);
  });

  test('matches onnxruntime QuantizeLinear per axis, ties included', async () => {
    const rnd = seededRandom(3);
    const shape = [3, 5];
    const w = Float32Array.from({ length: 15 }, () => (rnd() - 0.3) * 4);
    const q = quantizeTensor(w, shape, { type: 'uint8', symmetric: false }, { axis: 0 });
    // Exact halves: x / scale lands on .5 for these, so rounding mode matters.
    w[0] = q.scales[0] * 2.5;
    w[1] = q.scales[0] * 3.5;
    const again = quantizeTensor(w, shape, { type: 'uint8', symmetric: false }, { axis: 0 });
    const g = graph(
      'q',
      [node('QuantizeLinear', ['x', 's', 'z'], ['y'], { axis: 0 })],
      [valueInfo('x', 1, shape)],
      [valueInfo('y', 2, shape)],
      [floatTensor('s', [3], again.scales), { ...floatTensor('z', [3], [0, 0, 0]), dataType: 2, floatData: [], rawData: Uint8Array.from(again.zeroPoints) }],
    );
    const session = await ort.InferenceSession.create(encodeModel(model(g, 13)), { logSeverityLevel: 3 });
    try {
      const out = await session.run({ x: new ort.Tensor('float32', w, shape) });
      assert.deepEqual([...(out.y.data as Uint8Array)], [...again.values]);
    } finally {
      await session.release();
    }
  });
});
