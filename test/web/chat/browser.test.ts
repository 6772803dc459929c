/**
 * The web chat in a real Chromium (issue 23): a conversation of three turns whose second answer is
 * visibly formatted while Dify is still writing it (a table and a code block), delivered once shown;
 * stop; a new conversation with the earlier one a tap away; a reload mid-answer that resumes; the
 * widget on a page of another site (and refused on a site not allowed); hostile model output that runs
 * nothing and loads nothing; the access-code gate; an answer's pictures shown from the chat's own
 * origin. Screenshots at 390×844 and 1280×800, light and
 * dark, go to dist/screenshots/ for review.
 */
import { mkdirSync } from 'fs';
import { createServer } from 'http';
import type { Server } from 'http';
import type { AddressInfo } from 'net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { Script } from '../../../lib/sim/dify-sim';
import { haveChromium, launchChromium } from '../../support/browser';
import { eventually, startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';

const SHOTS = 'dist/screenshots';
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 800 };

const CITIES = [
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
  '[点我](javascript:alert("link")) [数据](data:text/html,<script>alert(1)</script>) <a href="javascript:alert(2)" onclick="alert(3)">链接</a>',
  '![追踪像素](http://evil.example/pixel.gif)',
  '<iframe src="http://evil.example/"></iframe><style>body{background:url(http://evil.example/bg)}</style>',
  '',
  '| ' + Array.from({ length: 60 }, (_, i) => `列${i}`).join(' | ') + ' |',
  '|' + '---|'.repeat(60),
  ...Array.from({ length: 40 }, (_, r) => '| ' + Array.from({ length: 60 }, (_, i) => `${r}-${i}<b onmouseover=alert(4)>`).join(' | ') + ' |'),
].join('\n');

const SLOW = Array.from({ length: 12 }, (_, i) => `第 ${i + 1} 点：这是一个写得很慢的回答，用来试停止和重新加载。`).join('\n\n');

const answers: Record<string, Script> = {
  你好: { kind: 'answer', text: '你好！我是在线助手，可以回答关于**城市**和**数据**的问题。', durationMs: 400, pieceChars: 4 },
  城市: { kind: 'answer', text: CITIES, durationMs: 5000, pieceChars: 3 },
  总结一下: { kind: 'answer', text: '总结：\n\n- 上海人口最多、最密集\n- 北京面积最大\n- 广州介于两者之间', durationMs: 600, pieceChars: 4 },
  慢: { kind: 'answer', text: SLOW, durationMs: 12_000, pieceChars: 2 },
  恶意: { kind: 'answer', text: HOSTILE, durationMs: 1500, pieceChars: 200 },
};

/** The page globals the browser-side checks use (the project has no DOM types). */
interface El {
  textContent: string | null;
  attributes: ArrayLike<{ name: string; value: string }>;
  scrollWidth: number;
}
declare const document: {
  querySelectorAll(selector: string): ArrayLike<El>;
  querySelector(selector: string): El | null;
  scripts: ArrayLike<unknown>;
  documentElement: { scrollWidth: number };
};

let browser: Browser;
let h: Harness | undefined;
let host: Server | undefined;

async function context(viewport = PHONE, dark = false): Promise<BrowserContext> {
  const mobile = viewport.width < 600;
  return browser.newContext({ viewport, deviceScaleFactor: mobile ? 2 : 1, isMobile: mobile, hasTouch: mobile, locale: 'zh-CN', colorScheme: dark ? 'dark' : 'light' });
}

/** Everything a page logs as an error (a CSP violation, a script error) fails the test at its end. */
function watch(page: Page): { errors: string[]; dialogs: string[]; outside: string[] } {
  const w = { errors: [] as string[], dialogs: [] as string[], outside: [] as string[] };
  page.on('console', (m) => m.type() === 'error' && w.errors.push(m.text()));
  page.on('pageerror', (e) => w.errors.push(e.message));
  page.on('dialog', (d) => {
    w.dialogs.push(d.message());
    void d.dismiss();
  });
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.hostname !== '127.0.0.1' && u.hostname !== 'localhost') w.outside.push(r.url());
  });
  return w;
}

