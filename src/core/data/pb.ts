/**
 * Serialized ONNX TensorProtos as samples (the ONNX backend test layout): a folder with `input_N.pb`, or
 * `test_data_set_*` folders of them, one sample per set, file N feeding the model's N-th input.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { TensorProtoSchema } from 'onnx-buf';
import { InputError } from '../errors';
import { tensorRefOf } from '../formats/onnx/model';
import { ExternalFiles } from '../model/externalFiles';
import type { TensorData } from '../model/tensorRef';
import type { SampleInput, SampleSource } from './dataset';
import { naturalOrder } from './glob';
import { convert, dtypeOfInput, fitSample, identity, sampleTarget, type Affine } from './tensors';
import type { DatasetOptions, HostTensor, ModelInput, SampleDType } from './types';

const inputFile = /^input_(\d+)\.pb$/;
const setFolder = /^test_data_set_\d+$/;

/** A TensorProto file's values and shape, read through the same TensorRef the model reader uses. */
export async function readTensorProto(file: string): Promise<{ elemType: number; shape: number[]; data: TensorData }> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.promises.readFile(file);
  } catch {
    throw new InputError(file, 'TensorProto file is missing or unreadable');
  }
  let proto;
  try {
    proto = fromBinary(TensorProtoSchema, bytes);
  } catch (err) {
    throw new InputError(file, `not a serialized ONNX TensorProto: ${err instanceof Error ? err.message : String(err)}`);
  }
  const external = new ExternalFiles(file);
  try {
    const ref = tensorRefOf(proto, proto.name || path.basename(file), external, file);
    ref.validate();
    return { elemType: ref.dtype, shape: ref.shape, data: ref.read() };
  } finally {
    external.close();
  }
}

/** A model input fed from TensorProto files, one per sample; the first is read now to check its shape. */
export async function pbInput(input: ModelInput, files: string[], o: { affine?: Affine; dtype?: SampleDType; shapes?: DatasetOptions['shapes'] } = {}): Promise<SampleInput> {
  const target = sampleTarget(input, o.shapes, files[0]);
  const dtype = o.dtype ?? dtypeOfInput(input, files[0]);
  const read = async (i: number): Promise<HostTensor> => {
    const t = await readTensorProto(files[i]);
    const shape = fitSample(t.shape, target, input, files[i], true);
    return { dtype, shape, data: convert(t.elemType, t.data, dtype, o.affine ?? identity) };
  };
  await read(0);
  return { name: input.name, read, where: (i) => files[i] };
}

/** The `input_N.pb` files of one folder, by N. */
function inputFiles(dir: string): Map<number, string> {
  const files = new Map<number, string>();
  for (const name of fs.readdirSync(dir)) {
    const m = inputFile.exec(name);
    if (m) files.set(Number(m[1]), path.join(dir, name));
  }
  return files;
}

/** The sample folders of a pb dataset: the folder itself when it holds input_N.pb, else its test_data_set_* folders. */
export function pbSets(dir: string): string[] {
  if (inputFiles(dir).size > 0) return [dir];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && setFolder.test(e.name) && inputFiles(path.join(dir, e.name)).size > 0)
    .map((e) => path.join(dir, e.name))
    .sort(naturalOrder);
}

/** True when a folder is laid out as TensorProto samples. */
export function looksLikePbFolder(dir: string): boolean {
  return pbSets(dir).length > 0;
}

/** The pb-folder form: each set is one sample; input_N.pb feeds the model's N-th input. */
export async function openPbFolder(dir: string, inputs: ModelInput[], opts: DatasetOptions): Promise<SampleSource> {
  const sets = pbSets(dir);
  if (sets.length === 0) throw new InputError(dir, 'the dataset is empty: no input_N.pb files here or in test_data_set_* folders');
  const perInput: string[][] = inputs.map(() => []);
  for (const set of sets) {
    const files = inputFiles(set);
    for (const n of files.keys()) {
      if (n >= inputs.length) throw new InputError(files.get(n)!, `the model has ${inputs.length} input(s), so there is no input ${n} for this file to feed`);
    }
    inputs.forEach((input, n) => {
      const file = files.get(n);
      if (!file) throw new InputError(set, `has no input_${n}.pb for model input ${n} ('${input.name}')`);
      perInput[n].push(file);
    });
  }
  const sampleInputs = await Promise.all(inputs.map((input, n) => pbInput(input, perInput[n], { shapes: opts.shapes })));
  return { description: `pb ${dir} (${sets.length} set${sets.length === 1 ? '' : 's'})`, count: sets.length, inputs: sampleInputs, where: dir };
}
