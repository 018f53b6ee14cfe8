import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { describe, test } from 'node:test';
import { toBinary } from '@bufbuild/protobuf';
import * as jpeg from 'jpeg-js';
import { TensorProtoSchema, type TensorProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { PNG } from 'pngjs';
import { openDataset, randomWarning, type Batch, type Dataset, type DatasetOptions, type ModelInput } from '../../src/core/data/index';
import { resizeBilinear } from '../../src/core/data/images';
import { floatToHalf } from '../../src/core/data/tensors';
import { InputError } from '../../src/core/errors';
import { floatTensor, int64Tensor } from '../../src/core/formats/onnx/build';
import { halfToFloat } from '../../src/core/model/dtype';
import { readTensorPb } from './helpers/ort';
import { noSharedData, sharedData, tempDir } from './helpers/paths';
import { freshDir, idxBytes, npyBytes, write } from './helpers/fixtures';

// ---------------------------------------------------------------------------------------------------------
// Fixture writers: each format written by hand (or by the decoder's own library), so reading is checked
// against bytes we chose.

const fresh = freshDir(tempDir('whittle-data-'));

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A zip archive; `localExtra` adds an extra field to the local headers only (as NumPy's zip64 headers do). */
function zipBytes(entries: Array<{ name: string; data: Uint8Array; deflate?: boolean }>, localExtra = 0): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const body = e.deflate ? zlib.deflateRawSync(e.data) : Buffer.from(e.data);
    const name = Buffer.from(e.name);
    const crc = crc32(e.data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(e.deflate ? 8 : 0, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(localExtra, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(e.deflate ? 8 : 0, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(e.data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    const block = Buffer.concat([local, name, Buffer.alloc(localExtra, 0xab), body]);
    locals.push(block);
    centrals.push(Buffer.concat([central, name]));
    offset += block.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/** A PNG of width x height whose pixel (x, y) is `px(x, y)` as [r, g, b]. */
function pngBytes(width: number, height: number, px: (x: number, y: number) => [number, number, number]): Buffer {
  const png = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) png.data.set([...px(x, y), 255], (y * width + x) * 4);
  }
  return PNG.sync.write(png);
}

function jpegBytes(width: number, height: number, px: (x: number, y: number) => [number, number, number]): Buffer {
  const data = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set([...px(x, y), 255], (y * width + x) * 4);
  }
  return jpeg.encode({ width, height, data }, 95).data;
}

const pb = (t: TensorProto) => toBinary(TensorProtoSchema, t);

const input = (name: string, shape: ModelInput['shape'], elemType = 1): ModelInput => ({ name, elemType, shape });

async function all(ds: Dataset, batchSize = 1000): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of ds.batches(batchSize)) out.push(b);
  return out;
}

/** Values of a batch input as numbers. */
const values = (b: Batch, name: string) => Array.from(b.inputs[name].data as ArrayLike<number | bigint>, Number);

/** Checks that a promise fails with an InputError naming `where` and matching `problem`. */
async function rejects(p: Promise<unknown>, where: string, problem: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof InputError, `an InputError, got ${String(err)}`);
    assert.ok(err.message.includes(where), `message names ${where}: ${err.message}`);
    assert.match(err.message, problem);
    return true;
  });
}

/** Drains a dataset (errors found while batching surface here). */
async function drain(spec: string, inputs: ModelInput[], opts?: DatasetOptions, batchSize = 4): Promise<void> {
  const ds = await openDataset(spec, inputs, opts);
  for await (const _b of ds.batches(batchSize)) void _b;
}

// ---------------------------------------------------------------------------------------------------------