async function ask(page: Page, text: string): Promise<void> {
  await page.fill('#input', text);
  await page.click('#send');
}

const record = async (question: string) => (await (h as Harness).app.store.snapshot()).messages.find((m) => m.question === question);

function start(env: Record<string, string> = {}): Promise<Harness> {
  return startHarness({ env: { WEB_CHAT: 'on', WEB_CHAT_TITLE: '城市数据助手', ...env }, dify: { script: (b) => answers[String(b.query)] ?? { kind: 'answer', text: `答：${String(b.query)}` } } });
}

describe.skipIf(!haveChromium)('the web chat in Chromium', () => {
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    browser = await launchChromium();
  });
  afterAll(async () => browser?.close());
  afterEach(async () => {
    await h?.close();
    h = undefined;
    await new Promise<void>((r) => (host ? host.close(() => r()) : r()));
    host = undefined;
  });

  for (const [name, viewport] of [['phone', PHONE], ['desktop', DESKTOP]] as const) {
    it(`a conversation of three turns on a ${name} (${viewport.width}×${viewport.height}): the second answer formatted while it streams, each delivered once shown`, async () => {
      h = await start();
      const ctx = await context(viewport);
      const page = await ctx.newPage();
      const w = watch(page);
      await page.goto(`${h.origin}/chat`);
      expect(await page.textContent('.bar h1')).toBe('城市数据助手');
      await page.screenshot({ path: `${SHOTS}/chat-${name}-empty.png` });
      await ask(page, '你好');
      await page.waitForSelector('.turn >> nth=0 >> .a:not(.streaming) strong');
      await ask(page, '城市');
      // Mid-stream: the table and then the code block are formatted while Dify is still writing.
      await page.waitForSelector('.turn >> nth=1 >> .a.streaming table');
      expect((await record('城市'))?.status).toBe('pending');
      await page.waitForSelector('.turn >> nth=1 >> .a.streaming pre code');
      expect((await record('城市'))?.status).toBe('pending');
      expect(await page.isVisible('#stop')).toBe(true);
      await page.screenshot({ path: `${SHOTS}/chat-${name}-streaming.png` });
      await page.waitForSelector('.turn >> nth=1 >> .a:not(.streaming) a[href="https://www.stats.gov.cn/"]', { timeout: 20_000 });
      expect(await page.isVisible('#send')).toBe(true);
      await ask(page, '总结一下');
      await page.waitForSelector('.turn >> nth=2 >> .a:not(.streaming) li >> nth=2');
      // The final HTML is the server's: right-aligned numbers (a class, the CSP allows no style attribute).
      expect(await page.getAttribute('.turn >> nth=1 >> th >> nth=1', 'class')).toBe('align-right');
      expect(await page.getAttribute('.turn >> nth=1 >> a', 'rel')).toBe('noopener noreferrer nofollow');
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(viewport.width);
      for (const q of ['你好', '城市', '总结一下']) await eventually(async () => (await record(q))?.deliveredVia === 'web');
      await page.screenshot({ path: `${SHOTS}/chat-${name}-light.png` });
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.screenshot({ path: `${SHOTS}/chat-${name}-dark.png` });
      // Enter sends on a keyboard; on a phone it is a new line (the button sends).
      if (name === 'desktop') {
        await page.fill('#input', '回车发送');
        await page.press('#input', 'Enter');
        await page.waitForSelector('.turn >> nth=3 >> text=答：回车发送');
        await page.fill('#input', '第一行');
        await page.press('#input', 'Shift+Enter');
        expect(await page.inputValue('#input')).toBe('第一行\n');
      }
      expect(w.errors).toEqual([]);
      expect(w.outside).toEqual([]);
      await ctx.close();
    });
  }

  it('stop ends an answer part-way: what was written stays, marked stopped, and the next question goes', async () => {
    h = await start({ STALE_AFTER_MS: '60000' });
    const ctx = await context();
    const page = await ctx.newPage();
    const w = watch(page);
    await page.goto(`${h.origin}/chat`);
    await ask(page, '慢');
    await page.waitForSelector('.a.streaming .body p');
    await page.click('#stop');
    await page.waitForSelector('.note >> text=已停止');
    expect(await page.isVisible('#send')).toBe(true);
    await eventually(async () => (await record('慢'))?.status === 'cleared');
    await eventually(() => h?.dify.stops.length === 1, 5000);
    const shown = (await page.textContent('.turn .body')) ?? '';
    expect(shown.length).toBeGreaterThan(0);
    expect(SLOW.replace(/\n+/g, '').startsWith(shown.replace(/\n+/g, '').slice(0, 10))).toBe(true);
    await page.screenshot({ path: `${SHOTS}/chat-phone-stopped.png` });
    await ask(page, '你好');
    await page.waitForSelector('.turn >> nth=1 >> .a:not(.streaming) strong');
    // After a reload the stopped turn is still there, stopped.
    await page.reload();
    await page.waitForSelector('.turn >> nth=0 >> .note >> text=已停止');
    expect(w.errors).toEqual([]);
    await ctx.close();
  });

  it('a new conversation clears the screen and the context; the earlier one is a tap away', async () => {
    h = await start();
    const ctx = await context();
    const page = await ctx.newPage();
    const w = watch(page);
    await page.goto(`${h.origin}/chat`);
    await ask(page, '你好');
    await page.waitForSelector('.turn .a:not(.streaming) strong');
    await ask(page, '总结一下');
    await page.waitForSelector('.turn >> nth=1 >> .a:not(.streaming) li');
    await page.click('#new');
    await page.waitForSelector('#empty', { state: 'visible' });
    expect(await page.$$('.turn')).toHaveLength(0);
    expect(await page.isVisible('#older')).toBe(true);
    await eventually(async () => ((await h?.app.store.user((await record('你好'))?.user ?? ''))?.generation ?? 0) === 1);
    await ask(page, '城市');
    await page.waitForSelector('.turn .a:not(.streaming) table', { timeout: 20_000 });
    await page.click('#older');
    await page.waitForSelector('.turn >> nth=2');
    expect(await page.$$eval('.turn .q', (qs) => qs.map((q) => q.textContent))).toEqual(['你好', '总结一下', '城市']);
    expect(await page.textContent('.divider')).toBe('新对话');
    // A reload shows the current conversation only, the earlier one again a tap away.
    await page.reload();
    await page.waitForSelector('.turn .a:not(.streaming) table');
    expect(await page.$$eval('.turn .q', (qs) => qs.map((q) => q.textContent))).toEqual(['城市']);
    await page.click('#older');
    await page.waitForSelector('.turn >> nth=2');
    await page.screenshot({ path: `${SHOTS}/chat-phone-new-conversation.png` });
    expect(w.errors).toEqual([]);
    await ctx.close();
  });

  it('a reload mid-answer resumes the stream, and the answer ends complete', async () => {
    h = await start();
    const ctx = await context(DESKTOP);
    const page = await ctx.newPage();
    const w = watch(page);
    await page.goto(`${h.origin}/chat`);
    await ask(page, '城市');
    await page.waitForSelector('.a.streaming h2');
    await page.reload();
    // What the store had, rendered, and the rest as it comes.
    await page.waitForSelector('.a.streaming h2');
    expect((await record('城市'))?.status).toBe('pending');
    expect(await page.isVisible('#stop')).toBe(true);
    await page.waitForSelector('.a:not(.streaming) a[href="https://www.stats.gov.cn/"]', { timeout: 20_000 });
    expect(await page.textContent('.turn .body')).toContain('北京面积最大');
    expect(await page.$$('.turn')).toHaveLength(1);
    await eventually(async () => (await record('城市'))?.deliveredVia === 'web');
    expect(w.errors).toEqual([]);
    await ctx.close();
  });

  it('hostile model output runs nothing and loads nothing, while streaming and after', async () => {
    h = await start();
    const ctx = await context();
    const page = await ctx.newPage();
    const w = watch(page);
    await page.goto(`${h.origin}/chat`);
    await ask(page, '<img src=x onerror=alert("q")>恶意');
    await page.waitForSelector('.turn .a:not(.streaming)');
    expect(await page.textContent('.turn .q')).toBe('<img src=x onerror=alert("q")>恶意');
    await ask(page, '恶意');
    await page.waitForSelector('.turn >> nth=1 >> .a.streaming table', { timeout: 20_000 });
    const inert = () =>
      page.evaluate(() => ({
        scripts: document.scripts.length,
        handlers: Array.from(document.querySelectorAll('*')).filter((e) => Array.from(e.attributes).some((a) => a.name.startsWith('on'))).length,
        embedded: document.querySelectorAll('iframe, img, style, object, embed, link:not([rel=stylesheet]):not([rel=icon])').length,
        badLinks: Array.from(document.querySelectorAll('a')).filter((a) => !/^https?:/.test(Array.from(a.attributes).find((x) => x.name === 'href')?.value ?? 'https:')).length,
        width: document.documentElement.scrollWidth,
      }));
    expect(await inert()).toEqual({ scripts: 2, handlers: 0, embedded: 0, badLinks: 0, width: PHONE.width });
    await page.waitForSelector('.turn >> nth=1 >> .a:not(.streaming) table', { timeout: 20_000 });
    expect(await inert()).toEqual({ scripts: 2, handlers: 0, embedded: 0, badLinks: 0, width: PHONE.width });
    expect(await page.textContent('.turn >> nth=1 >> .body')).toContain('<script>alert("script")</script>');
    await page.screenshot({ path: `${SHOTS}/chat-phone-hostile.png` });
    await page.reload();
    await page.waitForSelector('.turn >> nth=1 >> table');
    expect(await inert()).toEqual({ scripts: 2, handlers: 0, embedded: 0, badLinks: 0, width: PHONE.width });
    expect(w.dialogs).toEqual([]);
    expect(w.outside).toEqual([]);
    await ctx.close();
  });

  it('the widget: one script tag on a page of another site opens the chat in a frame; a site not allowed cannot frame it', async () => {
    // The host page: another site (127.0.0.1, where the chat is served as localhost).
    const pages: Record<string, string> = {};
    host = createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(pages[req.url ?? ''] ?? '');
    });
    await new Promise<void>((r) => (host as Server).listen(0, '127.0.0.1', r));
    const hostOrigin = `http://127.0.0.1:${((host as Server).address() as AddressInfo).port}`;
    h = await start({ WEB_CHAT_EMBED_ORIGINS: hostOrigin });
    const chatOrigin = h.origin.replace('127.0.0.1', 'localhost');
    pages['/'] = `<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>某商店</title></head><body><h1>某商店</h1><p>欢迎光临。</p><script src="${chatOrigin}/chat/widget.js" async></script></body></html>`;
    const ctx = await context(DESKTOP);
    const page = await ctx.newPage();
    const w = watch(page);
    await page.goto(`${hostOrigin}/`);
    await page.click('button >> text=城市数据助手');
    const frame = page.frameLocator('iframe');
    await frame.locator('#input').fill('你好');
    await frame.locator('#send').click();
    await frame.locator('.turn .a:not(.streaming) strong').first().waitFor();
    expect(await frame.locator('body').getAttribute('class')).toBe('embed');
    await eventually(async () => (await record('你好'))?.deliveredVia === 'web');
    await page.screenshot({ path: `${SHOTS}/chat-widget-desktop.png` });
    // The frame keeps its visitor across a reload of the host page (its own partitioned cookie).
    await page.reload();
    await page.click('button >> text=城市数据助手');
    await page.frameLocator('iframe').locator('.turn .q >> text=你好').waitFor();
    // On a phone the panel takes the screen.
    const phone = await context(PHONE);
    const small = await phone.newPage();
    await small.goto(`${hostOrigin}/`);
    await small.click('button >> text=城市数据助手');
    await small.frameLocator('iframe').locator('#input').waitFor();
    await small.screenshot({ path: `${SHOTS}/chat-widget-phone.png` });
    await phone.close();
    expect(w.errors).toEqual([]);
    await ctx.close();

    // Another site, not in WEB_CHAT_EMBED_ORIGINS: the browser refuses to show the chat in its frame.
    const other = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><body><iframe src="${chatOrigin}/chat?embed=1"></iframe></body>`);
    });
    await new Promise<void>((r) => other.listen(0, '127.0.0.2', r));
    try {
      const ctx2 = await context(DESKTOP);
      const p2 = await ctx2.newPage();
      const blocked: string[] = [];
      p2.on('console', (m) => blocked.push(m.text()));
      await p2.goto(`http://127.0.0.2:${(other.address() as AddressInfo).port}/`);
      await eventually(() => blocked.some((t) => t.includes('frame-ancestors')));
      expect(await p2.frames()[1]?.$('#app')).toBeFalsy();
      await ctx2.close();
    } finally {
      await new Promise<void>((r) => other.close(() => r()));
    }
  });

  it('an answer’s pictures show inline, served by the chat’s origin: the browser asks no other host', async () => {
    // A 2×2 PNG, so the browser decodes a real picture.
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAAnKgMCT3oa2QAAAABJRU5ErkJggg==', 'base64');
    let fileHits = 0;
    host = createServer((_req, res) => {
      fileHits++;
      res.writeHead(200, { 'Content-Type': 'image/png' }).end(png);
    });
    await new Promise<void>((r) => (host as Server).listen(0, '127.0.0.1', r));
    const files = `http://127.0.0.1:${((host as Server).address() as AddressInfo).port}`;
    const text = `画好了：\n\n![猫](${files}/cat.png)\n\n![元数据](http://169.254.169.254/x.png)\n\n完。`;
    h = await startHarness({ env: { WEB_CHAT: 'on', MEDIA_ALLOW_HOSTS: '127.0.0.1' }, dify: { script: () => ({ kind: 'answer', text, durationMs: 600, pieceChars: 4, files: [{ url: `${files}/drawn.png` }] }) } });
    const origin = h.origin;
    const ctx = await context();
    const page = await ctx.newPage();
    const w = watch(page);
    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    await page.goto(`${origin}/chat`);
    await ask(page, '画猫');
    const loaded = () => page.waitForFunction(() => {
      const imgs = Array.from(document.querySelectorAll('.turn .a:not(.streaming) img')) as unknown as { complete: boolean; naturalWidth: number }[];
      return imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth === 2);
    });
    await loaded();
    // The refused picture stays a link to follow, never fetched by the page.
    expect(await page.locator('.turn a.img').count()).toBe(1);
    await page.screenshot({ path: `${SHOTS}/chat-phone-pictures.png` });
    // After a reload, from the history.
    await page.reload();
    await loaded();
    expect(requested.filter((u) => !u.startsWith(`${origin}/`))).toEqual([]);
    expect(fileHits).toBe(2); // the server fetched each picture once, for the browser
    expect(w.errors).toEqual([]);
    await ctx.close();
  });

  it('the access code: a form first, then the chat', async () => {
    h = await start({ WEB_CHAT_ACCESS_CODE: 'city-data-2024' });
    const ctx = await context();
    const page = await ctx.newPage();
    const w = watch(page);
    await page.goto(`${h.origin}/chat`);
    await page.fill('input[name=code]', 'wrong-code-1');
    await page.click('button[type=submit]');
    await page.waitForSelector('.error');
    await page.screenshot({ path: `${SHOTS}/chat-phone-gate.png` });
    await page.fill('input[name=code]', 'city-data-2024');
    await page.click('button[type=submit]');
    await page.waitForSelector('#input');
    await ask(page, '你好');
    await page.waitForSelector('.turn .a:not(.streaming) strong');
    expect(w.errors).toEqual([]);
    await ctx.close();
  });
});
