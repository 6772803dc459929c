/**
 * An answer's pictures on its page, in a real browser (docs/rich-answers.md): the picture the model
 * drew and the one its Markdown shows are displayed, every request the page makes stays on our
 * origin (the file host is never contacted by the browser), and a refused URL stays a link.
 */
import { createServer } from 'http';
import type { Server } from 'http';
import type { AddressInfo } from 'net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { launchChromium, haveChromium } from '../../support/browser';
import { startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';

// A 2×2 PNG, so the browser decodes a real picture.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAAnKgMCT3oa2QAAAABJRU5ErkJggg==', 'base64');

// The page's own objects, as the browser-side callbacks see them (no DOM types in this project).
declare const document: { images: ArrayLike<{ complete: boolean; naturalWidth: number; getAttribute(name: string): string | null }> };

let browser: Browser;
let h: Harness;
let files: Server;
let fileHits = 0;

beforeAll(async () => {
  if (!haveChromium) return;
  files = createServer((_req, res) => {
    fileHits++;
    res.writeHead(200, { 'Content-Type': 'image/png' }).end(PNG);
  });
  await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
  const host = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
  const text = `画好了：\n\n![猫](${host}/cat.png)\n\n![元数据](http://169.254.169.254/x.png)\n\n完。`;
  h = await startHarness({ answerPage: true, env: { MEDIA_ALLOW_HOSTS: '127.0.0.1', PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100' }, dify: { script: () => ({ kind: 'answer', text, durationMs: 600, files: [{ url: `${host}/drawn.png` }] }) } });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await h?.close();
  files?.closeAllConnections();
  await new Promise<void>((r) => (files ? files.close(() => r()) : r()));
});

describe.skipIf(!haveChromium)('an answer’s pictures on its page', () => {
  it('shows them from our origin; the browser asks nothing of any other host', async () => {
    const r = await h.wechat.send('oPicPage', '画猫');
    const link = /<a href="([^"]+)">/.exec(r.text ?? '')?.[1] ?? '';
    await h.app.worker.idle();
    const page = await browser.newPage();
    const requested: string[] = [];
    page.on('request', (req) => requested.push(req.url()));
    await page.goto(link);
    await page.waitForFunction(() => Array.from(document.images).length === 2 && Array.from(document.images).every((i) => i.complete && i.naturalWidth === 2));
    const srcs = await page.evaluate(() => Array.from(document.images).map((i) => i.getAttribute('src')));
    expect(srcs).toHaveLength(2);
    expect(requested.every((u) => u.startsWith(h.origin))).toBe(true);
    // The refused picture stays a link to follow, never fetched by the page.
    expect(await page.locator('a.img').count()).toBe(1);
    expect(fileHits).toBe(2); // the server fetched each picture once, for the browser
    await page.close();
  });
});
