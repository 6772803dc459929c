/**
 * The operator console, first part (docs/console.md): log in with ADMIN_TOKEN, see each day's
 * numbers of how questions ended, log out. Everything under /admin; off (404) without ADMIN_TOKEN.
 *
 * Attacked from the internet by design: the token is compared in constant time; failed logins are
 * limited for the whole account (a proxy hides client addresses, and a 24+ character token is not
 * guessable within the limit anyway); sessions are random 256-bit ids kept in the store only as a
 * hash, in an HttpOnly SameSite=Strict cookie (Secure behind HTTPS); every state change needs the
 * session's CSRF token; the same strict headers as the answer page, nothing loaded from elsewhere.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'crypto';
import type { Clock } from '../clock';
import type { Config } from '../config';
import type { Logger } from '../log';
import type { Store, StatsRecord } from '../store';
import { escapeHtml } from '../text/html';
import { SECURITY_HEADERS } from '../page/handler';
import { PAGE_CSS } from '../page/assets';

export interface ConsoleRequest {
  method: string;
  /** The path below /admin: '' (overview), '/login', '/logout', '/api/stats', '/console.css'. */
  path: string;
  cookie: string | undefined;
  /** A form body (application/x-www-form-urlencoded), for POSTs. */
  body: string;
  /** The X-CSRF-Token header, if any. */
  csrfHeader: string | undefined;
  query: Record<string, string | undefined>;
}

export interface ConsoleResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface ConsoleDeps {
  config: Config;
  store: Store;
  clock: Clock;
  logger: Logger;
}

const COOKIE = 'wdb_admin';
export const SESSION_MS = 12 * 3_600_000;
/** Failed logins allowed in a sliding window, for the whole account. */
export const LOGIN_FAILURES_ALLOWED = 20;
const LOGIN_WINDOW_MS = 10 * 60_000;
const FAILURES_KEY = 'console:login-failures';
const sessionKey = (id: string) => `console:session:${createHash('sha256').update(id).digest('hex')}`;

// The answer page's headers, except that the console's own forms may post (to /admin only).
const HEADERS = {
  ...SECURITY_HEADERS,
  'Content-Security-Policy': (SECURITY_HEADERS['Content-Security-Policy'] ?? '').replace("form-action 'none'", "form-action 'self'"),
  'Cache-Control': 'no-store',
};

/** Constant-time equality of two strings of any length (their digests are compared). */
function sameSecret(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}

/** One field of an application/x-www-form-urlencoded body (laf's sandbox has no URLSearchParams). */
function formField(body: string, name: string): string | undefined {
  for (const pair of body.split('&')) {
    const at = pair.indexOf('=');
    const key = at === -1 ? pair : pair.slice(0, at);
    if (key !== name) continue;
    try {
      return decodeURIComponent(pair.slice(at + 1).replace(/\+/g, ' '));
    } catch {
      return undefined; // malformed percent-encoding
    }
  }
  return undefined;
}

function cookieValue(header: string | undefined): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === COOKIE) return v.join('=');
  }
  return undefined;
}

/** The answer page's stylesheet, wider, with numbers that never wrap. */
const CONSOLE_CSS = `${PAGE_CSS}main{max-width:1120px}.md td,.md th{white-space:nowrap;min-width:0}.md td{font-variant-numeric:tabular-nums}button{font:inherit;padding:4px 14px}\n`;

const COUNTERS: [string, string][] = [
  ['questions', '问题'],
  ['answered', '已回答'],
  ['failed', '失败'],
  ['cleared', '已清除'],
  ['via.reply1', '首次回复送达'],
  ['via.reply2', '第二次'],
  ['via.reply3', '第三次'],
  ['via.fetch', '回复 1'],
  ['via.push', '推送'],
  ['via.page', '网页'],
  ['tokens', 'tokens'],
];

