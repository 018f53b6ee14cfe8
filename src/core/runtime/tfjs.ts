/**
 * TF.js execution: tfjs-core with tfjs-layers (layers models) or tfjs-converter (graph models) on the wasm
 * backend, falling back to the cpu backend with a warning (DESIGN.md section 4). esbuild bundles one copy
 * of tfjs-core; the wasm binaries ship beside the bundle (esbuild.config.mjs copies them).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import * as tfconv from '@tensorflow/tfjs-converter';
import * as tfl from '@tensorflow/tfjs-layers';
import type { HostTensor } from '../data/types';
import { InputError } from '../errors';
import type { TfjsModel, TfjsWeightSpec } from '../formats/tfjs/read';

/** The backend in use and what the user must hear about it. */
export interface TfjsBackend {
  backend: 'wasm' | 'cpu';
  warnings: string[];
}

let ready: Promise<TfjsBackend> | undefined;

/** The folder holding tfjs-backend-wasm*.wasm: beside the bundle (esbuild.config.mjs copies them there). */
function wasmDir(): string | undefined {
  return fs.existsSync(path.join(__dirname, 'tfjs-backend-wasm-simd.wasm')) && fs.existsSync(path.join(__dirname, 'tfjs-backend-wasm.wasm')) ? __dirname : undefined;
}

/** Starts tfjs once: wasm when its binaries are found and it initialises, otherwise cpu with a warning. */
export function initTfjs(): Promise<TfjsBackend> {
  ready ??= (async (): Promise<TfjsBackend> => {
    // tfjs-core's hint to install tfjs-node is noise here (it cannot be installed offline).
    tf.env().set('IS_TEST', true);
    const dir = wasmDir();
    let why = 'its .wasm files were not found beside the bundle';
    if (dir) {
      // Threads need a worker script that tfjs loads by URL; single-threaded wasm is still 70x the cpu backend.
      tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
      setWasmPaths(dir + path.sep);
      try {
        if (await tf.setBackend('wasm')) {
          await tf.ready();
          return { backend: 'wasm', warnings: [] };
        }
        why = 'it failed to initialise';
      } catch (err) {
        why = `it failed to initialise (${(err as Error).message})`;
      }
    }
    // The package registers cpu on import, but its sideEffects list lets bundlers drop that import.
    if (!tf.findBackendFactory('cpu')) tf.registerBackend('cpu', () => new MathBackendCPU(), 1);
    await tf.setBackend('cpu');
    await tf.ready();
    return { backend: 'cpu', warnings: [`TF.js wasm backend unavailable: ${why}; using the cpu backend, which is much slower`] };
  })();
  return ready;
}

/** A TF.js model loaded for running, with its outputs named and the one scored for classification chosen. */
export interface TfjsRunner {
  backend: TfjsBackend;
  inputs: string[];
  outputs: string[];
  /** Index into `outputs` of the output used for accuracy. */
  scored: number;
  /** Notes on choices made (which output is scored). */
  notes: string[];
  /** Runs one batch; returns every output as flat float data with dims. */
  run(feeds: HostTensor[]): Promise<Array<{ data: Float32Array; dims: number[] }>>;
  dispose(): void;
}

/** Model artifacts for tfjs's io.fromMemory, from our own parsed model (weights as stored, quantized forms included). */
export function artifactsOf(model: TfjsModel, override?: { weightSpecs: TfjsWeightSpec[]; weightData: ArrayBuffer }): tf.io.ModelArtifacts {
  const j = model.json;
  return {
    modelTopology: j.modelTopology as tf.io.ModelArtifacts['modelTopology'],
    format: j.format,
    generatedBy: j.generatedBy,
    convertedBy: j.convertedBy ?? undefined,
    weightSpecs: (override?.weightSpecs ?? model.weightSpecs()) as unknown as tf.io.WeightsManifestEntry[],
    weightData: override?.weightData ?? model.weightData(),
    ...(j.signature ? { signature: j.signature } : {}),
    ...(j.userDefinedMetadata ? { userDefinedMetadata: j.userDefinedMetadata } : {}),
    ...(j.modelInitializer ? { modelInitializer: j.modelInitializer } : {}),
  } as tf.io.ModelArtifacts;
}

