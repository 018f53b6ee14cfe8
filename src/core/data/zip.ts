/** A minimal zip reader for .npz files: the central directory (zip64 included), stored and deflated entries. */
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { InputError } from '../errors';

/** One file inside a zip archive. */
export interface ZipEntry {
  name: string;
  /** 0: stored, 8: deflated. */
  method: number;
  compressedSize: number;
  size: number;
  /** Offset of the entry's local header in the archive. */
  localOffset: number;
}

/** Compression methods this reader can open. */
const methods: Record<number, string> = { 0: 'stored', 8: 'deflated' };

const sig = { eocd: 0x06054b50, eocd64: 0x06064b50, locator64: 0x07064b50, central: 0x02014b50, local: 0x04034b50 };

/** Reads `length` bytes at `position`, failing (naming the file) if the archive is shorter. */
export function readAt(fd: number, file: string, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new InputError(file, `truncated zip archive (wanted ${length} bytes at offset ${position})`);
    done += n;
  }
  return buf;
}

/** True when bytes start like a zip archive. */
export function looksLikeZip(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
}

/** The entries of a zip archive, from its central directory. */
export function readZipDirectory(file: string): ZipEntry[] {
  const fd = openOrThrow(file);
  try {
    const size = fs.fstatSync(fd).size;
    // The end record is 22 bytes plus a comment of up to 65535.
    const tailLength = Math.min(size, 22 + 0xffff);
    const tail = readAt(fd, file, size - tailLength, tailLength);
    let at = -1;
    for (let i = tail.length - 22; i >= 0; i--) if (tail.readUInt32LE(i) === sig.eocd) { at = i; break; }
    if (at < 0) throw new InputError(file, 'not a zip archive (no end of central directory record)');
    let count = tail.readUInt16LE(at + 10);
    let cdSize = tail.readUInt32LE(at + 12);
    let cdOffset = tail.readUInt32LE(at + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const locatorAt = size - tailLength + at - 20;
      const locator = locatorAt >= 0 ? readAt(fd, file, locatorAt, 20) : undefined;
      if (!locator || locator.readUInt32LE(0) !== sig.locator64) throw new InputError(file, 'corrupt zip64 archive (no zip64 locator)');
      const end64 = readAt(fd, file, Number(locator.readBigUInt64LE(8)), 56);
      if (end64.readUInt32LE(0) !== sig.eocd64) throw new InputError(file, 'corrupt zip64 archive (no zip64 end record)');
      count = Number(end64.readBigUInt64LE(32));
      cdSize = Number(end64.readBigUInt64LE(40));
      cdOffset = Number(end64.readBigUInt64LE(48));
    }
    const cd = readAt(fd, file, cdOffset, cdSize);
    const entries: ZipEntry[] = [];
    let p = 0;
    for (let k = 0; k < count; k++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== sig.central) throw new InputError(file, `corrupt zip central directory (entry ${k})`);
      const flags = cd.readUInt16LE(p + 8);
      const nameLength = cd.readUInt16LE(p + 28);
      const extraLength = cd.readUInt16LE(p + 30);
      const commentLength = cd.readUInt16LE(p + 32);
      const name = cd.toString('utf8', p + 46, p + 46 + nameLength);
      if (flags & 1) throw new InputError(file, `zip entry '${name}' is encrypted`);
      const entry: ZipEntry = {
        name,
        method: cd.readUInt16LE(p + 10),
        compressedSize: cd.readUInt32LE(p + 20),
        size: cd.readUInt32LE(p + 24),
        localOffset: cd.readUInt32LE(p + 42),
      };
      zip64Extra(cd.subarray(p + 46 + nameLength, p + 46 + nameLength + extraLength), entry);
      entries.push(entry);
      p += 46 + nameLength + extraLength + commentLength;
    }
    return entries;
  } finally {
    fs.closeSync(fd);
  }
}

/** Replaces 0xffffffff sizes and offsets with their zip64 extra-field values (which appear in that order). */
function zip64Extra(extra: Buffer, entry: ZipEntry): void {
  for (let p = 0; p + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(p);
    const length = extra.readUInt16LE(p + 2);
    if (id === 0x0001) {
      let q = p + 4;
      const next = () => {
        const v = q + 8 <= p + 4 + length ? Number(extra.readBigUInt64LE(q)) : undefined;
        q += 8;
        return v;
      };
      if (entry.size === 0xffffffff) entry.size = next() ?? entry.size;
      if (entry.compressedSize === 0xffffffff) entry.compressedSize = next() ?? entry.compressedSize;
      if (entry.localOffset === 0xffffffff) entry.localOffset = next() ?? entry.localOffset;
    }
    p += 4 + length;
  }
}

/** Where an entry's (compressed) data starts in the archive, from its local header. */
export function entryDataOffset(file: string, entry: ZipEntry): number {
  const fd = openOrThrow(file);
  try {
    const local = readAt(fd, file, entry.localOffset, 30);
    if (local.readUInt32LE(0) !== sig.local) throw new InputError(file, `corrupt zip archive: no local header for entry '${entry.name}'`);
    return entry.localOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
  } finally {
    fs.closeSync(fd);
  }
}

/** Checks that an entry uses a compression method this reader has. */
export function checkMethod(file: string, entry: ZipEntry): void {
  if (!(entry.method in methods)) throw new InputError(file, `zip entry '${entry.name}' uses compression method ${entry.method}; only stored and deflated entries can be read`);
}

/** The whole uncompressed content of a deflated entry. */
export function inflateEntry(file: string, entry: ZipEntry): Buffer {
  checkMethod(file, entry);
  const start = entryDataOffset(file, entry);
  const fd = openOrThrow(file);
  let raw: Buffer;
  try {
    raw = readAt(fd, file, start, entry.compressedSize);
  } finally {
    fs.closeSync(fd);
  }
  if (entry.method === 0) return raw;
  let out: Buffer;
  try {
    out = zlib.inflateRawSync(raw);
  } catch (err) {
    throw new InputError(file, `corrupt zip entry '${entry.name}': ${err instanceof Error ? err.message : String(err)}`);
  }
  if (out.length !== entry.size) throw new InputError(file, `corrupt zip entry '${entry.name}': inflated to ${out.length} bytes, the directory says ${entry.size}`);
  return out;
}

function openOrThrow(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch {
    throw new InputError(file, 'file is missing or unreadable');
  }
}
