/**
 * The operator console's first part over real HTTP (issue: console): off without ADMIN_TOKEN,
 * login with the token only, attempts limited, the session cookie's attributes, no data without a
 * session, CSRF on every state change, logout, and each day's numbers from a scripted run.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../lib/config';
import { LOGIN_FAILURES_ALLOWED } from '../../../lib/web/console/handler';
import { ConfigError } from '../../../lib/errors';
import { startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';
import { call } from '../../support/wire';

let h: Harness;
afterEach(async () => h?.close());

const ADMIN = 'console-token-0123456789abcdef';
const form = (body: Record<string, string>) => ({ method: 'POST', body: new URLSearchParams(body).toString(), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });

async function login(): Promise<{ cookie: string; setCookie: string }> {
  const r = await fetch(`${h.origin}/admin/login`, { ...form({ token: ADMIN }), redirect: 'manual' });
  expect(r.status).toBe(303);
  const setCookie = r.headers.get('set-cookie') ?? '';
  return { cookie: setCookie.split(';')[0] as string, setCookie };
}

describe('the console', () => {
  it('is off without ADMIN_TOKEN, and refuses a short one', async () => {
    h = await startHarness();
    expect((await call(`${h.origin}/admin`)).status).toBe(404);
    expect(() => loadConfig({ WECHAT_TOKEN: 'token123', DIFY_API_KEY: 'app-x', ADMIN_TOKEN: 'short' })).toThrow(ConfigError);
  });

  it('logs in with the token only; the session cookie is HttpOnly and SameSite=Strict; no data without it', async () => {
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN } });
    const anon = await call(`${h.origin}/admin`);
    expect(anon.status).toBe(200);
    expect(anon.body).toContain('name="token"');
    expect((await call(`${h.origin}/admin/api/stats`)).status).toBe(401);
    const wrong = await call(`${h.origin}/admin/login`, form({ token: ADMIN.slice(0, -1) + 'x' }));
    expect(wrong.status).toBe(401);
    expect(wrong.body).not.toContain(ADMIN);
    const { cookie, setCookie } = await login();
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    expect(setCookie).toMatch(/Path=\/admin/);
    const r = await fetch(`${h.origin}/admin`, { headers: { cookie } });
    expect(r.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(await r.text()).toContain('最近 7 天');
    // A made-up session id is no session.
    expect((await call(`${h.origin}/admin/api/stats`, { headers: { cookie: `wdb_admin=${'A'.repeat(43)}` } })).status).toBe(401);
  });

  it('shows each day’s numbers of how questions ended', async () => {
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN } });
    await h.wechat.send('oConsole', '你好');
    await h.wechat.send('oConsole', '再见');
    const { cookie } = await login();
    const api = (await (await fetch(`${h.origin}/admin/api/stats?days=1`, { headers: { cookie } })).json()) as { days: { questions?: number; via?: { reply1?: number } }[] };
    expect(api.days.at(-1)?.questions).toBe(2);
    expect(api.days.at(-1)?.via?.reply1).toBe(2);
    const html = await (await fetch(`${h.origin}/admin`, { headers: { cookie } })).text();
    expect(html).toContain(`<td>${h.app.store.dayOf(Date.now())}</td><td>2</td><td>2</td>`);
  });

  it('lists the newest questions with masked senders, filters by status, and opens a record', async () => {
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN }, dify: { script: (b) => (b.query === '坏' ? { kind: 'http', status: 503, body: '{"code":"x","message":"x","status":503}' } : { kind: 'answer', text: `答:${String(b.query)}` }) } });
    await h.wechat.send('oListUser0001', '第一个问题');
    await h.wechat.send('oListUser0001', '坏');
    const { cookie } = await login();
    const html = await (await fetch(`${h.origin}/admin`, { headers: { cookie } })).text();
    expect(html).toContain('最近的问题');
    expect(html).toContain('oLis…0001');
    expect(html).not.toContain('oListUser0001');
    expect(html.indexOf('坏')).toBeLessThan(html.indexOf('第一个问题')); // newest first
    const failedOnly = await (await fetch(`${h.origin}/admin?status=failed`, { headers: { cookie } })).text();
    expect(failedOnly).toContain('dify_http_503');
    expect(failedOnly).not.toContain('第一个问题');
    const href = /href="(\/admin\/q\?r=[^"]+)"/.exec(html)?.[1] as string;
    const rec = await (await fetch(`${h.origin}${href}`, { headers: { cookie } })).text();
    expect(rec).toContain('oListUser0001'); // the record view is where the OpenID is shown whole
    expect(rec).toContain('问题详情');
    // Without a session, no record either; a forged reference opens nothing.
    expect((await call(`${h.origin}${href}`)).body).not.toContain('oListUser0001');
    expect((await fetch(`${h.origin}/admin/q?r=${href.slice(-10)}AAAA`, { headers: { cookie } })).status).toBe(404);
  });

  it('needs the CSRF token to log out; logging out ends the session', async () => {
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN } });
    const { cookie } = await login();
    expect((await call(`${h.origin}/admin/logout`, { ...form({}), headers: { ...form({}).headers, cookie } })).status).toBe(403);
    const html = await (await fetch(`${h.origin}/admin`, { headers: { cookie } })).text();
    const csrf = /name="csrf" value="([0-9a-f]{64})"/.exec(html)?.[1] as string;
    const out = await fetch(`${h.origin}/admin/logout`, { ...form({ csrf }), headers: { ...form({}).headers, cookie }, redirect: 'manual' });
    expect(out.status).toBe(303);
    expect((await call(`${h.origin}/admin/api/stats`, { headers: { cookie } })).status).toBe(401);
  });

  it('limits failed logins per client address, counting a burst exactly; the right token always gets in', async () => {
    // With a store a network hop away (MongoDB, laf), a check and a count made apart let a burst through.
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN }, storeLatencyMs: 5 });
    const login = (from: string, token: string, headers: Record<string, string> = {}) => {
      const f = form({ token });
      return call(`${h.origin}/admin/login`, { ...f, headers: { ...f.headers, ...headers }, from });
    };
    // 100 wrong tokens at once from one address (each claiming another address in X-Forwarded-For,
    // which counts for nothing without TRUSTED_PROXY_HEADER), and the owner amid them, from that
    // address and from another.
    const attack = Array.from({ length: 100 }, (_, i) => login('127.0.0.2', `guess-${i}`, { 'X-Forwarded-For': `198.51.100.${i}` }));
    const ownerThere = login('127.0.0.2', ADMIN);
    const ownerElsewhere = login('127.0.0.3', ADMIN);
    const statuses = (await Promise.all(attack)).map((r) => r.status);
    expect(statuses.filter((s) => s === 401)).toHaveLength(LOGIN_FAILURES_ALLOWED);
    expect(statuses.filter((s) => s === 429)).toHaveLength(100 - LOGIN_FAILURES_ALLOWED);
    expect((await ownerThere).status).toBe(303);
    expect((await ownerElsewhere).status).toBe(303);
    // Afterwards: that address is refused, but the right token from it still logs in.
    expect((await login('127.0.0.2', 'one-more')).status).toBe(429);
    expect((await login('127.0.0.2', ADMIN)).status).toBe(303);
    // Another address has its own count.
    for (let i = 0; i < LOGIN_FAILURES_ALLOWED; i++) expect((await login('127.0.0.4', `other-${i}`)).status).toBe(401);
    expect((await login('127.0.0.4', 'other-more')).status).toBe(429);
    // The store keys the counts by a hash, never the address itself.
    const kv = JSON.stringify((await h.app.store.snapshot()).kv);
    expect(kv).toContain('console:login-failures:');
    expect(kv).not.toMatch(/127\.0\.0\.[24]/);
  });

  it('behind a proxy, counts by the address the header TRUSTED_PROXY_HEADER names (its last entry, the one the proxy added)', async () => {
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN, TRUSTED_PROXY_HEADER: 'X-Forwarded-For' } });
    const login = (xff: string, token: string) => {
      const f = form({ token });
      return call(`${h.origin}/admin/login`, { ...f, headers: { ...f.headers, 'X-Forwarded-For': xff } });
    };
    // Every request comes from the proxy's socket (127.0.0.1); the client's claims left of the proxy's entry vary.
    for (let i = 0; i < LOGIN_FAILURES_ALLOWED; i++) expect((await login(`192.0.2.${i}, 203.0.113.7`, `guess-${i}`)).status).toBe(401);
    expect((await login('192.0.2.99, 203.0.113.7', 'more')).status).toBe(429);
    expect((await login('203.0.113.8', 'elsewhere')).status).toBe(401);
    expect((await login('192.0.2.1, 203.0.113.7', ADMIN)).status).toBe(303);
    // A request without the header (one that got past the proxy) is counted by its socket's address.
    const f = form({ token: 'direct' });
    expect((await call(`${h.origin}/admin/login`, f)).status).toBe(401);
    expect(() => loadConfig({ WECHAT_TOKEN: 'token123', DIFY_API_KEY: 'app-x', TRUSTED_PROXY_HEADER: 'x-forwarded-for, x-real-ip' })).toThrow(/TRUSTED_PROXY_HEADER/);
  });
});
