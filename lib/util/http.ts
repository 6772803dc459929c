/**
 * The one client for calls out (the model backends; the WeChat, LINE and Discord APIs): a thin
 * wrapper over undici 6, Node's own HTTP engine, that adds what every call here needs: a timeout
 * over the whole answer (`call`) or its head (`open`), a bound on every buffered answer, no
 * redirects, and a cancel that needs no AbortController, which laf's sandbox lacks (undici takes
 * an EventEmitter as the abort signal). Not axios, which the design card names: measured side by
 * side in the 2,000-at-once burst it cost the server about 16% more CPU and left about five times as
 * many answers out of their first window (docs/capacity.md).
 *
 * Proxies come from the environment through undici's EnvHttpProxyAgent: https through a CONNECT
 * tunnel (the certificate still checked end to end), plain http forwarded with the whole URL.
 */
import { EventEmitter } from 'events';
import type { IncomingHttpHeaders } from 'http';
import type { Readable } from 'stream';
import { Agent, EnvHttpProxyAgent, request } from 'undici';
import type { Dispatcher } from 'undici';

export interface OutRequest {
  method?: string;
  url: string;
  headers?: Readonly<Record<string, string>>;
  /** Text or bytes as they are; anything else is sent as JSON (with its Content-Type, unless one is given). */
  body?: unknown;
  /** Give up when the answer has not come in this long (`call`: all of it; `open`: its head). */
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

/** JSON of an answer's body, or undefined when it is not JSON. */
export function jsonOf(body: Buffer | string): unknown {
  try {
    return JSON.parse(typeof body === 'string' ? body : body.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

// ---- the proxy from the environment

/** The variables that name a proxy, each in both cases (lib/config.ts checks them at start). */
export const PROXY_VARIABLES = ['HTTPS_PROXY', 'HTTP_PROXY', 'ALL_PROXY'].flatMap((n) => [n.toLowerCase(), n]);

/** A proxy variable's value as a URL (`host:port` means http, as curl reads it), or undefined when it is none. */
export function parseProxy(raw: string): URL | undefined {
  try {
    const u = new URL(raw.includes('://') ? raw : `http://${raw}`);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname ? u : undefined;
  } catch {
    return undefined;
  }
}

const first = (env: NodeJS.ProcessEnv, names: string[]) => names.map((n) => env[n]).find((v) => v) || undefined;

/**
 * The dispatcher for the environment as it is now: undici's EnvHttpProxyAgent when a proxy is set
 * (it applies NO_PROXY), else a plain Agent. It is made again when a variable changes, since laf
 * applies environment changes without a restart; calls in flight finish on the one they started with.
 */
let current: { key: string; dispatcher: Dispatcher } | undefined;
function dispatcher(): Dispatcher {
  const env = process.env;
  const all = first(env, ['all_proxy', 'ALL_PROXY']);
  const httpProxy = first(env, ['http_proxy', 'HTTP_PROXY']) ?? all;
  const httpsProxy = first(env, ['https_proxy', 'HTTPS_PROXY']) ?? all;
  const noProxy = first(env, ['no_proxy', 'NO_PROXY']);
  const key = JSON.stringify([httpProxy, httpsProxy, noProxy]);
  if (current?.key === key) return current.dispatcher;
  const url = (raw: string | undefined) => {
    if (raw === undefined) return undefined;
    const u = parseProxy(raw);
    if (!u) throw new NetworkError('EPROXY', 'the proxy in HTTPS_PROXY / HTTP_PROXY / ALL_PROXY is not an http(s) URL');
    return u.href;
  };
  const http = url(httpProxy);
  const https = url(httpsProxy);
  current = {
    key,
    dispatcher:
      http || https
        ? // proxyTunnel false: plain http is forwarded with the whole URL, as proxies that allow CONNECT only to 443 expect.
          new EnvHttpProxyAgent({ ...(http ? { httpProxy: http } : {}), ...(https ? { httpsProxy: https } : {}), noProxy: noProxy ?? '', proxyTunnel: false } as EnvHttpProxyAgent.Options)
        : new Agent(),
  };
  return current.dispatcher;
}

// ---- the calls

function asNetworkError(err: unknown): NetworkError {
  if (err instanceof NetworkError) return err;
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  const refused = /^Proxy response \((\d+)\)|^Proxy Authentication Required \((\d+)\)/.exec(message);
  if (refused) return new NetworkError('EPROXY', `the proxy answered ${refused[1] ?? refused[2]} to ${refused[1] ? 'CONNECT' : 'the request'}`, { cause: err });
  return new NetworkError(e.code ?? 'ENETWORK', message, { cause: err });
}

/** Start `req`; `abort` stops it at any point (undici then fails the call and its body). */
function start(req: OutRequest): { response: Promise<Dispatcher.ResponseData>; abort(): void } {
  const signal = new EventEmitter();
  const response = (async () => {
    const url = new URL(req.url);
    const headers: Record<string, string> = { ...req.headers };
    let body: Buffer | null = null;
    if (req.body !== undefined) {
      if (typeof req.body === 'string' || Buffer.isBuffer(req.body)) body = Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body);
      else {
        body = Buffer.from(JSON.stringify(req.body));
        if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/json';
      }
    }
    return request(url, {
      method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
      headers,
      body,
      dispatcher: dispatcher(),
      signal,
      maxRedirections: 0,
      // Our own timers bound the wait (the head for `open`, the whole answer for `call`).
      headersTimeout: 0,
      bodyTimeout: 0,
    });
  })();
  return { response: response.catch((err: unknown) => Promise.reject(asNetworkError(err))), abort: () => signal.emit('abort') };
}

const headersOf = (res: Dispatcher.ResponseData) => res.headers as IncomingHttpHeaders;

/** A call whose whole answer is read (at most `maxBytes`, 8 MiB by default) within `timeoutMs`. */
export function call(req: OutRequest, maxBytes = 8 * 1024 * 1024): Promise<OutResponse<Buffer>> {
  return new Promise((resolve, reject) => {
    const started = start(req);
    let done = false;
    const fail = (err: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(asNetworkError(err));
      started.abort();
    };
    const timer = setTimeout(() => fail(new NetworkError('ETIMEDOUT', `no complete answer within ${req.timeoutMs} ms`)), req.timeoutMs);
    started.response.then((res) => {
      const parts: Buffer[] = [];
      let size = 0;
      res.body.on('data', (chunk: Buffer) => {
        if (done) return;
        size += chunk.length;
        if (size > maxBytes) fail(new NetworkError('ETOOLARGE', `the answer is larger than ${maxBytes} bytes`));
        else parts.push(chunk);
      });
      res.body.on('end', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: headersOf(res), body: Buffer.concat(parts) });
      });
      res.body.on('error', fail);
    }, fail);
  });
}

/**
 * A call whose answer is read as it comes (event streams): resolves on the answer's head, within
 * `timeoutMs`; the body's pace is the reader's business. `cancel(err)` ends it at any point (before
 * the head: `response` rejects with `err`; after it: the body ends with `err`).
 */
export function open(req: OutRequest): { response: Promise<OutResponse<Readable>>; cancel(err: Error): void } {
  const started = start(req);
  let body: Readable | undefined;
  let fail: (err: Error) => void = () => undefined;
  let ended = false;
  const response = new Promise<OutResponse<Readable>>((resolve, reject) => {
    fail = (err) => {
      clearTimeout(timer);
      if (ended) return;
      ended = true;
      if (body) body.destroy(err);
      else {
        reject(err);
        started.abort();
      }
    };
    const timer = setTimeout(() => fail(new NetworkError('ETIMEDOUT', `no answer within ${req.timeoutMs} ms`)), req.timeoutMs);
    started.response.then(
      (res) => {
        clearTimeout(timer);
        if (ended) return void res.body.destroy();
        body = res.body;
        resolve({ status: res.statusCode, headers: headersOf(res), body: res.body });
      },
      (err: unknown) => fail(err as Error),
    );
  });
  return { response, cancel: (err) => fail(err) };
}
