import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../src/core/formats/onnx/build';
import { writeMlp } from './lib/mlp';
import { replaceTensorData } from '../src/core/formats/onnx/edit';
import { OnnxModel } from '../src/core/formats/onnx/model';
import { preparedBytes } from '../src/core/runtime/session';
import { normal, seededRandom } from '../src/core/random';

/**
 * The cost of one weight variant, as a sensitivity sweep pays it, on a generated ~80 MB MLP:
 *   rebuild: replace one layer's weights, re-encode the model, create a session, run, release;
 *   fed:     one session with that layer's weights as a graph input, run with the perturbed copy.
 * Both run in this process on the same batch; prints one JSON object.
 *   node out/bench/weightsAsInputs.js [variants=8]
 */
async function main(): Promise<void> {
  const variants = Number(process.argv[2] ?? 8);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-bench-wai-'));
  try {
    const hidden = 2048;
    const layers = 5; // 5 x 2048 x 2048 float32 = 84 MB
    const file = path.join(dir, 'mlp.onnx');
    writeMlp(file, layers, hidden);
    const randn = normal(seededRandom(12));
    const x = new ort.Tensor('float32', Float32Array.from({ length: 8 * hidden }, () => randn()), [8, hidden]);
    const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: Math.max(1, os.availableParallelism() - 1), logSeverityLevel: 4 };
    const target = 'w2';
    const perturbed = (k: number) => {
      const m = OnnxModel.open(file);
      const data = Float32Array.from(m.weights().get(target)!.ref.read() as Float32Array, (v, i) => (i % (k + 2) === 0 ? 0 : v));
      m.close();
      return data;
    };
    const datas = Array.from({ length: variants }, (_, k) => perturbed(k));

    // Way 1: rebuild the model per variant.
    const rebuildMs: number[] = [];
    const base = OnnxModel.open(file);
    const original = base.weights().get(target)!.ref.read().slice() as Float32Array;
    for (const data of datas) {
      const t0 = performance.now();
      replaceTensorData(base.graph, target, data);
      const session = await ort.InferenceSession.create(encodeModel(base.proto), options);
      await session.run({ x });
      await session.release();
      rebuildMs.push(performance.now() - t0);
    }
    replaceTensorData(base.graph, target, original);

    // Way 2: one session, the weight fed as an input.
    const t1 = performance.now();
    const session = await ort.InferenceSession.create(preparedBytes(base, { weightInputs: [target] })!, options);
    const createMs = performance.now() - t1;
    await session.run({ x, [target]: new ort.Tensor('float32', datas[0], [hidden, hidden]) });
    const fedMs: number[] = [];
    for (const data of datas) {
      const t0 = performance.now();
      await session.run({ x, [target]: new ort.Tensor('float32', data, [hidden, hidden]) });
      fedMs.push(performance.now() - t0);
    }
    // A plain run of the unmodified model, for the cost of feeding against not feeding.
    const plain = await ort.InferenceSession.create(file, options);
    await plain.run({ x });
    const plainMs: number[] = [];
    for (let i = 0; i < variants; i++) {
      const t0 = performance.now();
      await plain.run({ x });
      plainMs.push(performance.now() - t0);
    }
    await plain.release();
    await session.release();
    base.close();
    const median = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
    console.log(
      JSON.stringify({
        model: { layers, hidden, fileMB: +(fs.statSync(file).size / 1e6).toFixed(1), batch: 8, variants },
        medianMs: { rebuildPerVariant: +median(rebuildMs).toFixed(1), fedPerVariant: +median(fedMs).toFixed(1), plainRun: +median(plainMs).toFixed(1), fedSessionCreate: +createMs.toFixed(1) },
        ratios: { rebuildVsFed: +(median(rebuildMs) / median(fedMs)).toFixed(1), fedVsPlainRun: +(median(fedMs) / median(plainMs)).toFixed(2) },
      }),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main();
