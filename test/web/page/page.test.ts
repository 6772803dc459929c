/**
 * The answer page over real HTTP (issue: answer page): links in replies, the page, its live
 * stream and JSON state, resumption, delivery accounting, and the same 404 for every token that
 * may not be shown. A real server on loopback, the Dify simulator, WeChat's rules ×0.2.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createApp } from '../../../lib/app';
import { loadConfig } from '../../../lib/config';
import { Store } from '../../../lib/store';
import { nedbBackend } from '../../../lib/store/nedb';
import type { App } from '../../../lib/app';
import { fill } from '../../../lib/text/fill';
import { memoryLogger } from '../../../lib/util/log';
import { createPageHandler } from '../../../lib/web/page/handler';
import { LiveAnswers } from '../../../lib/core/live';
import { createHttpServer } from '../../../lib/adapters/server/http';
import type { Script } from '../../../lib/sim/dify-sim';
import { SCALE, eventually, startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';
import { openSse } from '../../../lib/sim/sse-client';
import { call } from '../../support/wire';
import type { AddressInfo } from 'net';

let h: Harness;
const extra: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of extra.splice(0)) await f();
  await h?.close();
});

const ANSWER = '## 结果\n\n| 城市 | 人口 |\n|---|---|\n| 北京 | 2189 万 |\n\n```js\nconsole.log("<b>")\n```\n\n完毕。';
const slow = (text: string, seconds: number): Script => ({ kind: 'answer', text, durationMs: seconds * 1000 * SCALE, pieceChars: 3 });
const FIRST = { PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100' };

function pageHarness(answers: Record<string, Script>, env: Record<string, string> = {}): Promise<Harness> {
  return startHarness({ answerPage: true, env: { ...FIRST, ...env }, dify: { script: (b) => answers[String(b.query)] ?? { kind: 'answer', text: `echo:${String(b.query)}` } } });
}

/** The link a reply carries. */
function linkIn(text: string | null): string {
  const m = /<a href="([^"]+)">/.exec(text ?? '');
  if (!m) throw new Error(`no link in: ${text}`);
  return m[1] as string;
}

describe('links in replies', () => {
  it('the placeholder offers the live page; ANSWER_PAGE=off restores the old reply exactly', async () => {
    h = await pageHarness({ 慢问题: slow('回答', 10) });
    const r = await h.wechat.send('oLink', '慢问题');
    const url = linkIn(r.text);
    expect(url).toMatch(new RegExp(`^${h.origin}/a/[A-Za-z0-9_-]{22}$`));
    expect(r.text).toContain(`>${h.config.texts.pageLinkLive}</a>`);
    expect(url).not.toContain('oLink');
    await h.close();

    h = await pageHarness({ 慢问题: slow('回答', 10) }, { ANSWER_PAGE: 'off' });
    const off = await h.wechat.send('oLink', '慢问题');
    expect(off.text).toBe(fill(h.config.texts.placeholder, { question: '慢问题', seconds: 1 }));
    const snapshot = await h.app.store.snapshot();
    expect(snapshot.messages.every((m) => m.pageToken === undefined)).toBe(true);
  });

  it('without PUBLIC_URL the page is off, with one warning at start', async () => {
    h = await startHarness({ env: FIRST, dify: { script: () => slow('回答', 10) } });
    expect(h.config.page.enabled).toBe(false);
    expect(h.logs.filter((l) => l.includes('answer page off'))).toHaveLength(1);
    expect((await h.wechat.send('oNoPage', '问题')).text).not.toContain('<a ');
  });

  it('the warning comes only where answers would use the page, worded for any channel', async () => {
    const backend = { DIFY_API_KEY: 'app-warn-0000', DIFY_BASE_URL: 'http://127.0.0.1:9/v1' };
    const warnings = async (env: Record<string, string>) => {
      const logger = memoryLogger();
      const app = createApp(loadConfig({ ...backend, ...env }), { store: await Store.open(nedbBackend({ inMemory: true })), logger });
      await app.close();
      return logger.lines.filter((l) => l.includes('answer page off'));
    };
    // A web chat and an iLink bot show answers themselves: no link, no warning.
    expect(await warnings({ WEB_CHAT: 'on' })).toEqual([]);
    expect(await warnings({ ILINK: 'on' })).toEqual([]);
    expect(await warnings({ API_KEYS: `app1:${'k'.repeat(24)}` })).toEqual([]);
    // The Official Account's replies link to it; LINE fetches pictures from it.
    for (const env of [{ WECHAT_TOKEN: 'warntoken1' }, { LINE_CHANNEL_SECRET: '0123456789abcdef0123456789abcdef', LINE_CHANNEL_ACCESS_TOKEN: 'line-token-0000' }, { WEB_CHAT: 'on', WECHAT_TOKEN: 'warntoken1' }]) {
      const said = await warnings(env);
      expect(said).toHaveLength(1);
      expect(said[0]).toContain('set PUBLIC_URL to the address your users’ browsers can open');
      expect(said[0]).not.toContain('WeChat users');
    }
  });

  it('the first page of a long answer offers the whole answer; every page fits WeChat', async () => {
    const long = Array.from({ length: 6 }, (_, i) => `第${i + 1}段` + '很长的内容'.repeat(60)).join('\n\n');
    h = await pageHarness({ 长: { kind: 'answer', text: long } }, { PLACEHOLDER_MODE: 'last', REPLY_DEADLINE_MS: '800' });
    const r = await h.wechat.send('oLong', '长');
    expect(r.text).toContain(`>${h.config.texts.pageLinkFull}</a>`);
    expect(Buffer.byteLength(r.text ?? '')).toBeLessThanOrEqual(h.oa.pageBytes);
    const next = await h.wechat.send('oLong', '1');
    expect(next.text).not.toContain('<a ');
    const page = await call(linkIn(r.text));
    expect(page.status).toBe(200);
    expect(page.body).toContain('第6段');
  });
});

