/** Push mode end to end: the WeChat API simulator, the Dify simulator and the WeChat client simulator. */
import { afterEach, describe, expect, it } from 'vitest';
import { startWechatApiSim } from '../../../lib/sim/wechat-api-sim';
import type { WechatApiSim } from '../../../lib/sim/wechat-api-sim';
import { createApp } from '../../../lib/app';
import { createHttpServer } from '../../../lib/adapters/server/http';
import { memoryLogger } from '../../../lib/util/log';
import { WechatSim } from '../../../lib/sim/wechat-sim';
import type { AddressInfo } from 'net';
import { DIFY_KEY, SCALE, TOKEN, eventually, startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';
import { openSse } from '../../../lib/sim/sse-client';

const APP_ID = 'wxpush00000000001';
const APP_SECRET = 'push-app-secret-value-0001';
let h: Harness;
let api: WechatApiSim;
afterEach(async () => {
  await h?.close();
  await api?.close();
});

const LONG = Array.from({ length: 6 }, (_, i) => `第${i + 1}部分。` + '推送的长回答内容。'.repeat(60)).join('\n\n');

/**
 * Push starts where a placeholder went out. Unless a test is about the reply window itself, the
 * placeholder comes on the first delivery after a short deadline, and Dify answers soon after it:
 * the same push path as after three WeChat windows, without waiting through them.
 */
const FAST = { PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '150' };
const PUSH_ENV = () => ({ WECHAT_PUSH: 'true', WECHAT_APPID: APP_ID, WECHAT_APPSECRET: APP_SECRET, WECHAT_API_BASE: api.url, LOG_LEVEL: 'debug' });

async function start(refuse?: (openId: string) => number | undefined, window: 'fast' | { durationS: number } = 'fast', answerPage = false) {
  api = await startWechatApiSim({ appId: APP_ID, appSecret: APP_SECRET, ...(refuse ? { refuse } : {}) });
  const durationMs = window === 'fast' ? 600 : window.durationS * 1000 * SCALE;
  h = await startHarness({
    answerPage,
    // An open page holds push back for 1 s here (30 s in production), renewed every 0.3 s.
    pageTimings: { heartbeatMs: 300, pollMs: 100, maxLifeMs: 60_000, viewHoldMs: 1000 },
    env: { ...PUSH_ENV(), ...(window === 'fast' ? FAST : {}) },
    dify: { script: (b) => ({ kind: 'answer', text: b.query === '长' ? LONG : `推送:${String(b.query)}`, durationMs, pieceChars: 200 }) },
  });
}

describe('push mode with the answer page', () => {
  it('an answer read on its page while it was written is not pushed as well', async () => {
    await start(undefined, 'fast', true);
    const r = await h.wechat.send('oWatch', '问题');
    const link = /<a href="([^"]+)">/.exec(r.text ?? '')?.[1] as string;
    expect(r.text).toContain('回答生成后会自动发给你');
    const sse = await openSse(`${link}/events`);
    await sse.until((e) => e.event === 'final');
    // The page's script reports it read once it showed the answer.
    expect((await fetch(`${link}/read`, { method: 'POST' })).status).toBe(204);
    sse.close();
    await h.app.worker.idle();
    // Push held back while the page was open, then found nothing left to send.
    await eventually(async () => ((await h.app.store.snapshot()).messages.find((m) => m.user === 'oWatch')?.readOnPage ? true : undefined));
    // Past the page's hold, push looks again and finds nothing left to send.
    await new Promise((res) => setTimeout(res, 1800));
    expect(api.sent).toEqual([]);
    expect(h.logs.some((l) => l.includes('answer read on its page'))).toBe(true);
  });

  it('an answer whose page was closed before the end is pushed once the page has been quiet', async () => {
    await start(undefined, 'fast', true);
    const r = await h.wechat.send('oLeft', '问题');
    const link = /<a href="([^"]+)">/.exec(r.text ?? '')?.[1] as string;
    const sse = await openSse(`${link}/events`);
    await sse.until((e) => e.event === 'state');
    sse.close();
    const key = (await h.app.store.snapshot()).messages.find((m) => m.user === 'oLeft')?._id as string;
    await eventually(async () => ((await h.app.store.message(key))?.pageViewUntil ? true : undefined));
    await eventually(() => api.sent.length === 1);
    expect(api.sent[0]).toEqual({ touser: 'oLeft', content: '推送:问题' });
    // It was held: not pushed before the page's hold ran out.
    const q = await h.app.store.message(key);
    expect((q?.answeredAt ?? 0) < (q?.pageViewUntil ?? 0)).toBe(true);
  });
});

