/**
 * Images as model inputs: JPEG and PNG decoding (by content, not extension), channel selection, bilinear
 * resizing and normalisation, and the image-folder source form whose class sub-folders are the labels.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { InputError } from '../errors';
import type { SampleInput, SampleSource } from './dataset';
import { dimText, dtypeOfInput, isFloat, sampleTarget, writerOf } from './tensors';
import type { DatasetOptions, ModelInput, SampleDType } from './types';

/** A decoded image: 8-bit RGBA, row-major. */
export interface Rgba {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Which colour planes go to the model, in order. */
export type Channels = 'gray' | 'rgb' | 'bgr';

/** Where the channel axis sits: planar, interleaved, absent (gray [N,H,W]) or flattened ([N, C*H*W], planar order). */
export type Layout = 'NCHW' | 'NHWC' | 'NHW' | 'flat';

/** Image decoders, each recognised by its file signature. */
const decoders: Array<{ name: string; magic: number[]; decode: (bytes: Buffer) => Rgba }> = [
  { name: 'JPEG', magic: [0xff, 0xd8, 0xff], decode: decodeJpeg },
  { name: 'PNG', magic: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], decode: decodePng },
];

/** File name extensions listed as images in a folder; the content decides the decoder. */
export const imageExtensions = new Set(['.jpg', '.jpeg', '.png']);

function decodeJpeg(bytes: Buffer): Rgba {
  const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024 });
  return { width: img.width, height: img.height, data: img.data };
}

function decodePng(bytes: Buffer): Rgba {
  // pngjs gives 8-bit RGBA for every colour type and bit depth (16-bit samples are rescaled).
  const img = PNG.sync.read(bytes);
  return { width: img.width, height: img.height, data: new Uint8Array(img.data.buffer, img.data.byteOffset, img.data.byteLength) };
}

