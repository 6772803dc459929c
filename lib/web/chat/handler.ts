/**
 * The web chat at /chat (docs/web-chat.md; laf: `/chat?p=<path>`): the page, its script, style and
 * the browser's Markdown renderer, the embeddable widget, and the page's own endpoints, which hand a
 * visitor's messages to the web channel (lib/channels/web/) and show the answers from the store:
 *
 * - `GET  api/history[?before=<ms>]` the visitor's turns, newest 20 (oldest first), each as it is now;
 * - `POST api/ask {id, text}`       a message (a question, or a command such as /help);
 * - `GET  api/events?id=…`          a question's answer as it is written (Server-Sent Events, the
 *                                   answer page's stream: lib/web/page/handler.ts `follow`);
 * - `GET  api/turn?id=…[&from=…]`   the same as JSON, for clients that cannot stream;
 * - `POST api/stop {id}`            stop a question being answered;
 * - `POST api/new {id}`             a new conversation (as /clear);
 * - `POST api/seen {id}`            the page has shown a settled answer: it is delivered;
 * - `GET  api/media?id=…&n=…`       picture or file n of an answered question, fetched by this server
 *                                   and served from its origin (the answer page's: lib/web/page/media.ts);
 * - `GET  api/me`                   the visitor's CSRF token (for scripts and curl).
 *
 * It is on the internet by design. A visitor is a signed HttpOnly cookie (lib/web/chat/visitor.ts);
 * WEB_CHAT_ACCESS_CODE optionally gates the page (attempts limited per address); every change needs
 * the visitor's CSRF token and a same-origin request; questions are limited per visitor (RATE_LIMIT,
 * the core's) and per client address (WEB_CHAT_IP_LIMIT), one running answer per visitor; bodies and
 * texts are bounded; streams are the answer page's (bounded in number, per answer, in what a slow
 * client may owe); the page's CSP allows no inline script or style, loads nothing from elsewhere,
 * and may be framed only by WEB_CHAT_EMBED_ORIGINS.
 */
import { createHmac, randomBytes } from 'crypto';
import type { CoreConfig } from '../../core/settings';
import type { LiveAnswers } from '../../core/live';
import { delta, parsePosition, progressOf } from '../../core/follow';
import { normalizeCommand } from '../../core/bot';
import type { Decision } from '../../core/bot';
import { parseKey } from '../../core/keys';
import { failureText, errorLogFields } from '../../errors';
import type { MessageRecord, Store } from '../../store';
import type { Clock } from '../../util/clock';
import type { Logger } from '../../util/log';
import { floodGuard } from '../../util/log';
import { escapeHtml, markdownToHtml } from '../../text/html';
import type { WebChannel } from '../../channels/web/channel';
import { MESSAGE_ID } from '../../channels/web/channel';
import type { PageResponse, RenderAnswer } from '../page/handler';
import { SECURITY_HEADERS } from '../page/handler';
import { answerWithParts } from '../page/media';
import type { MediaServer } from '../page/media';
import { clientAddress, addressUnit } from '../console/client';
import { CHAT_CSS, CHAT_ICON, CHAT_JS, widgetJs } from './assets';
import { renderer } from '../render/renderer';
import type { Visitor } from './visitor';
import { csrfOf, gateOf, newVisitorId, openVisitor, sameText, sealVisitor } from './visitor';

export interface ChatRequest {
  method: string;
  /** The path below /chat: '' (the page), '/enter', '/widget.js', '/assets/<name>', '/api/<op>'. */
  path: string;
  query: Record<string, string | undefined>;
  cookie: string | undefined;
  /** The body, parsed by the adapter (JSON, or a form's fields; laf parses before us); undefined when absent or unreadable. */
  body: Record<string, unknown> | undefined;
  /** The request's headers, lower-case names. */
  headers: Readonly<Record<string, unknown>>;
  /** The socket's peer: the client, or the reverse proxy in front. */
  remoteAddress: string | undefined;
  lastEventId?: string | undefined;
}

export type ChatResponse = PageResponse;

