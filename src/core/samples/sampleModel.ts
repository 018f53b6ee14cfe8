import { encodeModel, floatTensor, graph, int64Tensor, model, node, valueInfo } from '../formats/onnx/build';
import { normal, seededRandom } from '../random';

/** Parameter count of the sample model, computed from its layer shapes (the int64 reshape constant is not a parameter). */
export const sampleModelParams =
  8 * 1 * 5 * 5 + 8 + // conv1
  16 * 8 * 5 * 5 + 16 + // conv2
  64 * 400 + 64 + // fc1
  10 * 64 + 10; // fc2

/**
 * A LeNet-style MNIST classifier (1x28x28 -> 10 logits) with seeded He-initialised weights: the bundled
 * default model for `npm start`, the README and the tests. It is generated, not trained, so its predictions
 * mean nothing; its structure is what the tools work on.
 */
export function buildSampleModel(seed = 1): Uint8Array {
  const randn = normal(seededRandom(seed));
  const he = (name: string, dims: number[], fanIn: number) =>
    floatTensor(name, dims, Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => randn() * Math.sqrt(2 / fanIn)));
  const zeros = (name: string, n: number) => floatTensor(name, [n], new Float32Array(n));
  const inits = [
    he('conv1.weight', [8, 1, 5, 5], 25), zeros('conv1.bias', 8),
    he('conv2.weight', [16, 8, 5, 5], 200), zeros('conv2.bias', 16),
    he('fc1.weight', [64, 400], 400), zeros('fc1.bias', 64),
    he('fc2.weight', [10, 64], 64), zeros('fc2.bias', 10),
    int64Tensor('flat_shape', [2], [0, -1]),
  ];
  const nodes = [
    node('Conv', ['input', 'conv1.weight', 'conv1.bias'], ['conv1'], { kernel_shape: [5, 5], pads: [2, 2, 2, 2] }, '/conv1/Conv'),
    node('Relu', ['conv1'], ['relu1'], {}, '/relu1/Relu'),
    node('MaxPool', ['relu1'], ['pool1'], { kernel_shape: [2, 2], strides: [2, 2] }, '/pool1/MaxPool'),
    node('Conv', ['pool1', 'conv2.weight', 'conv2.bias'], ['conv2'], { kernel_shape: [5, 5] }, '/conv2/Conv'),
    node('Relu', ['conv2'], ['relu2'], {}, '/relu2/Relu'),
    node('MaxPool', ['relu2'], ['pool2'], { kernel_shape: [2, 2], strides: [2, 2] }, '/pool2/MaxPool'),
    node('Reshape', ['pool2', 'flat_shape'], ['flat'], {}, '/flatten/Reshape'),
    node('Gemm', ['flat', 'fc1.weight', 'fc1.bias'], ['fc1'], { transB: 1 }, '/fc1/Gemm'),
    node('Relu', ['fc1'], ['relu3'], {}, '/relu3/Relu'),
    node('Gemm', ['relu3', 'fc2.weight', 'fc2.bias'], ['logits'], { transB: 1 }, '/fc2/Gemm'),
  ];
  const g = graph('whittle_sample_lenet', nodes, [valueInfo('input', 1, ['batch', 1, 28, 28])], [valueInfo('logits', 1, ['batch', 10])], inits);
  return encodeModel(model(g, 13));
}
