import { it } from 'vitest';
import { startHarness, sleep } from './support/harness';
import { launchChromium } from './support/browser';
const ANSWER = ['## 三座城市', '', '下面是**人口**和面积的对比，数据来自公开统计：', '', '| 城市 | 人口（万） | 面积（km²） |', '|---|---:|---:|', '| 北京 | 2189 | 16410 |', '| 上海 | 2487 | 6340 |', '| 广州 | 1881 | 7434 |', '', '计算人口密度的代码：', '', '```python', 'for city, people, area in rows:', '    print(city, round(people * 1e4 / area))', '```', '', '1. 上海最密集', '2. 北京面积最大', '', '详见 [国家统计局](https://www.stats.gov.cn/)。'].join('\n');
it('explore', async () => {
  const h = await startHarness({ env: { WEB_CHAT: 'on' }, dify: { script: (b) => ({ kind: 'answer', text: String(b.query) === '城市' ? ANSWER : `好的，关于「${String(b.query)}」：这是一个简短的回答。`, durationMs: String(b.query) === '城市' ? 4000 : 500, pieceChars: 3 }) } });
  const browser = await launchChromium();
  for (const [name, vp, mobile] of [['phone', { width: 390, height: 844 }, true], ['desk', { width: 1280, height: 800 }, false]] as const) {
    const ctx = await browser.newContext({ viewport: vp, deviceScaleFactor: mobile ? 2 : 1, isMobile: mobile, hasTouch: mobile, locale: 'zh-CN' });
    const page = await ctx.newPage();
    page.on('console', (m) => console.log('console', m.text()));
    page.on('pageerror', (e) => console.log('pageerror', e.message));
    await page.goto(`${h.origin}/chat`);
    await page.screenshot({ path: `/tmp/shots/${name}-empty.png` });
    await page.fill('#input', '你好');
    await page.click('#send');
    await page.waitForSelector('.turn .a:not(.streaming) .body p', { timeout: 10000 });
    await page.fill('#input', '城市');
    await page.click('#send');
    await sleep(2200);
    await page.screenshot({ path: `/tmp/shots/${name}-streaming.png` });
    await page.waitForSelector('#stop[hidden]', { state: 'attached', timeout: 10000 });
    await sleep(300);
    await page.screenshot({ path: `/tmp/shots/${name}-done.png` });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: `/tmp/shots/${name}-dark.png` });
    await ctx.close();
  }
  await browser.close();
  await h.close();
}, 60000);
