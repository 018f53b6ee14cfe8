import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Fixture writers shared by the data tests: each format written byte by byte, so reading is checked against
 * bytes the test chose.
 */

/** A fresh, numbered folder under `root` for one test's fixtures. */
export function freshDir(root: string): (name: string) => string {
  let count = 0;
  return (name) => {
    const dir = path.join(root, `${count++}-${name}`);
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  };
}

/** Writes `bytes` to `file`, creating its folder; returns the path. */
export function write(file: string, bytes: Uint8Array | string): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, bytes);
  return file;
}

/** An idx file: magic [0, 0, type, ndims], big-endian dims, then the data. */
export function idxBytes(dims: number[], data: Uint8Array, type = 0x08): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.set([0, 0, type, dims.length]);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, data]);
}

/** An .npy (format 1.0) with the header padded to 64 bytes, as NumPy writes it. */
export function npyBytes(descr: string, shape: number[], data: Uint8Array): Buffer {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 'latin1');
  head[6] = 1;
  head.writeUInt16LE(header.length, 8);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), data]);
}
