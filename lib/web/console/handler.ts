/**
 * The operator console (docs/console.md): log in with ADMIN_TOKEN; the overview's plots and
 * numbers, the newest questions and each one's record, Try it, the menu and keyword replies, and
 * health. Everything under /admin (laf: `/admin?p=…`); off (404) without ADMIN_TOKEN.
 *
 * Attacked from the internet by design: the token is compared in constant time; failed logins are
 * limited per client address (lib/console/client.ts), and the right token is never refused (a 24+
 * character token is not guessable, so a lockout would only serve an attacker keeping the owner
 * out); sessions are random 256-bit ids kept in the store only as a
 * hash, in an HttpOnly SameSite=Strict cookie (Secure behind HTTPS); every state change needs the
 * session's CSRF token; the same strict headers as the answer page, nothing loaded from elsewhere.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'crypto';
import type { Answerer } from '../../core/answerer';
import type { Bot } from '../../core/bot';
import type { Channel, Channels, HealthItem } from '../../core/channel';
import type { WechatOaChannel } from '../../channels/wechat-oa';
import { isWechatOa } from '../../channels/wechat-oa';
import { isIlink, maskId, maskSecret, qrSvg } from '../../channels/ilink';
import type { IlinkChannel } from '../../channels/ilink';
import type { Clock } from '../../util/clock';
import type { Config } from '../../config';
import { ModelError, WechatApiError, errorLogFields } from '../../errors';
import type { Logger } from '../../util/log';
import { floodGuard } from '../../util/log';
import type { PageResponse } from '../page/handler';
import { SECURITY_HEADERS } from '../page/handler';
import { PAGE_CSS } from '../page/assets';
import type { Store } from '../../store';
import { statCount, statKey } from '../../store';
import { escapeHtml } from '../../text/html';
import { WECHAT_ERRORS } from '../../channels/wechat-oa/api';
import { CONSOLE_JS } from './assets';
import { clientAddress, failuresKey } from './client';
import { uplotAsset } from './uplot';
import type { IlinkView, MenuData, Shell } from './views';
import { STATUSES, consoleUrls, doctorPage, healthPage, ilinkPage, menuPage, overviewPage, recordPage, tryPage } from './views';
import { runChecks } from '../doctor';

export interface ConsoleRequest {
  method: string;
  /** The path below /admin: '' (overview), '/login', '/logout', '/q', '/try', '/menu', '/health', '/api/…', assets. */
  path: string;
  cookie: string | undefined;
  /** The fields of a form body (application/x-www-form-urlencoded), for POSTs; the adapter parses it. */
  form: Record<string, string | undefined>;
  /** The X-CSRF-Token header, if any. */
  csrfHeader: string | undefined;
  query: Record<string, string | undefined>;
  /** The Last-Event-ID header, for Try it's stream. */
  lastEventId?: string | undefined;
  /** The socket's peer: the client, or the reverse proxy in front (on laf, laf's gateway). */
  remoteAddress: string | undefined;
  /** The request's headers, lower-case names; only the one TRUSTED_PROXY_HEADER names is read. */
  headers: Readonly<Record<string, unknown>>;
}

/** A page, JSON, or a stream (Try it's answer), as the answer page's responses are. */
export type ConsoleResponse = PageResponse;

export interface ConsoleDeps {
  config: Config;
  store: Store;
  clock: Clock;
  logger: Logger;
  /** Try it: messages from the console's test user (lib/core/bot.ts `tryIt`), through its own channel. */
  bot: Pick<Bot, 'tryIt'>;
  tryChannel: Channel;
  /** Every channel instance: their health, the list's filter, the Official Account's menu. */
  channels: Channels;
  /** Try it: the answer page's stream of a question, by its key (lib/web/page/handler.ts `follow`). */
  follow: (key: string, from: string | undefined) => Promise<PageResponse>;
  /** Health: a cheap call to the model backend. */
  answerer: Answerer;
  version: string;
}

