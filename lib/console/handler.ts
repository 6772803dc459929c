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
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'crypto';
import type { Clock } from '../clock';
import type { Config } from '../config';
import type { Logger } from '../log';
import type { QuestionStatus, Store } from '../store';
import { pageCount, statCount } from '../store';
import { quote } from '../text/quote';
import { escapeHtml } from '../text/html';
import { SECURITY_HEADERS } from '../page/handler';
import { PAGE_CSS } from '../page/assets';
import { CONSOLE_JS, uplotAsset } from './assets';

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
const CONSOLE_CSS = `${PAGE_CSS}main{max-width:1120px}#charts{display:grid;gap:12px}.chart h3{margin:8px 0 4px;font-size:15px}.md td,.md th{white-space:nowrap;min-width:0}.md td{font-variant-numeric:tabular-nums}button{font:inherit;padding:4px 14px}\n`;

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

/** An OpenID as the console's lists show it: enough to tell users apart, not enough to reuse. */
export function maskOpenId(id: string): string {
  return id.length <= 8 ? '…' : `${id.slice(0, 4)}…${id.slice(-4)}`;
}

const STATUSES: readonly QuestionStatus[] = ['pending', 'answered', 'failed', 'cleared'];


export function createConsoleHandler(deps: ConsoleDeps) {
  const { config, store, clock, logger } = deps;
  const token = config.console.token;
  const secure = (config.page.publicUrl ?? '').startsWith('https://');

  const page = (status: number, title: string, main: string, extra: Record<string, string> = {}, scripts = false): ConsoleResponse => ({
    status,
    headers: { ...HEADERS, 'Content-Type': 'text/html; charset=utf-8', ...extra },
    body:
      '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">' +
      `<meta name="robots" content="noindex,nofollow"><title>${escapeHtml(title)}</title><link rel="stylesheet" href="/admin/console.css">` +
      `${scripts ? '<link rel="stylesheet" href="/admin/uplot.css">' : ''}</head>` +
      `<body><main>${main}</main>${scripts ? '<script src="/admin/uplot.js"></script><script src="/admin/console.js"></script>' : ''}</body></html>`,
  });
  const loginPage = (status: number, message = '') =>
    page(
      status,
      '登录控制台',
      `<h1>控制台</h1>${message ? `<p class="failed">${escapeHtml(message)}</p>` : ''}` +
        '<form method="post" action="/admin/login"><label>ADMIN_TOKEN <input type="password" name="token" autocomplete="current-password" required></label> <button type="submit">登录</button></form>',
    );
  // Record links carry the question's key sealed (AES-256-GCM under a key derived from ADMIN_TOKEN):
  // the key contains the OpenID, which the lists only show masked, also in their URLs.
  const sealKey = createHmac('sha256', token ?? '').update('console-record-links').digest();
  const seal = (key: string) => {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', sealKey, iv);
    const body = Buffer.concat([c.update(key, 'utf8'), c.final()]);
    return Buffer.concat([iv, c.getAuthTag(), body]).toString('base64url');
  };
  const unseal = (ref: string): string | undefined => {
    try {
      const raw = Buffer.from(ref, 'base64url');
      if (raw.length < 29) return undefined;
      const d = createDecipheriv('aes-256-gcm', sealKey, raw.subarray(0, 12));
      d.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
    } catch {
      return undefined; // not ours, or tampered with
    }
  };
  const csrfFor = (session: string) => createHmac('sha256', session).update('console-csrf').digest('hex');
  const json = (status: number, value: unknown): ConsoleResponse => ({ status, headers: { ...HEADERS, 'Content-Type': 'application/json; charset=utf-8' }, body: JSON.stringify(value) });

  async function session(req: ConsoleRequest): Promise<string | undefined> {
    const id = cookieValue(req.cookie);
    if (!id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
    return (await store.kvGet(sessionKey(id), clock.now())) === 'ok' ? id : undefined;
  }

  const when = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms + config.store.statsUtcOffsetMin * 60_000).toISOString().slice(5, 19).replace('T', ' '));
  const seconds = (from: number, to: number | undefined) => (to === undefined ? '' : ((to - from) / 1000).toFixed(1));

  /** The newest questions: masked sender, the question cut short, how it ended. */
  async function recent(status: QuestionStatus | undefined): Promise<string> {
    const items = await store.recentQuestions(50, status);
    const filters = ['', ...STATUSES].map((s) => `<a href="/admin${s ? `?status=${s}` : ''}">${s || '全部'}</a>`).join(' · ');
    const rows = items
      .map(
        (q) =>
          `<tr><td>${when(q.createdAt)}</td><td>${escapeHtml(maskOpenId(q.user))}</td>` +
          `<td><a href="/admin/q?r=${seal(q._id)}">${escapeHtml(quote(q.question ?? ''))}</a></td>` +
          `<td>${escapeHtml(q.status ?? '')}</td><td>${escapeHtml(q.deliveredVia ?? '')}</td><td>${seconds(q.createdAt, q.answeredAt)}</td>` +
          `<td>${escapeHtml(q.backend ?? '')}</td><td>${escapeHtml(q.failure?.code ?? '')}</td></tr>`,
      )
      .join('');
    return (
      `<h2>最近的问题</h2><p>${filters}</p>` +
      '<div class="md"><div class="table"><table><thead><tr><th>时间</th><th>用户</th><th>问题</th><th>状态</th><th>送达方式</th><th>回答用时 s</th><th>后端</th><th>错误</th></tr></thead>' +
      `<tbody>${rows || '<tr><td colspan="8">还没有问题。</td></tr>'}</tbody></table></div></div>`
    );
  }

  /** One question in full: the record view (the only place the OpenID is shown whole). */
  async function record(key: string): Promise<ConsoleResponse> {
    const q = await store.message(key);
    if (!q || q.kind !== 'question') return page(404, '没有这个问题', '<p><a href="/admin">← 控制台</a></p><p>没有这个问题（可能已过期）。</p>');
    const row = (k: string, v: string) => `<tr><th>${k}</th><td>${v}</td></tr>`;
    const fields = [
      row('用户', escapeHtml(q.user)),
      row('状态', escapeHtml(q.status ?? '')),
      row('后端', escapeHtml(q.backend ?? '')),
      row('提问', escapeHtml(when(q.createdAt))),
      row('首个字', `${escapeHtml(when(q.firstTextAt))} ${q.firstTextAt ? `(+${seconds(q.createdAt, q.firstTextAt)} s)` : ''}`),
      row('回答完成', `${escapeHtml(when(q.answeredAt))} ${q.answeredAt ? `(+${seconds(q.createdAt, q.answeredAt)} s)` : ''}`),
      row('送达', `${escapeHtml(q.deliveredVia ?? '未送达')} ${escapeHtml(when(q.deliveredAt))}`),
      row('微信投递次数', String(q.deliveries)),
      row('已送出页数', `${q.pagesDelivered ?? 0} / ${pageCount(q)}`),
      row('模型调用次数', String(q.attempts ?? 1)),
      row('tokens', String(q.usage?.total_tokens ?? '')),
      row('错误', q.failure ? escapeHtml(`${q.failure.code} (${q.failure.kind}, HTTP ${q.failure.status}${q.failure.backendCode ? `, ${q.failure.backendCode}` : ''})`) : ''),
    ].join('');
    return page(
      200,
      '问题详情',
      `<p><a href="/admin">← 控制台</a></p><h1>问题详情</h1><blockquote class="q">${escapeHtml(q.question ?? '')}</blockquote>` +
        `<div class="md"><div class="table"><table><tbody>${fields}</tbody></table></div></div>` +
        `<h2>回答</h2><pre class="plain">${escapeHtml(q.answer ?? '')}</pre>`,
    );
  }

  async function overview(id: string, status: QuestionStatus | undefined): Promise<ConsoleResponse> {
    const now = clock.now();
    const days = Array.from({ length: 7 }, (_, i) => store.dayOf(now - (6 - i) * 86_400_000));
    const chartDays = Array.from({ length: 14 }, (_, i) => store.dayOf(now - (13 - i) * 86_400_000));
    const stats = await store.statsBetween(days[0] as string, days[6] as string);
    const byDay = new Map(stats.map((s) => [s._id, s]));
    const head = `<tr><th>日期</th>${COUNTERS.map(([, label]) => `<th>${escapeHtml(label)}</th>`).join('')}</tr>`;
    const rows = days
      .map((d) => `<tr><td>${d}</td>${COUNTERS.map(([k]) => `<td>${statCount(byDay.get(d), k)}</td>`).join('')}</tr>`)
      .join('');
    return page(
      200,
      '控制台',
      '<h1>控制台</h1>' +
        `<div id="charts" data-api="/admin/api/stats?days=14" data-days="${chartDays.join(',')}" data-offset-min="${config.store.statsUtcOffsetMin}"></div>` +
        '<p>最近 7 天，每个问题的结局（按天统计）。</p>' +
        `<div class="md"><div class="table"><table><thead>${head}</thead><tbody>${rows}</tbody></table></div></div>` +
        (await recent(status)) +
        `<form method="post" action="/admin/logout"><input type="hidden" name="csrf" value="${csrfFor(id)}"><button type="submit">退出</button></form>`,
      {},
      uplotAsset('uPlot.iife.min.js') !== null,
    );
  }

  return async function handleConsole(req: ConsoleRequest): Promise<ConsoleResponse> {
    if (!token) return { status: 404, headers: { ...HEADERS, 'Content-Type': 'text/plain; charset=utf-8' }, body: 'Not Found' };
    const asset = ({ '/uplot.js': ['text/javascript', uplotAsset('uPlot.iife.min.js')], '/uplot.css': ['text/css', uplotAsset('uPlot.min.css')], '/console.js': ['text/javascript', CONSOLE_JS] } as Record<string, [string, string | null]>)[req.path];
    if (asset && asset[1] !== null && req.method === 'GET') {
      return { status: 200, headers: { ...SECURITY_HEADERS, 'Content-Type': `${asset[0]}; charset=utf-8`, 'Cache-Control': 'public, max-age=3600' }, body: asset[1] };
    }
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
    if (req.path === '' || req.path === '/') {
      const status = STATUSES.find((s) => s === req.query['status']);
      return overview(id, status);
    }
    if (req.path === '/q') return record(unseal(req.query['r'] ?? '') ?? '');
    if (req.path === '/api/stats') {
      const days = Math.min(90, Math.max(1, Number(req.query['days'] ?? 7) || 7));
      const now = clock.now();
      return json(200, { days: await store.statsBetween(store.dayOf(now - (days - 1) * 86_400_000), store.dayOf(now)) });
    }
    return json(404, { error: 'not found' });
  };
}

export type ConsoleHandler = ReturnType<typeof createConsoleHandler>;
