import { InputError } from '../errors';
import { OnnxModel } from '../formats/onnx/model';
import type { InspectableModel } from '../model/inspectable';
import type { TensorRef } from '../model/tensorRef';
import type { TensorTile, TileMode } from '../../protocol/analysis';
import { channelLayout, resolveTensor } from './histogram';
import { cachedQuantError } from './quantError';

/** Float32 values and range of tensors already read, so that the tiles of one heatmap read a tensor once. */
const cache = new WeakMap<TensorRef, { values: Float32Array; min: number; max: number }>();

/** The tensor as float32 (a view of the file for aligned float32, else converted once) with its finite range. */
function valuesOf(ref: TensorRef): { values: Float32Array; min: number; max: number } {
  let hit = cache.get(ref);
  if (hit) return hit;
  if (!ref.numeric) throw new InputError(ref.source, `tensor '${ref.name}' has element type ${ref.dtypeName}, which has no heatmap`);
  const raw = ref.dtype === 1 ? ref.read() : undefined;
  const values = raw instanceof Float32Array ? raw : ref.toFloat32();
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (min > max) min = max = 0;
  hit = { values, min, max };
  cache.set(ref, hit);
  return hit;
}

/**
 * A tile of a weight seen as a matrix of out-channels (rows) by everything else flattened (columns). The output
 * axis comes from the layer that uses the tensor as its main weight: 0 for Conv and Gemm(transB=1), so rows are
 * contiguous; 1 for MatMul's [K, N], so the view is transposed (row n is column n of the stored matrix). With
 * `stride` > 1 each value is the mean of a stride x stride block (clipped at the matrix edge); the tile itself
 * is clipped to the matrix. `tensor` is a tensor name, or a layer name for that layer's main weight. With
 * `mode` 'mask' each value is the fraction of nonzero (kept) weights in its block, and the range is [0, 1];
 * with 'error' (`tensor` a layer name) each value is the mean of dequantized - source weight in its block.
 */
export function tensorTile(model: InspectableModel, tensor: string, row: number, col: number, rows: number, cols: number, stride = 1, mode: TileMode = 'values', source?: OnnxModel): TensorTile {
  if (mode === 'error') {
    if (!source) throw new InputError(model.file, 'a quantization-error tile needs the source model to compare with');
    if (!(model instanceof OnnxModel)) throw new InputError(model.file, 'quantization-error tiles are for ONNX models');
    const e = cachedQuantError(model, source, tensor);
    return tileOf(e.error, e.axis, row, col, rows, cols, stride, mode);
  }
  const { ref, axis } = resolveTensor(model, tensor);
  return tileOf(ref, axis, row, col, rows, cols, stride, mode);
}

/** A tile of `ref` with its output channels along `axis` (see tensorTile). */
export function tileOf(ref: TensorRef, axis: number, row: number, col: number, rows: number, cols: number, stride = 1, mode: TileMode = 'values'): TensorTile {
  if (mode !== 'values' && mode !== 'mask' && mode !== 'error') throw new InputError(undefined, `tile mode must be 'values', 'mask' or 'error', not '${String(mode)}'`);
  const mask = mode === 'mask';
  for (const [name, v] of Object.entries({ row, col, rows, cols })) {
    if (!Number.isSafeInteger(v) || v < 0) throw new InputError(undefined, `tile ${name} must be a whole number >= 0, not ${v}`);
  }
  if (!Number.isSafeInteger(stride) || stride < 1) throw new InputError(undefined, `tile stride must be a whole number >= 1, not ${stride}`);
  const lay = channelLayout(ref.shape, axis);
  const matrixRows = lay.channels;
  const matrixCols = lay.outer * lay.inner;
  if (row >= matrixRows && rows > 0) throw new InputError(undefined, `tile row ${row} is outside '${ref.name}' (${matrixRows} rows)`);
  if (col >= matrixCols && cols > 0) throw new InputError(undefined, `tile column ${col} is outside '${ref.name}' (${matrixCols} columns)`);
  const outRows = Math.max(0, Math.min(rows, Math.ceil((matrixRows - row) / stride)));
  const outCols = Math.max(0, Math.min(cols, Math.ceil((matrixCols - col) / stride)));
  const { values, min, max } = valuesOf(ref);
  const out = new Float32Array(outRows * outCols);
  const rowEnd = Math.min(matrixRows, row + outRows * stride);
  const colEnd = Math.min(matrixCols, col + outCols * stride);
  const sums = new Float64Array(outCols);
  // Flat offset of each column at row 0: column c = o * inner + i sits at o * channels * inner + i.
  const colBase = new Float64Array(colEnd - col);
  for (let c = col; c < colEnd; c++) colBase[c - col] = Math.floor(c / lay.inner) * lay.channels * lay.inner + (c % lay.inner);
  const contiguous = lay.outer === 1;
  for (let y = 0; y < outRows; y++) {
    sums.fill(0);
    const r0 = row + y * stride;
    const r1 = Math.min(rowEnd, r0 + stride);
    for (let r = r0; r < r1; r++) {
      const rowBase = r * lay.inner;
      if (contiguous) {
        // Rows are contiguous runs of the tensor: stream them.
        let c = col;
        for (let x = 0; x < outCols; x++) {
          const e = Math.min(colEnd, c + stride);
          let s = 0;
          // The mask counts nonzeros; a block mean of values would hide zeros among large weights.
          if (mask) for (let k = rowBase + c, kEnd = rowBase + e; k < kEnd; k++) s += values[k] !== 0 ? 1 : 0;
          else for (let k = rowBase + c, kEnd = rowBase + e; k < kEnd; k++) s += values[k];
          sums[x] += s;
          c = e;
        }
      } else {
        let c = 0;
        for (let x = 0; x < outCols; x++) {
          const e = Math.min(colEnd - col, c + stride);
          let s = 0;
          if (mask) for (let k = c; k < e; k++) s += values[colBase[k] + rowBase] !== 0 ? 1 : 0;
          else for (let k = c; k < e; k++) s += values[colBase[k] + rowBase];
          sums[x] += s;
          c = e;
        }
      }
    }
    const h = r1 - r0;
    for (let x = 0; x < outCols; x++) {
      const w = Math.min(colEnd, col + (x + 1) * stride) - (col + x * stride);
      out[y * outCols + x] = sums[x] / (h * w);
    }
  }
  return { tensor: ref.name, matrixRows, matrixCols, row, col, rows: outRows, cols: outCols, stride, values: out.buffer, min: mask ? 0 : min, max: mask ? 1 : max, ...(mode !== 'values' ? { mode } : {}) };
}
