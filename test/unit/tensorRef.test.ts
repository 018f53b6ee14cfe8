import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { statsOfChunks, tensorStats } from '../../src/core/analysis/stats';
import { InputError } from '../../src/core/errors';
import { ExternalFiles } from '../../src/core/model/externalFiles';
import { TensorRef } from '../../src/core/model/tensorRef';
import { tempDir } from './helpers/paths';

/** Little-endian bytes at a chosen misalignment inside a bigger buffer, as raw_data sits inside a file. */
function placed(bytes: Uint8Array, misalign: number): Uint8Array {
  const buf = new Uint8Array(bytes.byteLength + 16);
  buf.set(bytes, misalign);
  return buf.subarray(misalign, misalign + bytes.byteLength);
}

const f32 = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer);

describe('TensorRef', () => {
  test('aligned float32 bytes are read as a view, not a copy', () => {
    const bytes = placed(f32([1, 2, 3, 4]), 4);
    const data = new TensorRef('w', 1, [2, 2], { kind: 'bytes', bytes }).read();
    assert.deepEqual([...data], [1, 2, 3, 4]);
    assert.equal(data.buffer, bytes.buffer, 'same buffer');
  });

  test('unaligned bytes are copied once and read correctly', () => {
    for (const misalign of [1, 2, 3]) {
      const ref = new TensorRef('w', 1, [4], { kind: 'bytes', bytes: placed(f32([1.5, -2, 0, 8]), misalign) });
      assert.deepEqual([...ref.read()], [1.5, -2, 0, 8]);
      assert.deepEqual([...ref.toFloat32()], [1.5, -2, 0, 8]);
      assert.deepEqual(Array.from(ref.chunks(3), (c) => [...c]), [[1.5, -2, 0], [8]]);
    }
  });

  test('float16 and bfloat16 convert to float32', () => {
    const half = new TensorRef('h', 10, [3], { kind: 'bytes', bytes: placed(new Uint8Array(Uint16Array.from([0x3c00, 0xc000, 0x3800]).buffer), 1) });
    assert.deepEqual([...half.toFloat32()], [1, -2, 0.5]);
    const bf = new TensorRef('b', 16, [2], { kind: 'bytes', bytes: new Uint8Array(Uint16Array.from([0x3f80, 0xc040]).buffer) });
    assert.deepEqual([...bf.toFloat32()], [1, -3]);
    // ONNX keeps fp16 bit patterns in int32_data when raw_data is not used.
    assert.deepEqual([...new TensorRef('t', 10, [2], { kind: 'values', values: [0x3c00, 0x4000] }).toFloat32()], [1, 2]);
  });

  test('int4 and uint4 unpack low nibble first, with sign for int4', () => {
    const packed = new Uint8Array([0x21, 0xf8, 0x07]); // elements 1, 2, 8, 15, 7 (fifth in the low nibble of the last byte)
    assert.deepEqual([...new TensorRef('u', 21, [5], { kind: 'bytes', bytes: packed }).toFloat32()], [1, 2, 8, 15, 7]);
    assert.deepEqual([...new TensorRef('s', 22, [5], { kind: 'bytes', bytes: packed }).toFloat32()], [1, 2, -8, -1, 7]);
  });

  test('int64 reads as bigint, and as numbers only when they fit', () => {
    const ok = new TensorRef('i', 7, [2], { kind: 'values', values: [5n, -7n] });
    assert.deepEqual([...ok.read()], [5n, -7n]);
    assert.deepEqual(ok.toNumbers(), [5, -7]);
    const big = new TensorRef('i', 7, [1], { kind: 'bytes', bytes: new Uint8Array(BigInt64Array.from([2n ** 60n]).buffer) }, 'm.onnx');
    assert.throws(() => big.toNumbers(), (e: Error) => e instanceof InputError && /m\.onnx: tensor 'i' element 0 \(1152921504606846976\) does not fit/.test(e.message));
  });

  test('a size that does not match the shape is an error naming the file and tensor', () => {
    const ref = new TensorRef('w', 1, [3], { kind: 'bytes', bytes: f32([1, 2]) }, 'm.onnx');
    assert.throws(() => ref.validate(), { message: "m.onnx: tensor 'w' holds 8 bytes, its shape [3] of float32 needs 12" });
    assert.throws(() => ref.read(), /m\.onnx: tensor 'w' holds 8 bytes/);
  });

  test('external data is read in chunks from its file', () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'w.bin'), Buffer.concat([Buffer.alloc(3), Buffer.from(f32([1, 2, 3, 4, 5]))]));
    const files = new ExternalFiles(path.join(dir, 'm.onnx'));
    const ref = new TensorRef('w', 1, [5], { kind: 'external', file: files.resolve('w.bin', 'w'), offset: 3, length: 20, files });
    assert.deepEqual(Array.from(ref.chunks(2), (c) => [...c]), [[1, 2], [3, 4], [5]]);
    assert.throws(() => files.resolve('../w.bin', 'w'), /points outside the model folder/);
    files.close();
  });
});

describe('statistics over chunks', () => {
  test('match a one-shot computation, also with a large mean', () => {
    const values = Float64Array.from({ length: 10_001 }, (_, i) => 1e6 + Math.sin(i) * 0.001);
    const chunks = [values.subarray(0, 3000), values.subarray(3000, 3001), values.subarray(3001)];
    const [a, b] = [statsOfChunks(chunks), tensorStats(values)];
    let mean = 0;
    for (const v of values) mean += v;
    mean /= values.length;
    let m2 = 0;
    for (const v of values) m2 += (v - mean) ** 2;
    const std = Math.sqrt(m2 / values.length);
    for (const s of [a, b]) {
      assert.ok(Math.abs(s.mean - mean) < 1e-9);
      assert.ok(Math.abs(s.std - std) / std < 1e-6, `std ${s.std} vs ${std}`);
    }
  });
});
