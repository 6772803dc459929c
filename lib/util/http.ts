/**
 * The one client for calls out (the model backends; the WeChat, LINE and Discord APIs), on
 * node:http and node:https. It replaced axios, which took about 15% of the server's CPU when
 * 2,000 questions arrived at once (measured with the burst in BENCHMARKS.md). What it keeps from axios: the proxy in
 * HTTPS_PROXY / HTTP_PROXY / NO_PROXY (https through a CONNECT tunnel), timeouts, and a cancel that
 * needs no AbortController, which laf's sandbox lacks (docs/laf.md). What it adds: every buffered
 * answer is bounded. Redirects are never followed.
 */
import http from 'http';
import type { IncomingHttpHeaders, IncomingMessage } from 'http';
import https from 'https';
import type { Duplex } from 'stream';
import tls from 'tls';

export interface OutRequest {
  method?: string;
  url: string;
  headers?: Readonly<Record<string, string>>;
  /** Text or bytes as they are; anything else is sent as JSON (with its Content-Type, unless one is given). */
  body?: unknown;
  /** Give up when the answer has not come in this long (`call`: all of it; `open`: its headers). */
  timeoutMs: number;
}

export interface OutResponse<B> {
  status: number;
  headers: IncomingHttpHeaders;
  body: B;
}

/** No (complete) HTTP answer. `code`: ETIMEDOUT, ECONNREFUSED, EPROXY, ETOOLARGE (over `call`'s bound), … */
export class NetworkError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'NetworkError';
  }
}

const asNetworkError = (err: unknown): Error =>
  err instanceof NetworkError ? err : new NetworkError((err as { code?: string }).code ?? 'ENETWORK', (err as Error).message ?? String(err), { cause: err });

/** JSON of an answer's body, or undefined when it is not JSON. */
export function jsonOf(body: Buffer | string): unknown {
  try {
    return JSON.parse(typeof body === 'string' ? body : body.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

// ---- the proxy from the environment, read the way curl (and axios) read it

function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  return env[name.toLowerCase()] || env[name] || undefined;
}

/** Does NO_PROXY (comma or space separated: `*`, hosts, `.domain` suffixes, optional `:port`) cover `url`? */
export function bypassesProxy(url: URL, noProxy: string): boolean {
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  return noProxy.split(/[\s,]+/).some((raw) => {
    const entry = raw.trim().toLowerCase();
    if (!entry) return false;
    if (entry === '*') return true;
    // `[v6]:port`, a bare v6 address (more than one colon), or `name:port`.
    const m = entry.startsWith('[') ? /^\[([^\]]*)\](?::(\d+))?$/.exec(entry) : entry.indexOf(':') !== entry.lastIndexOf(':') ? [entry, entry] : /^([^:]*)(?::(\d+))?$/.exec(entry);
    if (!m) return false;
    const name = (m[1] ?? '').replace(/^\*?\./, '');
    if (m[2] && m[2] !== port) return false;
    return host === name || host.endsWith(`.${name}`);
  });
}

/** The proxy for `url`: HTTPS_PROXY for https, HTTP_PROXY for http (ALL_PROXY for either), unless NO_PROXY covers it. */
export function proxyFor(url: URL, env: NodeJS.ProcessEnv = process.env): URL | undefined {
  const raw = envValue(env, url.protocol === 'https:' ? 'HTTPS_PROXY' : 'HTTP_PROXY') ?? envValue(env, 'ALL_PROXY');
  if (!raw || bypassesProxy(url, envValue(env, 'NO_PROXY') ?? '')) return undefined;
  const proxy = parseProxy(raw);
  if (!proxy) throw new NetworkError('EPROXY', 'the proxy in HTTPS_PROXY / HTTP_PROXY is not a URL');
  return proxy;
}

/** A proxy variable's value as a URL (`host:port` means http), or undefined when it is none. */
export function parseProxy(raw: string): URL | undefined {
  try {
    const u = new URL(raw.includes('://') ? raw : `http://${raw}`);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname ? u : undefined;
  } catch {
    return undefined;
  }
}

/** The variables `proxyFor` reads, each in both cases. */
export const PROXY_VARIABLES = ['HTTPS_PROXY', 'HTTP_PROXY', 'ALL_PROXY'].flatMap((n) => [n.toLowerCase(), n]);

function proxyAuth(proxy: URL): Record<string, string> {
  if (!proxy.username) return {};
  const user = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return { 'Proxy-Authorization': `Basic ${Buffer.from(user).toString('base64')}` };
}

const defaultPort = (u: URL) => u.port || (u.protocol === 'https:' ? '443' : '80');

/** A TLS connection to `target` through a CONNECT tunnel at `proxy`. */
function tunnel(proxy: URL, target: URL, done: (err: Error | null, socket?: Duplex) => void): void {
  const authority = `${target.hostname}:${defaultPort(target)}`;
  const req = (proxy.protocol === 'https:' ? https : http).request({
    host: proxy.hostname.replace(/^\[|\]$/g, ''),
    port: defaultPort(proxy),
    method: 'CONNECT',
    path: authority,
    headers: { Host: authority, ...proxyAuth(proxy) },
    agent: false,
  });
  req.once('connect', (res: IncomingMessage, socket: Duplex) => {
    if (res.statusCode !== 200) {
      socket.destroy();
      done(new NetworkError('EPROXY', `the proxy answered ${res.statusCode} to CONNECT`));
      return;
    }
    done(null, tls.connect({ socket, servername: target.hostname.replace(/^\[|\]$/g, '') }));
  });
  req.once('error', (err) => done(new NetworkError('EPROXY', `the proxy is not reachable: ${err.message}`, { cause: err })));
  req.end();
}

/**
 * Start `req`; `onResponse` gets the answer's head, `onError` anything that fails before or during it.
 * A kept-alive connection that the server closed just as it was reused fails with ECONNRESET before
 * any answer: the request never reached the server, so it is sent once more on a fresh connection, as
 * Node's documentation advises (`request.reusedSocket`). The handle destroys whichever request is current.
 */
function start(req: OutRequest, onResponse: (res: IncomingMessage) => void, onError: (err: Error) => void): { destroy(): void } | undefined {
  let current: http.ClientRequest | undefined;
  let answered = false;
  const handle = { destroy: () => current?.destroy() };
  const once = (retry: boolean): boolean => {
    const out = send(req, (res) => {
      answered = true;
      onResponse(res);
    }, (err) => {
      if (retry && !answered && current?.reusedSocket && (err as { code?: string }).code === 'ECONNRESET') {
        once(false);
        return;
      }
      onError(asNetworkError(err));
    });
    if (!out) return false;
    current = out;
    return true;
  };
  return once(true) ? handle : undefined;
}

/** One request as `start` describes; undefined (and `onError` told) when it cannot even start. */
function send(req: OutRequest, onResponse: (res: IncomingMessage) => void, onError: (err: Error) => void): http.ClientRequest | undefined {
  let out: http.ClientRequest;
  try {
    const url = new URL(req.url);
    const secure = url.protocol === 'https:';
    const proxy = proxyFor(url);
    let body: Buffer | undefined;
    const headers: Record<string, string> = { ...req.headers };
    if (req.body !== undefined) {
      if (typeof req.body === 'string' || Buffer.isBuffer(req.body)) body = Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body);
      else {
        body = Buffer.from(JSON.stringify(req.body));
        if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/json';
      }
      headers['Content-Length'] = String(body.length);
    }
    const method = req.method ?? 'GET';
    if (proxy && !secure) {
      // Plain HTTP through a proxy: the whole URL as the request target (RFC 9112 §3.2.2).
      const options = { host: proxy.hostname.replace(/^\[|\]$/g, ''), port: defaultPort(proxy), method, path: url.href, headers: { ...headers, Host: url.host, ...proxyAuth(proxy) } };
      out = (proxy.protocol === 'https:' ? https : http).request(options, onResponse);
    } else if (proxy) {
      const createConnection = (_opts: unknown, done: (err: Error | null, socket?: Duplex) => void) => void tunnel(proxy, url, done);
      out = https.request(url, { method, headers, createConnection } as https.RequestOptions, onResponse);
    } else {
      out = (secure ? https : http).request(url, { method, headers }, onResponse);
    }
    out.on('error', onError);
    out.end(body);
    return out;
  } catch (err) {
    onError(asNetworkError(err));
    return undefined;
  }
}

