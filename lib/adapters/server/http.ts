/**
 * The self-hosted adapter: a node:http server that serves every channel's webhook at its path
 * (`/wechat`, `/line`, …: lib/app.ts `route`) or under its prefixes (`/v1/…`), answer pages under
 * `/a/` (lib/web/page/handler.ts), the console under `/admin` and a health check at `/healthz`.
 * Bodies over the limit are refused while they stream in. A channel may answer with a stream (SSE).
 */
import { createServer } from 'http';
import { parse as parseQuery } from 'querystring';
import type { IncomingMessage, Server, ServerResponse } from 'http';
import type { Socket } from 'net';
import type { ChatRequest, ChatResponse } from '../../web/chat/handler';
import type { ConsoleHandler } from '../../web/console/handler';
import { parseForm } from '../../web/console/handler';
import type { PageOp, PageRequest, PageResponse } from '../../web/page/handler';
import type { StreamSink, WebhookRequest, WebhookResponse } from '../../core/channel';
import type { Logger } from '../../util/log';
import { errorLogFields } from '../../errors';

export interface ServerOptions {
  /** The webhook served at a path (exact, or under a channel's prefix), if any (lib/app.ts `route`). */
  webhook: (path: string) => ((req: WebhookRequest) => Promise<WebhookResponse>) | undefined;
  logger: Logger;
  maxBodyBytes: number;
  /** Connections open at once; more are closed at once (MAX_CONNECTIONS). */
  maxConnections?: number;
  /** Answer pages under /a/. */
  page?: (req: PageRequest) => Promise<PageResponse>;
  /** The operator console under /admin. */
  console?: ConsoleHandler;
  /** The web chat under /chat. */
  chat?: (req: ChatRequest) => Promise<ChatResponse>;
  /** Extra health facts (store kind, …). */
  health?: () => Promise<Record<string, unknown>>;
}

class BodyTooLarge extends Error {}

/** The console's forms: a login, a Try it message of up to 2,000 characters percent-encoded. */
const CONSOLE_MAX_BODY = 32 * 1024;
/** The web chat's bodies: a message of up to 4,000 characters as JSON, an access code. */
const CHAT_MAX_BODY = 32 * 1024;

