/**
 * An answer's pictures and files on the bot's own pages (docs/rich-answers.md): the answer page
 * (lib/web/page/handler.ts, `/a/<token>/m/<n>`) and the web chat (lib/web/chat/handler.ts,
 * `api/media?id=&n=`) show them from this origin (CSP `img-src 'self'`), never hot-linked. Both
 * share one media server, so a file shown on both is fetched once and the limits below hold for all.
 * Who may see which answer is each page's own check, made before `serve`.
 */
import type { Clock } from '../../util/clock';
import { errorLogFields } from '../../errors';
import type { FetchedMedia } from '../../util/media';
import type { Logger } from '../../util/log';
import type { AnswerPart, MessageRecord } from '../../store';
import { escapeHtml, markdownToHtml } from '../../text/html';
import { imagesIn } from '../../text/markdown';
import { NO_STORE, SECURITY_HEADERS } from './headers';
import type { PageResponse } from './handler';

/** Fetch a file of an answer safely (lib/util/media.ts), for the question's user. */
export type FetchPart = (userKey: string, url: string) => Promise<FetchedMedia>;

export interface MediaServer {
  /** Part `index` of answer `q`, fetched by this server, served from its origin; 404 when there is none. */
  serve(q: MessageRecord, index: number): Promise<PageResponse>;
}

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

const hostOf = (url: string) => {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
};

export function createMediaServer(deps: { fetchPart: FetchPart; clock: Clock; logger: Logger }): MediaServer {
  const { fetchPart, clock, logger } = deps;
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
  function fetchShared(q: MessageRecord, index: number, url: string): Promise<FetchedMedia | null> {
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

  async function serve(q: MessageRecord, index: number): Promise<PageResponse> {
    const part = q.parts?.[index];
    if (!part) return mediaGone;
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
      const f = await fetchShared(q, index, part.url);
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

  return { serve };
}

/**
 * An answer's HTML with its parts served by the page (`src(n)`: the page's path of part n): the
 * Markdown's pictures that are parts become `<img>` in place (any other stays a link), and the parts
 * the text does not show (a backend's files and pictures) follow it, pictures inline, files as downloads.
 */
export function answerWithParts(answer: string, parts: readonly AnswerPart[], src: (index: number) => string): string {
  const imageSrc = (url: string) => {
    const i = parts.findIndex((p) => p.kind === 'image' && p.url === url);
    return i === -1 ? undefined : src(i);
  };
  let out = markdownToHtml(answer, { imageSrc });
  const shown = new Set(imagesIn(answer).map((i) => i.url));
  const extra = parts.map((p, i) => ({ p, i })).filter(({ p }) => !shown.has(p.url));
  if (extra.length > 0) {
    out += `<div class="parts">${extra
      .map(({ p, i }) => (p.kind === 'image' ? `<img src="${escapeHtml(src(i))}" alt="${escapeHtml(p.name ?? '图片')}" loading="lazy">` : `<a class="file" href="${escapeHtml(src(i))}" download>${escapeHtml(p.name ?? '文件')}</a>`))
      .join('')}</div>`;
  }
  return out;
}
