import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { toBinary } from '@bufbuild/protobuf';
import { TensorProtoSchema } from 'onnx-buf';
import { PNG } from 'pngjs';
import { openDataset, splitDataRange, type Batch, type Dataset, type ModelInput } from '../../src/core/data/index';
import { InputError } from '../../src/core/errors';
import { floatTensor } from '../../src/core/formats/onnx/build';
import { noSharedData, sharedData, tempDir } from './helpers/paths';
import { freshDir, idxBytes, npyBytes, write } from './helpers/fixtures';

// `SPEC#A:B` and a manifest's "skip": samples picked by position in the source, before shuffle and limit.
// Every fixture holds sample i with the value i, so the values read back say exactly which samples came.

const root = tempDir('whittle-range-');
const fresh = freshDir(root);
/** A float32 .npy. */
const npyF32 = (shape: number[], data: Float32Array) => npyBytes('<f4', shape, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
function grayPng(v: number): Buffer {
  const png = new PNG({ width: 1, height: 1 });
  png.data.set([v, v, v, 255]);
  return PNG.sync.write(png);
}
const input = (name: string, shape: ModelInput['shape']): ModelInput => ({ name, elemType: 1, shape });

async function values(ds: Dataset, batch = 4): Promise<{ seq: number[]; labels: number[]; batches: Batch[] }> {
  const batches: Batch[] = [];
  for await (const b of ds.batches(batch)) batches.push(b);
  return {
    seq: batches.flatMap((b) => [...(Object.values(b.inputs)[0].data as Float32Array)]),
    labels: batches.flatMap((b) => [...(b.labels ?? [])]),
    batches,
  };
}

async function rejects(p: Promise<unknown>, where: string, problem: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof InputError, `an InputError, got ${String(err)}`);
    assert.ok(err.message.includes(where), `message names ${where}: ${err.message}`);
    assert.match(err.message, problem);
    return true;
  });
}

/** 20 idx images (1x1, value i) with labels i % 10. */
function seqIdx(): string {
  const dir = fresh('idx');
  write(path.join(dir, 'seq-labels-idx1-ubyte'), idxBytes([20], Uint8Array.from({ length: 20 }, (_, i) => i % 10)));
  return write(path.join(dir, 'seq-images-idx3-ubyte'), idxBytes([20, 1, 1], Uint8Array.from({ length: 20 }, (_, i) => i)));
}

