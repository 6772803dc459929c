/**
 * The answer page (docs/answer-page.md): `GET page` shows one question and its answer, `events`
 * streams the answer as it is written (Server-Sent Events), `state` is the same as JSON for
 * platforms or proxies that can't stream, `read` records that the answer was shown to its end.
 * Adapters (lib/adapters/server/http.ts, lib/adapters/laf/answer.ts) turn their requests into a `PageRequest`.
 *
 * Everything about a token answers the same 404 when it is unknown, expired, cleared or its user
 * left; nothing on the page names the user.
 */
import type { Clock } from '../../util/clock';
import type { CoreConfig } from '../../core/settings';
import { fill } from '../../text/fill';
import { errorLogFields, failureText } from '../../errors';
import type { FetchedMedia } from '../../util/media';
import { imagesIn } from '../../text/markdown';
import type { LiveAnswers } from '../../core/live';
import { delta, followAnswer, formatPosition, parsePosition, progressOf } from '../../core/follow';
import type { Position } from '../../core/follow';
import type { Logger } from '../../util/log';
import type { MessageRecord, Store } from '../../store';
import { escapeHtml, markdownToHtml } from '../../text/html';
import { quote } from '../../text/quote';
import { PAGE_CSS, PAGE_JS } from './assets';
import { renderer } from '../render/renderer';
import type { Renderer } from '../render/renderer';
import { tokenHash, wellFormedToken } from './token';

export type PageOp = 'page' | 'events' | 'state' | 'read';

export type PageRequest =
  | { op: PageOp; method: string; token: string; from?: string | undefined; lastEventId?: string | undefined }
  /** A file of the answer (docs/rich-answers.md): fetched by the server, served from its origin. */
  | { op: 'media'; method: string; token: string; index: number }
  | { op: 'asset'; method: string; name: string };

/** What an adapter writes a stream to (one type for pages, the console and channels that stream). */
export type { StreamSink } from '../../core/channel';
import type { StreamSink } from '../../core/channel';

export type PageResponse =
  | { status: number; headers: Record<string, string>; body: string | Buffer }
  | { status: 200; headers: Record<string, string>; stream: (sink: StreamSink) => void };

export interface PageDeps {
  config: CoreConfig;
  store: Store;
  clock: Clock;
  logger: Logger;
  live: LiveAnswers;
  /** Does the question's channel send late answers by itself (push)? Then an open page holds it back. */
  pushesLater?: (userKey: string) => boolean;
  /** Fetch a file of an answer safely (lib/util/media.ts), for the question's user (their backend's host is trusted). */
  fetchPart?: (userKey: string, url: string) => Promise<FetchedMedia>;
}

/**
 * Timings of a stream: heartbeat comments, the cross-instance poll, how long one stream lives, and
 * how long an open page holds push back (renewed at every heartbeat while it stays open).
 */
export interface StreamTimings {
  heartbeatMs: number;
  pollMs: number;
  maxLifeMs: number;
  viewHoldMs: number;
}
export const STREAM_TIMINGS: StreamTimings = { heartbeatMs: 15_000, pollMs: 1000, maxLifeMs: 10 * 60_000, viewHoldMs: 30_000 };
/** Streams one answer may have open at once (a user with a few tabs; not a crowd). */
export const STREAMS_PER_ANSWER = 4;
/** Rendered answers kept; past that, the one rendered longest ago makes room. */
const RENDER_CACHE = 64;
/** A client this far behind is dropped; it reconnects and resumes. */
const MAX_QUEUED_BYTES = 1 << 20;

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Sent with everything the page serves: this page is reachable by anyone with the link. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': CSP,
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'X-Robots-Tag': 'noindex, nofollow',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Permissions-Policy': 'camera=(), microphone=(), geolocation=()',
};
const NO_STORE = { ...SECURITY_HEADERS, 'Cache-Control': 'no-store' };

/**
 * The endpoints of one question's page and the shared assets, relative to the page's own URL, so
 * they stay right behind a proxy that serves the bot under a path prefix (PUBLIC_URL with a path).
 */
export function pageUrls(routes: CoreConfig['page']['routes'], token: string) {
  if (routes === 'laf') {
    const page = `answer?t=${token}`;
    return { events: `${page}&x=events`, state: `${page}&x=state`, read: `${page}&x=read`, css: 'answer?asset=page.css', js: 'answer?asset=page.js', md: 'answer?asset=md.js&v=', media: (i: number) => `${page}&m=${i}` };
  }
  return { events: `${token}/events`, state: `${token}/state`, read: `${token}/read`, css: 'assets/page.css', js: 'assets/page.js', md: 'assets/md.js?v=', media: (i: number) => `${token}/m/${i}` };
}

