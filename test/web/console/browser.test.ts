/**
 * The console in a real Chromium, after a scripted run through the WeChat simulator (a fast answer,
 * a slow one fetched with `1`, a failure): login under the console's CSP (a wrong token stays on the
 * login page), the plots draw, a record opens, Try it streams a slow answer, the menu is published
 * to the WeChat API simulator, health shows, logout ends the session. Screenshots at 1280×800 and
 * 390×844 go to dist/screenshots/ for review.
 */
import { mkdirSync } from 'fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { startWechatApiSim } from '../../../lib/sim/wechat-api-sim';
import type { WechatApiSim } from '../../../lib/sim/wechat-api-sim';
import { haveChromium, launchChromium } from '../../support/browser';
import { startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';

/** The page globals the browser-side checks use (the project has no DOM types). */
declare const document: { querySelectorAll(selector: string): ArrayLike<{ textContent: string | null }> };

const SHOTS = 'dist/screenshots';
const ADMIN = 'console-browser-token-0123456789';
const APP_ID = 'wx00000000console';
const APP_SECRET = 'console-browser-app-secret-01';
const MENU = { button: [{ type: 'click', name: '清除对话', key: 'CLEAR' }, { type: 'click', name: '帮助', key: 'HELP' }] };
let browser: Browser;
let h: Harness;
let api: WechatApiSim;

describe.skipIf(!haveChromium)('the console in Chromium', () => {
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    browser = await launchChromium();
  });
  afterAll(async () => browser?.close());
  afterEach(async () => {
    await h?.close();
    await api?.close();
  });

  it('after a scripted run: login, plots, a record, Try it, publishing the menu, health, logout', async () => {
    api = await startWechatApiSim({ appId: APP_ID, appSecret: APP_SECRET });
    h = await startHarness({
      env: { ADMIN_TOKEN: ADMIN, WECHAT_APPID: APP_ID, WECHAT_APPSECRET: APP_SECRET, WECHAT_API_BASE: api.url, MENU_KEYS: JSON.stringify({ CLEAR: '/clear', HELP: '/help' }), MENU: JSON.stringify(MENU) },
      dify: {
        script: (b) => {
          if (b.query === '慢') return { kind: 'answer', text: '慢的回答', durationMs: 4000 };
          if (b.query === '坏') return { kind: 'http', status: 429, body: '{"code":"provider_quota_exceeded","message":"quota","status":429}' };
          if (b.query === '试试慢的') return { kind: 'answer', text: '## 试一试\n\n' + '一点一点写出来，'.repeat(20), durationMs: 2500, pieceChars: 5 };
          return { kind: 'answer', text: `答：${String(b.query)}` };
        },
      },
    });
    await h.wechat.send('oConsoleUI000001', '快');
    await h.wechat.send('oConsoleUI000002', '慢');
    await new Promise((r) => setTimeout(r, 1200));
    expect((await h.wechat.send('oConsoleUI000002', '1')).text).toContain('慢的回答');
    await h.wechat.send('oConsoleUI000003', '坏');

    for (const viewport of [{ width: 1280, height: 800 }, { width: 390, height: 844 }]) {
      const wide = viewport.width > 1000;
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

      // The overview: five plots drawn with the run's data, its numbers, the newest questions.
      await page.waitForFunction(() => document.querySelectorAll('#charts canvas').length >= 5);
      const sums = await page.$$eval('#charts .sum', (ps) => ps.map((p) => p.textContent ?? ''));
      expect(sums[0]).toContain('48 小时内 3 个问题');
      expect(sums.join(' ')).toContain('首次回复 2'); // the fast answer, and the failure's notice
      expect(sums.join(' ')).toContain('回复 1 1');
      expect(sums.join(' ')).toContain('dify_http_429 1');
      expect(await page.textContent('.md tbody')).toContain(h.app.store.dayOf(Date.now()));
      await page.screenshot({ path: `${SHOTS}/console-${viewport.width}.png`, fullPage: true });

      // A record opens, with the whole OpenID there only.
      if (wide) {
        await Promise.all([page.waitForURL(/\/admin\/q\?r=/), page.click('a:has-text("坏")')]);
        expect(await page.textContent('main')).toContain('oConsoleUI000003');
        expect(await page.textContent('main')).toContain('dify_http_429');
        await page.screenshot({ path: `${SHOTS}/console-record-${viewport.width}.png`, fullPage: true });
      }

      // Try it: a fast reply, then a slow answer streaming in, then `1`.
      await page.goto(`${h.origin}/admin/try`);
      await page.fill('#ask textarea', '你好');
      await page.click('#ask button');
      await page.waitForSelector('.bubble.bot');
      expect(await page.textContent('.bubble.bot')).toBe('答：你好');
      await page.fill('#ask textarea', '试试慢的');
      await page.click('#ask button');
      await page.waitForSelector('.bubble.live .live-text:not(:empty)');
      await page.waitForSelector('.bubble.live article.md h2', { timeout: 15_000 });
      expect(await page.textContent('.bubble.live article.md h2')).toBe('试一试');
      await page.fill('#ask textarea', '1');
      await page.click('#ask button');
      await page.waitForFunction(() => document.querySelectorAll('.bubble.bot').length >= 4);
      const bubbles = await page.$$eval('.bubble.bot', (bs) => bs.map((b) => b.textContent ?? ''));
      expect(bubbles.at(-1)).toContain('一点一点写出来');
      await page.screenshot({ path: `${SHOTS}/console-try-${viewport.width}.png`, fullPage: true });

      // The menu: nothing live yet, then published with the button (once; the second viewport sees it live).
      await page.goto(`${h.origin}/admin/menu`);
      if (wide) {
        expect(await page.textContent('main')).toContain('公众号现在没有自定义菜单');
        await Promise.all([page.waitForURL(/published=2/), page.click('text=发布 MENU 里的菜单')]);
        expect(await page.textContent('main')).toContain('已发布 2 个按钮');
        expect(api.menu).toEqual(MENU);
      }
      expect(await page.textContent('main')).toContain('key=CLEAR');
      await page.screenshot({ path: `${SHOTS}/console-menu-${viewport.width}.png`, fullPage: true });

      await page.goto(`${h.origin}/admin/health`);
      expect(await page.textContent('main')).toContain('app reachable, key accepted');
      await page.screenshot({ path: `${SHOTS}/console-health-${viewport.width}.png`, fullPage: true });

      expect(errors).toEqual([]);
      await Promise.all([page.waitForURL(`${h.origin}/admin`), page.click('text=退出')]);
      expect(await page.$('input[name=token]')).not.toBeNull();
      await context.close();
    }
  }, 90_000);

  it('labels the plots’ days and hours in the stats time zone (+08:00 here), whatever the browser’s zone', async () => {
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN, STATS_UTC_OFFSET_MIN: '480' } });
    await h.wechat.send('oConsoleTz000001', '今天');
    // Today and this hour in +08:00, as the store counts them and the tables show them.
    const startedAt = Date.now();
    const today = h.app.store.dayOf(startedAt);
    const hourNow = new Date(startedAt + 480 * 60_000).toISOString().slice(11, 13);
    for (const timezoneId of ['UTC', 'America/Los_Angeles', 'Asia/Tokyo']) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'zh-CN', timezoneId });
      const page = await context.newPage();
      await page.goto(`${h.origin}/admin`);
      await page.fill('input[name=token]', ADMIN);
      await Promise.all([page.waitForURL(`${h.origin}/admin`), page.click('button[type=submit]')]);
      await page.waitForFunction(() => document.querySelectorAll('#charts canvas').length >= 5);
      const charts = await page.$$('#charts section.chart');
      /** The legend's x value with the cursor on a plot's `at` bucket (0 = first, -1 = last). */
      const legendAt = async (chart: number, at: (count: number) => number, count: number) => {
        const over = await charts[chart]?.$('.u-over');
        await over?.scrollIntoViewIfNeeded();
        const box = await over?.boundingBox();
        if (!over || !box) throw new Error(`plot ${chart} has no cursor area`);
        // The buckets are spread evenly from the left edge to the right one.
        await page.mouse.move(box.x + Math.min(at(count) / (count - 1), 0.995) * box.width, box.y + box.height / 2);
        return (await charts[chart]?.$eval('.u-legend .u-series:first-child .u-value', (e) => e.textContent ?? '')) ?? '';
      };
      // The hourly plot: the bucket holding this hour is today's, this hour.
      expect(await legendAt(0, () => 24 + Number(hourNow), 48), timezoneId).toBe(`${today} ${hourNow}:00`);
      // The daily plots (delivery shares, failures, tokens): the last bucket is today, and it holds today's question.
      for (const chart of [2, 3, 4]) expect(await legendAt(chart, (n) => n - 1, 14), `${timezoneId} plot ${chart}`).toBe(today);
      expect(await page.textContent('.md tbody')).toContain(today);
      await context.close();
    }
  }, 60_000);
});
