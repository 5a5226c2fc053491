// Debian's chromium under playwright-core, as every browser test starts it.
// The flags keep it off the network (this machine's network is closed and
// refuses background connections) and out of first-run work.
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A persistent headless chromium in `userDataDir`, its first page, and page errors logged. */
export async function launchChromium(userDataDir: string, viewport: { width: number; height: number }): Promise<{ ctx: BrowserContext; page: Page }> {
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    colorScheme: 'light',
  });
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.on('pageerror', (e) => console.error('pageerror', e));
  return { ctx, page };
}
