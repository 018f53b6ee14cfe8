import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { listImages } from '../core/data/images';
import { splitDataRange } from '../core/data';
import { randomWarning } from '../core/data/synthetic';
import type { DataPreview } from '../protocol/compress';
import { english, type Translate } from './runs';

/** How many samples a preview shows. */
const previewCount = 8;

/**
 * A preview of the first samples of a --data SPEC for the Compress wizard: MNIST-style idx image files (gzipped
 * or not: only the first samples are inflated, as a stream) and image folders show pictures; other forms are
 * described. Async and bounded (a few KB of idx, 8 image files), so the host's thread never waits on it. Its
 * texts go through `t` (the core's random-data warning included: test/unit/l10n.test.ts checks its Thai entry).
 */
export async function previewData(spec: string, t: Translate = english): Promise<DataPreview> {
  if (spec === 'random') return { description: t('random inputs'), samples: [], warning: t('{0}: accuracy cannot be measured, only agreement with the original model', t(randomWarning)) };
  const { base } = splitDataRange(spec);
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(base);
  } catch {
    return { description: t('{0}: not found', base), samples: [], warning: t('the file or folder does not exist') };
  }
  try {
    if (stat.isDirectory()) return await previewFolder(base, t);
    const head = await readHead(base, 16 + previewCount * 28 * 28 * 4);
    if (head.length >= 4 && head[0] === 0 && head[1] === 0 && head[2] === 0x08 && head[3] >= 2) return previewIdx(base, head, t);
    if (/\.dataset\.json$/i.test(base)) return { description: t('dataset manifest {0}', path.basename(base)), samples: [] };
    return { description: t('{0} ({1} bytes)', path.basename(base), stat.size.toLocaleString('en-US')), samples: [] };
  } catch (err) {
    return { description: path.basename(base), samples: [], warning: err instanceof Error ? err.message : String(err) };
  }
}

/** The first `bytes` bytes of a file, inflated when it is gzipped (stops reading once it has them). */
async function readHead(file: string, bytes: number): Promise<Buffer> {
  const fd = await fs.promises.open(file, 'r');
  let magic: Buffer;
  try {
    magic = Buffer.alloc(2);
    await fd.read(magic, 0, 2, 0);
  } finally {
    await fd.close();
  }
  const gz = magic[0] === 0x1f && magic[1] === 0x8b;
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const input = fs.createReadStream(file, gz ? {} : { start: 0, end: bytes - 1 });
    const stream = gz ? input.pipe(zlib.createGunzip()) : input;
    const done = () => {
      input.destroy();
      if (gz) (stream as zlib.Gunzip).destroy();
      resolve(Buffer.concat(chunks).subarray(0, bytes));
    };
    stream.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= bytes) done();
    });
    stream.on('end', done);
    stream.on('error', (err: Error) => (got > 0 ? done() : reject(err)));
  });
}

function previewIdx(file: string, head: Buffer, t: Translate): DataPreview {
  const ndims = head[3];
  const dims = Array.from({ length: ndims }, (_, i) => head.readUInt32BE(4 + 4 * i));
  const [count, h, w = 1] = dims;
  const offset = 4 + 4 * ndims;
  const size = h * w;
  const samples: DataPreview['samples'] = [];
  for (let i = 0; i < Math.min(previewCount, count) && offset + (i + 1) * size <= head.length; i++) {
    samples.push({ width: w, height: h, gray: Array.from(head.subarray(offset + i * size, offset + (i + 1) * size)) });
  }
  return { description: t('idx images: {0} × {1}', count.toLocaleString('en-US'), dims.slice(1).join(' × ')), samples };
}

async function previewFolder(dir: string, t: Translate): Promise<DataPreview> {
  const listing = listImages(dir);
  if (listing.files.length === 0) return { description: t('{0}: no .jpg, .jpeg or .png images', path.basename(dir)), samples: [], warning: t('a folder of input_N.pb or .npy files is read as data but not previewed') };
  const samples: DataPreview['samples'] = [];
  // Spread the preview over the classes when there are several.
  const step = listing.classes ? Math.max(1, Math.floor(listing.files.length / previewCount)) : 1;
  for (let i = 0; i < listing.files.length && samples.length < previewCount; i += step) {
    const file = listing.files[i];
    const bytes = await fs.promises.readFile(file);
    const mime = /\.png$/i.test(file) ? 'image/png' : 'image/jpeg';
    samples.push({ width: 0, height: 0, url: `data:${mime};base64,${bytes.toString('base64')}`, label: listing.classes && listing.labels ? listing.classes[listing.labels[i]] : path.basename(file) });
  }
  const count = listing.files.length.toLocaleString('en-US');
  return { description: listing.classes ? t('image folder: {0} images, {1} classes', count, listing.classes.length) : t('image folder: {0} images', count), samples };
}
