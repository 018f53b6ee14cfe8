import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * A tiny learnable MNIST look-alike for training tests that must not depend on ../shared/data: class k is a
 * bright 7x7 block at its own place on a 28x28 noisy background. Written as an idx images file with its labels
 * file beside it (uncompressed), the form `--data` reads with labels.
 */
export function writeToyDigits(dir: string, count: number, seed = 1): string {
  fs.mkdirSync(dir, { recursive: true });
  const images = Buffer.alloc(16 + count * 784);
  images.set([0, 0, 8, 3]);
  images.writeUInt32BE(count, 4);
  images.writeUInt32BE(28, 8);
  images.writeUInt32BE(28, 12);
  const labels = Buffer.alloc(8 + count);
  labels.set([0, 0, 8, 1]);
  labels.writeUInt32BE(count, 4);
  let s = seed >>> 0;
  const rand = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  for (let n = 0; n < count; n++) {
    const k = n % 10;
    labels[8 + n] = k;
    const top = 2 + Math.floor(k / 4) * 8;
    const left = 2 + (k % 4) * 6;
    const base = 16 + n * 784;
    for (let r = 0; r < 28; r++) {
      for (let c = 0; c < 28; c++) {
        const inBlock = r >= top && r < top + 7 && c >= left && c < left + 7;
        images[base + r * 28 + c] = inBlock ? 200 + Math.floor(rand() * 55) : Math.floor(rand() * 40);
      }
    }
  }
  const file = path.join(dir, 'toy-images-idx3-ubyte');
  fs.writeFileSync(file, images);
  fs.writeFileSync(path.join(dir, 'toy-labels-idx1-ubyte'), labels);
  return file;
}
