/**
 * The answer page in a real browser (issue: answer page): Chromium opens the link from a real
 * placeholder, sees the answer arrive while the Dify simulator is still streaming, the final
 * rendering, a reload that resumes, a hostile answer that runs nothing and fetches nothing, and
 * the 404 page. Screenshots at 390×844 go to dist/screenshots/ for review.
 */
import { mkdirSync } from 'fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { Script } from '../../../lib/sim/dify-sim';
import { launchChromium, haveChromium } from '../../support/browser';
import { startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';
import { openSse } from '../../../lib/sim/sse-client';

const SHOTS = 'dist/screenshots';
const PHONE = { width: 390, height: 844 };

const ANSWER = [
  '## 三座城市',
  '',
  '下面是**人口**和面积的对比，数据来自公开统计：',
  '',
  '| 城市 | 人口（万） | 面积（km²） |',
  '|---|---:|---:|',
  '| 北京 | 2189 | 16410 |',
  '| 上海 | 2487 | 6340 |',
  '| 广州 | 1881 | 7434 |',
  '',
  '计算人口密度的代码：',
  '',
  '```python',
  'for city, people, area in rows:',
  '    print(city, round(people * 1e4 / area))',
  '```',
  '',
  '1. 上海最密集',
  '2. 北京面积最大',
  '',
  '详见 [国家统计局](https://www.stats.gov.cn/)。',
].join('\n');

const HOSTILE = [
  '<script>alert("script")</script>',
  '<img src="http://evil.example/x.png" onerror="alert(\'img\')">',
  '[点我](javascript:alert("link")) [数据](data:text/html,<script>alert(1)</script>)',
  '![追踪像素](http://evil.example/pixel.gif)',
  '<iframe src="http://evil.example/"></iframe><style>body{background:url(http://evil.example/bg)}</style>',
  '',
  '| ' + Array.from({ length: 60 }, (_, i) => `列${i}`).join(' | ') + ' |',
  '|' + '---|'.repeat(60),
  ...Array.from({ length: 40 }, (_, r) => '| ' + Array.from({ length: 60 }, (_, i) => `${r}-${i}`).join(' | ') + ' |'),
].join('\n');

let browser: Browser;
let h: Harness;

const answers: Record<string, Script> = {
  城市: { kind: 'answer', text: ANSWER, durationMs: 4000, pieceChars: 3 },
  重新加载: { kind: 'answer', text: ANSWER, durationMs: 5000, pieceChars: 2 },
  恶意: { kind: 'answer', text: HOSTILE, durationMs: 1500, pieceChars: 40 },
  轮询: { kind: 'answer', text: ANSWER, durationMs: 3000, pieceChars: 3 },
  长文: { kind: 'answer', text: Array.from({ length: 30 }, (_, i) => `第 ${i + 1} 段。` + '很长的回答内容，'.repeat(20)).join('\n\n'), durationMs: 1000, pieceChars: 200 },
};

async function linkFor(question: string, user: string): Promise<string> {
  const r = await h.wechat.send(user, question);
  const m = /<a href="([^"]+)">/.exec(r.text ?? '');
  if (!m) throw new Error(`no link in ${r.text}`);
  return m[1] as string;
}

async function phone(): Promise<Page> {
  const context = await browser.newContext({ viewport: PHONE, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'zh-CN' });
  return context.newPage();
}

/**
 * The few browser globals the page functions below use. They run in the page, passed as functions:
 * a string would be eval'd, which the page's CSP rightly forbids. (The project has no DOM types.)
 */
interface El {
  textContent: string | null;
  attributes: ArrayLike<{ name: string }>;
}
declare const document: {
  getElementById(id: string): El | null;
  querySelectorAll(selector: string): ArrayLike<El>;
  scripts: ArrayLike<unknown>;
  documentElement: { scrollWidth: number };
};

/** Browser-side: the live text is longer than `n` characters. */
const liveLongerThan = (n: number) => [(min: number) => (document.getElementById('live')?.textContent ?? '').length > min, n] as const;

const statusOf = async (question: string) => (await h.app.store.snapshot()).messages.find((m) => m.question === question)?.status;