/** Decodes JPEG or PNG bytes, chosen by content; `file` names the image in errors. */
export function decodeImage(bytes: Buffer, file: string): Rgba {
  const decoder = decoders.find((d) => d.magic.every((b, i) => bytes[i] === b));
  if (!decoder) throw new InputError(file, 'not a JPEG or PNG image (unrecognised file signature)');
  let img: Rgba;
  try {
    img = decoder.decode(bytes);
  } catch (err) {
    throw new InputError(file, `corrupt ${decoder.name} image: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (img.width < 1 || img.height < 1 || img.data.length < img.width * img.height * 4) throw new InputError(file, `corrupt ${decoder.name} image: no pixel data`);
  return img;
}

/** Reads and decodes one image file. */
export async function readImage(file: string): Promise<Rgba> {
  let bytes: Buffer;
  try {
    bytes = await fs.promises.readFile(file);
  } catch {
    throw new InputError(file, 'image file is missing or unreadable');
  }
  return decodeImage(bytes, file);
}

/** Grey level from RGB with ITU-R 601 weights, as PIL's convert('L') and OpenCV use. */
const grayWeights = [0.299, 0.587, 0.114];

/** The selected colour planes of an image as float planes of 0..255 values. */
export function planes(img: Rgba, channels: Channels): Float32Array[] {
  const n = img.width * img.height;
  const d = img.data;
  const plane = (f: (p: number) => number) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = f(i * 4);
    return out;
  };
  if (channels === 'gray') return [plane((p) => grayWeights[0] * d[p] + grayWeights[1] * d[p + 1] + grayWeights[2] * d[p + 2])];
  const rgb = [plane((p) => d[p]), plane((p) => d[p + 1]), plane((p) => d[p + 2])];
  return channels === 'rgb' ? rgb : rgb.reverse();
}

/**
 * Bilinear resize of one plane with half-pixel centres (align_corners=false, no antialiasing), as OpenCV's
 * INTER_LINEAR and PyTorch's interpolate(mode='bilinear') do. A constant plane stays constant.
 */
export function resizeBilinear(src: Float32Array, w: number, h: number, outW: number, outH: number): Float32Array {
  if (w === outW && h === outH) return src;
  const out = new Float32Array(outW * outH);
  const sx = w / outW;
  const sy = h / outH;
  for (let y = 0; y < outH; y++) {
    const fy = Math.min(h - 1, Math.max(0, (y + 0.5) * sy - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(h - 1, y0 + 1);
    const ty = fy - y0;
    for (let x = 0; x < outW; x++) {
      const fx = Math.min(w - 1, Math.max(0, (x + 0.5) * sx - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(w - 1, x0 + 1);
      const tx = fx - x0;
      const top = src[y0 * w + x0] * (1 - tx) + src[y0 * w + x1] * tx;
      const bottom = src[y1 * w + x0] * (1 - tx) + src[y1 * w + x1] * tx;
      out[y * outW + x] = top * (1 - ty) + bottom * ty;
    }
  }
  return out;
}

/** How the images of one input are turned into tensors (from the manifest, or the defaults of a folder). */
export interface ImageOptions {
  /** Target [height, width]; resizing is allowed when given. */
  resize?: [number, number];
  /** Resize any image whose size differs from the target (the plain folder form) rather than reject it. */
  autoResize: boolean;
  layout?: 'NCHW' | 'NHWC';
  channels?: Channels;
  /** Default: 1/255 for floating-point inputs, 1 (raw 0..255) for integer inputs. */
  scale?: number;
  /** Per channel (or one for all), subtracted after scaling. Default 0. */
  mean?: number[];
  /** Per channel (or one for all), divided by after subtracting the mean. Default 1. */
  std?: number[];
  dtype?: SampleDType;
}

/** Everything needed to turn one decoded image into a sample. */
interface ImagePlan {
  layout: Layout;
  channels: Channels;
  height: number;
  width: number;
  shape: number[];
  scale: number;
  mean: number[];
  std: number[];
  dtype: SampleDType;
  autoResize: boolean;
}

/** The model's channel count, height and width positions for each rank, and the layout they imply. */
function layoutOf(shape: Array<number | undefined>, given: 'NCHW' | 'NHWC' | undefined): Layout | undefined {
  if (shape.length === 4) {
    if (given) return given;
    const ch = (d: number | undefined) => d === 1 || d === 3;
    // Channels-first unless only the last axis looks like a channel axis.
    return !ch(shape[1]) && ch(shape[3]) ? 'NHWC' : 'NCHW';
  }
  if (shape.length === 3) return 'NHW';
  if (shape.length === 2) return 'flat';
  return undefined;
}

/**
 * Decides the tensor layout, size, channels and normalisation for images fed to `input`. `first` is the first
 * image's size, used where the model leaves height and width open and no resize is given.
 */
function planImages(input: ModelInput, o: ImageOptions, first: { width: number; height: number }, where: string, shapes: DatasetOptions['shapes']): ImagePlan {
  const target = sampleTarget(input, shapes, where);
  const layout = layoutOf(target, o.layout);
  if (!layout) throw new InputError(where, `input '${input.name}' has shape [${input.shape.map(dimText).join(', ')}]; images feed inputs of rank 2 to 4 only`);
  if (o.layout && target.length !== 4) throw new InputError(where, `layout ${o.layout} needs a rank-4 input; '${input.name}' has rank ${target.length}`);
  const at = { NCHW: [1, 2, 3], NHWC: [3, 1, 2], NHW: [-1, 1, 2], flat: [-1, -1, -1] }[layout];
  const modelC = at[0] >= 0 ? target[at[0]] : undefined;
  const channels = o.channels ?? (layout === 'NHW' || layout === 'flat' || modelC === 1 ? 'gray' : 'rgb');
  const c = channels === 'gray' ? 1 : 3;
  if (layout === 'NHW' && c !== 1) throw new InputError(where, `input '${input.name}' has no channel axis, so it takes gray images, not ${channels}`);
  if (modelC !== undefined && modelC !== c) {
    throw new InputError(where, `input '${input.name}' wants ${modelC} channels, images give ${c} as ${channels}${modelC === 1 || modelC === 3 ? '' : ' (gray: 1, rgb or bgr: 3)'}`);
  }
  let height = at[1] >= 0 ? target[at[1]] : undefined;
  let width = at[2] >= 0 ? target[at[2]] : undefined;
  if (o.resize) {
    const [rh, rw] = o.resize;
    if ((height !== undefined && height !== rh) || (width !== undefined && width !== rw)) {
      throw new InputError(where, `resize [${rh}, ${rw}] does not match input '${input.name}', which takes ${dimText(height)}x${dimText(width)} images`);
    }
    [height, width] = [rh, rw];
  }
  height ??= first.height;
  width ??= first.width;
  let shape: number[];
  if (layout === 'flat') {
    if (target[1] !== undefined && target[1] !== c * height * width) {
      throw new InputError(where, `input '${input.name}' takes ${target[1]} values per sample, ${height}x${width} ${channels} images give ${c * height * width}; give "resize" in a manifest`);
    }
    shape = [1, c * height * width];
  } else shape = { NCHW: [1, c, height, width], NHWC: [1, height, width, c], NHW: [1, height, width] }[layout];
  const dtype = o.dtype ?? dtypeOfInput(input, where);
  const perChannel = (v: number[] | undefined, fallback: number, what: string) => {
    const list = v ?? [fallback];
    if (list.length !== 1 && list.length !== c) throw new InputError(where, `${what} for input '${input.name}' has ${list.length} values; give 1 or ${c} (one per channel)`);
    return list.length === 1 ? new Array<number>(c).fill(list[0]) : list;
  };
  const std = perChannel(o.std, 1, 'std');
  if (std.some((s) => s === 0)) throw new InputError(where, `std for input '${input.name}' contains 0`);
  return {
    layout, channels, height, width, shape, dtype, std, autoResize: o.autoResize || o.resize !== undefined,
    scale: o.scale ?? (isFloat(dtype) ? 1 / 255 : 1),
    mean: perChannel(o.mean, 0, 'mean'),
  };
}

/** Turns one decoded image into a sample's data by the plan. */
function toSample(img: Rgba, plan: ImagePlan, input: ModelInput, file: string) {
  if ((img.width !== plan.width || img.height !== plan.height) && !plan.autoResize) {
    throw new InputError(file, `image is ${img.width}x${img.height} (width x height), input '${input.name}' takes ${plan.width}x${plan.height}; add "resize": [${plan.height}, ${plan.width}] to the manifest to resize it`);
  }
  const ps = planes(img, plan.channels).map((p) => resizeBilinear(p, img.width, img.height, plan.width, plan.height));
  const hw = plan.width * plan.height;
  const w = writerOf(plan.dtype, hw * ps.length);
  const interleaved = plan.layout === 'NHWC';
  ps.forEach((p, c) => {
    const { scale } = plan;
    const mean = plan.mean[c];
    const std = plan.std[c];
    for (let i = 0; i < hw; i++) w.set(interleaved ? i * ps.length + c : c * hw + i, (p[i] * scale - mean) / std);
  });
  return { dtype: plan.dtype, shape: plan.shape, data: w.data };
}

/** A model input fed from image files, one file per sample; the first is decoded now to check it and learn its size. */
export async function imageInput(input: ModelInput, files: string[], o: ImageOptions, where: string, shapes: DatasetOptions['shapes']): Promise<SampleInput> {
  const first = await readImage(files[0]);
  const plan = planImages(input, o, first, where, shapes);
  // Check the first image now, so a wrong size fails before any work starts.
  toSample(first, plan, input, files[0]);
  return {
    name: input.name,
    read: async (i) => toSample(await readImage(files[i]), plan, input, files[i]),
    where: (i) => files[i],
  };
}

/** The images of a folder: its own images, or its class sub-folders' images with class indices by sorted name. */
export interface ImageListing {
  files: string[];
  /** Present when the images are in class sub-folders. */
  labels?: Int32Array;
  classes?: string[];
  /** Files that were not listed because their extension is not an image's. */
  skipped: string[];
}

/** Natural order of file names (img2 before img10), the same on every platform. */
const byName = new Intl.Collator('en', { numeric: true }).compare;

/** Lists a folder's images; class sub-folders (sorted by name, as torchvision's ImageFolder does) become labels. */
export function listImages(dir: string): ImageListing {
  const entries = readDir(dir);
  const visible = entries.filter((e) => !e.name.startsWith('.'));
  const isImage = (name: string) => imageExtensions.has(path.extname(name).toLowerCase());
  const skipped: string[] = [];
  const filesIn = (folder: string, list: fs.Dirent[]) =>
    list
      .filter((e) => !e.name.startsWith('.') && e.isFile())
      .filter((e) => isImage(e.name) || (skipped.push(path.join(folder, e.name)), false))
      .map((e) => e.name)
      .sort(byName)
      .map((n) => path.join(folder, n));
  const classes = visible.filter((e) => e.isDirectory()).map((e) => e.name).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const top = filesIn(dir, visible);
  if (classes.length === 0) return { files: top, skipped };
  if (top.length > 0) throw new InputError(dir, `has images both at the top level (${path.basename(top[0])}) and in sub-folders; put every image in a class sub-folder, or none`);
  const files: string[] = [];
  const labels: number[] = [];
  classes.forEach((name, k) => {
    const folder = path.join(dir, name);
    for (const f of filesIn(folder, readDir(folder))) {
      files.push(f);
      labels.push(k);
    }
  });
  return { files, labels: Int32Array.from(labels), classes, skipped };
}

function readDir(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    throw new InputError(dir, 'folder is missing or unreadable');
  }
}

/** A warning about files a listing passed over, or nothing. */
export function skippedWarning(skipped: string[]): string[] {
  if (skipped.length === 0) return [];
  return [`skipped ${skipped.length} file(s) that are not .jpg, .jpeg or .png images, e.g. ${skipped[0]}`];
}

/**
 * The image-folder form: a single-input model fed every image, resized bilinearly to the model's size when it
 * differs, gray or RGB by the model's channel axis, scaled to 0..1 (float inputs), labelled by class sub-folder.
 */
export async function openImageFolder(dir: string, inputs: ModelInput[], opts: DatasetOptions): Promise<SampleSource> {
  if (inputs.length !== 1) {
    throw new InputError(dir, `a folder of images feeds single-input models only; this model has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); describe them in a *.dataset.json manifest`);
  }
  const listing = listImages(dir);
  if (listing.files.length === 0) throw new InputError(dir, `the dataset is empty: no .jpg, .jpeg or .png images in the folder${listing.classes ? ' or its sub-folders' : ''}`);
  const input = await imageInput(inputs[0], listing.files, { autoResize: true }, dir, opts.shapes);
  const classes = listing.classes ? ` in ${listing.classes.length} classes` : '';
  return {
    description: `images ${dir} (${listing.files.length}${classes})`,
    count: listing.files.length,
    inputs: [input],
    labels: listing.labels,
    warnings: skippedWarning(listing.skipped),
    where: dir,
  };
}