describe('idx (MNIST)', () => {
  const mnist = sharedData && path.join(sharedData, 'mnist');

  test('the MNIST test set: counts, first sample and label histogram match the raw bytes', { skip: noSharedData }, async () => {
    const imagesFile = path.join(mnist!, 't10k-images-idx3-ubyte.gz');
    // Parsed here independently of the reader: 16-byte header, then 784 bytes per image; labels after 8 bytes.
    const raw = zlib.gunzipSync(fs.readFileSync(imagesFile));
    const rawLabels = zlib.gunzipSync(fs.readFileSync(path.join(mnist!, 't10k-labels-idx1-ubyte.gz'))).subarray(8);
    assert.equal(raw.readUInt32BE(0), 0x803);
    let firstSum = 0;
    for (let i = 0; i < 784; i++) firstSum += raw[16 + i];
    let totalSum = 0;
    for (let i = 16; i < raw.length; i++) totalSum += raw[i];

    const ds = await openDataset(imagesFile, [input('Input3', [1, 1, 28, 28])]);
    assert.equal(ds.size, 10000);
    assert.ok(ds.hasLabels);
    assert.deepEqual(ds.warnings, []);
    assert.match(ds.description, /t10k-images-idx3-ubyte\.gz/);
    const batches = await all(ds, 1000);
    assert.equal(batches.length, 10);
    assert.deepEqual(batches[0].inputs.Input3.shape, [1000, 1, 28, 28]);
    assert.equal(batches[0].inputs.Input3.dtype, 'float32');
    const first = values(batches[0], 'Input3').slice(0, 784);
    assert.equal(first.reduce((a, b) => a + b, 0), firstSum);
    assert.equal(Math.max(...first), 255, 'raw 0..255, not scaled');
    assert.equal(batches[0].labels![0], 7, 'the first MNIST test digit is a 7');
    assert.equal(batches.reduce((s, b) => s + values(b, 'Input3').reduce((a, v) => a + v, 0), 0), totalSum);
    const histogram = new Array(10).fill(0);
    for (const b of batches) for (const l of b.labels!) histogram[l]++;
    assert.deepEqual(histogram, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    const expected = new Array(10).fill(0);
    for (const l of rawLabels) expected[l]++;
    assert.deepEqual(histogram, expected);
  });

  test('mnist-8 reaches 98.91% on the MNIST test set fed raw 0..255', { skip: noSharedData }, async () => {
    const session = await ort.InferenceSession.create(path.join(sharedData!, 'models', 'onnx-mnist-8', 'mnist.onnx'), { logSeverityLevel: 4 });
    try {
      const ds = await openDataset(path.join(mnist!, 't10k-images-idx3-ubyte.gz'), [input('Input3', [1, 1, 28, 28])]);
      let right = 0;
      for await (const b of ds.batches(1)) {
        const x = b.inputs.Input3;
        const out = await session.run({ Input3: new ort.Tensor('float32', x.data as Float32Array, x.shape) });
        const y = out[session.outputNames[0]].data as Float32Array;
        if (y.indexOf(Math.max(...y)) === b.labels![0]) right++;
      }
      assert.equal(right, 9891);
    } finally {
      await session.release();
    }
  });

  test('a flat model input gets the same pixels as [1, 784] rows', { skip: noSharedData }, async () => {
    const file = path.join(mnist!, 't10k-images-idx3-ubyte.gz');
    const [flat] = await all(await openDataset(file, [input('x', ['batch', 784])], { limit: 3 }));
    const [square] = await all(await openDataset(file, [input('x', [1, 1, 28, 28])], { limit: 3 }));
    assert.deepEqual(flat.inputs.x.shape, [3, 784]);
    assert.deepEqual(values(flat, 'x'), values(square, 'x'));
  });

  test('generated idx files, plain and gzipped, with labels found beside them', async () => {
    const dir = fresh('idx');
    const pixels = Uint8Array.from({ length: 3 * 2 * 2 }, (_, i) => i * 10);
    write(path.join(dir, 'tiny-images-idx3-ubyte'), idxBytes([3, 2, 2], pixels));
    write(path.join(dir, 'tiny-labels-idx1-ubyte.gz'), zlib.gzipSync(idxBytes([3], Uint8Array.from([4, 0, 9]))));
    const ds = await openDataset(path.join(dir, 'tiny-images-idx3-ubyte'), [input('x', ['N', 1, 2, 2])]);
    const [b] = await all(ds);
    assert.deepEqual(b.inputs.x.shape, [3, 1, 2, 2]);
    assert.deepEqual(values(b, 'x'), [...pixels]);
    assert.deepEqual([...b.labels!], [4, 0, 9]);

    // A uint8 model input gets the bytes unchanged; no labels file means unlabelled with a warning.
    write(path.join(dir, 'solo-images-idx3-ubyte.gz'), zlib.gzipSync(idxBytes([3, 2, 2], pixels)));
    const solo = await openDataset(path.join(dir, 'solo-images-idx3-ubyte.gz'), [input('x', [1, 4], 2)]);
    assert.equal(solo.hasLabels, false);
    assert.match(solo.warnings[0], /no labels file/);
    const [s] = await all(solo);
    assert.ok(s.inputs.x.data instanceof Uint8Array);
    assert.deepEqual(s.inputs.x.shape, [3, 4]);
    assert.deepEqual(values(s, 'x'), [...pixels]);
    assert.equal(s.labels, undefined);
  });
});

describe('image folders', () => {
  test('a PNG round trip: class sub-folders are labels, pixels arrive scaled to 0..1 in NCHW', async () => {
    const dir = fresh('png');
    const px = (k: number) => (x: number, y: number): [number, number, number] => [10 * x + k, 100 + y, 200 - k];
    write(path.join(dir, 'zebra', 'a.png'), pngBytes(3, 2, px(1)));
    write(path.join(dir, 'ant', 'img10.png'), pngBytes(3, 2, px(3)));
    write(path.join(dir, 'ant', 'img2.png'), pngBytes(3, 2, px(2)));
    write(path.join(dir, 'ant', 'notes.txt'), 'not an image');
    const ds = await openDataset(dir, [input('x', ['N', 3, 2, 3])]);
    assert.equal(ds.size, 3);
    assert.match(ds.warnings[0], /skipped 1 file/);
    const [b] = await all(ds);
    assert.deepEqual(b.inputs.x.shape, [3, 3, 2, 3]);
    // Sorted classes (ant, zebra), files in natural order (img2 before img10).
    assert.deepEqual([...b.labels!], [0, 0, 1]);
    const data = b.inputs.x.data as Float32Array;
    const at = (n: number, c: number, y: number, x: number) => data[((n * 3 + c) * 2 + y) * 3 + x];
    for (const [n, k] of [[0, 2], [1, 3], [2, 1]]) {
      for (let y = 0; y < 2; y++) {
        for (let x = 0; x < 3; x++) {
          const [r, g, bl] = px(k)(x, y);
          assert.equal(at(n, 0, y, x), Math.fround(r / 255));
          assert.equal(at(n, 1, y, x), Math.fround(g / 255));
          assert.equal(at(n, 2, y, x), Math.fround(bl / 255));
        }
      }
    }
  });

  test('NHWC, gray and uint8 inputs take their layout and channels from the model', async () => {
    const dir = fresh('layouts');
    write(path.join(dir, 'one.png'), pngBytes(2, 2, (x, y) => [50 + x, 60 + y, 70]));
    const [nhwc] = await all(await openDataset(dir, [input('x', ['N', 2, 2, 3])]));
    assert.deepEqual(nhwc.inputs.x.shape, [1, 2, 2, 3]);
    assert.deepEqual(values(nhwc, 'x').slice(0, 6), [50, 60, 70, 51, 60, 70].map((v) => Math.fround(v / 255)));
    assert.equal(nhwc.labels, undefined, 'no class folders, no labels');
    const [gray] = await all(await openDataset(dir, [input('x', [1, 1, 2, 2])]));
    assert.deepEqual(gray.inputs.x.shape, [1, 1, 2, 2]);
    assert.ok(Math.abs(values(gray, 'x')[0] - (0.299 * 50 + 0.587 * 60 + 0.114 * 70) / 255) < 1e-6);
    const [flat] = await all(await openDataset(dir, [input('x', ['N', 4])]));
    assert.deepEqual(flat.inputs.x.shape, [1, 4], 'a flat input takes gray pixels row by row');
    assert.deepEqual(values(flat, 'x'), values(gray, 'x'));
    const [raw] = await all(await openDataset(dir, [input('x', [1, 3, 2, 2], 2)]));
    assert.deepEqual(values(raw, 'x'), [50, 51, 50, 51, 60, 60, 61, 61, 70, 70, 70, 70]);
  });

  test('bilinear resize keeps a constant image constant and interpolates with half-pixel centres', async () => {
    const dir = fresh('resize');
    write(path.join(dir, 'c', 'flat.png'), pngBytes(10, 7, () => [90, 90, 90]));
    const [b] = await all(await openDataset(dir, [input('x', ['N', 1, 4, 4])]));
    assert.deepEqual(b.inputs.x.shape, [1, 1, 4, 4]);
    for (const v of values(b, 'x')) assert.ok(Math.abs(v - 90 / 255) < 1e-6, `constant after resize: ${v}`);
    assert.deepEqual([...resizeBilinear(Float32Array.from([0, 255]), 2, 1, 4, 1)], [0, 63.75, 191.25, 255]);
    assert.deepEqual([...resizeBilinear(Float32Array.from([0, 100, 200, 300]), 4, 1, 2, 1)], [50, 250]);
    // Columns: the same rule down the rows; a 2x2 to 4x4 upscale of a diagonal ramp.
    assert.deepEqual([...resizeBilinear(Float32Array.from([0, 255]), 1, 2, 1, 4)], [0, 63.75, 191.25, 255]);
    const up = resizeBilinear(Float32Array.from([0, 100, 100, 200]), 2, 2, 4, 4);
    assert.deepEqual([...up.subarray(0, 4)], [0, 25, 75, 100]);
    assert.deepEqual([...up.subarray(4, 8)], [25, 50, 100, 125]);
  });

  test('JPEGs decode by content (even named .png), close to the colours encoded', async () => {
    const dir = fresh('jpeg');
    write(path.join(dir, 'red.jpg'), jpegBytes(8, 8, () => [200, 30, 40]));
    write(path.join(dir, 'really-a-jpeg.png'), jpegBytes(8, 8, () => [20, 120, 220]));
    const [b] = await all(await openDataset(dir, [input('x', ['N', 3, 8, 8])]));
    const v = values(b, 'x').map((x) => x * 255);
    const mean = (from: number) => v.slice(from, from + 64).reduce((a, c) => a + c, 0) / 64;
    // Natural name order: really-a-jpeg.png comes before red.jpg.
    for (const [plane, want] of [[0, 20], [1, 120], [2, 220], [3, 200], [4, 30], [5, 40]]) {
      assert.ok(Math.abs(mean(plane * 64) - want) < 3, `plane ${plane}: ${mean(plane * 64)} vs ${want}`);
    }
  });

  test('CIFAR-10 JPEGs: ten sorted classes, each sample the decoded file', { skip: noSharedData }, async () => {
    const dir = path.join(sharedData!, 'cifar10-test', 'test');
    const ds = await openDataset(dir, [input('x', ['N', 3, 32, 32])]);
    assert.equal(ds.size, 10000);
    assert.match(ds.description, /10 classes/);
    const it = ds.batches(2);
    const { value: first } = await it.next();
    await it.return(undefined);
    const b = first as Batch;
    assert.deepEqual([...b.labels!], [0, 0]);
    const img = jpeg.decode(fs.readFileSync(path.join(dir, 'airplane', '0000.jpg')), { useTArray: true, formatAsRGBA: true });
    const x = b.inputs.x.data as Float32Array;
    for (const p of [0, 100, 1023]) {
      for (let c = 0; c < 3; c++) assert.equal(x[c * 1024 + p], Math.fround(img.data[p * 4 + c] / 255));
    }
    // 'cat' is the fourth class in sorted order.
    const cats = await openDataset(dir, [input('x', ['N', 3, 32, 32])], { shuffle: true, seed: 5, limit: 300 });
    const labels = (await all(cats, 100)).flatMap((bb) => [...bb.labels!]);
    assert.equal(new Set(labels).size, 10, 'a shuffled 300 covers every class');
  });
});

describe('npy and npz', () => {
  const cases: Array<{ descr: string; elemType: number; data: ArrayBufferView; want: number[] }> = [
    { descr: '<f4', elemType: 1, data: Float32Array.from([1.5, -2, 3.25, 4, 5, 6]), want: [1.5, -2, 3.25, 4, 5, 6] },
    { descr: '<f8', elemType: 11, data: Float64Array.from([0.1, 0.2, 0.3, 1e300, -5, 6]), want: [0.1, 0.2, 0.3, 1e300, -5, 6] },
    { descr: '<i8', elemType: 7, data: BigInt64Array.from([1n, -2n, 3n, 2n ** 40n, 5n, 6n]), want: [1, -2, 3, 2 ** 40, 5, 6] },
    { descr: '<i4', elemType: 6, data: Int32Array.from([1, -2, 3, 2 ** 30, 5, 6]), want: [1, -2, 3, 2 ** 30, 5, 6] },
    { descr: '|u1', elemType: 2, data: Uint8Array.from([0, 1, 2, 253, 254, 255]), want: [0, 1, 2, 253, 254, 255] },
    { descr: '|i1', elemType: 3, data: Int8Array.from([-128, -1, 0, 1, 2, 127]), want: [-128, -1, 0, 1, 2, 127] },
    { descr: '|b1', elemType: 9, data: Uint8Array.from([1, 0, 0, 1, 1, 0]), want: [1, 0, 0, 1, 1, 0] },
    { descr: '<f2', elemType: 10, data: Uint16Array.from([1, -2, 0.5, 65504, 0, 3].map(floatToHalf)), want: [1, -2, 0.5, 65504, 0, 3] },
  ];
  for (const c of cases) {
    test(`npy ${c.descr} round trip into a model input of the same type`, async () => {
      const file = write(path.join(fresh('npy'), 'x.npy'), npyBytes(c.descr, [3, 2], bytesOf(c.data)));
      const [b] = await all(await openDataset(file, [input('x', ['N', 2], c.elemType)]));
      assert.deepEqual(b.inputs.x.shape, [3, 2]);
      const got = c.elemType === 10 ? Array.from(b.inputs.x.data as Uint16Array, halfToFloat) : values(b, 'x');
      assert.deepEqual(got, c.want);
    });
  }

  test('npy values convert to the model input type (float64 file, float32 input)', async () => {
    const file = write(path.join(fresh('npy'), 'x.npy'), npyBytes('<f8', [2, 1, 2], bytesOf(Float64Array.from([1, 2, 3, 4]))));
    const [b] = await all(await openDataset(file, [input('x', ['N', 1, 2])]));
    assert.ok(b.inputs.x.data instanceof Float32Array);
    assert.deepEqual(b.inputs.x.shape, [2, 1, 2]);
    assert.deepEqual(values(b, 'x'), [1, 2, 3, 4]);
  });

  test('npz, stored and deflated: keys map to input names, a lone array to a lone input', async () => {
    const dir = fresh('npz');
    const a = Float32Array.from({ length: 12 }, (_, i) => i / 4);
    const ids = BigInt64Array.from({ length: 6 }, (_, i) => BigInt(i * 7));
    for (const deflate of [false, true]) {
      const file = write(path.join(dir, `pair-${deflate}.npz`), zipBytes([
        { name: 'ids.npy', data: npyBytes('<i8', [3, 2], bytesOf(ids)), deflate },
        { name: 'image.npy', data: npyBytes('<f4', [3, 4], bytesOf(a)), deflate },
      ], deflate ? 0 : 20));
      const ds = await openDataset(file, [input('image', ['N', 4]), input('ids', ['N', 2], 7)]);
      assert.equal(ds.size, 3);
      const [b0, b1] = await all(ds, 2);
      assert.deepEqual(b0.inputs.image.shape, [2, 4]);
      assert.deepEqual(b1.inputs.ids.shape, [1, 2]);
      assert.deepEqual([...values(b0, 'image'), ...values(b1, 'image')], [...a]);
      assert.deepEqual([...(b0.inputs.ids.data as BigInt64Array), ...(b1.inputs.ids.data as BigInt64Array)], [...ids]);
    }
    const lone = write(path.join(dir, 'lone.npz'), zipBytes([{ name: 'arr_0.npy', data: npyBytes('<f4', [3, 4], bytesOf(a)), deflate: true }]));
    const [b] = await all(await openDataset(lone, [input('x', [1, 4])]));
    assert.deepEqual(values(b, 'x'), [...a]);
  });
});

describe('TensorProto folders', () => {
  test('backend suite test_add: two inputs, values equal what TensorRef reads', { skip: noSharedData }, async () => {
    const dir = path.join(sharedData!, 'onnx-backend', 'node', 'test_add');
    const set = path.join(dir, 'test_data_set_0');
    const ds = await openDataset(dir, [input('x', [3, 4, 5]), input('y', [3, 4, 5])]);
    assert.equal(ds.size, 1);
    const [b] = await all(ds);
    for (const [name, n] of [['x', 0], ['y', 1]] as const) {
      const ref = readTensorPb(path.join(set, `input_${n}.pb`))!;
      assert.deepEqual(b.inputs[name].shape, ref.shape);
      assert.deepEqual([...(b.inputs[name].data as Float32Array)], [...(ref.read() as Float32Array)]);
    }
    // The set folder itself is also a dataset of one sample.
    const [one] = await all(await openDataset(set, [input('x', [3, 4, 5]), input('y', [3, 4, 5])]));
    assert.deepEqual(values(one, 'x'), values(b, 'x'));
  });

  test('generated sets: one sample each, in natural order, stacked on a symbolic batch axis', async () => {
    const dir = fresh('pb');
    for (const k of [0, 1, 2, 10]) {
      write(path.join(dir, `test_data_set_${k}`, 'input_0.pb'), pb(floatTensor('x', [1, 2], [k, k + 0.5])));
      write(path.join(dir, `test_data_set_${k}`, 'input_1.pb'), pb(int64Tensor('n', [1], [k * 3])));
    }
    write(path.join(dir, 'test_data_set_1', 'output_0.pb'), pb(floatTensor('y', [1], [0])));
    const ds = await openDataset(dir, [input('x', ['batch', 2]), input('n', ['batch'], 7)]);
    assert.equal(ds.size, 4);
    assert.match(ds.description, /4 sets/);
    const [b] = await all(ds, 8);
    assert.deepEqual(b.inputs.x.shape, [4, 2]);
    assert.deepEqual(values(b, 'x'), [0, 0.5, 1, 1.5, 2, 2.5, 10, 10.5]);
    assert.deepEqual(b.inputs.n.shape, [4]);
    assert.deepEqual(values(b, 'n'), [0, 3, 6, 30]);
  });
});

describe('float16', () => {
  test('every half value survives float -> half, and rounding is to nearest even', () => {
    for (let h = 0; h < 0x10000; h++) {
      const f = halfToFloat(h);
      if (!Number.isNaN(f)) assert.equal(floatToHalf(f), h, `0x${h.toString(16)}`);
    }
    assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00, 'halfway, down to even');
    assert.equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02, 'halfway, up to even');
    assert.equal(floatToHalf(1 + 2 ** -11 + 2 ** -20), 0x3c01, 'past halfway, up');
    assert.equal(floatToHalf(65520), 0x7c00, 'overflow to infinity');
    assert.equal(floatToHalf(-(2 ** -25) * 1.5), 0x8001, 'smallest subnormal, rounded');
    assert.equal(floatToHalf(2 ** -26), 0, 'underflow to zero');
    assert.ok(Number.isNaN(halfToFloat(floatToHalf(NaN))));
  });
});