/** A call whose whole answer is read (at most `maxBytes`, 8 MiB by default) within `timeoutMs`. */
export function call(req: OutRequest, maxBytes = 8 * 1024 * 1024): Promise<OutResponse<Buffer>> {
  return new Promise((resolve, reject) => {
    let done = false;
    const fail = (err: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(err);
      out?.destroy();
    };
    const timer = setTimeout(() => fail(new NetworkError('ETIMEDOUT', `no complete answer within ${req.timeoutMs} ms`)), req.timeoutMs);
    const out = start(
      req,
      (res) => {
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) fail(new NetworkError('ETOOLARGE', `the answer is larger than ${maxBytes} bytes`));
          else parts.push(chunk);
        });
        res.on('end', () => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) });
        });
        res.on('error', (err) => fail(asNetworkError(err)));
        res.on('aborted', () => fail(new NetworkError('ECONNRESET', 'the answer was cut off')));
      },
      fail,
    );
  });
}

/**
 * A call whose answer is read as it comes (event streams): resolves on the answer's head, within
 * `timeoutMs`; the body's pace is the reader's business. `cancel(err)` ends it at any point (before
 * the head: `response` rejects with `err`).
 */
export function open(req: OutRequest): { response: Promise<OutResponse<IncomingMessage>>; cancel(err: Error): void } {
  let cancel: (err: Error) => void = () => undefined;
  const response = new Promise<OutResponse<IncomingMessage>>((resolve, reject) => {
    let res: IncomingMessage | undefined;
    let failed = false;
    const fail = (err: Error) => {
      clearTimeout(timer);
      if (failed) return;
      failed = true;
      if (res) res.destroy(err);
      else reject(err);
      out?.destroy();
    };
    cancel = fail;
    const timer = setTimeout(() => fail(new NetworkError('ETIMEDOUT', `no answer within ${req.timeoutMs} ms`)), req.timeoutMs);
    const out = start(
      req,
      (r) => {
        clearTimeout(timer);
        res = r;
        resolve({ status: r.statusCode ?? 0, headers: r.headers, body: r });
      },
      (err) => {
        // After the head, a failure reaches the reader through the body stream.
        if (!res) fail(err);
      },
    );
  });
  return { response, cancel: (err) => cancel(err) };
}