export interface ChatDeps {
  config: CoreConfig;
  store: Store;
  clock: Clock;
  logger: Logger;
  live: LiveAnswers;
  /** The web channel, when WEB_CHAT is on; everything is 404 otherwise. */
  channel: WebChannel | undefined;
  /** A question's answer stream, by its key, for a caller that checked who may see it (lib/web/page/handler.ts). */
  follow: (key: string, from: string | undefined, render?: RenderAnswer) => Promise<PageResponse>;
  /** Serves an answer's files from this origin (lib/web/page/media.ts); without it, pictures stay links. */
  media?: MediaServer | undefined;
}

const COOKIE_DAYS = 180;
/** A message's text, at most (a long question, not a document). */
export const CHAT_MAX_CHARS = 4000;
/** Turns one history request returns. */
const HISTORY_PAGE = 20;
/** Wrong access codes allowed from one client address in a sliding window. */
/** How long one ask may hold its visitor's turn (`web-ask:` lease) before its question exists. */
const ASK_LEASE_MS = 10_000;
/** Access-code attempts (right or wrong) per address per window. */
export const CODE_ATTEMPTS_ALLOWED = 20;
const CODE_WINDOW_MS = 10 * 60_000;
/** Rendered answers kept (history pages are read again on every visit). */
const RENDER_CACHE = 64;

/** What a refused question says (the per-address cap: many people may share one address). */
const IP_LIMITED = '这个网络的提问太频繁了，请稍后再试。';
const BUSY = '上一个问题还在回答中：请等它写完，或点「停止」。';

/** The chat's pages and endpoints, relative to the page's own URL (`/chat`), so a path prefix in front keeps working. */
export function chatUrls(routes: CoreConfig['page']['routes']) {
  const u = (path: string) => (routes === 'laf' ? `chat?p=${path}` : `chat${path}`);
  return {
    u,
    /** Where the page gets part `n` of the visitor's question `id` (`api/media`). */
    media: (id: string, n: number) => `${u('/api/media')}${routes === 'laf' ? '&' : '?'}id=${encodeURIComponent(id)}&n=${n}`,
    /** Where a form posted to `<path>` redirects back to the page. */
    home: routes === 'laf' ? 'chat' : '../chat',
  };
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at !== -1 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}

const header = (req: ChatRequest, name: string): string | undefined => {
  const v = req.headers[name];
  return typeof v === 'string' ? v : Array.isArray(v) && typeof v[0] === 'string' ? v[0] : undefined;
};