describe('random', () => {
  test('shapes from the model and --shape, seeded, small ints, and the warning', async () => {
    const inputs = [input('x', ['N', 3, 'H', 'W']), input('ids', ['N', 5], 7), input('mask', ['N', 5], 9)];
    const opts = { shapes: { x: [1, 3, 4, 6] }, seed: 11, randomCount: 5 };
    const ds = await openDataset('random', inputs, opts);
    assert.equal(ds.size, 5);
    assert.deepEqual(ds.warnings, [randomWarning]);
    assert.equal(randomWarning, 'random calibration data is not representative of real inputs');
    assert.equal(ds.hasLabels, false);
    const [b] = await all(ds, 8);
    assert.deepEqual(b.inputs.x.shape, [5, 3, 4, 6]);
    assert.deepEqual(b.inputs.ids.shape, [5, 5]);
    assert.ok(values(b, 'ids').every((v) => Number.isInteger(v) && v >= 0 && v < 10));
    assert.ok(values(b, 'mask').every((v) => v === 0 || v === 1));
    const xs = values(b, 'x');
    const mean = xs.reduce((a, v) => a + v, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((a, v) => a + (v - mean) ** 2, 0) / xs.length);
    assert.ok(Math.abs(mean) < 0.2 && Math.abs(sd - 1) < 0.2, `roughly standard normal: mean ${mean}, sd ${sd}`);
    const [again] = await all(await openDataset('random', inputs, opts), 8);
    assert.deepEqual(values(again, 'x'), xs);
    const [other] = await all(await openDataset('random', inputs, { ...opts, seed: 12 }), 8);
    assert.notDeepEqual(values(other, 'x'), xs);
    // A sample is the same whatever batch it falls in.
    const small = await all(await openDataset('random', inputs, opts), 2);
    assert.deepEqual(small.flatMap((s) => values(s, 'x')), xs);
  });

  test('a symbolic dim other than the leading batch is an error naming the input', async () => {
    await rejects(openDataset('random', [input('tokens', ['batch', 'sequence'], 7)]), "input 'tokens'", /symbolic dim 1 \('sequence'\).*--shape tokens=1xN/);
  });
});

