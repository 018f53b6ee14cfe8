import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { installCodeServer, repoRoot, startCodeServer } from '../../scripts/codeServer';
import { makeSampleWorkspace, sampleModelName } from '../../scripts/sampleWorkspace';
import { compressWizardSteps } from './compress';
import { launchBrowser } from './lib/browser';
import { Steps } from './lib/steps';

/**
 * `node out/e2e/compressOnly.js`: only the Compress wizard's e2e steps (test/e2e/compress.ts), in a fresh
 * code-server on a fresh sample workspace: the quick loop while working on the wizard. `npm run test:e2e` runs
 * the same steps as part of the whole UI test.
 */
async function main(): Promise<number> {
  const steps = new Steps();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-e2e-compress-'));
  const workspace = path.join(root, 'ws');
  makeSampleWorkspace(workspace);
  const server = await startCodeServer({ install: installCodeServer(), extensionDir: repoRoot });
  const browser = await launchBrowser();
  try {
    const { page } = browser;
    await page.goto(`${server.base}/?folder=${encodeURIComponent(workspace)}`);
    await page.waitForSelector('.monaco-workbench', { timeout: 90_000 });
    await page.getByRole('treeitem', { name: new RegExp(sampleModelName.replace('.', '\\.')) }).waitFor({ timeout: 60_000 });
    await compressWizardSteps(page, steps, workspace).catch((err) => steps.log(`stopped: ${err instanceof Error ? err.message.split('\n')[0] : err}`));
    await page.screenshot({ path: path.join(repoRoot, 'test-results', 'compress-last-state.png') }).catch(() => {});
  } finally {
    await browser.close();
    await server.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
  console.log(`e2e (compress): ${steps.passed} passed, ${steps.failed} failed`);
  return steps.failed === 0 && steps.passed > 0 ? 0 : 1;
}

main().then((code) => process.exit(code));