describe('push mode', () => {
  it('says the answer will come by itself, shows typing, and pushes it as soon as it is ready', async () => {
    await start();
    const r = await h.wechat.send('oPush', '问题');
    expect(r.text).toMatch(/^「问题」\n正在思考中（已 \d+ 秒），回答生成后会自动发给你。$/);
    await eventually(() => api.sent.length === 1);
    expect(api.sent[0]).toEqual({ touser: 'oPush', content: '推送:问题' });
    expect(api.typing).toContain('oPush');
    expect((await h.wechat.send('oPush', '1')).text).toBe(h.config.texts.nothingPending);
    expect(api.stableTokenCalls).toBe(1);
    // The record keeps the attempt for the console's record view.
    const rec = (await h.app.store.snapshot()).messages.find((m) => m.user === 'oPush' && m.kind === 'question');
    expect(rec?.pushes).toEqual([{ page: 1, at: expect.any(Number), errcode: 0 }]);
  });

  it('pushes a long answer page by page, in order', async () => {
    await start();
    await h.wechat.send('oPages', '长');
    const q = await eventually(async () => {
      const rec = (await h.app.store.snapshot()).messages.find((r) => r.user === 'oPages' && r.kind === 'question');
      return rec?.pages && rec.pagesDelivered === rec.pages.length ? rec : undefined;
    });
    // A page is taken in the store before it is sent, so the last send may still be on its way.
    await eventually(() => api.sent.length >= (q.pages?.length ?? 0));
    expect(api.sent.map((s) => s.content)).toEqual(q.pages);
    expect(q.pages?.length).toBeGreaterThan(2);
  });

  it('answers ready within the window are replied passively, never pushed', async () => {
    await start(undefined, { durationS: 7 }); // answered on WeChat's second delivery
    expect((await h.wechat.send('oPassive', '快')).text).toBe('推送:快');
    await h.app.worker.idle();
    expect(api.sent).toEqual([]);
  });

  it.each([45015, 45047])('on %i falls back to `1` for that user and remembers it', async (errcode) => {
    await start((openId) => (openId === 'oClosed' ? errcode : undefined));
    await h.wechat.send('oClosed', '问题');
    await eventually(async () => (await h.app.store.user('oClosed'))?.pushBlockedUntil !== undefined);
    expect(api.sent).toEqual([]);
    expect((await h.wechat.send('oClosed', '1')).text).toBe('推送:问题'); // the page went back to `1`
    expect(h.logs.some((l) => l.includes('push stopped') && l.includes(`"errcode":${errcode}`))).toBe(true);
    const rec = (await h.app.store.snapshot()).messages.find((m) => m.user === 'oClosed' && m.kind === 'question');
    expect(rec?.pushes?.map((p) => p.errcode)).toEqual([errcode]);
  });

  it('on 48001 falls back to `1` for the whole account, and later placeholders say to send 1', async () => {
    await start(() => 48001);
    await h.wechat.send('oNoPerm', '问题');
    await eventually(async () => (await h.app.store.kvGet(`push:account-unavailable:${APP_ID}`, Date.now())) !== undefined);
    expect((await h.wechat.send('oNoPerm', '1')).text).toBe('推送:问题');
    const other = await h.wechat.send('oOther', '另一个问题');
    expect(other.text).toMatch(/请稍后回复 1 获取回答/);
  });

  it('fetches a new token when WeChat says the cached one expired, and retries the send', async () => {
    await start();
    await h.wechat.send('oExp', '第一个');
    await eventually(() => api.sent.length === 1);
    api.expireCurrent(); // server-side expiry: the next send gets 42001
    await h.wechat.send('oExp', '第二个');
    await eventually(() => api.sent.length === 2);
    expect(api.stableTokenCalls).toBe(2);
  });

  it('pushes nothing of an answer the user cleared with /clear before it was ready', async () => {
    await start();
    await h.wechat.send('oPushClr', '问题'); // placeholder
    await h.wechat.send('oPushClr', '/clear');
    await h.app.worker.idle();
    expect(api.sent).toEqual([]);
  });

  it('pushes a failure notice when the answer fails after the placeholder', async () => {
    api = await startWechatApiSim({ appId: APP_ID, appSecret: APP_SECRET });
    h = await startHarness({ env: { ...PUSH_ENV(), ...FAST }, dify: { script: () => ({ kind: 'cut', text: '一半', durationMs: 600 }) } });
    await h.wechat.send('oPushFail', '会失败');
    await eventually(() => api.sent.length === 1);
    expect(api.sent[0]?.content).toBe(`「会失败」\n${h.config.texts.failFailed}`);
  });

  it('two handlers on one store share one access token', async () => {
    await start();
    const logger = memoryLogger({ secrets: [TOKEN, DIFY_KEY, APP_SECRET] });
    const second = createApp(h.config, { store: h.app.store, logger });
    const server = createHttpServer({ webhook: (path) => second.routes.get(path), logger, maxBodyBytes: 1 << 18 });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const wechat2 = new WechatSim({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/wechat`, token: TOKEN, timeoutMs: 1000 });
    await Promise.all([h.wechat.send('oShareA', 'A'), wechat2.send('oShareB', 'B')]);
    await eventually(() => api.sent.length === 2);
    expect(api.stableTokenCalls).toBe(1);
    server.closeAllConnections();
    server.close();
    await second.worker.idle();
  });

  it('never writes a secret or an access token to the log', async () => {
    await start();
    await h.wechat.send('oLeak', '问题');
    // The simulator records the send before our server has its answer and logs it.
    await eventually(() => api.sent.length === 1 && h.logs.some((l) => l.includes('answer pushed')));
    const log = h.logs.join('\n');
    for (const secret of [TOKEN, DIFY_KEY, APP_SECRET, ...api.issued]) expect(log).not.toContain(secret);
  });
});
