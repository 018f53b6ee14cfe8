import type { Locator, Page } from 'playwright-core';

/**
 * Opens something (a menu, the palette) until `target` shows up. The workbench appears before the remote
 * extension host has registered Whittle's contributions, so the first tries can come up without them.
 */
export async function openUntil(page: Page, open: () => Promise<void>, target: Locator, tries = 20): Promise<void> {
  for (let i = 0; ; i++) {
    await open();
    try {
      await target.waitFor({ timeout: 3000 });
      return;
    } catch (err) {
      if (i >= tries) throw err;
      await page.keyboard.press('Escape');
      await page.waitForTimeout(1000);
    }
  }
}

/** Runs a command from the palette by its title. */
export async function runFromPalette(page: Page, title: string): Promise<void> {
  const input = page.locator('.quick-input-widget input');
  const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first();
  await openUntil(page, async () => {
    await page.keyboard.press('Control+Shift+P');
    await input.waitFor({ state: 'visible' });
    await input.fill(`>${title}`);
  }, row);
  await page.keyboard.press('Enter');
}

/** Opens a workspace file by name through Quick Open (Ctrl+P). */
export async function quickOpen(page: Page, name: string): Promise<void> {
  const input = page.locator('.quick-input-widget input');
  const row = page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first();
  await openUntil(page, async () => {
    await page.keyboard.press('Control+P');
    await input.waitFor({ state: 'visible' });
    await input.fill(name);
  }, row);
  await page.keyboard.press('Enter');
  await page.locator('.tabs-container .tab', { hasText: name }).first().waitFor({ timeout: 15_000 });
}
