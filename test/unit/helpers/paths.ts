import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** The repository root (tests run from out/test/unit/). */
export const repoRoot = path.resolve(__dirname, '..', '..', '..');

/** The shared read-only test data, or undefined when this checkout has none beside it. */
export const sharedData = ((): string | undefined => {
  const dir = process.env.WHITTLE_SHARED_DATA ?? path.resolve(repoRoot, '..', 'shared', 'data');
  return fs.existsSync(dir) ? dir : undefined;
})();

/** Why a test that needs shared data is skipped. */
export const noSharedData = sharedData ? false : 'skipped: ../shared/data is not present (set WHITTLE_SHARED_DATA)';

/** A fresh temp folder, removed when the process exits. */
export function tempDir(prefix = 'whittle-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}
