import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../formats/onnx/build';
import { normal, seededRandom } from '../random';

/** What `buildMlp` makes. */
export interface MlpOptions {
  /** Widths from the input to the output: [784, 128, 10] is two layers. At least two entries. */
  sizes: number[];
  /** Seed of the weights (default 1). */
  seed?: number;
  /** Default-domain opset (default 13). */
  opset?: number;
}

/**
 * A generated MLP in the form PyTorch exports `nn.Linear`: per layer `MatMul(x, W[in, out]) + Add(b)`, with
 * Relu between layers and none after the last. Seeded He-initialised weights and small nonzero biases, so
 * quantization tests see realistic ranges and the bias path is exercised. Input `x` [batch, sizes[0]], output
 * `y` [batch, sizes.at(-1)]; layer i is the MatMul node `fc{i}` with weight `fc{i}.weight` and bias `fc{i}.bias`.
 * [1024, 4096, 4096, 1024] is about 80 MB.
 */
export function buildMlp(opts: MlpOptions): Uint8Array {
  const { sizes } = opts;
  if (sizes.length < 2 || sizes.some((s) => !Number.isInteger(s) || s < 1)) throw new RangeError(`buildMlp: sizes must be two or more positive integers, not [${sizes.join(', ')}]`);
  const randn = normal(seededRandom(opts.seed ?? 1));
  const inits = [];
  const nodes = [];
  let x = 'x';
  for (let i = 0; i + 1 < sizes.length; i++) {
    const [fanIn, fanOut] = [sizes[i], sizes[i + 1]];
    const std = Math.sqrt(2 / fanIn);
    inits.push(floatTensor(`fc${i}.weight`, [fanIn, fanOut], Float32Array.from({ length: fanIn * fanOut }, () => randn() * std)));
    inits.push(floatTensor(`fc${i}.bias`, [fanOut], Float32Array.from({ length: fanOut }, () => randn() * 0.01)));
    const last = i + 2 === sizes.length;
    nodes.push(node('MatMul', [x, `fc${i}.weight`], [`fc${i}.mm`], {}, `fc${i}`));
    nodes.push(node('Add', [`fc${i}.mm`, `fc${i}.bias`], [last ? 'y' : `fc${i}.out`], {}, `fc${i}.add`));
    if (!last) nodes.push(node('Relu', [`fc${i}.out`], [`relu${i}`], {}, `relu${i}`));
    x = `relu${i}`;
  }
  const g = graph('whittle_mlp', nodes, [valueInfo('x', 1, ['batch', sizes[0]])], [valueInfo('y', 1, ['batch', sizes.at(-1)!])], inits);
  return encodeModel(model(g, opts.opset ?? 13));
}
