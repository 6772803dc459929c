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

/** The page globals the browser-side checks use (the project has no DOM types). */
declare const document: { querySelectorAll(selector: string): ArrayLike<unknown> };
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
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      // Script errors and CSP refusals (a 401 login page or a missing favicon is not one).
      page.on('console', (m) => m.type() === 'error' && /Content Security Policy|Refused/.test(m.text()) && errors.push(m.text()));
      await page.goto(`${h.origin}/admin`);
      await page.fill('input[name=token]', 'not-the-token-at-all-000000');
      await page.click('button[type=submit]');
      expect(await page.textContent('main')).toContain('ADMIN_TOKEN 不对');
      expect(await page.$('table')).toBeNull();
      await page.fill('input[name=token]', ADMIN);
      await Promise.all([page.waitForURL(`${h.origin}/admin`), page.click('button[type=submit]')]);
      await page.waitForSelector('.md table');
      expect(await page.textContent('.md tbody')).toContain(h.app.store.dayOf(Date.now()));
      // The plots draw (uPlot, served by us), one canvas each.
      await page.waitForFunction(() => document.querySelectorAll('#charts canvas').length >= 4);
      await page.screenshot({ path: `${SHOTS}/console-${viewport.width}.png`, fullPage: true });
      expect(errors).toEqual([]);
      await Promise.all([page.waitForURL(`${h.origin}/admin`), page.click('text=退出')]);
      expect(await page.$('input[name=token]')).not.toBeNull();
      await context.close();
    }
  });
});
