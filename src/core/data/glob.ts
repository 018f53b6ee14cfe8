/** A small file glob (`*`, `?`, `**`) for manifest `pb` patterns; Node 20 has no fs.glob. */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Natural order of paths (set_2 before set_10), the same on every platform. */
export const naturalOrder = new Intl.Collator('en', { numeric: true }).compare;

const magic = /[*?[]/;

/** One path segment's pattern as a regular expression (`*` and `?` never cross a `/`). */
function segmentRegex(segment: string): RegExp {
  const body = segment
    .replace(/[.+^${}()|\\]/g, '\\$&')
    .replace(/\[!/g, '[^')
    .replace(/\*/g, '[^/]*')
    .replace(/\?/g, '[^/]');
  return new RegExp(`^${body}$`);
}

/** Files matching `pattern` (relative to `base`, or absolute), in natural order. Hidden entries match only a literal dot. */
export function globFiles(base: string, pattern: string): string[] {
  const full = path.resolve(base, pattern);
  const parts = full.split(/[\\/]+/);
  const firstMagic = parts.findIndex((p) => magic.test(p));
  if (firstMagic < 0) return fs.existsSync(full) && fs.statSync(full).isFile() ? [full] : [];
  const root = parts.slice(0, firstMagic).join(path.sep) || path.sep;
  const out: string[] = [];
  walk(root, parts.slice(firstMagic), out);
  return [...new Set(out)].sort(naturalOrder);
}

function walk(dir: string, rest: string[], out: string[]): void {
  if (rest.length === 0) return;
  const [head, ...tail] = rest;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  if (head === '**') {
    // `**` matches zero or more folders; as the last segment, every file below.
    walk(dir, tail, out);
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      if (e.isDirectory()) walk(path.join(dir, e.name), rest, out);
      else if (tail.length === 0 && e.isFile()) out.push(path.join(dir, e.name));
    }
    return;
  }
  const re = segmentRegex(head);
  for (const e of entries) {
    if (e.name.startsWith('.') && !head.startsWith('.')) continue;
    if (!re.test(e.name)) continue;
    const p = path.join(dir, e.name);
    if (tail.length === 0) {
      if (e.isFile()) out.push(p);
    } else if (e.isDirectory()) walk(p, tail, out);
  }
}
