import * as fs from 'node:fs';
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../../src/core/formats/onnx/build';
import { normal, seededRandom } from '../../src/core/random';

/**
 * Writes a generated MLP (`layers` MatMul + Relu of `hidden` x `hidden` float32 weights, seeded) for the
 * benchmarks; the layers are named fc0, fc1, ... and the weights w0, w1, ....
 */
export function writeMlp(file: string, layers: number, hidden: number, seed = 11): void {
  const randn = normal(seededRandom(seed));
  const inits = [];
  const nodes = [];
  for (let i = 0; i < layers; i++) {
    inits.push(floatTensor(`w${i}`, [hidden, hidden], Float32Array.from({ length: hidden * hidden }, () => randn() * 0.02)));
    nodes.push(node('MatMul', [i ? `r${i - 1}` : 'x', `w${i}`], [`h${i}`], {}, `fc${i}`));
    nodes.push(node('Relu', [`h${i}`], [`r${i}`]));
  }
  fs.writeFileSync(file, encodeModel(model(graph('mlp', nodes, [valueInfo('x', 1, ['n', hidden])], [valueInfo(`r${layers - 1}`, 1, ['n', hidden])], inits), 13)));
}
