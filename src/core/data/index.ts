/**
 * `--data SPEC`: calibration and evaluation data for a model (DESIGN.md section 7). Each source form is a
 * module that recognises its SPEC (by content where it can, by name as a hint) and opens it as samples; one
 * Dataset (dataset.ts) orders, shuffles, limits and batches them for every form.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../errors';
import { makeDataset, sliceSource, type SampleSource } from './dataset';
import { looksLikeIdx, openIdx } from './idx';
import { openImageFolder } from './images';
import { openManifest } from './manifest';
import { openNpyFile, openNpzFile } from './npy';
import { looksLikePbFolder, openPbFolder } from './pb';
import { openRandom } from './synthetic';
import type { Dataset, DatasetOptions, ModelInput } from './types';
import { looksLikeZip } from './zip';

/** The dataset interface (types.ts), re-exported so callers import from one place. */
export type { Batch, Dataset, DatasetOptions, HostTensor, ModelInput, SampleDType } from './types';
/** The warning a random dataset carries, for callers that check for it. */
export { randomWarning } from './synthetic';

/** What a form looks at to decide whether a SPEC is its own. */
interface Probe {
  spec: string;
  stat?: fs.Stats;
  /** The first bytes of a file. */
  head: Uint8Array;
}

/** One `--data` form: how to recognise it (content first, file name as a hint) and how to open it. */
interface Form {
  name: string;
  /** True when the SPEC's content (or kind: file, folder, the word 'random') is this form's. */
  content: (p: Probe) => boolean;
  /** A file name pattern that claims the SPEC when no form recognises its content. */
  hint?: RegExp;
  open: (spec: string, inputs: ModelInput[], opts: DatasetOptions) => Promise<SampleSource>;
}

const isFile = (p: Probe) => p.stat?.isFile() === true;
const isDir = (p: Probe) => p.stat?.isDirectory() === true;
const starts = (p: Probe, bytes: number[]) => isFile(p) && bytes.every((b, i) => p.head[i] === b);

/** The source forms. Content decides first, in this order; then file-name hints. */
const forms: Form[] = [
  { name: 'random', content: (p) => p.spec === 'random', open: (_spec, inputs, opts) => openRandom(inputs, opts) },
  // JSON has no signature; a .json file is taken as a manifest and its parser names what is wrong.
  { name: 'manifest', content: (p) => isFile(p) && /\.json$/i.test(p.spec), open: openManifest },
  { name: 'idx', content: (p) => isFile(p) && looksLikeIdx(p.head), hint: /idx\d-ubyte(\.gz)?$/i, open: openIdx },
  { name: 'npy', content: (p) => starts(p, [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]), hint: /\.npy$/i, open: openNpyFile },
  { name: 'npz', content: (p) => isFile(p) && looksLikeZip(p.head), hint: /\.npz$/i, open: openNpzFile },
  { name: 'pb', content: (p) => isDir(p) && looksLikePbFolder(p.spec), open: openPbFolder },
  { name: 'images', content: isDir, open: openImageFolder },
];

/** What SPEC may be, for the error when it is none of them. */
const expected = "a *.dataset.json manifest, a folder of images (class sub-folders as labels), an idx images file (*-images-idx3-ubyte[.gz]), an .npy or .npz file, a folder of input_N.pb files, or 'random'";

/**
 * Opens `--data SPEC` for a model with `inputs`. Throws an InputError naming the file and the problem for
 * anything it cannot use; the returned Dataset reads samples only as batches ask for them.
 */
export async function openDataset(spec: string, inputs: ModelInput[], opts: DatasetOptions = {}): Promise<Dataset> {
  const { base, range } = splitDataRange(spec);
  if (range && base === 'random') throw new InputError(spec, `a #A:B range does not apply to random data (its samples are generated, not read); use --limit to choose how many`);
  const probe = probeOf(base);
  const form = forms.find((f) => f.content(probe)) ?? forms.find((f) => f.hint && isFile(probe) && f.hint.test(path.basename(base)));
  if (!form) throw new InputError(base, `not a dataset: expected ${expected}`);
  const source = await form.open(base, inputs, opts);
  return makeDataset(range ? sliceSource(source, range.start, range.end, spec) : source, opts);
}

/** A `#A:B` suffix of a SPEC: samples A..B-1 of the source in its own order (either end optional). */
export interface DataRange {
  start?: number;
  end?: number;
}

const rangeRe = /#([^#/\\]*)$/;

/**
 * Splits `SPEC#A:B` into the source and its range. A path that exists as written (a file really named
 * `x#1:2`) is taken whole; otherwise a `#` suffix must be a range of whole numbers, like a Python slice
 * without negatives or a step: `#:1000`, `#1000:`, `#100:600`.
 */
export function splitDataRange(spec: string): { base: string; range?: DataRange } {
  const m = rangeRe.exec(spec);
  if (!m || (spec !== 'random' && fs.existsSync(spec))) return { base: spec };
  const r = /^(\d*):(\d*)$/.exec(m[1]);
  if (!r) throw new InputError(spec, `'#${m[1]}' is not a sample range: write #A:B with whole numbers, either end optional (#:1000, #1000:, #100:600)`);
  const num = (t: string) => (t === '' ? undefined : Number(t));
  const range = { start: num(r[1]), end: num(r[2]) };
  for (const v of [range.start, range.end]) if (v !== undefined && !Number.isSafeInteger(v)) throw new InputError(spec, `'#${m[1]}': ${v} is too large for a sample index`);
  return { base: spec.slice(0, m.index), range };
}

function probeOf(spec: string): Probe {
  if (spec === 'random') return { spec, head: new Uint8Array(0) };
  let stat: fs.Stats;
  try {
    stat = fs.statSync(spec);
  } catch {
    throw new InputError(spec, `no such file or folder (--data takes ${expected})`);
  }
  const head = new Uint8Array(8);
  if (stat.isFile()) {
    const fd = fs.openSync(spec, 'r');
    try {
      fs.readSync(fd, head, 0, head.length, 0);
    } finally {
      fs.closeSync(fd);
    }
  }
  return { spec, stat, head };
}
