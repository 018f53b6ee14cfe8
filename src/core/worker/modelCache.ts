import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../errors';
import { detectFormat } from '../formats/detect';
import { OnnxModel } from '../formats/onnx/model';
import { TfjsModel } from '../formats/tfjs/read';
import type { InspectableModel } from '../model/inspectable';

/**
 * The last few models the worker opened, so that a panel's stream of histogram and tile requests reads the
 * file once. Keyed by path, size and mtime: a file changed on disk is opened afresh. Evicted models are closed.
 */
export class ModelCache {
  private readonly entries: Array<{ key: string; model: InspectableModel }> = [];

  constructor(private readonly capacity = 2) {}

  /** The ONNX model at `file` (an error naming the file for anything else). */
  onnx(file: string): OnnxModel {
    const model = this.get(file);
    if (!(model instanceof OnnxModel)) throw new InputError(file, 'this needs an ONNX model, and this is a TensorFlow.js model');
    return model;
  }

  /** The model at `file` (ONNX or TF.js, by content), opened now or reused from the cache. */
  get(file: string): InspectableModel {
    const full = path.resolve(file);
    let stat: fs.Stats;
    try {
      stat = fs.statSync(full);
    } catch {
      throw new InputError(file, 'the file does not exist or cannot be read');
    }
    const key = `${full}\0${stat.size}\0${stat.mtimeMs}`;
    const at = this.entries.findIndex((e) => e.key === key);
    if (at >= 0) {
      const [hit] = this.entries.splice(at, 1);
      this.entries.unshift(hit);
      return hit.model;
    }
    // An older version of the same file is stale: drop it along with the least recently used.
    for (let i = this.entries.length - 1; i >= 0; i--) if (this.entries[i].key.startsWith(`${full}\0`)) this.evict(i);
    const model: InspectableModel = detectFormat(full) === 'tfjs' ? TfjsModel.open(full) : OnnxModel.open(full);
    this.entries.unshift({ key, model });
    while (this.entries.length > this.capacity) this.evict(this.entries.length - 1);
    return model;
  }

  /** Number of models held. */
  get size(): number {
    return this.entries.length;
  }

  /** Closes every model. */
  clear(): void {
    while (this.entries.length) this.evict(0);
  }

  private evict(i: number): void {
    const [e] = this.entries.splice(i, 1);
    if (e.model instanceof OnnxModel) e.model.close();
  }
}
