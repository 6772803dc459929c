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
import { failureText } from '../../errors';
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
import { NO_STORE, SECURITY_HEADERS } from './headers';
import { answerWithParts } from './media';
import type { MediaServer } from './media';

export { SECURITY_HEADERS } from './headers';

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
  /** Serves an answer's files from this origin (lib/web/page/media.ts); without it, pictures stay links. */
  media?: MediaServer;
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

type Settled = { status: 'answered'; html: string } | { status: 'failed'; message: string };
/** An answered question's HTML, as the page that shows it renders it (its pictures at that page's paths). */
export type RenderAnswer = (q: MessageRecord) => string;

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
      const urls = token !== undefined && deps.media ? pageUrls(config.page.routes, token) : undefined;
      out = urls ? answerWithParts(q.answer ?? '', q.parts ?? [], urls.media) : markdownToHtml(q.answer ?? '');
      if (rendered.size >= RENDER_CACHE) rendered.delete(rendered.keys().next().value as string);
      rendered.set(key, out);
    }
    return out;
  }

  /** The answer as the page with this token shows it (its pictures served through the token). */
  const onPage = (token: string): RenderAnswer => (q) => answerHtml(q, token);
  const plain: RenderAnswer = (q) => answerHtml(q);

  function settled(q: MessageRecord, render: RenderAnswer): Settled | undefined {
    if (q.status === 'answered') return { status: 'answered', html: render(q) };
    if (q.status === 'failed') return { status: 'failed', message: failureText(q.failure?.kind ?? 'failed', texts, q.failure?.note) };
    return undefined;
  }

  const progress = (q: MessageRecord) => progressOf(live, q);

  function renderPage(q: MessageRecord, token: string, md: Renderer | null): PageResponse {
    const urls = pageUrls(config.page.routes, token);
    const done = settled(q, onPage(token));
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

  function events(q: MessageRecord, lookup: () => Promise<MessageRecord | null>, from: Position | undefined, render: RenderAnswer): PageResponse {
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
            const done = settled(q2, render);
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
   * The console's Try it (lib/web/console/) and the web chat: the same stream for a question found by
   * its key, by a caller that has already checked who may see it (an operator's session, the visitor's
   * cookie), page setting or not; the settled answer rendered by `render` (the chat's: its own picture paths).
   */
  async function follow(key: string, from: string | undefined, render: RenderAnswer = plain): Promise<PageResponse> {
    const lookup = async () => {
      const q = await store.message(key);
      return q && q.kind === 'question' && q.status !== 'cleared' ? q : null;
    };
    const q = await lookup();
    return q ? stream(q, lookup, parsePosition(from), render) : json(404, { status: 'gone' });
  }

  /** A question's event stream: live while it is written; once settled, the whole answer at once, and the stream ends. */
  function stream(q: MessageRecord, lookup: () => Promise<MessageRecord | null>, from: Position | undefined, render: RenderAnswer): PageResponse {
    const done = settled(q, render);
    if (!done) return events(q, lookup, from, render);
    return { status: 200, headers: { ...NO_STORE, 'Content-Type': 'text/event-stream; charset=utf-8' }, body: `retry: 2000\n\nevent: final\ndata: ${JSON.stringify(done)}\n\n` };
  }

  // Files of an answer: only an answered question's (a failed one shows none).
  const gone: PageResponse = { status: 404, headers: { ...NO_STORE, 'Content-Type': 'text/plain; charset=utf-8' }, body: 'Not Found' };
  const media = (q: MessageRecord, index: number): Promise<PageResponse> | PageResponse => (q.status === 'answered' && deps.media ? deps.media.serve(q, index) : gone);

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
    if (req.op === 'media') return q ? media(q, req.index) : gone;
    if (!q) return notFound(req.op);
    const from = parsePosition(req.lastEventId) ?? parsePosition(req.from);
    switch (req.op) {
      case 'page':
        return renderPage(q, req.token, await renderer());
      case 'events':
        if (req.method === 'HEAD') return { status: 200, headers: { ...NO_STORE, 'Content-Type': 'text/event-stream; charset=utf-8' }, body: '' };
        return stream(q, () => find(req.token), from, onPage(req.token));
      case 'state': {
        const done = settled(q, onPage(req.token));
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