export function createChatHandler(deps: ChatDeps) {
  const { config, store, clock, logger, live, channel } = deps;
  // Lines anyone can cause by sending bad requests: bounded, so a flood cannot flood the log.
  const refusals = floodGuard(logger);
  const texts = config.texts;
  const { u, home, media: mediaPath } = chatUrls(config.page.routes);
  const settings = channel?.settings;
  const embedding = (settings?.embedOrigins.length ?? 0) > 0;
  // Framed on other sites, the cookie is a third-party one: browsers send it only when it is
  // SameSite=None and Secure, and keep it apart per embedding site (Partitioned, CHIPS).
  const secure = embedding || (config.page.publicUrl ?? '').startsWith('https://');
  // Over https the name is `__Host-`: the browser then takes it only from this host itself, never set by a
  // sibling subdomain (another app on a shared domain) to slip a visitor of its choosing in; that prefix
  // requires Path=/.
  const COOKIE = secure ? '__Host-wdb_chat' : 'wdb_chat';
  const cookieAttrs = `Path=${secure ? '/' : '/chat'}; HttpOnly; Max-Age=${COOKIE_DAYS * 86_400}; ${embedding ? 'SameSite=None; Secure; Partitioned' : `SameSite=Lax${secure ? '; Secure' : ''}`}`;

  const csp =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; " +
    `frame-ancestors ${embedding ? (settings?.embedOrigins ?? []).join(' ') : "'none'"}`;
  const PAGE_HEADERS: Record<string, string> = { ...SECURITY_HEADERS, 'Content-Security-Policy': csp, 'Cache-Control': 'no-store' };
  // X-Frame-Options knows no list of sites: with embedding on, frame-ancestors alone decides.
  if (embedding) delete PAGE_HEADERS['X-Frame-Options'];
  const API_HEADERS: Record<string, string> = { ...SECURITY_HEADERS, 'Cache-Control': 'no-store' };

  const json = (status: number, value: unknown, extra: Record<string, string> = {}): ChatResponse => ({
    status,
    headers: { ...API_HEADERS, 'Content-Type': 'application/json; charset=utf-8', ...extra },
    body: JSON.stringify(value),
  });
  const text = (status: number, body: string, extra: Record<string, string> = {}): ChatResponse => ({ status, headers: { ...API_HEADERS, 'Content-Type': 'text/plain; charset=utf-8', ...extra }, body });
  const notFound = () => text(404, 'Not Found');

  // The cookie's key: derived from the store's shared secret, the same on every instance.
  let secretP: Promise<Buffer> | undefined;
  const secret = (): Promise<Buffer> => {
    secretP ??= store.pageSecret().then((s) => createHmac('sha256', s).update('web-chat').digest());
    secretP.catch(() => (secretP = undefined));
    return secretP;
  };
  const setCookie = async (v: Visitor) => `${COOKIE}=${sealVisitor(await secret(), v)}; ${cookieAttrs}`;

  async function visitorOf(req: ChatRequest): Promise<Visitor | undefined> {
    return openVisitor(await secret(), cookieValue(req.cookie, COOKIE));
  }
  /** Admitted: no access code, or the visitor came in with the current one. */
  async function admitted(v: Visitor): Promise<boolean> {
    if (!settings?.accessCode) return true;
    return v.gate !== '' && sameText(v.gate, gateOf(await secret(), settings.accessCode));
  }

  /** The client's address unit (an IPv6 /64), hashed: the store never holds an address. */
  async function clientKey(req: ChatRequest, purpose: string): Promise<string> {
    const address = clientAddress(config.console.trustedProxyHeader, req.headers, req.remoteAddress);
    return `web-chat:${purpose}:${createHmac('sha256', await secret()).update(addressUnit(address)).digest('hex').slice(0, 32)}`;
  }

  // ---- rendering

  /**
   * A question's answer as HTML. A whole answer's pictures are served from this origin (CSP img-src
   * 'self'), its files follow the text as downloads; what was written of a stopped one has no parts.
   */
  const rendered = new Map<string, string>();
  function html(q: MessageRecord, markdown: string, whole: boolean): string {
    const key = `${q._id}\n${q.status ?? ''}\n${q.answeredAt ?? 0}\n${markdown.length}\n${whole ? 1 : 0}`;
    let out = rendered.get(key);
    if (out === undefined) {
      const id = parseKey(q._id).parts[1] ?? '';
      out = whole && deps.media ? answerWithParts(markdown, q.parts ?? [], (n) => mediaPath(id, n)) : markdownToHtml(markdown);
      if (rendered.size >= RENDER_CACHE) rendered.delete(rendered.keys().next().value as string);
      rendered.set(key, out);
    }
    return out;
  }

  /** A question as the page shows it. */
  function turnOf(q: MessageRecord) {
    const base = { id: parseKey(q._id).parts[1] ?? '', question: q.question ?? '', at: q.createdAt, generation: q.generation ?? 0 };
    switch (q.status) {
      case 'answered':
        return { ...base, status: 'answered', html: html(q, q.answer ?? '', true), seen: q.inbox === undefined };
      case 'failed':
        return { ...base, status: 'failed', message: failureText(q.failure?.kind ?? 'failed', texts, q.failure?.note), seen: q.inbox === undefined };
      case 'cleared':
        // Settled before a new conversation cleared it (not yet shown then): it is whole.
        if (q.answeredAt !== undefined) {
          return q.failure
            ? { ...base, status: 'failed', message: failureText(q.failure.kind, texts, q.failure.note), seen: true }
            : { ...base, status: 'answered', html: html(q, q.answer ?? '', true), seen: true };
        }
        // Stopped, or its conversation was ended while it was written: what was written of it.
        return { ...base, status: 'stopped', html: q.answer ? html(q, q.answer, false) : '' };
      default: {
        const p = progressOf(live, q);
        return { ...base, status: 'pending', text: p.text, attempt: p.attempt, elapsedMs: clock.now() - q.createdAt };
      }
    }
  }

  function shell(title: string, body: string, scripts: string): string {
    return (
      '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">' +
      '<meta name="viewport" content="width=device-width,initial-scale=1,viewport-fit=cover,interactive-widget=resizes-content">' +
      '<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex,nofollow"><meta name="color-scheme" content="light dark">' +
      `<title>${escapeHtml(title)}</title><link rel="icon" href="${escapeHtml(u('/assets/icon.svg'))}" type="image/svg+xml"><link rel="stylesheet" href="${escapeHtml(u('/assets/chat.css'))}"></head>${body}${scripts}</body></html>`
    );
  }

  const pageResponse = (body: string, cookie?: string): ChatResponse => ({
    status: 200,
    headers: { ...PAGE_HEADERS, 'Content-Type': 'text/html; charset=utf-8', ...(cookie ? { 'Set-Cookie': cookie } : {}) },
    body,
  });

  async function page(req: ChatRequest): Promise<ChatResponse> {
    const s = settings as NonNullable<typeof settings>;
    let v = await visitorOf(req);
    let cookie: string | undefined;
    if (!v) {
      v = { id: newVisitorId(), gate: '' };
      cookie = await setCookie(v);
    }
    const embed = req.query['embed'] === '1';
    const csrf = csrfOf(await secret(), v.id);
    const bodyClass = embed ? ' class="embed"' : '';
    if (!(await admitted(v))) {
      const failed = req.query['code'] === 'wrong' ? '<p class="error" role="alert">访问码不对，请再试一次。</p>' : req.query['code'] === 'limited' ? '<p class="error" role="alert">尝试次数过多，请 10 分钟后再试。</p>' : '';
      return pageResponse(
        shell(
          s.title,
          `<body${bodyClass}><main class="gate"><h1>${escapeHtml(s.title)}</h1><p>请输入访问码。</p>${failed}` +
            `<form method="post" action="${escapeHtml(u('/enter'))}"><input type="hidden" name="csrf" value="${csrf}">${embed ? '<input type="hidden" name="embed" value="1">' : ''}` +
            '<input name="code" type="password" autocomplete="current-password" required aria-label="访问码" autofocus> <button type="submit">进入</button></form></main>',
          '',
        ),
        cookie,
      );
    }
    const r = await renderer();
    const attrs = {
      csrf,
      history: u('/api/history'),
      ask: u('/api/ask'),
      events: u('/api/events'),
      turn: u('/api/turn'),
      stop: u('/api/stop'),
      new: u('/api/new'),
      seen: u('/api/seen'),
      thinking: texts.pageThinking,
    };
    const data = Object.entries(attrs)
      .map(([k, val]) => `data-${k}="${escapeHtml(val)}"`)
      .join(' ');
    const body =
      `<body${bodyClass}><div id="app" ${data}>` +
      `<header class="bar"><h1>${escapeHtml(s.title)}</h1><button id="new" type="button" class="ghost">新对话</button></header>` +
      '<main id="log"><div id="more" class="more" hidden><button id="older" type="button" class="ghost">查看更早的消息</button></div>' +
      '<div id="turns" role="log" aria-live="polite"></div><p id="empty" class="empty">你好！有什么想问的，直接输入吧。</p></main>' +
      `<form id="composer" class="composer"><textarea id="input" rows="1" maxlength="${CHAT_MAX_CHARS}" placeholder="输入问题…" enterkeyhint="send" aria-label="问题"></textarea>` +
      '<button id="send" type="submit">发送</button><button id="stop" type="button" hidden>停止</button></form>' +
      '</div><noscript><p class="empty">这个页面需要启用 JavaScript。</p></noscript>';
    const scripts = `${r ? `<script src="${escapeHtml(u('/assets/md.js'))}${config.page.routes === 'laf' ? '&amp;' : '?'}v=${r.version}"></script>` : ''}<script src="${escapeHtml(u('/assets/chat.js'))}"></script>`;
    return pageResponse(shell(s.title, body, scripts), cookie);
  }

  /** The access-code form: right, the visitor is admitted; every attempt counted per address. */
  async function enter(req: ChatRequest): Promise<ChatResponse> {
    const s = settings as NonNullable<typeof settings>;
    const embed = req.body?.['embed'] === '1';
    const back = (query: string, cookie?: string): ChatResponse => {
      const q = [query, embed ? 'embed=1' : ''].filter(Boolean).join('&');
      return { status: 303, headers: { ...API_HEADERS, Location: `${home}${q ? `?${q}` : ''}`, 'Content-Type': 'text/plain; charset=utf-8', ...(cookie ? { 'Set-Cookie': cookie } : {}) }, body: '' };
    };
    const v = await visitorOf(req);
    const csrf = req.body?.['csrf'];
    if (!v || typeof csrf !== 'string' || !sameText(csrf, csrfOf(await secret(), v.id))) return text(403, 'Forbidden: open the chat page first');
    if (!s.accessCode) return back('');
    // Every attempt counts, and past the limit every one is refused alike before the code is compared:
    // an access code may be short, and an answer that still told right from wrong would let an address
    // go on guessing at full speed (docs/web-chat.md).
    if (!(await store.countUnder(await clientKey(req, 'code-attempts'), CODE_ATTEMPTS_ALLOWED, CODE_WINDOW_MS, clock.now()))) {
      logger.debug('web chat: access code not compared, too many attempts from this address');
      return back('code=limited');
    }
    const code = req.body?.['code'];
    if (typeof code !== 'string' || !sameText(code, s.accessCode)) {
      refusals.info('web chat: wrong access code');
      return back('code=wrong');
    }
    return back('', await setCookie({ id: v.id, gate: gateOf(await secret(), s.accessCode) }));
  }

  // ---- the page's endpoints

  /** A settled question's record, if it is this visitor's. */
  async function own(v: Visitor, id: unknown): Promise<MessageRecord | null> {
    if (typeof id !== 'string' || !MESSAGE_ID.test(id)) return null;
    const ch = channel as WebChannel;
    const q = await store.message(ch.messageKey(v.id, id));
    return q && q.kind === 'question' && q.user === ch.userKey(v.id) ? q : null;
  }

  async function ask(req: ChatRequest, v: Visitor): Promise<ChatResponse> {
    const ch = channel as WebChannel;
    const s = ch.settings;
    const id = req.body?.['id'];
    const raw = req.body?.['text'];
    if (typeof id !== 'string' || !MESSAGE_ID.test(id)) return json(400, { error: 'id must be 8 to 40 letters, digits, - or _' });
    if (typeof raw !== 'string' || raw.trim() === '' || raw.length > CHAT_MAX_CHARS) return json(400, { error: `text must be 1 to ${CHAT_MAX_CHARS} characters` });
    const now = clock.now();
    const user = ch.userKey(v.id);
    const key = ch.messageKey(v.id, id);
    // A send the page retries (the network dropped the answer) is the same message: no new limits, no new claim.
    const existing = await store.message(key);
    if (existing?.kind === 'question' && existing.user === user) return json(200, { turn: turnOf(existing) });
    // Commands call no model: no limits for them.
    const command = ['/clear', '/help'].includes(normalizeCommand(raw));
    // One answer at a time per visitor: a page cannot fan out model calls. Asks that arrive together take
    // turns through a short lease in the store, so only one of them can pass the check before its question exists.
    const lease = `web-ask:${user}`;
    const owner = `${id}.${randomBytes(6).toString('hex')}`;
    if (!command && !(await store.acquireLease(lease, owner, now + ASK_LEASE_MS, now))) {
      // The same message sent twice at once (a retry): the other copy is making it; answer with its turn.
      if ((await store.kvGet(lease, now))?.startsWith(`${id}.`)) {
        for (let i = 0; i < 100; i++) {
          const made = await store.message(key);
          if (made?.kind === 'question' && made.user === user) return json(200, { turn: turnOf(made) });
          if (!(await store.kvGet(lease, clock.now()))?.startsWith(`${id}.`)) break;
          await clock.sleep(50);
        }
      }
      return json(409, { error: 'busy', reply: BUSY });
    }
    let decision: Decision;
    try {
      const [latest] = command ? [] : await store.questionsOf(user, 1);
      if (latest?.status === 'pending') return json(409, { error: 'busy', reply: BUSY, turn: turnOf(latest) });
      for (const w of command ? [] : s.ipLimits) {
        if (!(await store.countUnder(`${await clientKey(req, `ip-${w.unit}`)}`, w.count, w.windowMs, now))) {
          refusals.info('web chat: question refused, over the per-address limit', { window: w.label });
          return json(429, { error: 'rate_limited', reply: IP_LIMITED });
        }
      }
      decision = await ch.receive(v.id, id, { type: 'text', text: raw.trim() }, now);
    } finally {
      if (!command) await store.releaseLease(lease, owner);
    }
    if ('queued' in decision) return json(200, { turn: turnOf(decision.queued) });
    const newConversation = normalizeCommand(raw) === '/clear';
    return json(200, { reply: 'reply' in decision ? decision.reply : '', ...(newConversation ? { newConversation: true } : {}) });
  }

  async function history(req: ChatRequest, v: Visitor): Promise<ChatResponse> {
    const ch = channel as WebChannel;
    const before = Number(req.query['before']);
    const found = await store.questionsOf(ch.userKey(v.id), HISTORY_PAGE + 1, Number.isFinite(before) && before > 0 ? before : undefined);
    const user = await store.user(ch.userKey(v.id));
    return json(200, { turns: found.slice(0, HISTORY_PAGE).reverse().map(turnOf), more: found.length > HISTORY_PAGE, generation: user?.generation ?? 0 });
  }

  async function turnState(req: ChatRequest, v: Visitor): Promise<ChatResponse> {
    const q = await own(v, req.query['id']);
    if (!q) return json(404, { status: 'gone' });
    const t = turnOf(q);
    if (t.status !== 'pending') return json(200, t);
    return json(200, { status: 'pending', ...delta(progressOf(live, q), parsePosition(req.query['from'])) });
  }

  async function stop(req: ChatRequest, v: Visitor): Promise<ChatResponse> {
    const ch = channel as WebChannel;
    const q = await own(v, req.body?.['id']);
    if (!q) return json(404, { error: 'no such question' });
    const stopped = (await store.cancelQuestion(q._id, clock.now(), ch.userKey(v.id))) !== null;
    if (stopped) logger.info('web chat: answer stopped by the visitor', { key: q._id });
    const now = await store.message(q._id);
    return json(200, { stopped, ...(now ? { turn: turnOf(now) } : {}) });
  }

  async function newConversation(req: ChatRequest, v: Visitor): Promise<ChatResponse> {
    const ch = channel as WebChannel;
    const id = req.body?.['id'];
    if (typeof id !== 'string' || !MESSAGE_ID.test(id)) return json(400, { error: 'id must be 8 to 40 letters, digits, - or _' });
    const decision = await ch.receive(v.id, id, { type: 'command', name: '/clear' }, clock.now());
    return json(200, { reply: 'reply' in decision ? decision.reply : '' });
  }

  /**
   * Part `n` of the visitor's answered question `id`: the same 404 for a forged or another visitor's
   * id, a question without that part, or one not answered (shown whole: also one answered before a
   * new conversation cleared it).
   */
  async function media(req: ChatRequest, v: Visitor): Promise<ChatResponse> {
    const q = await own(v, req.query['id']);
    const n = req.query['n'] ?? '';
    const whole = q !== null && (q.status === 'answered' || (q.status === 'cleared' && q.answeredAt !== undefined && !q.failure));
    if (!whole || !deps.media || !/^\d{1,2}$/.test(n)) return notFound();
    return deps.media.serve(q, Number(n));
  }

  async function seen(req: ChatRequest, v: Visitor): Promise<ChatResponse> {
    const q = await own(v, req.body?.['id']);
    if (!q) return json(404, { error: 'no such question' });
    return json(200, { delivered: await (channel as WebChannel).shown(q) });
  }

  async function api(req: ChatRequest): Promise<ChatResponse> {
    // Only the page itself (or a script with no browser around it): a browser says where a request
    // comes from, and a request from another site is refused whatever cookies it carries.
    const site = header(req, 'sec-fetch-site');
    if (site !== undefined && site !== 'same-origin' && site !== 'none') return json(403, { error: 'cross-site request' });
    const v = await visitorOf(req);
    if (!v) return json(401, { error: 'no visitor: open the chat page first (it sets the cookie)' });
    if (!(await admitted(v))) return json(403, { error: 'access code required' });
    const op = req.path.slice('/api/'.length);
    if (req.method === 'POST') {
      const sent = header(req, 'x-csrf-token');
      if (sent === undefined || !sameText(sent, csrfOf(await secret(), v.id))) return json(403, { error: 'CSRF token missing or wrong' });
      // JSON only: a form (which any site can post) is not the page's.
      if (!req.body || !/^application\/json\s*(;|$)/i.test(header(req, 'content-type') ?? '')) return json(400, { error: 'the body must be a JSON object (Content-Type: application/json)' });
      switch (op) {
        case 'ask':
          return ask(req, v);
        case 'stop':
          return stop(req, v);
        case 'new':
          return newConversation(req, v);
        case 'seen':
          return seen(req, v);
        default:
          return json(404, { error: 'not found' });
      }
    }
    if (req.method !== 'GET') return json(405, { error: 'method not allowed' }, { Allow: 'GET, POST' });
    switch (op) {
      case 'me':
        return json(200, { csrf: csrfOf(await secret(), v.id) });
      case 'history':
        return history(req, v);
      case 'turn':
        return turnState(req, v);
      case 'media':
        return media(req, v);
      case 'events': {
        const q = await own(v, req.query['id']);
        if (!q) return json(404, { status: 'gone' });
        if (q.status === 'cleared') return { status: 200, headers: { ...API_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8' }, body: 'retry: 2000\n\nevent: gone\ndata: {}\n\n' };
        // The settled answer as the chat shows it: its pictures at the chat's own paths.
        return deps.follow(q._id, req.lastEventId ?? req.query['from'], (x) => html(x, x.answer ?? '', true));
      }
      default:
        return json(404, { error: 'not found' });
    }
  }

  async function asset(req: ChatRequest): Promise<ChatResponse> {
    const cache = { 'Cache-Control': 'public, max-age=3600' };
    switch (req.path) {
      case '/assets/chat.css':
        return { status: 200, headers: { ...SECURITY_HEADERS, ...cache, 'Content-Type': 'text/css; charset=utf-8' }, body: CHAT_CSS };
      case '/assets/chat.js':
        return { status: 200, headers: { ...SECURITY_HEADERS, ...cache, 'Content-Type': 'text/javascript; charset=utf-8' }, body: CHAT_JS };
      case '/assets/icon.svg':
        return { status: 200, headers: { ...SECURITY_HEADERS, ...cache, 'Content-Type': 'image/svg+xml' }, body: CHAT_ICON };
      case '/assets/md.js': {
        const r = await renderer();
        if (!r) return notFound();
        // Its URL carries its version: cached for good.
        return { status: 200, headers: { ...SECURITY_HEADERS, 'Cache-Control': 'public, max-age=31536000, immutable', 'Content-Type': 'text/javascript; charset=utf-8' }, body: r.script };
      }
      case '/widget.js':
        // Loaded by other sites' pages: readable from anywhere (it carries nothing of anyone's).
        return {
          status: 200,
          headers: { ...SECURITY_HEADERS, 'Cross-Origin-Resource-Policy': 'cross-origin', ...cache, 'Content-Type': 'text/javascript; charset=utf-8' },
          body: widgetJs(config.page.routes, settings?.title ?? ''),
        };
      default:
        return notFound();
    }
  }

  return async function handleChat(req: ChatRequest): Promise<ChatResponse> {
    if (!channel) return notFound();
    try {
      if (req.path === '/widget.js' || req.path.startsWith('/assets/')) {
        return req.method === 'GET' || req.method === 'HEAD' ? await asset(req) : text(405, 'Method Not Allowed', { Allow: 'GET' });
      }
      if (req.path === '' || req.path === '/') {
        if (req.path === '/') return { status: 301, headers: { ...API_HEADERS, Location: home, 'Content-Type': 'text/plain; charset=utf-8' }, body: '' };
        return req.method === 'GET' || req.method === 'HEAD' ? await page(req) : text(405, 'Method Not Allowed', { Allow: 'GET' });
      }
      if (req.path === '/enter') return req.method === 'POST' ? await enter(req) : text(405, 'Method Not Allowed', { Allow: 'POST' });
      if (req.path.startsWith('/api/')) return await api(req);
      return notFound();
    } catch (err) {
      logger.error('web chat request failed', { path: req.path, ...errorLogFields(err) });
      return json(500, { error: 'internal error' });
    }
  };
}

export type ChatHandler = ReturnType<typeof createChatHandler>;