/** A JSON object or a form's fields, by the request's content type; undefined for anything else. */
function parseBody(contentType: string | undefined, body: string): Record<string, unknown> | undefined {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded') return parseForm(body);
  if (type !== 'application/json') return undefined;
  try {
    const v: unknown = JSON.parse(body);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function readBody(req: IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max) {
      reject(new BodyTooLarge());
      return;
    }
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        reject(new BodyTooLarge());
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      parts.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

/** Send a response; false when the client had already gone. */
function send(res: ServerResponse, status: number, contentType: string, body: string): boolean {
  if (res.writableEnded || res.destroyed || !res.socket || res.socket.destroyed) return false;
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
  return true;
}

const PAGE_OPS: Record<string, PageOp> = { events: 'events', state: 'state', read: 'read' };

/** `/a/<token>[/<op>]`, `/a/<token>/m/<n>` (a file of the answer) and `/a/assets/<name>` as a page request; null for anything else. */
function pageRequest(method: string, pathname: string, query: string, lastEventId: string | undefined): PageRequest | null {
  const parts = pathname.split('/');
  if (parts.length === 5 && parts[1] === 'a' && parts[3] === 'm' && /^\d{1,2}$/.test(parts[4] ?? '')) return { op: 'media', method, token: parts[2] ?? '', index: Number(parts[4]) };
  if (parts.length < 3 || parts.length > 4 || parts[1] !== 'a') return null;
  const [, , first = '', second] = parts;
  if (first === 'assets') return second === undefined ? null : { op: 'asset', method, name: second };
  const op = second === undefined ? 'page' : PAGE_OPS[second];
  if (!op) return null;
  const from = parseQuery(query)['from'];
  return { op, method, token: first, from: typeof from === 'string' ? from : undefined, lastEventId };
}

function sendPage(req: IncomingMessage, res: ServerResponse, out: PageResponse): void {
  if ('body' in out) {
    res.writeHead(out.status, { ...out.headers, 'Content-Length': Buffer.byteLength(out.body) });
    res.end(req.method === 'HEAD' ? undefined : out.body);
    return;
  }
  sendStream(res, out);
}

/** Status and headers out at once, then the body as the response writes it. */
function sendStream(res: ServerResponse, out: { status: number; headers: Record<string, string>; stream: (sink: StreamSink) => void }): void {
  // The client may have left while the response was prepared: then there is nothing to stream to.
  if (res.destroyed || res.socket?.destroyed) return;
  res.writeHead(out.status, out.headers);
  res.flushHeaders();
  out.stream({
    write: (chunk) => !res.destroyed && res.write(chunk),
    end: () => res.end(),
    get pending() {
      return res.writableLength;
    },
    onClose: (listener) => res.on('close', listener),
  });
}

/** A request's headers must arrive within this, the whole request within REQUEST_MS (Node: 60 s, 300 s). */
const HEADERS_MS = 15_000;
const REQUEST_MS = 30_000;

export function createHttpServer(opts: ServerOptions): Server {
  const server = serve(opts);
  // Slow senders (a byte every few seconds) must not hold connections for minutes: no platform we serve
  // takes longer than a few seconds to send a request, and a stream's response is not bounded by these.
  server.headersTimeout = HEADERS_MS;
  server.requestTimeout = REQUEST_MS;
  // Open connections are capped, counted here rather than with `maxConnections`: connections accepted
  // through the extra descriptors (listen.ts) reach the server as 'connection' events, which it does not count.
  const max = opts.maxConnections ?? 10_000;
  let open = 0;
  let warnedAt = -Infinity;
  server.on('connection', (socket: Socket) => {
    if (open >= max) {
      socket.destroy();
      if (Date.now() - warnedAt > 60_000) {
        warnedAt = Date.now();
        opts.logger.warn('connections refused: MAX_CONNECTIONS are open (a flood, or raise it)', { max });
      }
      return;
    }
    open++;
    socket.once('close', () => open--);
  });
  return server;
}

function serve(opts: ServerOptions): Server {
  return createServer((req, res) => {
    void (async () => {
      // Split by hand: `new URL` per request costs more than everything else in the adapter.
      const raw = req.url ?? '/';
      const qAt = raw.indexOf('?');
      const pathname = qAt === -1 ? raw : raw.slice(0, qAt);
      try {
        if (pathname === '/healthz') {
          const extra = opts.health ? await opts.health() : {};
          send(res, 200, 'application/json', JSON.stringify({ ok: true, ...extra }));
          return;
        }
        if (opts.page && pathname.startsWith('/a/')) {
          const header = req.headers['last-event-id'];
          const pr = pageRequest(req.method ?? 'GET', pathname, qAt === -1 ? '' : raw.slice(qAt + 1), typeof header === 'string' ? header : undefined);
          if (pr) {
            // A page request has no body worth reading (`read` is an empty POST).
            req.resume();
            sendPage(req, res, await opts.page(pr));
            return;
          }
        }
        if (opts.console && (pathname === '/admin' || pathname.startsWith('/admin/'))) {
          // Forms are small (a login, a Try it message): anything larger is refused while it streams in.
          const body = req.method === 'POST' ? await readBody(req, CONSOLE_MAX_BODY).catch(() => undefined) : '';
          if (body === undefined) {
            res.setHeader('Connection', 'close');
            send(res, 413, 'text/plain; charset=utf-8', 'Payload Too Large');
            return;
          }
          const q = qAt === -1 ? {} : parseQuery(raw.slice(qAt + 1));
          const csrf = req.headers['x-csrf-token'];
          const lastEventId = req.headers['last-event-id'];
          const out = await opts.console({
            method: req.method ?? 'GET',
            path: pathname.slice('/admin'.length),
            cookie: req.headers.cookie,
            form: parseForm(body),
            csrfHeader: typeof csrf === 'string' ? csrf : undefined,
            query: Object.fromEntries(Object.entries(q).map(([k, v]) => [k, Array.isArray(v) ? v[0] : v])),
            lastEventId: typeof lastEventId === 'string' ? lastEventId : undefined,
            remoteAddress: req.socket.remoteAddress,
            headers: req.headers,
          });
          sendPage(req, res, out);
          return;
        }
        if (opts.chat && (pathname === '/chat' || pathname.startsWith('/chat/'))) {
          const body = req.method === 'POST' ? await readBody(req, CHAT_MAX_BODY).catch(() => undefined) : '';
          if (body === undefined) {
            res.setHeader('Connection', 'close');
            send(res, 413, 'text/plain; charset=utf-8', 'Payload Too Large');
            return;
          }
          if (req.method !== 'POST') req.resume();
          const q = qAt === -1 ? {} : parseQuery(raw.slice(qAt + 1));
          const lastEventId = req.headers['last-event-id'];
          const out = await opts.chat({
            method: req.method ?? 'GET',
            path: pathname.slice('/chat'.length),
            query: Object.fromEntries(Object.entries(q).map(([k, v]) => [k, Array.isArray(v) ? v[0] : v])),
            cookie: req.headers.cookie,
            body: req.method === 'POST' ? parseBody(req.headers['content-type'], body) : undefined,
            headers: req.headers,
            remoteAddress: req.socket.remoteAddress,
            lastEventId: typeof lastEventId === 'string' ? lastEventId : undefined,
          });
          sendPage(req, res, out);
          return;
        }
        // A trailing slash names the same webhook (`/wechat/` as WeChat's console may save it).
        const webhook = opts.webhook(pathname.length > 1 && pathname.endsWith('/') ? pathname.slice(0, -1) : pathname);
        if (!webhook) {
          send(res, 404, 'text/plain; charset=utf-8', 'Not Found');
          return;
        }
        let body = '';
        if (req.method === 'POST') {
          try {
            body = await readBody(req, opts.maxBodyBytes);
          } catch (err) {
            if (!(err instanceof BodyTooLarge)) throw err;
            res.setHeader('Connection', 'close');
            send(res, 413, 'text/plain; charset=utf-8', 'Payload Too Large');
            return;
          }
        } else req.resume();
        const headers: Record<string, string | undefined> = {};
        for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v[0] : v;
        const query: Record<string, string | undefined> = {};
        // A repeated parameter counts by its first value.
        if (qAt !== -1) for (const [k, v] of Object.entries(parseQuery(raw.slice(qAt + 1)))) query[k] = Array.isArray(v) ? v[0] : v;
        // The client left before its response was sent (a channel that waits for an answer in the request stops it).
        const onAbort = (listener: () => void) => res.on('close', () => !res.writableFinished && listener());
        const out = await webhook({ method: req.method ?? 'GET', query, bodies: [body], headers, onAbort });
        if ('drop' in out) {
          res.destroy();
          return;
        }
        if ('stream' in out) {
          sendStream(res, out);
          return;
        }
        if (out.headers) for (const [k, v] of Object.entries(out.headers)) res.setHeader(k, v);
        // The platform hung up before the answer was ready: what this reply carried never reached it.
        if (!send(res, out.status, out.contentType, out.body)) out.undelivered?.();
      } catch (err) {
        opts.logger.error('http adapter error', errorLogFields(err));
        send(res, 500, 'text/plain; charset=utf-8', 'Internal Server Error');
      }
    })();
  });
}