describe('the page', () => {
  it('streams the answer while Dify writes it, then the rendered answer; reading it counts as delivered', async () => {
    h = await pageHarness({ 人口: slow(ANSWER, 12) });
    const url = linkIn((await h.wechat.send('oLive', '人口')).text);
    // `1` while it is being written offers the same page.
    const thinking = await h.wechat.send('oLive', '1');
    expect(thinking.text).toMatch(/^「人口」\n还在思考中/);
    expect(linkIn(thinking.text)).toBe(url);
    const page = await call(url);
    expect(page.status).toBe(200);
    expect(page.type).toBe('text/html; charset=utf-8');
    expect(page.body).toContain('人口');
    expect(page.body).not.toContain('oLive');
    const head = await fetch(url);
    expect(head.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(head.headers.get('content-security-policy')).not.toContain('unsafe-inline');
    expect(head.headers.get('referrer-policy')).toBe('no-referrer');
    expect(head.headers.get('cache-control')).toBe('no-store');
    expect(head.headers.get('x-robots-tag')).toContain('noindex');

    const sse = await openSse(`${url}/events`);
    expect(sse.status).toBe(200);
    expect(sse.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    const first = await sse.until((e) => e.event === 'text' && JSON.parse(e.data).add !== '');
    // Text arrived while the answer was still being written.
    expect((await h.app.store.snapshot()).messages.find((m) => m.question === '人口')?.status).toBe('pending');
    expect(first.id).toMatch(/^1\.\d+$/);
    const final = await sse.until((e) => e.event === 'final');
    await sse.ended;
    const streamed = sse.events.filter((e) => e.event === 'text').map((e) => JSON.parse(e.data) as { at: number; add: string });
    let text = '';
    for (const d of streamed) text = text.slice(0, d.at) + d.add;
    expect(ANSWER.startsWith(text)).toBe(true);
    const done = JSON.parse(final.data) as { status: string; html: string };
    expect(done.status).toBe('answered');
    expect(done.html).toContain('<table>');
    expect(done.html).toContain('&lt;b&gt;');

    // Before the page reports it read, `1` would deliver it; after, `1` says it was read there.
    expect((await call(`${url}/read`, { method: 'POST' })).status).toBe(204);
    const q = (await h.app.store.snapshot()).messages.find((m) => m.question === '人口');
    expect(q?.inbox).toBeUndefined();
    expect(q?.takers).toEqual(Array.from({ length: q?.pages?.length ?? 0 }, () => 'page'));
    expect((await h.wechat.send('oLive', '1')).text).toBe(fill(h.config.texts.readOnPage, { question: '人口' }));
    // The page still shows the answer after it was read.
    expect((await call(url)).body).toContain('<table>');
  });

  it('resumes after a dropped connection from Last-Event-ID, repeating nothing', async () => {
    h = await pageHarness({ 续传: slow('一二三四五六七八九十'.repeat(12), 15) });
    const url = linkIn((await h.wechat.send('oResume', '续传')).text);
    const a = await openSse(`${url}/events`);
    const got = await a.until((e) => e.event === 'text' && JSON.parse(e.data).add.length > 0);
    a.close();
    const b = await openSse(`${url}/events`, { 'Last-Event-ID': got.id as string });
    const next = await b.until((e) => e.event === 'text' || e.event === 'final');
    if (next.event === 'text') expect(JSON.parse(next.data).at).toBe(Number((got.id as string).split('.')[1]));
    await b.until((e) => e.event === 'final');
    let text = JSON.parse(got.data).add as string;
    for (const e of b.events.filter((x) => x.event === 'text')) {
      const d = JSON.parse(e.data) as { at: number; add: string };
      expect(d.at).toBe(text.length);
      text += d.add;
    }
    expect('一二三四五六七八九十'.repeat(12).startsWith(text)).toBe(true);
  });

  it('the JSON state serves platforms that cannot stream: the rest from a position, then the answer', async () => {
    h = await pageHarness({ 轮询: slow('轮询的回答，'.repeat(20), 8) });
    const url = linkIn((await h.wechat.send('oPoll', '轮询')).text);
    const first = await eventually(async () => {
      const s = JSON.parse((await call(`${url}/state`)).body) as { status: string; add?: string; at?: number; attempt?: number };
      return s.status === 'pending' && (s.add ?? '') !== '' ? s : undefined;
    });
    const later = JSON.parse((await call(`${url}/state?from=${first.attempt}.${first.add?.length}`)).body) as { at?: number };
    if ('at' in later) expect(later.at).toBe(first.add?.length);
    const done = await eventually(async () => {
      const s = JSON.parse((await call(`${url}/state`)).body) as { status: string; html?: string };
      return s.status === 'answered' ? s : undefined;
    });
    expect(done.html).toContain('轮询的回答');
  });

  it('a page served by another instance follows the answer through the store', async () => {
    h = await pageHarness({ 别处: slow('另一个实例也能看到的回答。'.repeat(6), 12) });
    // A second app on the same store: it has no part in writing the answer.
    const logger = memoryLogger({ secrets: [] });
    const other: App = createApp(h.config, { store: h.app.store, logger });
    const server = createHttpServer({ webhook: (path) => other.routes.get(path), page: other.page, logger, maxBodyBytes: 1 << 16 });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    extra.push(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))));
    const url = linkIn((await h.wechat.send('oOther', '别处')).text).replace(h.origin, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const sse = await openSse(`${url}/events`);
    await sse.until((e) => e.event === 'text' && JSON.parse(e.data).add !== '');
    expect((await h.app.store.snapshot()).messages.find((m) => m.question === '别处')?.status).toBe('pending');
    const final = await sse.until((e) => e.event === 'final');
    expect(JSON.parse(final.data).html).toContain('另一个实例也能看到的回答');
  });

  it('with an OpenAI-compatible model that thinks, the page never shows the thinking', async () => {
    h = await startHarness({
      answerPage: true,
      env: FIRST,
      openai: { script: () => ({ kind: 'answer', text: '思考之后的回答。'.repeat(10), reasoning: '秘密的推理过程'.repeat(10), reasoningAs: 'think-tags', pieceChars: 2, durationMs: 2000 }) },
    });
    const url = linkIn((await h.wechat.send('oPageThink', '想想')).text);
    const sse = await openSse(`${url}/events`);
    const final = await sse.until((e) => e.event === 'final');
    for (const e of sse.events) expect(e.data).not.toMatch(/推理|think/);
    expect(sse.events.some((e) => e.event === 'text' && JSON.parse(e.data).add !== '')).toBe(true);
    expect(JSON.parse(final.data).html).toContain('思考之后的回答。');
  });

  it('a failed answer shows the reason the chat would give', async () => {
    h = await pageHarness({ 坏: { kind: 'http', status: 400, body: JSON.stringify({ code: 'provider_quota_exceeded', message: 'quota', status: 400 }), headerDelayMs: 600 } });
    const url = linkIn((await h.wechat.send('oFail', '坏')).text);
    await h.app.worker.idle();
    const s = JSON.parse((await call(`${url}/state`)).body) as { status: string; message: string };
    expect(s.status).toBe('failed');
    expect((await call(url)).body).toContain(s.message);
    expect(s.message).toBe(h.config.texts.failQuota);
  });
});