describe('batching', () => {
  async function eight(dir: string) {
    const data = Float32Array.from({ length: 8 * 3 }, (_, i) => i);
    return write(path.join(dir, 'x.npy'), npyBytes('<f4', [8, 3], bytesOf(data)));
  }

  test('batches cover every sample in order, the last one short', async () => {
    const file = await eight(fresh('batch'));
    const ds = await openDataset(file, [input('x', ['N', 3])]);
    const batches = await all(ds, 3);
    assert.deepEqual(batches.map((b) => [b.start, b.count, b.inputs.x.shape]), [[0, 3, [3, 3]], [3, 3, [3, 3]], [6, 2, [2, 3]]]);
    assert.deepEqual(batches.flatMap((b) => values(b, 'x')), Array.from({ length: 24 }, (_, i) => i));
  });

  test('a fixed batch dim of 1 still stacks on axis 0', async () => {
    const file = await eight(fresh('batch'));
    const batches = await all(await openDataset(file, [input('x', [1, 3])]), 4);
    assert.deepEqual(batches.map((b) => b.inputs.x.shape), [[4, 3], [4, 3]]);
    const [single] = await all(await openDataset(file, [input('x', [1, 3])], { limit: 1 }), 1);
    assert.deepEqual(single.inputs.x.shape, [1, 3]);
  });

  test('limit and seeded shuffle apply before batching; the same seed gives the same order', async () => {
    const dir = fresh('shuffle');
    write(path.join(dir, 'seq-images-idx3-ubyte'), idxBytes([20, 1, 1], Uint8Array.from({ length: 20 }, (_, i) => i)));
    write(path.join(dir, 'seq-labels-idx1-ubyte'), idxBytes([20], Uint8Array.from({ length: 20 }, (_, i) => i % 10)));
    const spec = path.join(dir, 'seq-images-idx3-ubyte');
    const order = async (opts: DatasetOptions, batch = 4) => {
      const ds = await openDataset(spec, [input('x', ['N', 1])], opts);
      const batches = await all(ds, batch);
      batches.forEach((b) => assert.deepEqual([...b.labels!], values(b, 'x').map((v) => v % 10), 'labels follow their samples'));
      return { size: ds.size, counts: batches.map((b) => b.count), seq: batches.flatMap((b) => values(b, 'x')) };
    };
    const limited = await order({ limit: 7 });
    assert.deepEqual(limited, { size: 7, counts: [4, 3], seq: [0, 1, 2, 3, 4, 5, 6] });
    const a = await order({ shuffle: true, seed: 42, limit: 7 });
    const b = await order({ shuffle: true, seed: 42, limit: 7 }, 3);
    const c = await order({ shuffle: true, seed: 43, limit: 7 });
    const whole = await order({ shuffle: true, seed: 42 });
    assert.deepEqual(a.seq, b.seq);
    assert.deepEqual(b.counts, [3, 3, 1]);
    assert.notDeepEqual(a.seq, c.seq);
    assert.notDeepEqual(a.seq, limited.seq);
    assert.deepEqual(a.seq, whole.seq.slice(0, 7), 'shuffle first, then limit');
    assert.deepEqual([...whole.seq].sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i));
    assert.equal(new Set(a.seq).size, 7);
    // Pinned: a seed must pick the same calibration subset in every version, not just within one run.
    assert.deepEqual(a.seq, [13, 0, 19, 4, 6, 1, 9]);
  });

  test('an aborted signal stops between batches; a bad batch size is refused', async () => {
    const file = await eight(fresh('abort'));
    const ds = await openDataset(file, [input('x', ['N', 3])]);
    const controller = new AbortController();
    const seen: number[] = [];
    await assert.rejects(async () => {
      for await (const b of ds.batches(2, controller.signal)) {
        seen.push(b.start);
        if (seen.length === 2) controller.abort();
      }
    }, /abort/i);
    assert.deepEqual(seen, [0, 2]);
    await assert.rejects(ds.batches(0).next(), RangeError);
  });
});

