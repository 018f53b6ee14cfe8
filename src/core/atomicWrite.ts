import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Writes a file so that no half-written file is ever seen under its name: a temp file in the same folder,
 * fsync, then rename. The temp file is removed on failure. `data` may come in parts (a model's pieces).
 */
export function writeFileAtomic(file: string, data: Uint8Array | string | Uint8Array[]): void {
  const parts = typeof data === 'string' ? [Buffer.from(data)] : Array.isArray(data) ? data : [data];
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now().toString(36)}.tmp`);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx');
    for (const part of parts) {
      // One write() is capped below 2 GB.
      for (let done = 0; done < part.byteLength; ) done += fs.writeSync(fd, part, done, Math.min(part.byteLength - done, 1 << 30));
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}