const hostOf = (url: string) => {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
};

/** Files fetched for pages are kept this long in this process, at most this many bytes in all. */
const MEDIA_CACHE_MS = 10 * 60_000;
const MEDIA_CACHE_BYTES = 32 * 1024 * 1024;
// Pages make this server fetch other hosts' files: however many ask at once, a file is fetched once at a
// time, a few fetches run at once (the rest wait in a bounded line), a failed file is not asked for again
// for a minute, and the bytes fetched per minute are capped, so page requests cannot exhaust memory or
// turn this server into a download amplifier.
const MEDIA_FETCHES_AT_ONCE = 4;
const MEDIA_WAITING_MAX = 64;
const MEDIA_FAILED_MS = 60_000;
const MEDIA_BYTES_PER_MINUTE = 256 * 1024 * 1024;


type Settled = { status: 'answered'; html: string } | { status: 'failed'; message: string };

export function createPageHandler(deps: PageDeps, timings: StreamTimings = STREAM_TIMINGS) {
  const { config, store, clock, logger, live } = deps;
  const texts = config.texts;
  let openStreams = 0;
  const perAnswer = new Map<string, number>();

  const html = (status: number, body: string): PageResponse => ({ status, headers: { ...NO_STORE, 'Content-Type': 'text/html; charset=utf-8' }, body });
  const json = (status: number, value: unknown): PageResponse => ({ status, headers: { ...NO_STORE, 'Content-Type': 'application/json; charset=utf-8' }, body: JSON.stringify(value) });
  const gonePage = () =>
    html(404, shell(texts.pageGone, `<main id="app" data-status="gone"><p class="gone">${escapeHtml(texts.pageGone)}</p></main>`, undefined));
  const notFound = (op: PageOp): PageResponse => (op === 'page' ? gonePage() : json(404, { status: 'gone' }));

  function shell(title: string, main: string, urls: ReturnType<typeof pageUrls> | undefined, md?: Renderer | null): string {
    const assets = urls ?? pageUrls(config.page.routes, '');
    return (
      '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">' +
      '<meta name="viewport" content="width=device-width,initial-scale=1,viewport-fit=cover">' +
      '<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex,nofollow">' +
      `<title>${escapeHtml(title)}</title><link rel="stylesheet" href="${assets.css}"></head><body>${main}` +
      // The browser's Markdown renderer first (lib/web/render/): the answer shows formatted while it is written.
      (urls && md ? `<script src="${urls.md}${md.version}"></script>` : '') +
      (urls ? `<script src="${urls.js}"></script>` : '') +
      '</body></html>'
    );
  }

  /** The question a token opens, if it may be shown: known, not expired, not cleared, its user's. */
  async function find(token: string): Promise<MessageRecord | null> {
    if (!config.page.enabled || !wellFormedToken(token)) return null;
    const q = await store.byPageToken(tokenHash(token));
    if (!q || q.kind !== 'question' || q.status === 'cleared' || q.status === undefined) return null;
    if (clock.now() - q.createdAt >= config.page.ttlMs) return null;
    // `/clear` starts a new generation: links to the old conversation stop working.
    const user = await store.user(q.user);
    if ((user?.generation ?? 0) !== (q.generation ?? 0)) return null;
    return q;
  }

  // Rendering a long answer takes milliseconds: keep the last few, so reloads and polls are cheap.
  const rendered = new Map<string, string>();
  function answerHtml(q: MessageRecord, token?: string): string {
    const key = `${q._id}\n${q.answeredAt ?? 0}\n${token ?? ''}`;
    let out = rendered.get(key);
    if (out === undefined) {
      // The answer's pictures are served from this origin (CSP img-src 'self'); any other stays a link.
      const urls = token !== undefined && deps.fetchPart ? pageUrls(config.page.routes, token) : undefined;
      const parts = q.parts ?? [];
      const imageSrc = urls ? (url: string) => {
        const i = parts.findIndex((p) => p.kind === 'image' && p.url === url);
        return i === -1 ? undefined : urls.media(i);
      } : undefined;
      out = markdownToHtml(q.answer ?? '', imageSrc ? { imageSrc } : {});
      // Parts the text does not show (files, a backend's pictures) follow it: pictures inline, files as downloads.
      if (urls) {
        const shown = new Set(imagesIn(q.answer ?? '').map((i) => i.url));
        const extra = parts.map((p, i) => ({ p, i })).filter(({ p }) => !shown.has(p.url));
        if (extra.length > 0) {
          out += `<div class="parts">${extra
            .map(({ p, i }) => (p.kind === 'image' ? `<img src="${escapeHtml(urls.media(i))}" alt="${escapeHtml(p.name ?? '图片')}" loading="lazy">` : `<a class="file" href="${escapeHtml(urls.media(i))}" download>${escapeHtml(p.name ?? '文件')}</a>`))
            .join('')}</div>`;
        }
      }
      if (rendered.size >= RENDER_CACHE) rendered.delete(rendered.keys().next().value as string);
      rendered.set(key, out);
    }
    return out;
  }

  function settled(q: MessageRecord, token?: string): Settled | undefined {
    if (q.status === 'answered') return { status: 'answered', html: answerHtml(q, token) };
    if (q.status === 'failed') return { status: 'failed', message: failureText(q.failure?.kind ?? 'failed', texts, q.failure?.note) };
    return undefined;
  }

  const progress = (q: MessageRecord) => progressOf(live, q);

  function renderPage(q: MessageRecord, token: string, md: Renderer | null): PageResponse {
    const urls = pageUrls(config.page.routes, token);
    const done = settled(q, token);
    const p = progress(q);
    const elapsed = clock.now() - q.createdAt;
    const attrs =
      `data-status="${done ? done.status : 'pending'}" data-attempt="${p.attempt}" data-elapsed="${elapsed}" ` +
      `data-events="${escapeHtml(urls.events)}" data-state="${escapeHtml(urls.state)}" data-read="${escapeHtml(urls.read)}" ` +
      `data-thinking="${escapeHtml(texts.pageThinking)}" data-gone="${escapeHtml(texts.pageGone)}"`;
    const seconds = Math.max(1, Math.round(elapsed / 1000));
    const answer = done
      ? `<div id="status" class="status" hidden></div><div id="live" class="live" hidden></div>` +
        (done.status === 'answered' ? `<article id="final" class="md">${done.html}</article>` : `<article id="final" class="failed">${escapeHtml(done.message)}</article>`)
      : `<div id="status" class="status" role="status">${escapeHtml(fill(texts.pageThinking, { seconds }))}</div>` +
        `<div id="live" class="live"${p.text ? '' : ' hidden'}>${escapeHtml(p.text)}</div><article id="final" class="md" hidden></article>`;
    // The end of the answer: once it has been on screen, the page reports the answer read.
    const end = '<div id="end"></div>';
    const question = q.question ?? '';
    return html(200, shell(quote(question), `<main id="app" ${attrs}><blockquote class="q">${escapeHtml(question)}</blockquote>${answer}${end}</main>`, urls, done ? null : md));
  }

  function events(q: MessageRecord, lookup: () => Promise<MessageRecord | null>, from: Position | undefined, token?: string): PageResponse {
    if (openStreams >= config.page.maxStreams || (perAnswer.get(q._id) ?? 0) >= STREAMS_PER_ANSWER) {
      // The page falls back to polling the JSON state.
      return { status: 503, headers: { ...NO_STORE, 'Content-Type': 'text/plain; charset=utf-8', 'Retry-After': '5' }, body: 'Too many streams' };
    }
    const headers = { ...NO_STORE, 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' };
    return {
      status: 200,
      headers,
      stream: (sink) => {
        // Counted from here: a response never streamed (HEAD, a client already gone) holds no slot.
        openStreams++;
        perAnswer.set(q._id, (perAnswer.get(q._id) ?? 0) + 1);
        let closed = false;
        const timers: ReturnType<typeof setInterval>[] = [];
        const following: { stop?: () => void } = {};
        const close = () => {
          if (closed) return;
          closed = true;
          for (const t of timers) clearInterval(t);
          following.stop?.();
          openStreams--;
          const n = (perAnswer.get(q._id) ?? 1) - 1;
          if (n <= 0) perAnswer.delete(q._id);
          else perAnswer.set(q._id, n);
          sink.end();
        };
        const send = (event: string, data: unknown, id?: string) => {
          if (closed) return;
          const ok = sink.write(`event: ${event}\n${id ? `id: ${id}\n` : ''}data: ${JSON.stringify(data)}\n\n`);
          if (!ok && sink.pending > MAX_QUEUED_BYTES) close();
        };
        sink.onClose(close);
        sink.write('retry: 2000\n\n');
        send('state', { status: 'pending', elapsedMs: clock.now() - q.createdAt });
        following.stop = followAnswer(q, { live, logger, pollMs: timings.pollMs, lookup, from }, {
          text: (d, pos) => send('text', d, formatPosition(pos)),
          settled: (q2) => {
            const done = settled(q2, token);
            if (done) send('final', done);
            close();
          },
          gone: () => {
            send('gone', {});
            close();
          },
        }).stop;
        // Push holds back while a page is open (lib/channels/wechat-oa/push.ts); without push nobody needs to know.
        const pushes = deps.pushesLater?.(q.user) ?? false;
        const view = () => {
          if (pushes) void store.notePageView(q._id, clock.now() + timings.viewHoldMs).catch(() => undefined);
        };
        view();
        timers.push(
          setInterval(() => {
            if (!sink.write(': ping\n\n') && sink.pending > MAX_QUEUED_BYTES) close();
            view();
          }, timings.heartbeatMs),
        );
        // A stream lives a bounded time; the browser reconnects and resumes (Last-Event-ID).
        const born = clock.now();
        timers.push(setInterval(() => clock.now() - born >= timings.maxLifeMs && close(), Math.min(timings.maxLifeMs, 5000)));
      },
    };
  }

  /**
   * The console's Try it (lib/web/console/): the same stream for a question found by its key, by a
   * caller that has already checked who may see it (an operator's session), page setting or not.
   */
  async function follow(key: string, from: string | undefined): Promise<PageResponse> {
    const lookup = async () => {
      const q = await store.message(key);
      return q && q.kind === 'question' && q.status !== 'cleared' ? q : null;
    };
    const q = await lookup();
    return q ? stream(q, lookup, parsePosition(from)) : json(404, { status: 'gone' });
  }

  /** A question's event stream: live while it is written; once settled, the whole answer at once, and the stream ends. */
  function stream(q: MessageRecord, lookup: () => Promise<MessageRecord | null>, from: Position | undefined, token?: string): PageResponse {
    const done = settled(q, token);
    if (!done) return events(q, lookup, from, token);
    return { status: 200, headers: { ...NO_STORE, 'Content-Type': 'text/event-stream; charset=utf-8' }, body: `retry: 2000\n\nevent: final\ndata: ${JSON.stringify(done)}\n\n` };
  }

  // Files fetched for pages, by URL, with their size: a few minutes, bounded in all.
  const mediaCache = new Map<string, { at: number; f: FetchedMedia }>();
  let mediaBytes = 0;
  const mediaGone: PageResponse = { status: 404, headers: { ...NO_STORE, 'Content-Type': 'text/plain; charset=utf-8' }, body: 'Not Found' };
  const mediaBusy: PageResponse = { status: 503, headers: { ...NO_STORE, 'Content-Type': 'text/plain; charset=utf-8', 'Retry-After': '30' }, body: 'Busy: try again shortly' };
  const inflight = new Map<string, Promise<FetchedMedia | null>>();
  const failedUntil = new Map<string, number>();
  let fetching = 0;
  const waiting: (() => void)[] = [];
  let spent = { minute: -1, bytes: 0, warned: false };

  function remember(url: string, f: FetchedMedia, now: number): void {
    const old = mediaCache.get(url);
    if (old) {
      mediaCache.delete(url);
      mediaBytes -= old.f.bytes.length;
    }
    mediaCache.set(url, { at: now, f });
    mediaBytes += f.bytes.length;
    for (const [u, v] of mediaCache) {
      if (mediaBytes <= MEDIA_CACHE_BYTES) break;
      mediaCache.delete(u);
      mediaBytes -= v.f.bytes.length;
    }
  }

  /** One fetch of `url` for everyone who asks meanwhile; null when it failed (logged once). */
  function fetchShared(q: MessageRecord, index: number, url: string, fetchPart: NonNullable<PageDeps['fetchPart']>): Promise<FetchedMedia | null> {
    let p = inflight.get(url);
    if (p) return p;
    p = (async () => {
      if (fetching >= MEDIA_FETCHES_AT_ONCE) await new Promise<void>((r) => waiting.push(r));
      fetching++;
      try {
        const f = await fetchPart(q.user, url);
        const now = clock.now();
        const minute = Math.floor(now / 60_000);
        if (spent.minute !== minute) spent = { minute, bytes: 0, warned: false };
        spent.bytes += f.bytes.length;
        remember(url, f, now);
        return f;
      } catch (err) {
        // Logged with why and where (the host only: a signed URL's query is a secret), never shown.
        logger.warn('answer file not served', { key: q._id, part: index, host: hostOf(url), ...errorLogFields(err) });
        if (failedUntil.size >= 1000) failedUntil.clear();
        failedUntil.set(url, clock.now() + MEDIA_FAILED_MS);
        return null;
      } finally {
        fetching--;
        waiting.shift()?.();
        inflight.delete(url);
      }
    })();
    inflight.set(url, p);
    return p;
  }

  /** Part `index` of answer `q`, fetched safely by this server (never hot-linked), from its origin. */
  async function media(q: MessageRecord, index: number): Promise<PageResponse> {
    const part = q.status === 'answered' ? q.parts?.[index] : undefined;
    if (!part || !deps.fetchPart) return mediaGone;
    const now = clock.now();
    let hit = mediaCache.get(part.url);
    if (!hit || now - hit.at > MEDIA_CACHE_MS) {
      if ((failedUntil.get(part.url) ?? 0) > now) return mediaGone;
      if (!inflight.has(part.url)) {
        if (waiting.length >= MEDIA_WAITING_MAX) return mediaBusy;
        if (spent.minute === Math.floor(now / 60_000) && spent.bytes >= MEDIA_BYTES_PER_MINUTE) {
          if (!spent.warned) logger.warn('answer files: this minute’s fetch budget is spent; pages get 503 until the next minute');
          spent.warned = true;
          return mediaBusy;
        }
      }
      const f = await fetchShared(q, index, part.url, deps.fetchPart);
      if (!f) return mediaGone;
      hit = { at: now, f };
    }
    const f = hit.f;
    const name = (part.name ?? f.name).replace(/[^\w.-]/g, '_').slice(0, 80) || 'file';
    return {
      status: 200,
      headers: {
        ...SECURITY_HEADERS,
        'Content-Type': f.contentType,
        // A file is a download, never a page of this origin: its bytes are whoever's.
        'Content-Disposition': f.kind === 'image' ? 'inline' : `attachment; filename="${name}"`,
        'Cache-Control': 'private, max-age=3600',
        'Content-Security-Policy': "default-src 'none'; sandbox",
      },
      body: f.bytes,
    };
  }

  return Object.assign(handlePage, { follow });

  async function handlePage(req: PageRequest): Promise<PageResponse> {
    if (req.op === 'asset') {
      if (req.name === 'md.js' && req.method === 'GET') {
        const r = await renderer();
        // Its URL carries its version: cached for good.
        if (r) return { status: 200, headers: { ...SECURITY_HEADERS, 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'public, max-age=31536000, immutable' }, body: r.script };
      }
      const asset = req.name === 'page.js' ? { type: 'text/javascript; charset=utf-8', body: PAGE_JS } : req.name === 'page.css' ? { type: 'text/css; charset=utf-8', body: PAGE_CSS } : undefined;
      if (!asset || req.method !== 'GET') return { status: 404, headers: { ...NO_STORE, 'Content-Type': 'text/plain; charset=utf-8' }, body: 'Not Found' };
      return { status: 200, headers: { ...SECURITY_HEADERS, 'Content-Type': asset.type, 'Cache-Control': 'public, max-age=3600' }, body: asset.body };
    }
    const wanted = req.op === 'read' ? 'POST' : 'GET';
    if (req.method !== wanted && !(req.method === 'HEAD' && wanted === 'GET')) {
      return { status: 405, headers: { ...NO_STORE, 'Content-Type': 'text/plain; charset=utf-8', Allow: wanted }, body: 'Method Not Allowed' };
    }
    const q = await find(req.token);
    if (req.op === 'media') return q ? media(q, req.index) : mediaGone;
    if (!q) return notFound(req.op);
    const from = parsePosition(req.lastEventId) ?? parsePosition(req.from);
    switch (req.op) {
      case 'page':
        return renderPage(q, req.token, await renderer());
      case 'events':
        if (req.method === 'HEAD') return { status: 200, headers: { ...NO_STORE, 'Content-Type': 'text/event-stream; charset=utf-8' }, body: '' };
        return stream(q, () => find(req.token), from, req.token);
      case 'state': {
        const done = settled(q, req.token);
        if (done) return json(200, done);
        return json(200, { status: 'pending', elapsedMs: clock.now() - q.createdAt, ...delta(progress(q), from) });
      }
      case 'read': {
        if (q.status === 'answered' || q.status === 'failed') {
          if (await store.markReadOnPage(q, clock.now(), quote(q.question ?? ''))) logger.info('answer read on its page', { key: q._id });
        }
        return { status: 204, headers: { ...NO_STORE, 'Content-Type': 'text/plain; charset=utf-8' }, body: '' };
      }
    }
  }
}

export type PageHandler = ReturnType<typeof createPageHandler>;