describe('data ranges (#A:B)', () => {
  test('splitDataRange: either end optional, a real file named with # wins, anything else after # is an error', () => {
    assert.deepEqual(splitDataRange('a/b.npy#:1000'), { base: 'a/b.npy', range: { start: undefined, end: 1000 } });
    assert.deepEqual(splitDataRange('a/b.npy#1000:'), { base: 'a/b.npy', range: { start: 1000, end: undefined } });
    assert.deepEqual(splitDataRange('x#100:600'), { base: 'x', range: { start: 100, end: 600 } });
    assert.deepEqual(splitDataRange('plain/folder'), { base: 'plain/folder' });
    const odd = write(path.join(fresh('odd'), 'set#1:2'), 'x');
    assert.deepEqual(splitDataRange(odd), { base: odd });
    for (const bad of ['d.npy#5', 'd.npy#-1:3', 'd.npy#a:b', 'd.npy#1:2:3']) {
      assert.throws(() => splitDataRange(bad), (e: unknown) => e instanceof InputError && e.message.includes(bad) && /not a sample range/.test(e.message), bad);
    }
  });

  test('idx: the range picks samples in source order with their labels, before shuffle and limit', async () => {
    const spec = seqIdx();
    const x = [input('x', ['N', 1])];
    const head = await openDataset(`${spec}#:5`, x);
    assert.equal(head.size, 5);
    assert.match(head.description, /#0:5$/, head.description);
    const h = await values(head);
    assert.deepEqual(h.seq, [0, 1, 2, 3, 4]);
    assert.deepEqual(h.labels, [0, 1, 2, 3, 4]);
    const tail = await values(await openDataset(`${spec}#15:`, x));
    assert.deepEqual(tail.seq, [15, 16, 17, 18, 19]);
    assert.deepEqual(tail.labels, [5, 6, 7, 8, 9]);
    assert.deepEqual(tail.batches.map((b) => b.start), [0, 4], 'batch starts count from the range');
    const mid = await openDataset(`${spec}#5:15`, x, { shuffle: true, seed: 1, limit: 6 });
    const m = await values(mid);
    assert.equal(m.seq.length, 6);
    assert.ok(m.seq.every((v) => v >= 5 && v < 15), `shuffled within the range: ${m.seq}`);
    assert.notDeepEqual(m.seq, [5, 6, 7, 8, 9, 10], 'shuffled');
    assert.deepEqual(m.labels, m.seq.map((v) => v % 10));
    const whole = await values(await openDataset(`${spec}#:`, x));
    assert.equal(whole.seq.length, 20);
  });

  test('empty and out-of-bounds ranges, and random, are InputErrors naming the SPEC', async () => {
    const spec = seqIdx();
    const x = [input('x', ['N', 1])];
    await rejects(openDataset(`${spec}#5:5`, x), `${spec}#5:5`, /empty/);
    await rejects(openDataset(`${spec}#9:3`, x), `${spec}#9:3`, /empty/);
    await rejects(openDataset(`${spec}#:21`, x), `${spec}#:21`, /out of bounds: the source has 20 samples/);
    await rejects(openDataset(`${spec}#25:`, x), `${spec}#25:`, /out of bounds/);
    await rejects(openDataset('random#:10', x), 'random#:10', /does not apply to random data.*--limit/);
    await rejects(openDataset(path.join(root, 'nothing.npy#:3'), x), path.join(root, 'nothing.npy'), /no such file/);
  });

  test('npy, image folders and pb folders take ranges too', async () => {
    const dir = fresh('forms');
    const npy = write(path.join(dir, 'x.npy'), npyF32([10, 1], Float32Array.from({ length: 10 }, (_, i) => i)));
    assert.deepEqual((await values(await openDataset(`${npy}#3:6`, [input('x', ['N', 1])]))).seq, [3, 4, 5]);
    for (let i = 0; i < 6; i++) write(path.join(dir, 'pics', `img${i}.png`), grayPng(i * 10));
    const pics = await values(await openDataset(`${path.join(dir, 'pics')}#4:`, [input('x', ['N', 1, 1, 1])]));
    assert.equal(pics.seq.length, 2);
    assert.ok(pics.seq[1] > pics.seq[0], `the last two images, in file order: ${pics.seq}`);
    for (let k = 0; k < 5; k++) write(path.join(dir, 'sets', `test_data_set_${k}`, 'input_0.pb'), toBinary(TensorProtoSchema, floatTensor('x', [1, 1], [k])));
    assert.deepEqual((await values(await openDataset(`${path.join(dir, 'sets')}#1:3`, [input('x', ['N', 1])]))).seq, [1, 2]);
  });

  test('a manifest: "skip" drops samples in source order before the limit, and a #A:B range applies on top', async () => {
    const dir = fresh('manifest');
    write(path.join(dir, 'seq-images-idx3-ubyte'), idxBytes([20, 1, 1], Uint8Array.from({ length: 20 }, (_, i) => i)));
    write(path.join(dir, 'seq-labels-idx1-ubyte'), idxBytes([20], Uint8Array.from({ length: 20 }, (_, i) => i % 10)));
    const manifest = (extra: Record<string, unknown>) =>
      write(path.join(dir, 'm.dataset.json'), JSON.stringify({ inputs: { x: { idx: 'seq-images-idx3-ubyte', scale: 2 } }, labels: { idx: 'seq-labels-idx1-ubyte' }, ...extra }));
    const x = [input('x', ['N', 1])];
    const skipped = await values(await openDataset(manifest({ skip: 12, limit: 3 }), x));
    assert.deepEqual(skipped.seq, [24, 26, 28]);
    assert.deepEqual(skipped.labels, [2, 3, 4]);
    const file = manifest({ skip: 10 });
    const ranged = await openDataset(`${file}#2:4`, x);
    assert.deepEqual((await values(ranged)).seq, [24, 26]);
    assert.match(ranged.description, /#2:4/);
    await rejects(openDataset(manifest({ skip: 20 }), x), 'm.dataset.json', /'skip': 20 is empty/);
    await rejects(openDataset(manifest({ skip: 30 }), x), 'm.dataset.json', /'skip': 30 is out of bounds/);
    await rejects(openDataset(manifest({ skip: -1 }), x), 'm.dataset.json', /'skip' must be a whole number of at least 0/);
  });

  test('MNIST test set split 1,000 / 9,000', { skip: noSharedData }, async () => {
    const spec = path.join(sharedData!, 'mnist/t10k-images-idx3-ubyte.gz');
    const x = [input('Input3', [1, 1, 28, 28])];
    const calib = await openDataset(`${spec}#:1000`, x);
    const evalSet = await openDataset(`${spec}#1000:`, x);
    assert.equal(calib.size, 1000);
    assert.equal(evalSet.size, 9000);
    assert.ok(calib.hasLabels && evalSet.hasLabels);
    assert.match(evalSet.description, /#1000:10000/);
  });
});