const COOKIE = 'wdb_admin';
export const SESSION_MS = 12 * 3_600_000;
/** Failed logins allowed from one client address in a sliding window. */
export const LOGIN_FAILURES_ALLOWED = 20;
const LOGIN_WINDOW_MS = 10 * 60_000;
/** Try it's messages are WeChat-sized. */
export const TRY_MAX_CHARS = 2000;
/** Health checks that wait on the network give up after this long. */
const HEALTH_TIMEOUT_MS = 5000;
const sessionKey = (id: string) => `console:session:${createHash('sha256').update(id).digest('hex')}`;

// The answer page's headers, except that the console's own forms may post (to the console only).
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

/**
 * The fields of an application/x-www-form-urlencoded body (laf's sandbox has no URLSearchParams;
 * laf's own body parser hands the console an object instead). A field given twice counts once.
 */
export function parseForm(body: string): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const pair of body.split('&')) {
    if (pair === '') continue;
    const at = pair.indexOf('=');
    const key = at === -1 ? pair : pair.slice(0, at);
    if (Object.prototype.hasOwnProperty.call(out, key)) continue;
    try {
      out[key] = decodeURIComponent((at === -1 ? '' : pair.slice(at + 1)).replace(/\+/g, ' '));
    } catch {
      out[key] = undefined; // malformed percent-encoding
    }
  }
  return out;
}

function cookieValue(header: string | undefined): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === COOKIE) return v.join('=');
  }
  return undefined;
}

/** The answer page's stylesheet, wider, with numbers that never wrap, a navigation bar and Try it's chat. */
const CONSOLE_CSS =
  `${PAGE_CSS}main{max-width:1120px}#charts{display:grid;gap:12px}.chart h3{margin:8px 0 4px;font-size:15px}.chart .sum{margin:2px 0 0;font-size:13px;opacity:.8}` +
  '.qr svg{display:block;background:#fff}.md td,.md th{white-space:nowrap;min-width:0}.md td{font-variant-numeric:tabular-nums}button{font:inherit;padding:4px 14px}' +
  '.nav{margin:8px 0 12px;font-size:15px}.inline{display:inline}.ok{color:#1a7f37}' +
  '.chat{display:flex;flex-direction:column;gap:8px;margin:12px 0}.bubble{max-width:85%;padding:8px 12px;border-radius:10px;white-space:pre-wrap;overflow-wrap:anywhere}' +
  '.bubble.me{align-self:flex-end;background:#95ec69;color:#111}.bubble.bot{align-self:flex-start;background:rgba(127,127,127,.15)}.bubble.live{white-space:normal}' +
  '#ask textarea{width:100%;box-sizing:border-box;font:inherit;padding:8px}#ask button{margin-top:6px}\n';

/** What a WeChat API error means, with its code. */
function wechatProblem(err: unknown): string {
  if (err instanceof WechatApiError) {
    const meaning = WECHAT_ERRORS[err.errcode];
    return `微信返回错误 ${err.errcode}${meaning ? `（${meaning}）` : ''}`;
  }
  return `无法调用微信接口：${err instanceof Error ? err.message : String(err)}`;
}

