/**
 * The dataset manifest (`*.dataset.json`, DESIGN.md section 7): one entry per model input naming its source
 * (images, idx, npy, pb, value, zeros or random) and how to shape it, optional labels, a limit, and a skip
 * (samples dropped from the start, in source order). Relative paths resolve from the manifest's folder. Unlike the plain image-folder form, a manifest resizes images only
 * when it says `resize`: an image of another size is an error, not a silent resample.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../errors';
import { sliceSource, type ConstantInput, type SampleInput, type SampleSource } from './dataset';
import { globFiles } from './glob';
import { idxInput, idxLabels } from './idx';
import { imageInput, listImages, skippedWarning, type Channels, type ImageListing } from './images';
import { arrayFor, npyInput, sameCount } from './npy';
import { pbInput } from './pb';
import { concreteShape, defaultRandomCount, distributionNames, filledInput, givenShape, randomInput, randomWarning, valueTensor } from './synthetic';
import { dtypeOfInput, parseDType, type Affine } from './tensors';
import type { DatasetOptions, ModelInput, SampleDType } from './types';

/** One input's entry, as checked. */
interface Entry {
  source: SourceKey;
  /** The source key's value. */
  arg: unknown;
  dtype?: SampleDType;
  resize?: [number, number];
  layout?: 'NCHW' | 'NHWC';
  channels?: Channels;
  scale?: number;
  mean?: number[];
  std?: number[];
}

/** What one entry contributes: a per-sample input (with its count when it has one of its own) or a constant. */
interface Part {
  sample?: SampleInput;
  count?: number;
  /** The file or folder the count came from, for mismatch errors. */
  from?: string;
  constant?: ConstantInput;
  listing?: ImageListing;
  warnings?: string[];
}

/** What every builder gets. */
interface Context {
  manifest: string;
  dir: string;
  opts: DatasetOptions;
}

/** Source keys and the function that builds each. */
const sources = {
  images: buildImages,
  idx: buildIdx,
  npy: buildNpy,
  pb: buildPb,
  value: buildValue,
  zeros: buildZeros,
  random: buildRandom,
} satisfies Record<string, (ctx: Context, input: ModelInput, e: Entry) => Promise<Part>>;

type SourceKey = keyof typeof sources;

/** Option keys, their check, and the sources they apply to (anything else is an error, not ignored). */
const options: Record<string, { check: (v: unknown, what: string, ctx: Context) => unknown; for: SourceKey[] }> = {
  dtype: { check: (v, what, ctx) => parseDType(v, ctx.manifest, what), for: ['images', 'idx', 'npy', 'pb', 'value', 'zeros', 'random'] },
  resize: { check: (v, what, ctx) => intList(v, 2, what, ctx), for: ['images'] },
  layout: { check: (v, what, ctx) => oneOf(v, ['NCHW', 'NHWC'], what, ctx), for: ['images'] },
  channels: { check: (v, what, ctx) => oneOf(v, ['gray', 'rgb', 'bgr'], what, ctx), for: ['images'] },
  scale: { check: (v, what, ctx) => finite(v, what, ctx), for: ['images', 'idx', 'npy', 'pb'] },
  mean: { check: (v, what, ctx) => numbers(v, what, ctx), for: ['images', 'idx', 'npy', 'pb'] },
  std: { check: (v, what, ctx) => numbers(v, what, ctx), for: ['images', 'idx', 'npy', 'pb'] },
};

const topKeys = ['inputs', 'labels', 'limit', 'skip'];

/** Opens a dataset manifest against the model's inputs. */
export async function openManifest(file: string, inputs: ModelInput[], opts: DatasetOptions): Promise<SampleSource> {
  const ctx: Context = { manifest: file, dir: path.dirname(path.resolve(file)), opts };
  const json = readJson(file);
  for (const key of Object.keys(json)) if (!topKeys.includes(key)) throw new InputError(file, `unknown key '${key}' (a manifest has ${topKeys.join(', ')})`);
  const entries = json.inputs;
  if (!isObject(entries)) throw new InputError(file, `'inputs' must be an object with one entry per model input`);
  const names = inputs.map((i) => i.name);
  for (const name of Object.keys(entries)) {
    if (!names.includes(name)) throw new InputError(file, `input '${name}' is not an input of the model (its inputs: ${names.join(', ')})`);
  }
  const parts: Part[] = [];
  for (const input of inputs) {
    if (!(input.name in entries)) throw new InputError(file, `model input '${input.name}' has no entry under 'inputs'`);
    const entry = parseEntry(entries[input.name], input, ctx);
    parts.push(await sources[entry.source](ctx, input, entry));
  }
  const counted = parts.filter((p) => p.sample && p.count !== undefined).map((p) => ({ input: p.sample!, count: p.count!, where: p.from! }));
  const count = counted.length > 0 ? sameCount(counted) : (opts.randomCount ?? defaultRandomCount);
  const labels = readLabels(json.labels, parts, count, ctx);
  const warnings = parts.flatMap((p) => p.warnings ?? []);
  const source: SampleSource = {
    description: `manifest ${path.basename(file)}`,
    count,
    inputs: parts.flatMap((p) => (p.sample ? [p.sample] : [])),
    constants: parts.flatMap((p) => (p.constant ? [p.constant] : [])),
    labels,
    warnings: [...new Set(warnings)],
    limit: json.limit === undefined ? undefined : (intList([json.limit], 1, "'limit'", ctx)[0] as number),
    where: file,
  };
  // 'skip' drops the first N samples in source order, before any shuffle or limit (like a #N: range).
  if (json.skip === undefined) return source;
  const skip = intList([json.skip], 1, "'skip'", ctx, 0)[0];
  return skip === 0 ? source : sliceSource(source, skip, undefined, file, `'skip': ${skip}`);
}