describe('manifest', () => {
  test('images, idx, npy, value, zeros and random inputs with labels, limit and normalisation', async () => {
    const dir = fresh('manifest');
    write(path.join(dir, 'img', 'b', '1.png'), pngBytes(4, 4, () => [255, 0, 51]));
    write(path.join(dir, 'img', 'a', '1.png'), pngBytes(2, 2, () => [0, 255, 102]));
    write(path.join(dir, 'img', 'a', '2.png'), pngBytes(2, 2, () => [0, 0, 0]));
    write(path.join(dir, 'd-images-idx3-ubyte'), idxBytes([3, 2, 2], Uint8Array.from({ length: 12 }, (_, i) => i * 20)));
    write(path.join(dir, 'lab-labels-idx1-ubyte'), idxBytes([3], Uint8Array.from([5, 6, 7])));
    write(path.join(dir, 'feat.npy'), npyBytes('<f4', [3, 2], bytesOf(Float32Array.from([1, 2, 3, 4, 5, 6]))));
    const manifest = write(path.join(dir, 'cal.dataset.json'), JSON.stringify({
      inputs: {
        image: { images: 'img', resize: [2, 2], layout: 'NHWC', channels: 'bgr', scale: 1, mean: [0, 100, 200], std: [1, 2, 4] },
        digit: { idx: 'd-images-idx3-ubyte', scale: 0.05, mean: 1, std: 2 },
        feat: { npy: './feat.npy' },
        rate: { value: 16000 },
        state: { zeros: [2, 1, 3] },
        noise: { random: { shape: [1, 4], dist: 'uniform' } },
      },
      labels: { idx: 'lab-labels-idx1-ubyte' },
      limit: 2,
    }));
    const inputs = [
      input('image', ['N', 'H', 'W', 3]),
      input('digit', ['N', 4]),
      input('feat', ['N', 2]),
      input('rate', [], 7),
      input('state', [2, 'N', 3]),
      input('noise', ['N', 4]),
    ];
    const ds = await openDataset(manifest, inputs, { seed: 3 });
    assert.equal(ds.size, 2);
    assert.match(ds.description, /cal\.dataset\.json/);
    assert.deepEqual(ds.warnings, [randomWarning]);
    const [b] = await all(ds, 4);
    assert.deepEqual([...b.labels!], [5, 6]);
    assert.deepEqual(b.inputs.image.shape, [2, 2, 2, 3]);
    // bgr of (0, 255, 102), minus mean [0, 100, 200], over std [1, 2, 4].
    assert.deepEqual(values(b, 'image').slice(0, 3), [102, (255 - 100) / 2, (0 - 200) / 4]);
    assert.deepEqual(b.inputs.digit.shape, [2, 4]);
    assert.deepEqual(values(b, 'digit').slice(0, 4), [0, 20, 40, 60].map((v) => (v * 0.05 - 1) / 2));
    assert.deepEqual(values(b, 'feat'), [1, 2, 3, 4]);
    assert.deepEqual(b.inputs.rate, { dtype: 'int64', shape: [], data: BigInt64Array.from([16000n]) }, 'a scalar constant, not stacked');
    assert.deepEqual(b.inputs.state, { dtype: 'float32', shape: [2, 1, 3], data: new Float32Array(6) }, 'no batch axis first: given whole');
    assert.deepEqual(b.inputs.noise.shape, [2, 4]);
    assert.ok(values(b, 'noise').every((v) => v >= 0 && v < 1));
  });

  test('labels from class folders; pb globs; an image folder of another size with resize', async () => {
    const dir = fresh('manifest2');
    write(path.join(dir, 'pics', 'cat', 'x.png'), pngBytes(6, 6, () => [60, 60, 60]));
    write(path.join(dir, 'pics', 'dog', 'y.png'), pngBytes(3, 3, () => [30, 30, 30]));
    for (const k of [0, 1]) write(path.join(dir, 'sets', `test_data_set_${k}`, 'input_0.pb'), pb(floatTensor('t', [1, 2], [k, -k])));
    write(path.join(dir, 'arrays.npz'), zipBytes([
      { name: 'other.npy', data: npyBytes('<f4', [2, 1], bytesOf(Float32Array.from([7, 8]))) },
      { name: 'v.npy', data: npyBytes('<i4', [2, 1], bytesOf(Int32Array.from([3, 4]))), deflate: true },
    ]));
    const manifest = write(path.join(dir, 'm.dataset.json'), JSON.stringify({
      inputs: { img: { images: 'pics', resize: [3, 3], channels: 'gray' }, t: { pb: 'sets/test_data_set_*/input_0.pb' }, v: { npy: 'arrays.npz', scale: 10 } },
      labels: { fromFolders: true },
    }));
    const ds = await openDataset(manifest, [input('img', ['N', 1, 3, 3]), input('t', ['N', 2]), input('v', ['N', 1])]);
    const [b] = await all(ds);
    assert.deepEqual([...b.labels!], [0, 1]);
    assert.deepEqual(b.inputs.img.shape, [2, 1, 3, 3]);
    assert.ok(values(b, 'img').slice(0, 9).every((v) => Math.abs(v - 60 / 255) < 1e-6));
    assert.deepEqual(values(b, 't'), [0, -0, 1, -1]);
    assert.deepEqual(values(b, 'v'), [30, 40], 'the .npz array named after the input, scaled');
  });
});

