import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../errors';
import { OnnxModel } from '../formats/onnx/model';

/**
 * The last few models the worker opened, so that a panel's stream of histogram and tile requests reads the
 * file once. Keyed by path, size and mtime: a file changed on disk is opened afresh. Evicted models are closed.
 */
export class ModelCache {
  private readonly entries: Array<{ key: string; model: OnnxModel }> = [];

  constructor(private readonly capacity = 2) {}

  /** The model at `file`, opened now or reused from the cache. */
  get(file: string): OnnxModel {
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
    const model = OnnxModel.open(full);
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
    e.model.close();
  }
}