function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new InputError(file, 'dataset manifest is missing or unreadable');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InputError(file, `dataset manifest is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!isObject(json)) throw new InputError(file, 'dataset manifest must be a JSON object');
  return json;
}

/** Checks one input's entry: exactly one source key, known options that apply to it. */
function parseEntry(raw: unknown, input: ModelInput, ctx: Context): Entry {
  const what = `inputs.${input.name}`;
  if (!isObject(raw)) throw new InputError(ctx.manifest, `${what} must be an object such as {"images": "dir"}`);
  const keys = Object.keys(raw);
  const given = keys.filter((k): k is SourceKey => k in sources);
  if (given.length !== 1) throw new InputError(ctx.manifest, `${what} needs exactly one of ${Object.keys(sources).join(', ')}; it has ${given.length ? given.join(', ') : 'none'}`);
  const entry: Entry = { source: given[0], arg: raw[given[0]] };
  for (const key of keys) {
    if (key === entry.source) continue;
    const option = options[key];
    if (!option) throw new InputError(ctx.manifest, `${what}: unknown key '${key}'`);
    if (!option.for.includes(entry.source)) throw new InputError(ctx.manifest, `${what}: '${key}' does not apply to ${entry.source} data`);
    (entry as unknown as Record<string, unknown>)[key] = option.check(raw[key], `${what}.${key}`, ctx);
  }
  if (entry.dtype) {
    const model = dtypeOfInput(input, ctx.manifest);
    if (model !== entry.dtype) throw new InputError(ctx.manifest, `${what}.dtype is ${entry.dtype}, but the model's input '${input.name}' is ${model}`);
  }
  if (entry.std?.some((s) => s === 0)) throw new InputError(ctx.manifest, `${what}.std contains 0`);
  if (entry.source !== 'images' && ((entry.mean?.length ?? 1) !== 1 || (entry.std?.length ?? 1) !== 1)) {
    throw new InputError(ctx.manifest, `${what}: per-channel mean and std apply to images only; give one number each`);
  }
  return entry;
}

/** The scalar affine map of a non-image entry (raw values by default). */
function affineOf(e: Entry): Affine {
  return { scale: e.scale ?? 1, mean: e.mean?.[0] ?? 0, std: e.std?.[0] ?? 1 };
}

/** A path argument resolved from the manifest's folder. */
function pathArg(ctx: Context, e: Entry, input: ModelInput): string {
  if (typeof e.arg !== 'string' || e.arg === '') throw new InputError(ctx.manifest, `inputs.${input.name}.${e.source} must be a path`);
  return path.resolve(ctx.dir, e.arg);
}

async function buildImages(ctx: Context, input: ModelInput, e: Entry): Promise<Part> {
  const dir = pathArg(ctx, e, input);
  const listing = listImages(dir);
  if (listing.files.length === 0) throw new InputError(dir, `the dataset is empty: no .jpg, .jpeg or .png images for input '${input.name}'`);
  const o = { autoResize: false, resize: e.resize, layout: e.layout, channels: e.channels, scale: e.scale, mean: e.mean, std: e.std, dtype: e.dtype };
  const sample = await imageInput(input, listing.files, o, ctx.manifest, ctx.opts.shapes);
  return { sample, count: listing.files.length, from: dir, listing, warnings: skippedWarning(listing.skipped) };
}

async function buildIdx(ctx: Context, input: ModelInput, e: Entry): Promise<Part> {
  const file = pathArg(ctx, e, input);
  const { input: sample, count } = idxInput(input, file, { affine: affineOf(e), dtype: e.dtype, shapes: ctx.opts.shapes });
  return { sample, count, from: file };
}

async function buildNpy(ctx: Context, input: ModelInput, e: Entry): Promise<Part> {
  const array = arrayFor(pathArg(ctx, e, input), input);
  const { input: sample, count } = npyInput(input, array, { affine: affineOf(e), dtype: e.dtype, shapes: ctx.opts.shapes });
  return { sample, count, from: array.where };
}

async function buildPb(ctx: Context, input: ModelInput, e: Entry): Promise<Part> {
  if (typeof e.arg !== 'string' || e.arg === '') throw new InputError(ctx.manifest, `inputs.${input.name}.pb must be a glob such as "test_data_set_*/input_0.pb"`);
  const files = globFiles(ctx.dir, e.arg);
  if (files.length === 0) throw new InputError(ctx.manifest, `inputs.${input.name}.pb: '${e.arg}' matches no files in ${ctx.dir}`);
  const sample = await pbInput(input, files, { affine: affineOf(e), dtype: e.dtype, shapes: ctx.opts.shapes });
  return { sample, count: files.length, from: path.join(ctx.dir, e.arg) };
}