describe('errors name the file and the problem', () => {
  const one = [input('x', ['N', 1, 2, 2])];

  test('a missing SPEC, and missing files a manifest names', async () => {
    const dir = fresh('missing');
    await rejects(openDataset(path.join(dir, 'nope'), one), path.join(dir, 'nope'), /no such file or folder/);
    const manifest = write(path.join(dir, 'm.dataset.json'), JSON.stringify({ inputs: { x: { images: 'gone' } } }));
    await rejects(openDataset(manifest, one), path.join(dir, 'gone'), /missing/);
    write(manifest, JSON.stringify({ inputs: { x: { idx: 'gone-images-idx3-ubyte' } } }));
    await rejects(openDataset(manifest, one), 'gone-images-idx3-ubyte', /missing/);
    write(path.join(dir, 'ok-images-idx3-ubyte'), idxBytes([1, 2, 2], new Uint8Array(4)));
    write(manifest, JSON.stringify({ inputs: { x: { idx: 'ok-images-idx3-ubyte' } }, labels: { idx: 'gone-labels' } }));
    await rejects(openDataset(manifest, one), 'gone-labels', /missing/);
    await rejects(openDataset(write(path.join(dir, 'what.bin'), 'hello'), one), 'what.bin', /not a dataset/);
  });

  test('an image of the wrong size in a manifest without resize', async () => {
    const dir = fresh('size');
    write(path.join(dir, 'img', 'a.png'), pngBytes(2, 2, () => [1, 2, 3]));
    const odd = write(path.join(dir, 'img', 'b.png'), pngBytes(3, 2, () => [1, 2, 3]));
    const manifest = write(path.join(dir, 'm.dataset.json'), JSON.stringify({ inputs: { x: { images: 'img' } } }));
    await rejects(drain(manifest, one), odd, /image is 3x2.*takes 2x2.*"resize": \[2, 2\]/);
    // The first image is checked when the dataset opens.
    write(path.join(dir, 'img', 'a.png'), pngBytes(5, 5, () => [1, 2, 3]));
    await rejects(openDataset(manifest, one), path.join(dir, 'img', 'a.png'), /image is 5x5/);
    // A resize that contradicts the model.
    write(manifest, JSON.stringify({ inputs: { x: { images: 'img', resize: [4, 4] } } }));
    await rejects(openDataset(manifest, one), manifest, /resize \[4, 4\] does not match input 'x'/);
  });

  test('labels that do not match the images in number', async () => {
    const dir = fresh('labels');
    const images = write(path.join(dir, 'n-images-idx3-ubyte'), idxBytes([3, 2, 2], new Uint8Array(12)));
    const labels = write(path.join(dir, 'n-labels-idx1-ubyte'), idxBytes([2], Uint8Array.from([1, 2])));
    await rejects(openDataset(images, one), labels, /has 2 labels.*3 images/);
    const manifest = write(path.join(dir, 'm.dataset.json'), JSON.stringify({ inputs: { x: { idx: 'n-images-idx3-ubyte' } }, labels: { idx: 'n-labels-idx1-ubyte' } }));
    await rejects(openDataset(manifest, one), labels, /has 2 labels, the inputs have 3 samples/);
  });

  test('non-numeric, big-endian and Fortran-order .npy arrays', async () => {
    const dir = fresh('npybad');
    const text = write(path.join(dir, 'text.npy'), npyBytes('<U10', [2], new Uint8Array(80)));
    await rejects(openDataset(text, [input('x', ['N'])]), text, /non-numeric or unsupported dtype '<U10'/);
    const objects = write(path.join(dir, 'objects.npy'), npyBytes('|O', [2], new Uint8Array(16)));
    await rejects(openDataset(objects, [input('x', ['N'])]), objects, /non-numeric or unsupported dtype '\|O'/);
    const big = write(path.join(dir, 'big.npy'), npyBytes('>f4', [2], new Uint8Array(8)));
    await rejects(openDataset(big, [input('x', ['N'])]), big, /big-endian/);
    const fortran = write(path.join(dir, 'f.npy'), Buffer.from(npyBytes('<f4', [2, 2], new Uint8Array(16)).toString('latin1').replace('False', 'True '), 'latin1'));
    await rejects(openDataset(fortran, [input('x', ['N', 2])]), fortran, /Fortran order/);
    const short = write(path.join(dir, 'short.npy'), npyBytes('<f4', [4, 2], new Uint8Array(8)));
    await rejects(openDataset(short, [input('x', ['N', 2])]), short, /truncated/);
    const wrong = write(path.join(dir, 'wrong.npy'), npyBytes('<f4', [2, 5], new Uint8Array(40)));
    await rejects(openDataset(wrong, [input('x', ['N', 3])]), wrong, /\[5\].*does not fit input 'x'/);
  });

  test('a manifest naming an input the model lacks, or missing one it has', async () => {
    const dir = fresh('names');
    write(path.join(dir, 'x.npy'), npyBytes('<f4', [1, 4], new Uint8Array(16)));
    const manifest = write(path.join(dir, 'm.dataset.json'), JSON.stringify({ inputs: { x: { npy: 'x.npy' }, extra: { value: 1 } } }));
    await rejects(openDataset(manifest, one), manifest, /input 'extra' is not an input of the model \(its inputs: x\)/);
    write(manifest, JSON.stringify({ inputs: { x: { npy: 'x.npy' } } }));
    await rejects(openDataset(manifest, [...one, input('y', ['N', 2])]), manifest, /model input 'y' has no entry/);
    write(manifest, JSON.stringify({ inputs: { x: { npy: 'x.npy', resize: [2, 2] } } }));
    await rejects(openDataset(manifest, one), manifest, /'resize' does not apply to npy data/);
    write(manifest, JSON.stringify({ inputs: { x: { npy: 'x.npy', idx: 'y' } } }));
    await rejects(openDataset(manifest, one), manifest, /exactly one of/);
    write(manifest, JSON.stringify({ inputs: { x: { npy: 'x.npy', dtype: 'int64' } } }));
    await rejects(openDataset(manifest, one), manifest, /dtype is int64, but the model's input 'x' is float32/);
    write(manifest, JSON.stringify({ inputs: { x: { npy: 'x.npy' } }, label: {} }));
    await rejects(openDataset(manifest, one), manifest, /unknown key 'label'/);
    write(manifest, '{ "inputs": ');
    await rejects(openDataset(manifest, one), manifest, /not valid JSON/);
    const npz = write(path.join(dir, 'k.npz'), zipBytes([
      { name: 'x.npy', data: npyBytes('<f4', [1, 4], new Uint8Array(16)) },
      { name: 'z.npy', data: npyBytes('<f4', [1, 4], new Uint8Array(16)) },
    ]));
    await rejects(openDataset(npz, one), npz, /array 'z' is not an input of the model/);
  });

  test('empty datasets', async () => {
    const dir = fresh('empty');
    const folder = path.join(dir, 'none');
    fs.mkdirSync(path.join(folder, 'class-a'), { recursive: true });
    await rejects(openDataset(folder, one), folder, /empty/);
    const npy = write(path.join(dir, 'zero.npy'), npyBytes('<f4', [0, 4], new Uint8Array(0)));
    await rejects(openDataset(npy, [input('x', ['N', 4])]), npy, /empty/);
    const idx = write(path.join(dir, 'z-images-idx3-ubyte'), idxBytes([0, 2, 2], new Uint8Array(0)));
    await rejects(openDataset(idx, one), idx, /empty/);
  });

  test('corrupt images, at open and while batching', async () => {
    const dir = fresh('corrupt');
    write(path.join(dir, 'c', '1.png'), pngBytes(2, 2, () => [1, 2, 3]));
    const broken = write(path.join(dir, 'c', '2.jpg'), Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(40, 7)]));
    await rejects(drain(dir, one, {}, 1), broken, /corrupt JPEG image/);
    const truncated = pngBytes(2, 2, () => [1, 2, 3]);
    write(path.join(dir, 'c', '1.png'), truncated.subarray(0, truncated.length - 20));
    await rejects(openDataset(dir, one), path.join(dir, 'c', '1.png'), /corrupt PNG image/);
    write(path.join(dir, 'c', '1.png'), 'GIF89a');
    await rejects(openDataset(dir, one), path.join(dir, 'c', '1.png'), /not a JPEG or PNG image/);
  });

  test('an idx file with a bad magic number, or cut short', async () => {
    const dir = fresh('idxbad');
    const bad = write(path.join(dir, 'bad-images-idx3-ubyte'), Buffer.concat([Buffer.from([0x12, 0x34, 0x08, 0x03]), Buffer.alloc(12)]));
    await rejects(openDataset(bad, one), bad, /bad magic number 0x12340803, expected 0x00000803/);
    const gz = write(path.join(dir, 'bad-images-idx3-ubyte.gz'), zlib.gzipSync(Buffer.from('definitely not idx')));
    await rejects(openDataset(gz, one), gz, /bad magic number/);
    const cut = write(path.join(dir, 'cut-images-idx3-ubyte'), idxBytes([5, 2, 2], new Uint8Array(7)));
    await rejects(openDataset(cut, one), cut, /truncated/);
    write(path.join(dir, 'ok-images-idx3-ubyte'), idxBytes([1, 2, 2], new Uint8Array(4)));
    const labels = write(path.join(dir, 'ok-labels-idx1-ubyte'), idxBytes([1, 1], new Uint8Array(1)));
    await rejects(openDataset(path.join(dir, 'ok-images-idx3-ubyte'), one), labels, /idx labels file with 2 dims/);
  });

  test('single-input forms refuse multi-input models; pb sets must cover every input', async () => {
    const dir = fresh('multi');
    write(path.join(dir, 'img', 'a.png'), pngBytes(2, 2, () => [1, 2, 3]));
    const two = [input('a', ['N', 1, 2, 2]), input('b', ['N', 2])];
    await rejects(openDataset(path.join(dir, 'img'), two), path.join(dir, 'img'), /single-input models only.*2 inputs \(a, b\)/);
    write(path.join(dir, 'sets', 'test_data_set_0', 'input_0.pb'), pb(floatTensor('a', [1, 1, 2, 2], [1, 2, 3, 4])));
    await rejects(openDataset(path.join(dir, 'sets'), two), path.join(dir, 'sets', 'test_data_set_0'), /no input_1\.pb for model input 1 \('b'\)/);
    const junk = write(path.join(dir, 'junk', 'input_0.pb'), Buffer.from([0xff, 0xff, 0xff]));
    await rejects(openDataset(path.join(dir, 'junk'), [input('x', ['N'])]), junk, /not a serialized ONNX TensorProto/);
  });
});
