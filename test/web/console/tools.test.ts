/**
 * The console's tools over real HTTP: Try it (the test user through the whole lifecycle, a slow
 * answer followed live over the answer page's stream, counted apart in the stats), the menu
 * (read and published through the WeChat API simulator, errors with their codes), keyword replies
 * counted once, and health (store, backend, push, access token, version).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startWechatApiSim } from '../../../lib/sim/wechat-api-sim';
import type { WechatApiSim } from '../../../lib/sim/wechat-api-sim';
import { openSse } from '../../../lib/sim/sse-client';
import { statCount, TEST_USER } from '../../../lib/store';
import { TOKEN, startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';
import { call, deliver, textXml } from '../../support/wire';

let h: Harness;
let api: WechatApiSim | undefined;
afterEach(async () => {
  await h?.close();
  await api?.close();
  api = undefined;
});

const ADMIN = 'console-tools-token-0123456789';
const APP_ID = 'wx0123456789abcdef';
const APP_SECRET = 'console-app-secret-0123456789';
const FORM = { 'Content-Type': 'application/x-www-form-urlencoded' };

interface Session {
  cookie: string;
  csrf: string;
}

async function login(): Promise<Session> {
  const r = await fetch(`${h.origin}/admin/login`, { method: 'POST', body: `token=${ADMIN}`, headers: FORM, redirect: 'manual' });
  expect(r.status).toBe(303);
  const cookie = (r.headers.get('set-cookie') ?? '').split(';')[0] as string;
  const html = await (await fetch(`${h.origin}/admin/try`, { headers: { cookie } })).text();
  return { cookie, csrf: /data-csrf="([0-9a-f]{64})"/.exec(html)?.[1] as string };
}

async function tryIt(s: Session, text: string): Promise<{ reply: string; follow?: string }> {
  const r = await fetch(`${h.origin}/admin/api/try`, { method: 'POST', body: `text=${encodeURIComponent(text)}`, headers: { ...FORM, cookie: s.cookie, 'X-CSRF-Token': s.csrf } });
  expect(r.status).toBe(200);
  return (await r.json()) as { reply: string; follow?: string };
}

const today = async () => (await h.app.store.statsBetween(h.app.store.dayOf(Date.now()), h.app.store.dayOf(Date.now())))[0];

describe('Try it', () => {
  it('asks as the test user through the same lifecycle: a fast answer, a slow one followed live then fetched with 1, commands; counted apart', async () => {
    h = await startHarness({
      env: { ADMIN_TOKEN: ADMIN },
      dify: { script: (b) => (b.query === '慢' ? { kind: 'answer', text: '## 慢的回答\n\n' + '写得很慢，'.repeat(20), durationMs: 2500, pieceChars: 6 } : { kind: 'answer', text: `答:${String(b.query)}` }) },
    });
    const s = await login();
    expect((await tryIt(s, '快')).reply).toBe('答:快');
    expect(h.dify.calls.at(-1)?.body.user).toBe(TEST_USER);

    // Slow: the placeholder (one delivery, as WeChat's last), and the answer as it is written.
    const slow = await tryIt(s, '慢');
    expect(slow.reply).toContain('回复 1');
    expect(slow.follow).toMatch(/^\/admin\/api\/follow\?r=/);
    const stream = await openSse(`${h.origin}${slow.follow as string}`, { cookie: s.cookie });
    expect(stream.status).toBe(200);
    const final = await stream.until((e) => e.event === 'final', 10_000);
    expect(stream.events.some((e) => e.event === 'text')).toBe(true);
    expect(JSON.parse(final.data)).toMatchObject({ status: 'answered' });
    expect(JSON.parse(final.data).html).toContain('<h2>慢的回答</h2>');
    // The stream needs a session, like every console route.
    expect((await call(`${h.origin}${slow.follow as string}`)).status).toBe(401);

    // `1` fetches it as a WeChat user would; then nothing is pending; /help is a command.
    expect((await tryIt(s, '1')).reply).toContain('慢的回答');
    expect((await tryIt(s, '1')).reply).toBe(h.config.texts.nothingPending);
    expect((await tryIt(s, '/help')).reply).toBe(h.config.texts.help);
    expect(h.dify.calls.length).toBe(2);

    // A real user's question beside it: the owner's numbers count only that one.
    await h.wechat.send('oRealUser0000001', '真的');
    const day = await today();
    expect(statCount(day, 'questions')).toBe(1);
    expect(statCount(day, 'via.reply1')).toBe(1);
    expect(statCount(day, 'test.questions')).toBe(2);
    expect(statCount(day, 'test.via.reply1')).toBe(1);
    expect(statCount(day, 'test.via.fetch')).toBe(1);
    const html = await (await fetch(`${h.origin}/admin`, { headers: { cookie: s.cookie } })).text();
    expect(html).toContain(TEST_USER); // the test user is shown by name in the list
  });

  it('needs a session and the CSRF token; refuses empty and oversized text', async () => {
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN } });
    expect((await call(`${h.origin}/admin/api/try`, { method: 'POST', body: 'text=hi', headers: FORM })).status).toBe(401);
    const s = await login();
    const post = (body: string, csrf = s.csrf) => call(`${h.origin}/admin/api/try`, { method: 'POST', body, headers: { ...FORM, cookie: s.cookie, 'X-CSRF-Token': csrf } });
    expect((await post('text=hi', 'f'.repeat(64))).status).toBe(403);
    expect((await post('text=')).status).toBe(400);
    expect((await post(`text=${'长'.repeat(2001)}`)).status).toBe(400);
    expect(h.dify.calls.length).toBe(0);
  });
});

describe('keyword replies in the stats', () => {
  it('are counted once per message, however many deliveries, and shown read-only with their counts', async () => {
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN, KEYWORD_REPLIES: JSON.stringify({ 营业时间: '每天 9 点到 18 点', 'prefix:价格': '价格见官网' }) } });
    // WeChat's re-deliveries of one message: the same MsgId three times, by hand.
    const xml = textXml('oKeyword000001', '营业时间', '424242');
    for (let i = 0; i < 3; i++) expect((await deliver(h.url, TOKEN, xml)).body).toContain('每天 9 点到 18 点');
    await h.wechat.send('oKeyword000001', '价格多少');
    const day = await today();
    expect(statCount(day, 'keywords')).toBe(2);
    expect(statCount(day, 'keyword.营业时间')).toBe(1);
    expect(statCount(day, 'questions')).toBe(0);
    const s = await login();
    const html = await (await fetch(`${h.origin}/admin/menu`, { headers: { cookie: s.cookie } })).text();
    expect(html).toContain('<td>营业时间</td><td>完全一致</td><td>每天 9 点到 18 点</td><td>1</td>');
    expect(html).toContain('<td>价格</td><td>开头是</td><td>价格见官网</td><td>1</td>');
  });
});

describe('the menu page', () => {
  const MENU = { button: [{ type: 'click', name: '清除对话', key: 'CLEAR' }, { name: '更多', sub_button: [{ type: 'view', name: '官网', url: 'https://example.com/' }] }] };

  it('says what it needs without WECHAT_APPID and WECHAT_APPSECRET', async () => {
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN } });
    const s = await login();
    const html = await (await fetch(`${h.origin}/admin/menu`, { headers: { cookie: s.cookie } })).text();
    expect(html).toContain('需要设置 WECHAT_APPID 和 WECHAT_APPSECRET');
    expect(html).toContain('没有设置 <code>MENU</code>');
  });

  it('shows the live menu and publishes MENU with one button (CSRF-checked); WeChat errors show their code and meaning', async () => {
    api = await startWechatApiSim({ appId: APP_ID, appSecret: APP_SECRET });
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN, WECHAT_APPID: APP_ID, WECHAT_APPSECRET: APP_SECRET, WECHAT_API_BASE: api.url, MENU_KEYS: JSON.stringify({ CLEAR: '/clear' }), MENU: JSON.stringify(MENU) } });
    const s = await login();
    const before = await (await fetch(`${h.origin}/admin/menu`, { headers: { cookie: s.cookie } })).text();
    expect(before).toContain('公众号现在没有自定义菜单');
    expect(before).toContain('清除对话');
    // Without the CSRF token nothing is published.
    expect((await call(`${h.origin}/admin/menu/publish`, { method: 'POST', body: '', headers: { ...FORM, cookie: s.cookie } })).status).toBe(403);
    expect(api.menu).toBeUndefined();
    const r = await fetch(`${h.origin}/admin/menu/publish`, { method: 'POST', body: `csrf=${s.csrf}`, headers: { ...FORM, cookie: s.cookie }, redirect: 'manual' });
    expect(r.status).toBe(303);
    expect(api.menu).toEqual(MENU);
    const after = await (await fetch(`${h.origin}${r.headers.get('location') as string}`, { headers: { cookie: s.cookie } })).text();
    expect(after).toContain('已发布 2 个按钮');
    expect(after).toContain('<code>view https://example.com/</code>');
    expect(after).not.toContain(APP_SECRET);
    await api.close();

    // An account that may not use the menu API.
    api = await startWechatApiSim({ appId: APP_ID, appSecret: APP_SECRET, refuseMenu: 48001 });
    await h.close();
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN, WECHAT_APPID: APP_ID, WECHAT_APPSECRET: APP_SECRET, WECHAT_API_BASE: api.url, MENU_KEYS: JSON.stringify({ CLEAR: '/clear' }), MENU: JSON.stringify(MENU) } });
    const s2 = await login();
    const refused = await call(`${h.origin}/admin/menu/publish`, { method: 'POST', body: `csrf=${s2.csrf}`, headers: { ...FORM, cookie: s2.cookie } });
    expect(refused.status).toBe(502);
    expect(refused.body).toContain('发布失败：微信返回错误 48001');
    expect(refused.body).toContain('unverified subscription accounts');
  });
});

describe('the health page', () => {
  it('reports the store, the backend, push, the access token and the version', async () => {
    api = await startWechatApiSim({ appId: APP_ID, appSecret: APP_SECRET });
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN, WECHAT_APPID: APP_ID, WECHAT_APPSECRET: APP_SECRET, WECHAT_API_BASE: api.url, WECHAT_PUSH: 'on' } });
    const s = await login();
    const get = async () => ((await (await fetch(`${h.origin}/admin/api/health`, { headers: { cookie: s.cookie } })).json()) as { items: { name: string; ok: boolean | null; text: string }[] }).items;
    let items = await get();
    const item = (name: string) => items.find((i) => i.name === name);
    expect(item('版本')?.text).toBe(`wechat-dify-bot ${h.app.version}`);
    expect(item('存储')).toMatchObject({ ok: true });
    expect(item('存储')?.text).toContain('内置文件存储');
    expect(item('模型后端')).toMatchObject({ ok: true });
    expect(item('模型后端')?.text).toContain('dify：app reachable, key accepted');
    expect(item('微信公众号：推送')).toMatchObject({ ok: true, text: '开启' });
    expect(item('微信公众号：access token')?.text).toContain('还没有取过');
    // Reading the menu fetches a token: now its freshness shows (never the token).
    await fetch(`${h.origin}/admin/menu`, { headers: { cookie: s.cookie } });
    items = await get();
    expect(item('微信公众号：access token')).toMatchObject({ ok: true });
    expect(item('微信公众号：access token')?.text).toMatch(/有效，还有 1\d\d 分钟/);
    expect(api.issued.length).toBeGreaterThan(0);
    for (const t of api.issued) expect(JSON.stringify(items)).not.toContain(t);
    const page = await (await fetch(`${h.origin}/admin/health`, { headers: { cookie: s.cookie } })).text();
    expect(page).toContain('<h1>健康</h1>');
    expect((await call(`${h.origin}/admin/api/health`)).status).toBe(401);
    // The health page links npm run doctor's checks, run by this server on its own store.
    expect(page).toContain('href="/admin/doctor"');
    const checks = await (await fetch(`${h.origin}/admin/doctor`, { headers: { cookie: s.cookie } })).text();
    expect(checks).toContain('<h1>检查</h1>');
    expect(checks).toMatch(/<th>model backend<\/th><td class="ok">✓<\/td><td>dify: app reachable, key accepted/);
    expect(checks).toMatch(/<th>微信公众号: AppID\/AppSecret<\/th><td class="ok">✓/);
    // The store checks itself: a running server holds its own lock.
    expect(checks).toMatch(/<th>embedded store: lock<\/th><td class="ok">✓<\/td><td>held by this server/);
    for (const t of api.issued) expect(checks).not.toContain(t);
    expect((await call(`${h.origin}/admin/doctor`)).status).not.toBe(200);
  });

  it('names a backend that refuses the key, with its code', async () => {
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN, DIFY_API_KEY: 'app-wrong-key-000000' } });
    const s = await login();
    const items = ((await (await fetch(`${h.origin}/admin/api/health`, { headers: { cookie: s.cookie } })).json()) as { items: { name: string; ok: boolean; text: string }[] }).items;
    const backend = items.find((i) => i.name === '模型后端');
    expect(backend?.ok).toBe(false);
    expect(backend?.text).toContain('HTTP 401');
    expect(items.find((i) => i.name === '微信公众号：推送')?.text).toContain('关闭');
  });
});