async function buildValue(ctx: Context, input: ModelInput, e: Entry): Promise<Part> {
  if (typeof e.arg !== 'number' || !Number.isFinite(e.arg)) throw new InputError(ctx.manifest, `inputs.${input.name}.value must be a number`);
  const dtype = e.dtype ?? dtypeOfInput(input, ctx.manifest);
  const shape = concreteShape(input, ctx.opts.shapes, ctx.manifest);
  const { sample, constant } = filledInput(input, valueTensor(e.arg, shape, dtype));
  return { sample, constant };
}

async function buildZeros(ctx: Context, input: ModelInput, e: Entry): Promise<Part> {
  // A dim of 0 is allowed: an empty key/value cache is a common zeros input.
  const dims = intList(e.arg, undefined, `inputs.${input.name}.zeros`, ctx, 0);
  const dtype = e.dtype ?? dtypeOfInput(input, ctx.manifest);
  const shape = givenShape(input, dims, ctx.manifest, ctx.opts.shapes);
  const { sample, constant } = filledInput(input, valueTensor(0, shape, dtype));
  return { sample, constant };
}

async function buildRandom(ctx: Context, input: ModelInput, e: Entry): Promise<Part> {
  const what = `inputs.${input.name}.random`;
  const arg = e.arg === true ? {} : e.arg;
  if (!isObject(arg)) throw new InputError(ctx.manifest, `${what} must be an object such as {"shape": [1, 512], "dist": "normal"}`);
  for (const key of Object.keys(arg)) if (key !== 'shape' && key !== 'dist') throw new InputError(ctx.manifest, `${what}: unknown key '${key}' (shape, dist)`);
  const dist = arg.dist === undefined ? 'normal' : (oneOf(arg.dist, distributionNames, `${what}.dist`, ctx) as string);
  const shape = arg.shape === undefined ? concreteShape(input, ctx.opts.shapes, ctx.manifest) : givenShape(input, intList(arg.shape, undefined, `${what}.shape`, ctx, 0), ctx.manifest, ctx.opts.shapes);
  // Each random input gets its own stream: the input's name is mixed into the seed.
  const sample = randomInput(input, hashName(input.name), shape, { seed: ctx.opts.seed, dist, dtype: e.dtype, where: ctx.manifest });
  return { sample, warnings: [randomWarning] };
}

/** A small stable hash of a name (FNV-1a). */
function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Labels from `{idx: file}` or `{fromFolders: true}`, checked against the sample count. */
function readLabels(raw: unknown, parts: Part[], count: number, ctx: Context): Int32Array | undefined {
  if (raw === undefined) return undefined;
  if (!isObject(raw)) throw new InputError(ctx.manifest, `'labels' must be {"idx": "file"} or {"fromFolders": true}`);
  const keys = Object.keys(raw);
  if (keys.length === 1 && keys[0] === 'idx' && typeof raw.idx === 'string') {
    const file = path.resolve(ctx.dir, raw.idx);
    const labels = idxLabels(file);
    if (labels.length !== count) throw new InputError(file, `has ${labels.length} labels, the inputs have ${count} samples`);
    return labels;
  }
  if (keys.length === 1 && keys[0] === 'fromFolders' && raw.fromFolders === true) {
    const listing = parts.find((p) => p.listing)?.listing;
    if (!listing) throw new InputError(ctx.manifest, `labels.fromFolders needs an input fed from "images"`);
    if (!listing.labels) throw new InputError(ctx.manifest, `labels.fromFolders: the images are not in class sub-folders`);
    return listing.labels;
  }
  throw new InputError(ctx.manifest, `'labels' must be {"idx": "file"} or {"fromFolders": true}, not ${JSON.stringify(raw)}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function finite(v: unknown, what: string, ctx: Context): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InputError(ctx.manifest, `${what} must be a number`);
  return v;
}

function numbers(v: unknown, what: string, ctx: Context): number[] {
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) throw new InputError(ctx.manifest, `${what} must be a number or a list of numbers`);
  return list.map((x) => finite(x, what, ctx));
}

/** A list of `length` (any, when undefined) whole numbers of at least `min`. */
function intList(v: unknown, length: number | undefined, what: string, ctx: Context, min = 1): number[] {
  const ok = Array.isArray(v) && (length === undefined || v.length === length) && v.every((d) => Number.isSafeInteger(d) && d >= min);
  if (!ok) throw new InputError(ctx.manifest, `${what} must be ${length === 1 ? `a whole number of at least ${min}` : `a list of ${length ?? 'some'} whole numbers of at least ${min}`}`);
  return v as number[];
}

function oneOf(v: unknown, allowed: string[], what: string, ctx: Context): string {
  if (typeof v !== 'string' || !allowed.includes(v)) throw new InputError(ctx.manifest, `${what} must be one of ${allowed.join(', ')}, not ${JSON.stringify(v)}`);
  return v;
}