describe.skipIf(!haveChromium)('the answer page in Chromium', () => {
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    browser = await launchChromium();
  });
  afterAll(async () => browser?.close());
  afterEach(async () => h?.close());

  const start = (env: Record<string, string> = {}) =>
    startHarness({ answerPage: true, env: { PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100', ...env }, dify: { script: (b) => answers[String(b.query)] ?? { kind: 'answer', text: 'echo' } } });

  it('shows the answer while Dify writes it, then renders it; reading it to the end counts as delivered', async () => {
    h = await start();
    const url = await linkFor('城市', 'oBrowser');
    const page = await phone();
    await page.goto(url);
    await expect.poll(() => page.textContent('.q')).toBe('城市');
    await page.waitForFunction(...liveLongerThan(10));
    // Rendered as Markdown while it is written: the heading, then the table before its rows are all in.
    await page.waitForSelector('#live h2');
    await page.waitForSelector('#live table');
    expect(await statusOf('城市')).toBe('pending');
    expect(await page.isHidden('#final')).toBe(true);
    expect(await page.textContent('#live h2')).toBe('三座城市');
    expect(await page.textContent('#status')).toMatch(/正在思考（已 \d+ 秒）/);
    await page.screenshot({ path: `${SHOTS}/answer-page-streaming.png` });
    await page.waitForSelector('#final table', { timeout: 20_000 });
    expect(await page.isHidden('#status')).toBe(true);
    expect(await page.textContent('#final h2')).toBe('三座城市');
    expect(await page.textContent('#final pre code')).toContain('print(city');
    expect(await page.getAttribute('#final a', 'rel')).toContain('noopener');
    await page.screenshot({ path: `${SHOTS}/answer-page.png`, fullPage: true });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: `${SHOTS}/answer-page-dark.png` });
    // Nothing overflows the 390 px viewport except inside the scrolling table and code boxes.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    await expect.poll(async () => (await h.app.store.snapshot()).messages.find((m) => m.question === '城市')?.readOnPage).toBe(true);
    expect((await h.wechat.send('oBrowser', '1')).text).toContain('已在网页中看完');
    await page.context().close();
  });

  it('a reload mid-stream resumes, and the answer ends complete', async () => {
    h = await start();
    const url = await linkFor('重新加载', 'oReload');
    const page = await phone();
    await page.goto(url);
    await page.waitForFunction(...liveLongerThan(20));
    await page.reload();
    // The reloaded page starts from what the store has, rendered, and goes on from there.
    await page.waitForSelector('#live h2');
    expect(await statusOf('重新加载')).toBe('pending');
    await page.waitForSelector('#final table', { timeout: 20_000 });
    expect(await page.textContent('#final')).toContain('详见');
    await page.context().close();
  });

  it('a hostile answer executes nothing and loads nothing from elsewhere', async () => {
    h = await start();
    const url = await linkFor('恶意', 'oHostile');
    const page = await phone();
    const dialogs: string[] = [];
    const outside: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    page.on('request', (r) => {
      if (!r.url().startsWith(h.origin)) outside.push(r.url());
    });
    await page.goto(url);
    await page.waitForSelector('#final table', { timeout: 20_000 });
    await page.reload();
    await page.waitForSelector('#final table');
    // Clicking every link in the answer opens no script.
    for (const a of await page.$$('#final a')) expect(await a.getAttribute('href')).toMatch(/^https?:/);
    const dom = await page.evaluate(() => ({
      scripts: document.scripts.length,
      handlers: Array.from(document.querySelectorAll('*')).filter((e) => Array.from(e.attributes).some((a) => a.name.startsWith('on'))).length,
      embedded: document.querySelectorAll('iframe, img, style, link:not([rel=stylesheet])').length,
      width: document.documentElement.scrollWidth,
    }));
    expect(dom).toEqual({ scripts: 1, handlers: 0, embedded: 0, width: PHONE.width });
    expect(await page.textContent('#final')).toContain('<script>alert("script")</script>');
    await page.screenshot({ path: `${SHOTS}/answer-page-hostile.png` });
    expect(dialogs).toEqual([]);
    expect(outside).toEqual([]);
    await page.context().close();
  });

  it('falls back to polling when it cannot stream', async () => {
    h = await start({ ANSWER_PAGE_MAX_STREAMS: '1' });
    const url = await linkFor('轮询', 'oPolling');
    const hog = await openSse(`${url}/events`); // the one stream allowed
    const page = await phone();
    await page.goto(url);
    await page.waitForFunction(...liveLongerThan(5));
    await page.waitForSelector('#final table', { timeout: 20_000 });
    hog.close();
    await page.context().close();
  });

  it('a long answer counts as read only once its end has been on screen', async () => {
    h = await start();
    const url = await linkFor('长文', 'oScroll');
    await h.app.worker.idle();
    // The narrowest common phone width.
    const context = await browser.newContext({ viewport: { width: 360, height: 640 }, isMobile: true, locale: 'zh-CN' });
    const page = await context.newPage();
    await page.goto(url);
    await page.waitForSelector('#final p');
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
    await new Promise((r) => setTimeout(r, 1000));
    const record = async () => (await h.app.store.snapshot()).messages.find((m) => m.question === '长文');
    expect((await record())?.readOnPage).toBeUndefined();
    expect((await h.wechat.send('oScroll', '1')).text).toContain('第 1 段');
    await page.locator('#end').scrollIntoViewIfNeeded();
    await expect.poll(async () => (await record())?.readOnPage).toBe(true);
    await page.context().close();
  });

  it('an unknown or expired link shows the 404 page', async () => {
    h = await start();
    const page = await phone();
    const res = await page.goto(`${h.origin}/a/${'x'.repeat(22)}`);
    expect(res?.status()).toBe(404);
    expect(await page.textContent('main')).toContain(h.config.texts.pageGone);
    await page.screenshot({ path: `${SHOTS}/answer-page-404.png` });
    await page.context().close();
  });
});
