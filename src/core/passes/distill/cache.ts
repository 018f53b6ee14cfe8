/**
 * The teacher-output cache: the frozen teacher's logits and feature targets per sample, on disk, so later epochs
 * (and later runs on the same teacher and data) do not run the teacher again. An entry is a folder named by the
 * sha256 of (teacher sha256, data identity, the fetched tensor names and per-sample sizes); inside, sample i's record
 * lies at offset i·recordBytes of one file, and a bitmap says which records are filled. The cache is bounded: a
 * run caches at most `maxBytes` of records (samples past that are recomputed each epoch) and evicts the least
 * recently used other entries to keep the folder under the bound. The bitmap is written (atomically) only after
 * the records it marks, so a crash leaves records unmarked, never marked and missing.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../../atomicWrite';
import type { TeacherCacheStats } from './types';

/** The identity of a data SPEC: the spec and the size and mtime of the file or folder it names. */
export function dataIdentity(spec: string): string {
  const file = path.resolve(spec.replace(/#[^#]*$/, ''));
  let stamp = 'missing';
  try {
    const st = fs.statSync(file);
    stamp = `${st.size}:${st.mtimeMs}`;
  } catch {
    // 'random' or a spec that is not a path: the spec alone identifies it.
  }
  return `${spec}|${stamp}`;
}

/** One cache entry, open for a run. */
export class TeacherCache {
  private fd: number | undefined;
  private filled: Uint8Array;
  private dirty = false;
  readonly stats: TeacherCacheStats;
  private readonly recordBytes: number;
  private readonly capacity: number;
  private readonly entry: string;

  /**
   * Opens (or creates) the entry for `key` with records of `recordFloats` float32 values for `samples` samples.
   * A folder that cannot be written turns the cache off with a note instead of failing the run.
   */
  constructor(dir: string, key: { teacherSha256: string; data: string; tensors: string[]; sizes: number[] }, private readonly recordFloats: number, samples: number, maxBytes: number) {
    const hash = createHash('sha256').update(JSON.stringify(key)).digest('hex').slice(0, 32);
    this.entry = path.join(dir, hash);
    this.recordBytes = recordFloats * 4;
    this.capacity = Math.min(samples, Math.floor(maxBytes / this.recordBytes));
    this.filled = new Uint8Array(Math.ceil(samples / 8));
    this.stats = { dir: this.entry, hits: 0, misses: 0, bytes: 0 };
    if (this.capacity < samples) this.stats.note = `the cache holds ${this.capacity} of ${samples} samples (--cache-max-mb); the rest run the teacher every epoch`;
    if (this.capacity === 0) return;
    try {
      fs.mkdirSync(this.entry, { recursive: true });
      const values = path.join(this.entry, 'values.f32');
      const bitmap = path.join(this.entry, 'filled.bin');
      const meta = path.join(this.entry, 'key.json');
      const stored = fs.existsSync(meta) ? fs.readFileSync(meta, 'utf8') : undefined;
      const want = JSON.stringify({ ...key, recordFloats, samples });
      if (stored === want && fs.existsSync(bitmap) && fs.existsSync(values)) {
        const bits = fs.readFileSync(bitmap);
        if (bits.length === this.filled.length) this.filled.set(bits);
      } else {
        fs.rmSync(values, { force: true });
        fs.rmSync(bitmap, { force: true });
        writeFileAtomic(meta, want);
      }
      this.fd = fs.openSync(values, fs.existsSync(values) ? 'r+' : 'w+');
      evict(dir, this.entry, maxBytes);
      this.stats.bytes = fs.fstatSync(this.fd).size;
    } catch (err) {
      this.fd = undefined;
      this.stats.note = `the teacher cache is off: ${(err as Error).message.split('\n')[0]}`;
    }
  }

  private has(i: number): boolean {
    return i < this.capacity && (this.filled[i >> 3] & (1 << (i & 7))) !== 0;
  }

  /** The records of `indices` in one array (record after record), or undefined unless every one is cached. */
  get(indices: number[]): Float32Array | undefined {
    if (this.fd === undefined || !indices.every((i) => this.has(i))) {
      this.stats.misses += indices.length;
      return undefined;
    }
    const out = new Float32Array(indices.length * this.recordFloats);
    const view = new Uint8Array(out.buffer);
    indices.forEach((i, k) => fs.readSync(this.fd!, view, k * this.recordBytes, this.recordBytes, i * this.recordBytes));
    this.stats.hits += indices.length;
    return out;
  }

  /** Stores the records of `indices` (record after record, as `get` returns them) that fit under the bound. */
  put(indices: number[], records: Float32Array): void {
    if (this.fd === undefined) return;
    const view = new Uint8Array(records.buffer, records.byteOffset, records.byteLength);
    indices.forEach((i, k) => {
      if (i >= this.capacity || this.has(i)) return;
      fs.writeSync(this.fd!, view, k * this.recordBytes, this.recordBytes, i * this.recordBytes);
      this.filled[i >> 3] |= 1 << (i & 7);
      this.dirty = true;
    });
  }

  /** Marks what was written (after syncing the records) and closes the file. */
  close(): void {
    if (this.fd === undefined) return;
    try {
      if (this.dirty) {
        fs.fsyncSync(this.fd);
        writeFileAtomic(path.join(this.entry, 'filled.bin'), this.filled);
      }
      this.stats.bytes = fs.fstatSync(this.fd).size;
    } finally {
      fs.closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

/** Removes the least recently used entries besides `keep` until the folder's entries fit in `maxBytes`. */
function evict(dir: string, keep: string, maxBytes: number): void {
  const entries = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && path.join(dir, d.name) !== keep)
    .map((d) => {
      const values = path.join(dir, d.name, 'values.f32');
      const st = fs.existsSync(values) ? fs.statSync(values) : undefined;
      return { dir: path.join(dir, d.name), bytes: st?.size ?? 0, used: st?.mtimeMs ?? 0 };
    })
    .sort((a, b) => a.used - b.used);
  let total = entries.reduce((a, e) => a + e.bytes, 0);
  for (const e of entries) {
    if (total <= maxBytes) break;
    fs.rmSync(e.dir, { recursive: true, force: true });
    total -= e.bytes;
  }
}
