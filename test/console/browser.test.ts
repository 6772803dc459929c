/**
 * The console in a real Chromium: the login form posts under the console's CSP, a wrong token stays
 * on the login page, the numbers show, logout ends the session. Screenshots at 1280×800 and 390×844
 * go to dist/screenshots/ for review.
 */
import { mkdirSync } from 'fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { haveChromium, launchChromium } from '../support/browser';
import { startHarness } from '../support/harness';
import type { Harness } from '../support/harness';

const SHOTS = 'dist/screenshots';
const ADMIN = 'console-browser-token-0123456789';
let browser: Browser;
let h: Harness;

describe.skipIf(!haveChromium)('the console in Chromium', () => {
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    browser = await launchChromium();
  });
  afterAll(async () => browser?.close());
  afterEach(async () => h?.close());

  it('logs in, shows the numbers, logs out; a wrong token never reaches a data page', async () => {
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN } });
    await h.wechat.send('oConsoleUI', '你好');
    for (const viewport of [{ width: 1280, height: 800 }, { width: 390, height: 844 }]) {
      const context = await browser.newContext({ viewport, locale: 'zh-CN' });
      const page = await context.newPage();
      await page.goto(`${h.origin}/admin`);
      await page.fill('input[name=token]', 'not-the-token-at-all-000000');
      await page.click('button[type=submit]');
      expect(await page.textContent('main')).toContain('ADMIN_TOKEN 不对');
      expect(await page.$('table')).toBeNull();
      await page.fill('input[name=token]', ADMIN);
      await Promise.all([page.waitForURL(`${h.origin}/admin`), page.click('button[type=submit]')]);
      await page.waitForSelector('table');
      expect(await page.textContent('tbody')).toContain(h.app.store.dayOf(Date.now()));
      await page.screenshot({ path: `${SHOTS}/console-${viewport.width}.png` });
      await Promise.all([page.waitForURL(`${h.origin}/admin`), page.click('text=退出')]);
      expect(await page.$('input[name=token]')).not.toBeNull();
      await context.close();
    }
  });
});