/**
 * Loads a model into tfjs from memory (no fetch, no file URLs). `output` names the output to score; by
 * default the last one, which is where Keras models with several outputs put their head.
 */
export async function loadTfjs(model: TfjsModel, opts: { output?: string; override?: { weightSpecs: TfjsWeightSpec[]; weightData: ArrayBuffer } } = {}): Promise<TfjsRunner> {
  const backend = await initTfjs();
  const handler = tf.io.fromMemory(artifactsOf(model, opts.override));
  const notes: string[] = [];
  let inputs: string[];
  /** The dtype tfjs checks each input against (a graph model's uint8 image input is int32 in tfjs). */
  let dtypes: Array<tf.DataType | undefined> = [];
  let outputs: string[];
  let exec: (xs: tf.Tensor[]) => Promise<tf.Tensor[]>;
  let dispose: () => void;
  try {
    if (model.kind === 'layers') {
      const m = await tfl.loadLayersModel(handler);
      inputs = m.inputNames;
      outputs = m.outputNames.map((n) => n.replace(/\/.*$/, ''));
      exec = async (xs) => {
        const y = m.predict(xs.length === 1 ? xs[0] : xs);
        return Array.isArray(y) ? y : [y];
      };
      dispose = () => m.dispose();
    } else {
      const m = await tfconv.loadGraphModel(handler);
      inputs = m.inputs.map((i) => i.name);
      dtypes = m.inputs.map((i) => i.dtype);
      outputs = m.outputs.map((o) => o.name);
      exec = async (xs) => {
        let y: tf.Tensor | tf.Tensor[];
        try {
          y = m.execute(xs.length === 1 ? xs[0] : xs);
        } catch (err) {
          // Control flow (If/While) needs the async executor.
          if (!/executeAsync/.test((err as Error).message)) throw err;
          y = await m.executeAsync(xs.length === 1 ? xs[0] : xs);
        }
        return Array.isArray(y) ? y : [y];
      };
      dispose = () => m.dispose();
    }
  } catch (err) {
    throw new InputError(model.file, `tfjs could not load the model: ${(err as Error).message}`);
  }
  let scored = outputs.length - 1;
  if (opts.output !== undefined) {
    scored = outputs.indexOf(opts.output);
    if (scored < 0) throw new InputError(model.file, `no output named '${opts.output}'; the outputs are ${outputs.join(', ')}`);
  } else if (outputs.length > 1) {
    notes.push(`the model has ${outputs.length} outputs; scoring the last, '${outputs[scored]}' (choose another with --output NAME)`);
  }
  return {
    backend,
    inputs,
    outputs,
    scored,
    notes,
    async run(feeds) {
      const xs = feeds.map((f, i) => {
        const data = f.data instanceof Float32Array || f.data instanceof Int32Array || f.data instanceof Uint8Array ? f.data : Float32Array.from(f.data as ArrayLike<number>);
        const own: tf.DataType = f.dtype === 'int32' || f.dtype === 'int64' || f.dtype === 'uint8' || f.dtype === 'int8' ? 'int32' : f.dtype === 'bool' ? 'bool' : 'float32';
        return tf.tensor(data, f.shape, dtypes[i] ?? own);
      });
      try {
        const ys = await exec(xs);
        const out = await Promise.all(ys.map(async (y) => ({ data: Float32Array.from((await y.data()) as ArrayLike<number>), dims: y.shape })));
        for (const y of ys) y.dispose();
        return out;
      } finally {
        for (const x of xs) x.dispose();
      }
    },
    dispose,
  };
}