function counter(rec: StatsRecord | undefined, path: string): number {
  let v: unknown = rec;
  for (const k of path.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return typeof v === 'number' ? v : 0;
}

export function createConsoleHandler(deps: ConsoleDeps) {
  const { config, store, clock, logger } = deps;
  const token = config.console.token;
  const secure = (config.page.publicUrl ?? '').startsWith('https://');

  const page = (status: number, title: string, main: string, extra: Record<string, string> = {}): ConsoleResponse => ({
    status,
    headers: { ...HEADERS, 'Content-Type': 'text/html; charset=utf-8', ...extra },
    body:
      '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">' +
      `<meta name="robots" content="noindex,nofollow"><title>${escapeHtml(title)}</title><link rel="stylesheet" href="/admin/console.css"></head>` +
      `<body><main>${main}</main></body></html>`,
  });
  const loginPage = (status: number, message = '') =>
    page(
      status,
      '登录控制台',
      `<h1>控制台</h1>${message ? `<p class="failed">${escapeHtml(message)}</p>` : ''}` +
        '<form method="post" action="/admin/login"><label>ADMIN_TOKEN <input type="password" name="token" autocomplete="current-password" required></label> <button type="submit">登录</button></form>',
    );
  const csrfFor = (session: string) => createHmac('sha256', session).update('console-csrf').digest('hex');
  const json = (status: number, value: unknown): ConsoleResponse => ({ status, headers: { ...HEADERS, 'Content-Type': 'application/json; charset=utf-8' }, body: JSON.stringify(value) });

  async function session(req: ConsoleRequest): Promise<string | undefined> {
    const id = cookieValue(req.cookie);
    if (!id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
    return (await store.kvGet(sessionKey(id), clock.now())) === 'ok' ? id : undefined;
  }

  async function overview(id: string): Promise<ConsoleResponse> {
    const now = clock.now();
    const days = Array.from({ length: 7 }, (_, i) => store.dayOf(now - (6 - i) * 86_400_000));
    const stats = await store.statsBetween(days[0] as string, days[6] as string);
    const byDay = new Map(stats.map((s) => [s._id, s]));
    const head = `<tr><th>日期</th>${COUNTERS.map(([, label]) => `<th>${escapeHtml(label)}</th>`).join('')}</tr>`;
    const rows = days
      .map((d) => `<tr><td>${d}</td>${COUNTERS.map(([k]) => `<td>${counter(byDay.get(d), k)}</td>`).join('')}</tr>`)
      .join('');
    return page(
      200,
      '控制台',
      '<h1>控制台</h1><p>最近 7 天，每个问题的结局（按天统计）。</p>' +
        `<div class="md"><div class="table"><table><thead>${head}</thead><tbody>${rows}</tbody></table></div></div>` +
        `<form method="post" action="/admin/logout"><input type="hidden" name="csrf" value="${csrfFor(id)}"><button type="submit">退出</button></form>`,
    );
  }

  return async function handleConsole(req: ConsoleRequest): Promise<ConsoleResponse> {
    if (!token) return { status: 404, headers: { ...HEADERS, 'Content-Type': 'text/plain; charset=utf-8' }, body: 'Not Found' };
    if (req.path === '/console.css' && req.method === 'GET') {
      return { status: 200, headers: { ...SECURITY_HEADERS, 'Content-Type': 'text/css; charset=utf-8', 'Cache-Control': 'public, max-age=3600' }, body: CONSOLE_CSS };
    }
    if (req.path === '/login' && req.method === 'POST') {
      const now = clock.now();
      if ((await store.hits(FAILURES_KEY, now)) >= LOGIN_FAILURES_ALLOWED) {
        logger.warn('console login refused: too many failed attempts');
        return loginPage(429, '尝试次数过多，请 10 分钟后再试。');
      }
      const given = formField(req.body, 'token');
      if (typeof given !== 'string' || !sameSecret(given, token)) {
        await store.bump(FAILURES_KEY, LOGIN_WINDOW_MS, now);
        logger.warn('console login failed');
        return loginPage(401, 'ADMIN_TOKEN 不对。');
      }
      const id = randomBytes(32).toString('base64url');
      await store.kvPut(sessionKey(id), 'ok', now + SESSION_MS);
      logger.info('console login');
      const cookie = `${COOKIE}=${id}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=${SESSION_MS / 1000}${secure ? '; Secure' : ''}`;
      return { status: 303, headers: { ...HEADERS, Location: '/admin', 'Set-Cookie': cookie, 'Content-Type': 'text/plain; charset=utf-8' }, body: '' };
    }
    const id = await session(req);
    if (!id) {
      // No data without a session; the login page says nothing else.
      if (req.path.startsWith('/api/')) return json(401, { error: 'login required' });
      return req.path === '' || req.path === '/' || req.path === '/login' ? loginPage(req.path === '/login' ? 405 : 200) : loginPage(401);
    }
    if (req.method === 'POST') {
      const sent = req.csrfHeader ?? formField(req.body, 'csrf');
      if (typeof sent !== 'string' || !sameSecret(sent, csrfFor(id))) return page(403, '请求被拒绝', '<p class="failed">请求缺少有效的 CSRF 令牌。</p>');
      if (req.path === '/logout') {
        await store.kvExpire(sessionKey(id), 'ok');
        return { status: 303, headers: { ...HEADERS, Location: '/admin', 'Set-Cookie': `${COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`, 'Content-Type': 'text/plain; charset=utf-8' }, body: '' };
      }
      return json(404, { error: 'not found' });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return { status: 405, headers: { ...HEADERS, Allow: 'GET, POST', 'Content-Type': 'text/plain; charset=utf-8' }, body: 'Method Not Allowed' };
    if (req.path === '' || req.path === '/') return overview(id);
    if (req.path === '/api/stats') {
      const days = Math.min(90, Math.max(1, Number(req.query['days'] ?? 7) || 7));
      const now = clock.now();
      return json(200, { days: await store.statsBetween(store.dayOf(now - (days - 1) * 86_400_000), store.dayOf(now)) });
    }
    return json(404, { error: 'not found' });
  };
}

export type ConsoleHandler = ReturnType<typeof createConsoleHandler>;