describe('who may see a page', () => {
  it('unknown, malformed, expired, cleared and unsubscribed tokens all get the same 404', async () => {
    h = await pageHarness({ 问: slow('答', 2), 再问: slow('再答', 2) });
    const url = linkIn((await h.wechat.send('oGone', '问')).text);
    await h.app.worker.idle();
    const unknown = await call(`${h.origin}/a/${'A'.repeat(22)}`);
    expect(unknown.status).toBe(404);
    for (const bad of ['short', 'A'.repeat(23), '%3Cscript%3E', 'A'.repeat(21) + '!']) {
      const r = await call(`${h.origin}/a/${bad}`);
      expect(r.status).toBe(404);
      if (r.body) expect(r.body === unknown.body || r.body === 'Not Found').toBe(true);
    }
    expect((await call(`${h.origin}/a/${'A'.repeat(22)}/events`)).status).toBe(404);

    // Expired: the same handler seen 7 days later.
    const later = createPageHandler({ config: h.config, store: h.app.store, clock: { now: () => Date.now() + 7 * 86_400_000, sleep: async () => {} }, logger: memoryLogger({ secrets: [] }), live: new LiveAnswers() });
    const expired = await later({ op: 'page', method: 'GET', token: url.split('/').pop() as string });
    expect(expired.status).toBe(404);
    expect('body' in expired && expired.body).toBe(unknown.body);

    expect((await call(url)).status).toBe(200);
    await h.wechat.send('oGone', '/clear');
    const cleared = await call(url);
    expect([cleared.status, cleared.body]).toEqual([404, unknown.body]);

    const url2 = linkIn((await h.wechat.send('oGone', '再问')).text);
    expect((await call(url2)).status).toBe(200);
    await h.wechat.send('oGone', { type: 'event', event: 'unsubscribe' });
    const left = await call(url2);
    expect([left.status, left.body]).toEqual([404, unknown.body]);
  });

  it('bounds live streams: past the limit the page is told to poll', async () => {
    h = await pageHarness({ 多: slow('很多人在看', 20) }, { ANSWER_PAGE_MAX_STREAMS: '2' });
    const url = linkIn((await h.wechat.send('oMany', '多')).text);
    const a = await openSse(`${url}/events`);
    const b = await openSse(`${url}/events`);
    const c = await openSse(`${url}/events`);
    expect([a.status, b.status, c.status]).toEqual([200, 200, 503]);
    a.close();
    await a.ended;
    await eventually(async () => (await openSse(`${url}/events`).then((s) => (s.close(), s.status))) === 200);
    b.close();
  });

  it('caps streams per answer, keeps idle streams alive with comments, and ends old ones (the browser resumes)', async () => {
    h = await startHarness({
      answerPage: true,
      env: FIRST,
      pageTimings: { heartbeatMs: 100, pollMs: 100, maxLifeMs: 600, viewHoldMs: 1000 },
      dify: { script: () => slow('慢慢写的回答', 30) },
    });
    const url = linkIn((await h.wechat.send('oCap', '问题')).text);
    const four = await Promise.all(Array.from({ length: 4 }, () => openSse(`${url}/events`)));
    expect(four.map((s) => s.status)).toEqual([200, 200, 200, 200]);
    const fifth = await openSse(`${url}/events`);
    expect(fifth.status).toBe(503);
    // Nothing new to say for a while: comments keep proxies from closing the stream.
    await new Promise((r) => setTimeout(r, 400));
    expect(four[0]?.comments).toBeGreaterThanOrEqual(2);
    // A stream lives a bounded time, then ends; its slot is free again.
    await Promise.all(four.map((s) => s.ended));
    expect((await openSse(`${url}/events`).then((s) => (s.close(), s.status)))).toBe(200);
  });

  it('only the methods each endpoint needs', async () => {
    h = await pageHarness({ 方法: slow('答', 2) });
    const url = linkIn((await h.wechat.send('oMethod', '方法')).text);
    expect((await call(url, { method: 'POST' })).status).toBe(405);
    expect((await call(`${url}/read`)).status).toBe(405);
    expect((await call(`${h.origin}/a/assets/page.js`)).status).toBe(200);
    expect((await call(`${h.origin}/a/assets/other.js`)).status).toBe(404);
  });
});
