/**
 * The web chat over real HTTP (docs/web-chat.md): the page and its headers, a conversation through
 * the page's own endpoints with the answer streamed and delivered once shown, what a visitor is and
 * is not allowed (CSRF, other sites, forged cookies, other visitors' questions), the limits (one
 * answer at a time, per visitor, per address, body and text sizes), stop, a new conversation, a
 * reload mid-answer, an answer whose page was closed, the access code, embedding, and an answer's
 * pictures and files served from the chat's own origin to the visitor who asked only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseKey } from '../../../lib/core/keys';
import { CODE_ATTEMPTS_ALLOWED, chatUrls } from '../../../lib/web/chat/handler';
import { eventually, startHarness } from '../../support/harness';
import type { Harness, HarnessOptions } from '../../support/harness';
import { call } from '../../support/wire';
import { ChatVisitor, messageId } from '../../support/web-chat';
import type { Turn } from '../../support/web-chat';
import { startPictureHost } from '../../support/picture-host';
import type { PictureHost } from '../../support/picture-host';

let h: Harness | undefined;
let pics: PictureHost | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
  await pics?.close();
  pics = undefined;
});

const TABLE = '## 三座城市\n\n| 城市 | 人口 |\n|---|--:|\n| 北京 | 2189 |\n| 上海 | 2487 |\n\n详见 [统计局](https://www.stats.gov.cn/)。';

function start(env: Record<string, string> = {}, more: HarnessOptions = {}): Promise<Harness> {
  return startHarness({
    env: { WEB_CHAT: 'on', ...env },
    dify: {
      script: (b) => {
        const q = String(b.query);
        if (q === '表格') return { kind: 'answer', text: TABLE, durationMs: 600, pieceChars: 6 };
        if (q.startsWith('慢')) return { kind: 'answer', text: '这是一个很慢的回答，'.repeat(40), durationMs: 8000, pieceChars: 4 };
        return { kind: 'answer', text: `答：${q}` };
      },
    },
    ...more,
  });
}

async function visitor(from?: string): Promise<ChatVisitor> {
  const v = new ChatVisitor((h as Harness).origin, from);
  expect((await v.open()).status).toBe(200);
  return v;
}

const records = async () => (await (h as Harness).app.store.snapshot()).messages;

describe('the web chat', () => {
  it('is off unless WEB_CHAT=on', async () => {
    h = await startHarness();
    expect((await call(`${h.origin}/chat`)).status).toBe(404);
    expect((await call(`${h.origin}/chat/widget.js`)).status).toBe(404);
  });

  it('serves the page with a signed HttpOnly visitor cookie, strict headers and no inline script or style', async () => {
    h = await start();
    const v = new ChatVisitor(h.origin);
    const r = await v.raw('GET', '/chat');
    expect(r.status).toBe(200);
    expect(v.setCookie).toMatch(/^wdb_chat=[A-Za-z0-9_-]{22}\.\.[A-Za-z0-9_-]{43}; Path=\/chat; HttpOnly; Max-Age=\d+; SameSite=Lax$/);
    const csp = String(r.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("img-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe');
    expect(r.headers['x-frame-options']).toBe('DENY');
    expect(r.headers['cache-control']).toBe('no-store');
    // Every script and stylesheet is a file of ours; no inline handlers or styles.
    expect([...r.body.matchAll(/<script([^>]*)>/g)].every((m) => /src="chat\/assets\//.test(m[1] as string))).toBe(true);
    expect(r.body).not.toMatch(/<style|style=|\son[a-z]+=/i);
    // The same visitor comes back with its cookie: no new one.
    const again = await v.raw('GET', '/chat');
    expect(again.headers['set-cookie']).toBeUndefined();
    for (const asset of ['/chat/assets/chat.js', '/chat/assets/chat.css', '/chat/assets/md.js', '/chat/widget.js']) {
      const a = await v.raw('GET', asset);
      expect(a.status, asset).toBe(200);
      expect(a.headers['x-content-type-options']).toBe('nosniff');
    }
    expect((await v.raw('GET', '/chat/assets/md.js')).headers['cache-control']).toContain('immutable');
    expect((await v.raw('GET', '/chat/widget.js')).headers['cross-origin-resource-policy']).toBe('cross-origin');
    expect((await v.raw('GET', '/chat/assets/nothing.js')).status).toBe(404);
    expect((await v.raw('GET', '/chat/')).headers['location']).toBe('../chat');
  });

  it('answers a question through the page’s endpoints: streamed, rendered, in the history, delivered once the page has shown it', async () => {
    h = await start();
    const v = await visitor();
    const asked = await v.ask('表格');
    expect(asked.status).toBe(200);
    const turn = asked.json['turn'] as Turn;
    expect(turn).toMatchObject({ question: '表格', status: 'pending' });
    const stream = await v.events(turn.id);
    expect(stream.status).toBe(200);
    expect(stream.headers['content-type']).toContain('text/event-stream');
    const final = await stream.until((e) => e.event === 'final', 10_000);
    const text = stream.events.filter((e) => e.event === 'text').map((e) => (JSON.parse(e.data) as { add: string }).add).join('');
    expect(text).toBe(TABLE);
    const html = (JSON.parse(final.data) as { html: string }).html;
    expect(html).toContain('<table>');
    expect(html).toContain('<th class="align-right">人口</th>');
    expect(html).toContain('rel="noopener noreferrer nofollow"');
    // Settled but not yet shown: undelivered, out of the sweep's outbox.
    const q = (await records()).find((m) => m.question === '表格');
    expect(q).toMatchObject({ channel: 'web', status: 'answered', inbox: expect.any(String) });
    expect(q?.outbox).toBeUndefined();
    expect(parseKey(q?.user ?? '')).toMatchObject({ kind: 'web', instance: '' });
    expect((await v.history()).turns).toMatchObject([{ id: turn.id, status: 'answered', seen: false }]);
    const seen = await Promise.all([v.post('seen', { id: turn.id }), v.post('seen', { id: turn.id })]);
    expect(seen.map((s) => s.json['delivered']).sort()).toEqual([false, true]);
    const after = (await records()).find((m) => m.question === '表格');
    expect(after).toMatchObject({ deliveredVia: 'web', pagesDelivered: 1 });
    expect(after?.inbox).toBeUndefined();
    expect((await v.history()).turns).toMatchObject([{ id: turn.id, status: 'answered', seen: true, html }]);
  });

  it('commands and keyword replies come back as the reply; /clear starts a new conversation', async () => {
    h = await start({ KEYWORD_REPLIES: JSON.stringify({ 营业时间: '每天 9:00–18:00' }) });
    const v = await visitor();
    expect((await v.ask('营业时间')).json).toEqual({ reply: '每天 9:00–18:00' });
    expect(String((await v.ask('/help')).json['reply'])).toContain('新对话');
    await v.ask('第一个问题');
    await h.app.worker.idle();
    const cleared = await v.ask('/clear');
    expect(cleared.json).toEqual({ reply: h.config.texts.cleared, newConversation: true });
    expect((await v.history()).generation).toBe(1);
    expect(h.dify.calls).toHaveLength(1);
  });

  it('refuses what the page did not send: no CSRF token, another site, no or a forged cookie; nothing changes', async () => {
    h = await start();
    const v = await visitor();
    const id = messageId();
    expect((await v.post('ask', { id, text: '你好' }, { 'X-CSRF-Token': 'wrong' })).status).toBe(403);
    expect((await v.raw('POST', '/chat/api/ask', JSON.stringify({ id, text: '你好' }), { 'Content-Type': 'application/json' })).status).toBe(403);
    expect((await v.post('ask', { id, text: '你好' }, { 'Sec-Fetch-Site': 'cross-site' })).status).toBe(403);
    expect((await v.get('history')).status).toBe(200);
    expect((await v.raw('GET', '/chat/api/history', undefined, { 'Sec-Fetch-Site': 'same-site' })).status).toBe(403);
    const stranger = new ChatVisitor(h.origin);
    stranger.csrf = v.csrf;
    expect((await stranger.ask('你好', id)).status).toBe(401);
    // A cookie of the right shape with someone else's id and a made-up signature is nobody.
    const [idPart] = v.cookie.slice('wdb_chat='.length).split('.');
    stranger.cookie = `wdb_chat=${idPart}..${'A'.repeat(43)}`;
    expect((await stranger.ask('你好', id)).status).toBe(401);
    // The body must be JSON (a form post from elsewhere is not).
    expect((await v.raw('POST', '/chat/api/ask', `id=${id}&text=x`, { 'Content-Type': 'application/x-www-form-urlencoded', 'X-CSRF-Token': v.csrf })).status).toBe(400);
    expect(await records()).toEqual([]);
    expect(h.dify.calls).toEqual([]);
  });

  it('a visitor sees and controls only their own questions', async () => {
    h = await start();
    const a = await visitor();
    const b = await visitor();
    const turn = (await a.ask('慢：只属于 a')).json['turn'] as Turn;
    expect((await b.history()).turns).toEqual([]);
    expect((await b.get('turn', `id=${turn.id}`)).status).toBe(404);
    expect((await b.events(turn.id)).status).toBe(404);
    expect((await b.post('stop', { id: turn.id })).status).toBe(404);
    expect((await b.post('seen', { id: turn.id })).status).toBe(404);
    expect((await records()).find((m) => m.question === '慢：只属于 a')?.status).toBe('pending');
    await a.post('stop', { id: turn.id });
  });

  it('a send the page retries is one message: asked once, answered once', async () => {
    h = await start();
    const v = await visitor();
    const id = messageId();
    const [one, two] = await Promise.all([v.ask('重试', id), v.ask('重试', id)]);
    expect([one.status, two.status]).toEqual([200, 200]);
    await h.app.worker.idle();
    expect((await v.ask('重试', id)).json['turn']).toMatchObject({ id, status: 'answered' });
    expect(h.dify.calls.filter((c) => c.body.query === '重试')).toHaveLength(1);
    expect((await records()).filter((m) => m.kind === 'question')).toHaveLength(1);
  });

  it('one answer at a time holds against a burst: 30 different asks at once from one visitor make one model call', async () => {
    // Store operations take a few milliseconds, as over MongoDB: the asks overlap as they would there.
    const started = (h = await start({}, { storeLatencyMs: 5 }));
    const v = await visitor();
    const all = await Promise.all(Array.from({ length: 30 }, (_, i) => v.ask(`慢：并发${i}`)));
    expect(all.filter((r) => r.status === 200)).toHaveLength(1);
    expect(all.filter((r) => r.status === 409)).toHaveLength(29);
    await eventually(() => started.dify.calls.length > 0);
    expect(started.dify.calls.filter((c) => String(c.body.query).startsWith('慢：并发'))).toHaveLength(1);
  });

  it('one answer at a time per visitor; stop ends it, the model call included, and keeps what was written', async () => {
    // Heartbeats every 20 s: a stop heard only at a heartbeat would not reach Dify within this test.
    h = await start({ STALE_AFTER_MS: '60000' });
    const v = await visitor();
    const turn = (await v.ask('慢：停下')).json['turn'] as Turn;
    const busy = await v.ask('另一个问题');
    expect(busy.status).toBe(409);
    expect(busy.json['turn']).toMatchObject({ id: turn.id });
    const stream = await v.events(turn.id);
    await stream.until((e) => e.event === 'text' && (JSON.parse(e.data) as { add: string }).add.length > 0, 10_000);
    // The answer so far reaches the store (saved twice a second for a reload or another instance).
    await eventually(async () => ((await records())[0]?.answer ?? '').length > 0);
    const stop = await v.post('stop', { id: turn.id });
    expect(stop.json).toMatchObject({ stopped: true, turn: { id: turn.id, status: 'stopped' } });
    expect(String((stop.json['turn'] as Turn).html)).toContain('这是一个很慢的回答');
    // The model call ends now (Dify's stop API), not at the next heartbeat.
    await eventually(() => h?.dify.stops.length === 1, 5000);
    await stream.until((e) => e.event === 'gone', 5000);
    expect((await v.post('stop', { id: turn.id })).json['stopped']).toBe(false);
    const q = (await records())[0];
    expect(q).toMatchObject({ status: 'cleared' });
    expect(q?.inbox).toBeUndefined();
    await h.app.worker.idle();
    expect((await records())[0]?.status).toBe('cleared');
    expect((await v.history()).turns).toMatchObject([{ id: turn.id, status: 'stopped' }]);
    // The next question goes through.
    expect((await v.ask('下一个')).status).toBe(200);
  });

  it('a new conversation stops what is being written and starts a new generation; earlier turns stay in the history', async () => {
    h = await start();
    const v = await visitor();
    await v.ask('第一个');
    await h.app.worker.idle();
    const pending = (await v.ask('慢：新对话时还在写')).json['turn'] as Turn;
    const r = await v.post('new', { id: messageId() });
    expect(r.json).toEqual({ reply: h.config.texts.cleared });
    const hist = await v.history();
    expect(hist.generation).toBe(1);
    expect(hist.turns).toMatchObject([
      { question: '第一个', status: 'answered', generation: 0 },
      { id: pending.id, status: 'stopped', generation: 0 },
    ]);
    expect((await v.ask('新的问题')).json['turn']).toMatchObject({ generation: 1 });
  });

  it('a reload mid-answer resumes: the history has the text so far, the stream sends only the rest', async () => {
    h = await start();
    const v = await visitor();
    const turn = (await v.ask('慢：重新加载')).json['turn'] as Turn;
    const first = await v.events(turn.id);
    await first.until((e) => e.event === 'text' && (JSON.parse(e.data) as { at: number; add: string }).at + (JSON.parse(e.data) as { add: string }).add.length > 20, 10_000);
    first.close();
    // The reloaded page: what the history says now, then the stream from there.
    const now = (await v.history()).turns[0] as Turn;
    expect(now.status).toBe('pending');
    expect((now.text ?? '').length).toBeGreaterThan(0);
    const resumed = await v.events(turn.id, { 'Last-Event-ID': `${now.attempt}.${(now.text ?? '').length}` });
    const next = await resumed.until((e) => e.event === 'text', 10_000);
    expect((JSON.parse(next.data) as { at: number }).at).toBe((now.text ?? '').length);
    // The JSON state (for clients that cannot stream) agrees.
    const state = await v.get('turn', `id=${turn.id}&from=${now.attempt}.${(now.text ?? '').length}`);
    expect(state.json).toMatchObject({ status: 'pending', at: (now.text ?? '').length });
    resumed.close();
    await v.post('stop', { id: turn.id });
  });

  it('an answer whose page was closed stays undelivered and shows on the next visit', async () => {
    h = await start();
    const v = await visitor();
    const turn = (await v.ask('离开')).json['turn'] as Turn;
    await h.app.worker.idle();
    // The sweep has nothing to send for it (the page takes it), however often it runs.
    expect(await h.app.worker.sweep()).toBe(0);
    const later = new ChatVisitor(h.origin);
    later.cookie = v.cookie;
    await later.open();
    expect((await later.history()).turns).toMatchObject([{ id: turn.id, status: 'answered', seen: false, html: '<p>答：离开</p>\n' }]);
    expect((await later.post('seen', { id: turn.id })).json['delivered']).toBe(true);
  });

  it('limits: RATE_LIMIT per visitor, WEB_CHAT_IP_LIMIT per address whatever cookies it holds', async () => {
    h = await start({ RATE_LIMIT: '1/h', WEB_CHAT_IP_LIMIT: '2/h' });
    const v = await visitor('127.0.0.2');
    expect((await v.ask('一')).status).toBe(200);
    await h.app.worker.idle();
    const again = await v.ask('二');
    expect(again.status).toBe(200);
    expect(String(again.json['reply'])).toContain('提问太频繁');
    // A fresh cookie from the same address: the address's cap (two questions counted) holds.
    const fresh = await visitor('127.0.0.2');
    const capped = await fresh.ask('三');
    expect(capped.status).toBe(429);
    expect(String(capped.json['reply'])).toContain('这个网络的提问太频繁');
    // Commands call no model and are not counted.
    expect((await fresh.ask('/help')).status).toBe(200);
    // Another address is not affected.
    const other = await visitor('127.0.0.3');
    expect((await other.ask('四')).status).toBe(200);
    await h.app.worker.idle();
    expect(h.dify.calls.map((c) => c.body.query).sort()).toEqual(['一', '四']);
  });

  it('bounds what comes in: bodies over 32 KB, texts over 4,000 characters, malformed ids', async () => {
    h = await start();
    const v = await visitor();
    expect((await v.raw('POST', '/chat/api/ask', JSON.stringify({ id: messageId(), text: 'x'.repeat(40_000) }), { 'Content-Type': 'application/json', 'X-CSRF-Token': v.csrf })).status).toBe(413);
    expect((await v.ask('x'.repeat(4001))).status).toBe(400);
    expect((await v.ask('   ')).status).toBe(400);
    expect((await v.ask('你好', 'bad id!')).status).toBe(400);
    expect((await v.raw('POST', '/chat/api/ask', '[1,2]', { 'Content-Type': 'application/json', 'X-CSRF-Token': v.csrf })).status).toBe(400);
    expect((await v.raw('DELETE', '/chat/api/history')).status).toBe(405);
    expect(await records()).toEqual([]);
  });

  it('WEB_CHAT_ACCESS_CODE gates the page and its endpoints; wrong codes are limited per address', async () => {
    h = await start({ WEB_CHAT_ACCESS_CODE: 'open-sesame-42' });
    const v = new ChatVisitor(h.origin, '127.0.0.4');
    const gate = await v.open();
    expect(gate.body).toContain('name="code"');
    expect(gate.body).not.toContain('data-ask');
    expect((await v.ask('你好')).status).toBe(403);
    const enter = (code: string, who = v) => who.raw('POST', '/chat/enter', new URLSearchParams({ code, csrf: who.csrf }).toString(), { 'Content-Type': 'application/x-www-form-urlencoded' });
    const wrong = await enter('open-sesame-41');
    expect(wrong.status).toBe(303);
    expect(wrong.headers['location']).toBe('../chat?code=wrong');
    // Without the page's CSRF token, a form from elsewhere cannot even try.
    expect((await v.raw('POST', '/chat/enter', 'code=open-sesame-42', { 'Content-Type': 'application/x-www-form-urlencoded' })).status).toBe(403);
    const right = await enter('open-sesame-42');
    expect(right.headers['location']).toBe('../chat');
    expect(String(right.headers['set-cookie'])).toMatch(/^wdb_chat=[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{16}\./);
    expect((await v.open()).body).toContain('data-ask');
    expect((await v.ask('你好')).status).toBe(200);
    // Guessing: after the allowed failures from one address, even a right code waits (the page says so).
    const guesser = new ChatVisitor(h.origin, '127.0.0.5');
    await guesser.open();
    for (let i = 0; i < CODE_ATTEMPTS_ALLOWED; i++) expect((await enter(`guess-${i}-xx`, guesser)).headers['location']).toBe('../chat?code=wrong');
    expect((await enter('guess-last-xx', guesser)).headers['location']).toBe('../chat?code=limited');
    // From then on the answer tells nothing: the right code gets the same refusal, and no cookie.
    const late = await enter('open-sesame-42', guesser);
    expect(late.headers['location']).toBe('../chat?code=limited');
    expect(late.headers['set-cookie']).toBeUndefined();
    // Racing guesses from one address are counted as one would be: at most the allowed number compared.
    const racer = new ChatVisitor(h.origin, '127.0.0.6');
    await racer.open();
    const raced = await Promise.all(Array.from({ length: 60 }, (_, i) => enter(`race-${i}-xx`, racer)));
    expect(raced.filter((r) => r.headers['location'] === '../chat?code=wrong')).toHaveLength(CODE_ATTEMPTS_ALLOWED);
  });

  it('over https the cookie is Secure and __Host- (no sibling subdomain can plant one)', async () => {
    h = await start({ PUBLIC_URL: 'https://chat.example.com' });
    const v = new ChatVisitor(h.origin);
    await v.open();
    expect(v.setCookie).toMatch(/^__Host-wdb_chat=[^;]+; Path=\/; HttpOnly; Max-Age=\d+; SameSite=Lax; Secure$/);
    expect((await v.ask('你好')).status).toBe(200);
    // The plain name is not read there.
    const planted = new ChatVisitor(h.origin);
    planted.cookie = v.cookie.replace('__Host-wdb_chat=', 'wdb_chat=');
    planted.csrf = v.csrf;
    expect((await planted.ask('你好')).status).toBe(401);
  });

  it('the console lists the chat’s questions as the other channels’: channel web, delivered via web, the visitor masked', async () => {
    const ADMIN = 'console-token-for-the-web-chat-01';
    h = await start({ ADMIN_TOKEN: ADMIN });
    const v = await visitor();
    const turn = (await v.ask('控制台里看得到')).json['turn'] as Turn;
    await h.app.worker.idle();
    await v.post('seen', { id: turn.id });
    const login = await fetch(`${h.origin}/admin/login`, { method: 'POST', body: `token=${ADMIN}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, redirect: 'manual' });
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
    const page = await (await fetch(`${h.origin}/admin?channel=web`, { headers: { cookie } })).text();
    expect(page).toContain('控制台里看得到');
    expect(page).toMatch(/<td>web<\/td><td>web:[^<]*…[^<]*<\/td>/);
    expect(page).toContain('<td>answered</td><td>1</td><td>web</td>');
    const visitorId = v.cookie.slice('wdb_chat='.length).split('.')[0] as string;
    expect(page).not.toContain(visitorId);
  });

  it('WEB_CHAT_EMBED_ORIGINS: the sites that may frame the chat, and a cookie browsers send inside their frames', async () => {
    h = await start({ WEB_CHAT_EMBED_ORIGINS: 'https://www.example.com, https://*.shop.example' });
    const v = new ChatVisitor(h.origin);
    const r = await v.raw('GET', '/chat?embed=1');
    expect(String(r.headers['content-security-policy'])).toContain('frame-ancestors https://www.example.com https://*.shop.example');
    expect(r.headers['x-frame-options']).toBeUndefined();
    expect(v.setCookie).toMatch(/^__Host-wdb_chat=[^;]+; Path=\/; HttpOnly; Max-Age=\d+; SameSite=None; Secure; Partitioned$/);
    expect(r.body).toContain('<body class="embed">');
    const widget = await v.raw('GET', '/chat/widget.js');
    expect(widget.body).toContain('../chat?embed=1');
    expect(widget.body).toContain("setAttribute('sandbox'");
  });
});

describe('an answer’s pictures and files in the web chat', () => {
  /** A settled answer: its Markdown shows a picture; the backend sent a picture and a document besides. */
  async function pictured(): Promise<{ host: PictureHost; v: ChatVisitor; id: string; html: string }> {
    const host = (pics = await startPictureHost());
    const text = `画好了：\n\n![猫](${host.url}/cat.png)\n\n![元数据](http://169.254.169.254/x.png)\n\n报告见附件。`;
    // The picture host is on loopback, which only MEDIA_ALLOW_HOSTS lets the bot fetch.
    h = await start({ MEDIA_ALLOW_HOSTS: '127.0.0.1' }, { dify: { script: () => ({ kind: 'answer', text, durationMs: 300, files: [{ url: `${host.url}/drawn.jpg` }, { url: `${host.url}/report.pdf`, type: 'document' }] }) } });
    const v = await visitor();
    const id = (((await v.ask('画一只猫')).json['turn'] as Turn) ?? {}).id;
    const stream = await v.events(id);
    const final = await stream.until((e) => e.event === 'final', 10_000);
    return { host, v, id, html: (JSON.parse(final.data) as { html: string }).html };
  }
  /** What a browser on the chat page (`/chat`) asks for a path in the answer's HTML. */
  const at = (path: string) => new URL(path.replace(/&amp;/g, '&'), `${(h as Harness).origin}/chat`).href;
  const get = (url: string, cookie: string, headers: Record<string, string> = {}) => fetch(url, { headers: { ...(cookie ? { cookie } : {}), ...headers } });

  it('shows the pictures inline from the chat’s own origin and the file as a download, in the stream’s final HTML and in the history', async () => {
    const { host, v, id, html } = await pictured();
    const q = (await records()).find((m) => m.question === '画一只猫');
    expect(q?.parts?.map((p) => p.url)).toEqual([`${host.url}/drawn.jpg`, `${host.url}/report.pdf`, `${host.url}/cat.png`]);
    // The Markdown's picture in place; the backend's picture and file after the text; the refused one a link.
    expect(html).toContain(`<img src="chat/api/media?id=${id}&amp;n=2" alt="猫" loading="lazy">`);
    expect(html).toMatch(new RegExp(`<div class="parts"><img src="chat/api/media\\?id=${id}&amp;n=0" alt="[^"]+" loading="lazy"><a class="file" href="chat/api/media\\?id=${id}&amp;n=1" download>`));
    expect(html).toContain('<a class="img" href="http://169.254.169.254/x.png"');
    expect(html).not.toContain(host.url);
    expect(html.indexOf('n=2')).toBeLessThan(html.indexOf('报告见附件'));
    expect(html.indexOf('报告见附件')).toBeLessThan(html.indexOf('n=0'));
    // The history (a reload) shows the same HTML.
    expect((await v.history()).turns).toMatchObject([{ id, status: 'answered', html }]);
    // The page's CSP still loads pictures from this origin only.
    expect(String((await v.raw('GET', '/chat')).headers['content-security-policy'])).toContain("img-src 'self';");

    // The visitor's browser gets exactly the bytes, with the answer page's media headers.
    for (const [n, name, type] of [[2, 'cat.png', 'image/png'], [0, 'drawn.jpg', 'image/jpeg']] as const) {
      const r = await get(at(`chat/api/media?id=${id}&n=${n}`), v.cookie);
      expect(r.status, name).toBe(200);
      expect(r.headers.get('content-type')).toBe(type);
      expect(r.headers.get('content-disposition')).toBe('inline');
      expect(r.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
      expect(r.headers.get('cache-control')).toBe('private, max-age=3600');
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
      expect(Buffer.from(await r.arrayBuffer()).equals(host.bytes[name])).toBe(true);
    }
    const pdf = await get(at(`chat/api/media?id=${id}&n=1`), v.cookie);
    expect(pdf.status).toBe(200);
    expect(pdf.headers.get('content-type')).toBe('application/octet-stream');
    expect(pdf.headers.get('content-disposition')).toBe('attachment; filename="report.pdf"');
    expect(pdf.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
    expect(Buffer.from(await pdf.arrayBuffer()).equals(host.bytes['report.pdf'])).toBe(true);
    // Asked again, from the server's cache: the host is asked once per file.
    expect((await get(at(`chat/api/media?id=${id}&n=2`), v.cookie)).status).toBe(200);
    expect(host.hits.get('cat.png')).toBe(1);
  });

  it('serves them to the visitor who asked only: another visitor, forged or foreign paths, other sites get nothing', async () => {
    const { host, v, id } = await pictured();
    const other = await visitor();
    const hits = () => [...host.hits.values()].reduce((a, b) => a + b, 0);
    const before = hits();
    expect((await get(at(`chat/api/media?id=${id}&n=2`), other.cookie)).status).toBe(404);
    expect((await get(at(`chat/api/media?id=${id}&n=2`), '')).status).toBe(401);
    expect((await get(at(`chat/api/media?id=${id}&n=2`), v.cookie, { 'Sec-Fetch-Site': 'cross-site' })).status).toBe(403);
    for (const query of [`id=${messageId()}&n=0`, `id=${id}&n=3`, `id=${id}&n=99`, `id=${id}&n=x`, `id=${id}&n=-1`, `id=${id}&n=1.0`, `id=${id}&n=`, `id=${id}`, 'n=0', `id=${id}/../x&n=0`]) {
      expect((await get(at(`chat/api/media?${query}`), v.cookie)).status, query).toBe(404);
    }
    expect(hits()).toBe(before); // nothing refused was fetched
    // The owner still gets it.
    expect((await get(at(`chat/api/media?id=${id}&n=2`), v.cookie)).status).toBe(200);
  });

  it('an answer shown whole after a new conversation cleared it keeps its pictures', async () => {
    const { v, id } = await pictured();
    await v.post('new', { id: messageId() });
    await eventually(async () => (await records()).find((m) => m.question === '画一只猫')?.status === 'cleared');
    const turn = (await v.history()).turns.find((t) => t.id === id);
    expect(turn?.html).toContain(`<img src="chat/api/media?id=${id}&amp;n=2"`);
    expect((await get(at(`chat/api/media?id=${id}&n=2`), v.cookie)).status).toBe(200);
  });

  it('on laf the page asks the chat function, the path in p', () => {
    expect(chatUrls('laf').media('abcdefgh12', 3)).toBe('chat?p=/api/media&id=abcdefgh12&n=3');
    expect(chatUrls('path').media('abcdefgh12', 3)).toBe('chat/api/media?id=abcdefgh12&n=3');
  });
});
