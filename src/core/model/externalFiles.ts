import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../errors';

/**
 * The external data files of one model: each opened once, checked to stay inside the model's folder, and
 * checked again on every read so that a file replaced while we read it is an error, not silent garbage.
 */
export class ExternalFiles {
  private readonly open = new Map<string, { fd: number; size: number; mtimeMs: number }>();

  /** The folder of the model file; locations resolve against it. */
  readonly dir: string;

  constructor(
    /** The model file that refers to the data (named in errors about its locations). */
    readonly modelFile: string,
  ) {
    this.dir = path.dirname(path.resolve(modelFile));
  }

  /** The absolute path of a location, refusing absolute paths and paths that leave the model folder. */
  resolve(location: string, tensor: string): string {
    const file = path.resolve(this.dir, location);
    const rel = path.relative(this.dir, file);
    if (path.isAbsolute(location) || rel.startsWith('..') || path.isAbsolute(rel)) {
      throw new InputError(this.modelFile, `external data for tensor '${tensor}' points outside the model folder: '${location}'`);
    }
    return file;
  }

  /** Checks that a region exists in its file, without reading it. */
  check(file: string, offset: number, length: number, tensor: string): void {
    const { size } = this.handle(file, tensor);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
      throw new InputError(file, `external data for tensor '${tensor}' is truncated or out of range (wanted ${length} bytes at offset ${offset}, the file has ${size})`);
    }
  }

  /** Reads a region (one copy into a fresh buffer). */
  read(file: string, offset: number, length: number, tensor: string): Uint8Array {
    const buf = new Uint8Array(length);
    this.readInto(file, offset, buf, tensor);
    return buf;
  }

  /** Reads `into.byteLength` bytes at `offset` into a caller's buffer (chunked reads of big tensors). */
  readInto(file: string, offset: number, into: Uint8Array, tensor: string): void {
    const length = into.byteLength;
    this.check(file, offset, length, tensor);
    const h = this.handle(file, tensor);
    const st = fs.fstatSync(h.fd);
    if (st.size !== h.size || st.mtimeMs !== h.mtimeMs) throw new InputError(file, 'external data file changed while the model was being read');
    let done = 0;
    // Read in pieces: one read() is capped at 2 GB.
    while (done < length) {
      const n = fs.readSync(h.fd, into, done, Math.min(length - done, 1 << 30), offset + done);
      if (n === 0) throw new InputError(file, `external data for tensor '${tensor}' ended early`);
      done += n;
    }
  }

  /** Closes every file. */
  close(): void {
    for (const h of this.open.values()) fs.closeSync(h.fd);
    this.open.clear();
  }

  private handle(file: string, tensor: string) {
    let h = this.open.get(file);
    if (!h) {
      let fd: number;
      try {
        fd = fs.openSync(file, 'r');
      } catch {
        throw new InputError(file, `missing external data file for tensor '${tensor}'`);
      }
      const st = fs.fstatSync(fd);
      if (!st.isFile()) {
        fs.closeSync(fd);
        throw new InputError(file, `external data for tensor '${tensor}' is not a regular file`);
      }
      h = { fd, size: st.size, mtimeMs: st.mtimeMs };
      this.open.set(file, h);
    }
    return h;
  }
}
