import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { normal, seededRandom } from '../src/core/random';
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../src/core/formats/onnx/build';
import { readOnnxFile } from '../src/core/formats/onnx/read';
import { inspectModel } from '../src/core/inspect';
import { WorkerClient } from '../src/core/worker/client';

/**
 * How much inspecting a model costs beyond decoding it, and what running it in the worker adds.
 * Baseline: protobuf decode of the same file in this process. Prints one JSON object.
 *   node out/bench/inspect.js [hidden=2048] [layers=4] [repeats=5]
 */
async function main(): Promise<void> {
  const [hidden = 2048, layers = 4, repeats = 5] = process.argv.slice(2).map(Number);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-bench-'));
  const file = path.join(dir, 'mlp.onnx');
  const randn = normal(seededRandom(7));
  const inits = [];
  const nodes = [];
  for (let i = 0; i < layers; i++) {
    inits.push(floatTensor(`w${i}`, [hidden, hidden], Float32Array.from({ length: hidden * hidden }, () => randn() * 0.02)));
    nodes.push(node('MatMul', [i === 0 ? 'x' : `h${i - 1}`, `w${i}`], [`h${i}`]));
  }
  fs.writeFileSync(file, encodeModel(model(graph('mlp', nodes, [valueInfo('x', 1, ['n', hidden])], [valueInfo(`h${layers - 1}`, 1, ['n', hidden])], inits), 13)));

  const time = async (fn: () => unknown): Promise<number> => {
    await fn(); // warm-up
    const runs: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const t0 = performance.now();
      await fn();
      runs.push(performance.now() - t0);
    }
    return runs.sort((a, b) => a - b)[Math.floor(runs.length / 2)];
  };
  const worker = new WorkerClient(path.join(__dirname, '..', '..', 'dist', 'worker.js'));
  try {
    const decodeMs = await time(() => readOnnxFile(file));
    const inspectMs = await time(() => inspectModel(file));
    const workerMs = await time(() => worker.request('inspect', { file }));
    console.log(
      JSON.stringify({
        model: { hidden, layers, params: layers * hidden * hidden, fileMB: +(fs.statSync(file).size / 1e6).toFixed(1) },
        medianMs: { decode: +decodeMs.toFixed(1), inspect: +inspectMs.toFixed(1), inspectInWorker: +workerMs.toFixed(1) },
        ratios: { inspectVsDecode: +(inspectMs / decodeMs).toFixed(2), workerVsInProcess: +(workerMs / inspectMs).toFixed(2) },
      }),
    );
  } finally {
    worker.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main();
