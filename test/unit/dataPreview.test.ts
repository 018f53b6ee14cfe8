import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { describe, test } from 'node:test';
import { PNG } from 'pngjs';
import { previewData } from '../../src/extension/dataPreview';
import { idxBytes, write } from './helpers/fixtures';
import { noSharedData, sharedData, tempDir } from './helpers/paths';

/** The Compress wizard's data preview: the first samples as pictures, read without inflating whole files. */
describe('data preview', () => {
  const dir = tempDir('whittle-preview-');

  test('a gzipped idx file previews its first 8 images with their exact pixels', async () => {
    const pixels = new Uint8Array(20 * 5 * 4).map((_, i) => (i * 7) % 256);
    const file = write(path.join(dir, 'imgs-idx3-ubyte.gz'), zlib.gzipSync(idxBytes([20, 5, 4], pixels)));
    const p = await previewData(file);
    assert.equal(p.description, 'idx images: 20 × 5 × 4');
    assert.equal(p.samples.length, 8);
    assert.deepEqual(p.samples.map((s) => [s.width, s.height]), Array(8).fill([4, 5]));
    assert.deepEqual(p.samples[3].gray, Array.from(pixels.subarray(3 * 20, 4 * 20)));
  });

  test('an image folder with class sub-folders previews images labelled by class', async () => {
    for (const cls of ['cat', 'dog']) {
      for (let i = 0; i < 5; i++) {
        const png = new PNG({ width: 2, height: 2 });
        png.data.fill(cls === 'cat' ? 10 : 200);
        write(path.join(dir, 'folder', cls, `img${i}.png`), PNG.sync.write(png));
      }
    }
    const p = await previewData(path.join(dir, 'folder'));
    assert.equal(p.description, 'image folder: 10 images, 2 classes');
    assert.ok(p.samples.length >= 5 && p.samples.length <= 8);
    assert.ok(p.samples.every((s) => s.url?.startsWith('data:image/png;base64,')));
    assert.deepEqual([...new Set(p.samples.map((s) => s.label))], ['cat', 'dog']);
  });

  test('random data has no samples but a warning; a missing path says so', async () => {
    const r = await previewData('random');
    assert.equal(r.samples.length, 0);
    assert.match(r.warning ?? '', /not representative/);
    const missing = await previewData(path.join(dir, 'nope'));
    assert.match(missing.warning ?? '', /does not exist/);
  });

  test('MNIST t10k: 10,000 28x28 images, the first with ink', { skip: noSharedData }, async () => {
    const p = await previewData(path.join(sharedData!, 'mnist', 't10k-images-idx3-ubyte.gz'));
    assert.equal(p.description, 'idx images: 10,000 × 28 × 28');
    const g = p.samples[0].gray!;
    assert.equal(g.length, 784);
    assert.ok(g.filter((v) => v > 128).length > 50, 'the first digit has no ink');
  });
});