/** `p`, or a rejection naming what took too long. */
function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${HEALTH_TIMEOUT_MS / 1000} s`)), HEALTH_TIMEOUT_MS);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

export function createConsoleHandler(deps: ConsoleDeps) {
  const { config, store, clock, logger } = deps;
  // Lines anyone can cause by sending bad requests: bounded, so a flood cannot flood the log.
  const refusals = floodGuard(logger);
  const token = config.console.token;
  const secure = (config.page.publicUrl ?? '').startsWith('https://');
  const u = consoleUrls(config.page.routes);
  const NEEDS_APP = '需要设置 WECHAT_APPID 和 WECHAT_APPSECRET（微信开发者平台 → 我的业务 → 公众号 → 基础信息 → 开发密钥），控制台才能读取和发布菜单。';

  const html = (status: number, title: string, main: string, opts: { extra?: Record<string, string>; scripts?: boolean; refreshS?: number } = {}): ConsoleResponse => ({
    status,
    headers: { ...HEADERS, 'Content-Type': 'text/html; charset=utf-8', ...opts.extra },
    body:
      '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">' +
      `<meta name="robots" content="noindex,nofollow">${opts.refreshS ? `<meta http-equiv="refresh" content="${opts.refreshS}">` : ''}<title>${escapeHtml(title)}</title><link rel="stylesheet" href="${escapeHtml(u('/console.css'))}">` +
      `${opts.scripts && uplot ? `<link rel="stylesheet" href="${escapeHtml(u('/uplot.css'))}">` : ''}</head>` +
      `<body><main>${main}</main>${opts.scripts ? `${uplot ? `<script src="${escapeHtml(u('/uplot.js'))}"></script>` : ''}<script src="${escapeHtml(u('/console.js'))}"></script>` : ''}</body></html>`,
  });
  const uplot = uplotAsset('uPlot.iife.min.js') !== null;
  const loginPage = (status: number, message = '') =>
    html(
      status,
      '登录控制台',
      `<h1>控制台</h1>${message ? `<p class="failed">${escapeHtml(message)}</p>` : ''}` +
        `<form method="post" action="${escapeHtml(u('/login'))}"><label>ADMIN_TOKEN <input type="password" name="token" autocomplete="current-password" required></label> <button type="submit">登录</button></form>`,
    );
  const redirect = (to: string, cookie?: string): ConsoleResponse => ({
    status: 303,
    headers: { ...HEADERS, Location: to, 'Content-Type': 'text/plain; charset=utf-8', ...(cookie ? { 'Set-Cookie': cookie } : {}) },
    body: '',
  });
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
  const daysBack = (n: number) => Array.from({ length: n }, (_, i) => store.dayOf(clock.now() - (n - 1 - i) * 86_400_000));

  async function session(req: ConsoleRequest): Promise<string | undefined> {
    const id = cookieValue(req.cookie);
    if (!id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
    return (await store.kvGet(sessionKey(id), clock.now())) === 'ok' ? id : undefined;
  }

  async function overview(s: Shell, req: ConsoleRequest): Promise<ConsoleResponse> {
    const days = daysBack(7);
    const status = STATUSES.find((st) => st === req.query['status']);
    const names = userChannels().map((c) => c.name);
    const channel = names.find((n) => n === req.query['channel']);
    const [stats, recent] = await Promise.all([store.statsBetween(days[0] as string, days[6] as string), store.recentQuestions(50, status, channel)]);
    return html(200, '控制台', overviewPage(s, { days, chartDays: daysBack(14), stats, recent, status, channels: names, channel, offsetMin: config.store.statsUtcOffsetMin, seal }), { scripts: true });
  }

  async function record(s: Shell, key: string): Promise<ConsoleResponse> {
    const q = await store.message(key);
    if (!q || q.kind !== 'question') return html(404, '没有这个问题', `<p><a href="${escapeHtml(u(''))}">← 控制台</a></p><p>没有这个问题（可能已过期）。</p>`);
    return html(200, '问题详情', recordPage(s, q, config.store.statsUtcOffsetMin));
  }

  /** The channel instances people use (not the console's own). */
  const userChannels = () => deps.channels.list.filter((c) => c !== deps.tryChannel);
  /** The Official Account whose menu the console shows: the default one. */
  const account = (): WechatOaChannel | undefined => deps.channels.list.find((c): c is WechatOaChannel => isWechatOa(c) && c.instance === '');

  async function menu(s: Shell, notice?: MenuData['notice']): Promise<ConsoleResponse> {
    let live: MenuData['live'];
    const oa = account();
    const wechat = oa?.account;
    if (!wechat) live = { unconfigured: NEEDS_APP };
    else {
      try {
        live = await wechat.api.currentMenu(await wechat.tokens.get());
      } catch (err) {
        logger.warn('console could not read the menu', errorLogFields(err));
        live = { error: wechatProblem(err) };
      }
    }
    const days = daysBack(7);
    const stats = await store.statsBetween(days[0] as string, days[6] as string);
    const keywordCounts = (name: string) => stats.reduce((sum, d) => sum + statCount(d, `keyword.${statKey(name)}`), 0);
    const status = notice && !notice.ok ? 502 : 200;
    return html(status, '菜单与关键词', menuPage(s, { configured: oa?.settings.menuDefinition, live, notice, keywords: config.keywords, keywordCounts }));
  }

  async function publishMenu(s: Shell): Promise<ConsoleResponse> {
    const oa = account();
    const definition = oa?.settings.menuDefinition;
    const wechat = oa?.account;
    if (!wechat) return menu(s, { ok: false, text: NEEDS_APP });
    if (!definition) return menu(s, { ok: false, text: '没有设置 MENU，没有可发布的菜单。' });
    try {
      await wechat.api.createMenu(await wechat.tokens.get(), definition);
    } catch (err) {
      logger.warn('console could not publish the menu', errorLogFields(err));
      return menu(s, { ok: false, text: `发布失败：${wechatProblem(err)}` });
    }
    logger.info('menu published from the console', { buttons: definition.button.length });
    return redirect(u('/menu', { published: String(definition.button.length) }));
  }

  /** The personal-WeChat (iLink) instances: their sessions (masked), polling, and a login in progress. */
  const ilinks = (): IlinkChannel[] => deps.channels.list.filter(isIlink);

  async function ilinkView(s: Shell, notice?: string): Promise<ConsoleResponse> {
    const now = clock.now();
    let active = false;
    const views = await Promise.all(
      ilinks().map(async (c): Promise<IlinkView> => {
        const st = await c.ilink.status();
        const cr = st.session.credentials;
        const l = st.login;
        if (l && !l.done) active = true;
        return {
          name: c.name,
          session: cr
            ? { state: st.session.expiredAt !== undefined ? 'expired' : 'live', botId: maskId(cr.botId), token: maskSecret(cr.token), owner: cr.userId ? maskId(cr.userId) : '', source: cr.source, savedAt: cr.savedAt, expiredAt: st.session.expiredAt }
            : { state: 'none' },
          login: l ? { status: l.status, done: l.done, result: l.result, qr: l.qr, qrSvg: l.qr && !l.done ? await qrSvg(l.qr) : undefined } : undefined,
          polling: !st.poller ? '还没有开始' : st.poller.until > now ? '进行中' : '无人持有（等待登录，或实例已停止）',
        };
      }),
    );
    const page = ilinkPage(s, views, config.store.statsUtcOffsetMin);
    // While a login is in progress the page follows it (no script needed).
    return html(200, 'iLink', (notice ? `<p class="failed" role="status">${escapeHtml(notice)}</p>` : '') + page, active ? { refreshS: 2 } : {});
  }

  async function ilinkAction(req: ConsoleRequest, what: 'login' | 'verify', s: Shell): Promise<ConsoleResponse> {
    const c = ilinks().find((x) => x.name === req.form['channel']);
    if (!c) return ilinkView(s, '没有这个 iLink 渠道。');
    if (what === 'login') {
      await c.ilink.startLogin();
      logger.info('console: iLink login started', { channel: c.name });
    } else if (!(await c.ilink.submitVerifyCode((req.form['code'] ?? '').trim()))) return ilinkView(s, '验证码应为数字，且需要有进行中的登录。');
    return redirect(u('/ilink'));
  }

  async function health(): Promise<HealthItem[]> {
    const check = async (name: string, run: () => Promise<Omit<HealthItem, 'name'>>): Promise<HealthItem> => {
      try {
        return { name, ...(await run()) };
      } catch (err) {
        const code = err instanceof ModelError ? `${err.code}${err.status ? `, HTTP ${err.status}` : ''}${err.backendCode ? `, ${err.backendCode}` : ''}: ` : '';
        return { name, ok: false, text: `${code}${err instanceof Error ? err.message : String(err)}` };
      }
    };
    const timed = async <T>(p: () => Promise<T>, what: string): Promise<[T, number]> => {
      const t0 = Date.now();
      const v = await within(p(), what);
      return [v, Date.now() - t0];
    };
    const channels = userChannels();
    // Each backend once, named by the instances bound to it when there are several.
    const backends = new Map<Answerer, string[]>([[deps.answerer, []]]);
    for (const c of channels) backends.set(c.answerer, [...(backends.get(c.answerer) ?? []), c.name]);
    const several = backends.size > 1;
    const items = await Promise.all([
      Promise.resolve({ name: '版本', ok: undefined, text: `wechat-dify-bot ${deps.version}` }),
      check('存储', async () => {
        const [, ms] = await timed(() => store.ping(), 'the store');
        return { ok: true, text: `${store.kind === 'mongodb' ? 'MongoDB' : '内置文件存储'}，可用（${ms} ms）` };
      }),
      ...[...backends]
        .filter(([a, names]) => a === deps.answerer || names.length > 0)
        .map(([a, names]) =>
          check(several && names.length > 0 ? `模型后端（${names.join('、')}）` : '模型后端', async () => {
            const [said, ms] = await timed(() => a.probe(), 'the backend');
            return { ok: true, text: `${a.kind}：${said}（${ms} ms）` };
          }),
        ),
      Promise.resolve({ name: '回答网页', ok: config.page.enabled ? true : undefined, text: config.page.enabled ? `开启（${config.page.publicUrl ?? ''}）` : '关闭（没有 PUBLIC_URL）' }),
      Promise.resolve({ name: '渠道', ok: undefined, text: channels.map((c) => c.name).join('、') }),
    ]);
    const perChannel = await Promise.all(
      channels.map(async (c): Promise<HealthItem[]> => {
        try {
          return c.health ? await within(c.health(), c.name) : [];
        } catch (err) {
          return [{ name: c.name, ok: false, text: err instanceof Error ? err.message : String(err) }];
        }
      }),
    );
    return [...items, ...perChannel.flat()];
  }

  /** `npm run doctor`'s checks, run by this server on its own store (on laf: laf's MongoDB, driver 5). */
  async function doctor() {
    const channels = userChannels();
    const backends = new Map<Answerer, string[]>([[deps.answerer, []]]);
    for (const c of channels) backends.set(c.answerer, [...(backends.get(c.answerer) ?? []), c.name]);
    return runChecks({ config, channels, backends, store: () => store.check(), clock });
  }

  async function tryIt(req: ConsoleRequest): Promise<ConsoleResponse> {
    const text = (req.form['text'] ?? '').trim();
    if (text === '' || text.length > TRY_MAX_CHARS) return json(400, { error: `text must be 1 to ${TRY_MAX_CHARS} characters` });
    const { reply, key } = await deps.bot.tryIt(deps.tryChannel, text, clock.now());
    const q = await store.message(key);
    // A question still being answered: the page follows it live, as the answer page does.
    const follow = q?.kind === 'question' && q.status === 'pending' ? u('/api/follow', { r: seal(key) }) : undefined;
    return json(200, { reply: reply ?? '', ...(follow ? { follow } : {}) });
  }

  const ASSETS: Record<string, () => [string, string | null]> = {
    '/uplot.js': () => ['text/javascript', uplotAsset('uPlot.iife.min.js')],
    '/uplot.css': () => ['text/css', uplotAsset('uPlot.min.css')],
    '/console.js': () => ['text/javascript', CONSOLE_JS],
    '/console.css': () => ['text/css', CONSOLE_CSS],
  };

  return async function handleConsole(req: ConsoleRequest): Promise<ConsoleResponse> {
    if (!token) return { status: 404, headers: { ...HEADERS, 'Content-Type': 'text/plain; charset=utf-8' }, body: 'Not Found' };
    const asset = Object.prototype.hasOwnProperty.call(ASSETS, req.path) ? (ASSETS[req.path] as () => [string, string | null])() : undefined;
    if (asset && asset[1] !== null && req.method === 'GET') {
      return { status: 200, headers: { ...SECURITY_HEADERS, 'Content-Type': `${asset[0]}; charset=utf-8`, 'Cache-Control': 'public, max-age=3600' }, body: asset[1] };
    }
    if (req.path === '/login' && req.method === 'POST') {
      const now = clock.now();
      const given = req.form['token'];
      // The token first: the right one always logs in, even from an address over its limit.
      if (typeof given !== 'string' || !sameSecret(given, token)) {
        const client = clientAddress(config.console.trustedProxyHeader, req.headers, req.remoteAddress);
        // Check and count in one step, so a burst of guesses cannot all pass the check first.
        if (!(await store.countUnder(failuresKey(token, client), LOGIN_FAILURES_ALLOWED, LOGIN_WINDOW_MS, now))) {
          refusals.warn('console login refused: too many failed attempts from this address');
          return loginPage(429, '尝试次数过多，请 10 分钟后再试。');
        }
        refusals.warn('console login failed');
        return loginPage(401, 'ADMIN_TOKEN 不对。');
      }
      const id = randomBytes(32).toString('base64url');
      await store.kvPut(sessionKey(id), 'ok', now + SESSION_MS);
      logger.info('console login');
      return redirect(u(''), `${COOKIE}=${id}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=${SESSION_MS / 1000}${secure ? '; Secure' : ''}`);
    }
    const id = await session(req);
    if (!id) {
      // No data without a session; the login page says nothing else.
      if (req.path.startsWith('/api/')) return json(401, { error: 'login required' });
      return req.path === '' || req.path === '/' || req.path === '/login' ? loginPage(req.path === '/login' ? 405 : 200) : loginPage(401);
    }
    const s: Shell = { u, csrf: csrfFor(id), ilink: ilinks().length > 0 };
    if (req.method === 'POST') {
      const sent = req.csrfHeader ?? req.form['csrf'];
      if (typeof sent !== 'string' || !sameSecret(sent, s.csrf)) {
        return req.path.startsWith('/api/') ? json(403, { error: 'CSRF token missing or wrong' }) : html(403, '请求被拒绝', '<p class="failed">请求缺少有效的 CSRF 令牌。</p>');
      }
      switch (req.path) {
        case '/logout':
          await store.kvExpire(sessionKey(id), 'ok');
          return redirect(u(''), `${COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`);
        case '/menu/publish':
          return publishMenu(s);
        case '/api/try':
          return tryIt(req);
        case '/ilink/login':
          return ilinkAction(req, 'login', s);
        case '/ilink/verify':
          return ilinkAction(req, 'verify', s);
        default:
          return json(404, { error: 'not found' });
      }
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return { status: 405, headers: { ...HEADERS, Allow: 'GET, POST', 'Content-Type': 'text/plain; charset=utf-8' }, body: 'Method Not Allowed' };
    switch (req.path) {
      case '':
      case '/':
        return overview(s, req);
      case '/q':
        return record(s, unseal(req.query['r'] ?? '') ?? '');
      case '/try':
        return html(200, '试一试', tryPage(s), { scripts: true });
      case '/menu': {
        const published = Number(req.query['published']);
        return menu(s, published > 0 ? { ok: true, text: `已发布 ${published} 个按钮。微信客户端约 5 分钟内更新（取消关注再关注可立即看到）。` } : undefined);
      }
      case '/health':
        return html(200, '健康', healthPage(s, await health()));
      case '/ilink':
        return ilinkView(s);
      case '/api/health':
        return json(200, { items: await health() });
      case '/doctor':
        return html(200, '检查', doctorPage(s, await doctor()));
      case '/api/follow': {
        const key = unseal(req.query['r'] ?? '');
        return key ? deps.follow(key, req.lastEventId ?? req.query['from']) : json(404, { status: 'gone' });
      }
      case '/api/stats': {
        const days = Math.min(90, Math.max(1, Number(req.query['days'] ?? 7) || 7));
        const now = clock.now();
        return json(200, { days: await store.statsBetween(store.dayOf(now - (days - 1) * 86_400_000), store.dayOf(now)) });
      }
      default:
        return json(404, { error: 'not found' });
    }
  };
}

export type ConsoleHandler = ReturnType<typeof createConsoleHandler>;
