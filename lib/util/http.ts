/**
 * The one client for calls out (the model backends; the WeChat, LINE and Discord APIs): a thin
 * wrapper over axios (the client laf's runtime ships too, docs/laf.md) that adds what every call
 * here needs: a timeout over the whole answer (`call`) or its head (`open`), a bound on every
 * buffered answer, no redirects, and a cancel that needs no AbortController, which laf's sandbox
 * lacks (axios's CancelToken before the head, destroying the body after it).
 *
 * Proxies come from the environment (HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY, read by
 * proxy-from-env on each call) and go through https-proxy-agent (a CONNECT tunnel, the certificate
 * still checked end to end) or http-proxy-agent (plain http, the whole URL as the target). axios's
 * own proxy handling is off, so there is one reading of those variables.
 */
import axios from 'axios';
import type { AxiosError, AxiosHeaders, AxiosResponse, Canceler } from 'axios';
import type { Agent, ClientRequest, IncomingHttpHeaders } from 'http';
import { HttpProxyAgent } from 'http-proxy-agent';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { getProxyForUrl } from 'proxy-from-env';
import type { Readable } from 'stream';

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

/** A proxy variable's value as a URL (`host:port` means http), or undefined when it is none. */
export function parseProxy(raw: string): URL | undefined {
  try {
    const u = new URL(raw.includes('://') ? raw : `http://${raw}`);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname ? u : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The proxy for `url` as proxy-from-env reads the environment: HTTPS_PROXY for https, HTTP_PROXY for
 * http (ALL_PROXY for either, lower case first), unless NO_PROXY covers it (`*`; a host name, which
 * covers that host only; `.domain` or `*.domain` for the hosts under it; each with an optional `:port`).
 */
export function proxyFor(url: URL): URL | undefined {
  const chosen = getProxyForUrl(url.href);
  if (!chosen) return undefined;
  // proxy-from-env gives a proxy written without a scheme the scheme of the URL it carries, so
  // `HTTPS_PROXY=proxy:3128` would be spoken TLS to; curl (and lib/config.ts's check) read it as http.
  const written = PROXY_VARIABLES.some((n) => process.env[n] === chosen);
  const proxy = parseProxy(written ? chosen : chosen.replace(/^[a-z]+:\/\//i, ''));
  if (!proxy) throw new NetworkError('EPROXY', 'the proxy in HTTPS_PROXY / HTTP_PROXY / ALL_PROXY is not an http(s) URL');
  return proxy;
}

/** Requests whose CONNECT the proxy refused, with the status it answered. */
const refusedConnect = new WeakMap<ClientRequest, number>();
/** One agent per proxy and target scheme, so connections to a proxy are pooled. */
const agents = new Map<string, Agent>();

function agentFor(proxy: URL, secure: boolean): Agent {
  const key = `${secure ? 'https' : 'http'} ${proxy.href}`;
  let agent = agents.get(key);
  if (!agent) {
    if (secure) {
      const tunnel = new HttpsProxyAgent(proxy);
      // A refused CONNECT is replayed as if it were the origin's answer; remember it to say so.
      tunnel.on('proxyConnect', (res: { statusCode: number }, req: ClientRequest) => {
        if (res.statusCode !== 200) refusedConnect.set(req, res.statusCode);
      });
      agent = tunnel;
    } else {
      agent = new HttpProxyAgent(proxy);
    }
    agents.set(key, agent);
  }
  return agent;
}

// ---- the calls

const client = axios.create({
  adapter: 'http',
  proxy: false,
  maxRedirects: 0,
  validateStatus: () => true,
  // The body goes as we made it, and the answer comes back as bytes (or a stream), unparsed.
  transformRequest: [(data: unknown) => data],
  transformResponse: [(data: unknown) => data],
});

/** Codes of a failure to reach a proxy at all (a tunnel or forward that fails later is the origin's). */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET']);

function asNetworkError(err: unknown, proxy: URL | undefined): NetworkError {
  if (err instanceof NetworkError) return err;
  const e = err as AxiosError;
  const message = e.message ?? String(err);
  if (e.code === 'ERR_BAD_RESPONSE' && /maxContentLength/.test(message)) return new NetworkError('ETOOLARGE', message, { cause: err });
  if (e.code === 'ERR_BAD_RESPONSE') return new NetworkError('ECONNRESET', `the answer was cut off: ${message}`, { cause: err });
  const code = e.code ?? 'ENETWORK';
  if (proxy && !e.response && UNREACHABLE.has(code)) {
    return new NetworkError('EPROXY', `the proxy at ${proxy.host} is not reachable: ${code}`, { cause: err });
  }
  return new NetworkError(code, message, { cause: err });
}

interface Started<B> {
  response: Promise<OutResponse<B>>;
  /** Stop the request before its head has come (axios rejects; `response` is the caller's to settle). */
  cancel: Canceler;
}

function start<B>(req: OutRequest, kind: { responseType: 'arraybuffer'; maxContentLength: number } | { responseType: 'stream' }): Started<B> {
  let cancel: Canceler = () => undefined;
  let proxy: URL | undefined;
  const response = (async () => {
    const url = new URL(req.url);
    const secure = url.protocol === 'https:';
    proxy = proxyFor(url);
    const headers: Record<string, string> = { ...req.headers };
    let data: Buffer | undefined;
    if (req.body !== undefined) {
      if (typeof req.body === 'string' || Buffer.isBuffer(req.body)) data = Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body);
      else {
        data = Buffer.from(JSON.stringify(req.body));
        if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/json';
      }
    }
    const agent = proxy ? agentFor(proxy, secure) : undefined;
    const res: AxiosResponse<unknown> = await client.request({
      method: req.method ?? 'GET',
      url: url.href,
      headers,
      data,
      ...kind,
      ...(agent ? (secure ? { httpsAgent: agent } : { httpAgent: agent }) : {}),
      cancelToken: new axios.CancelToken((c) => (cancel = c)),
    });
    const refused = refusedConnect.get(res.request as ClientRequest);
    if (refused !== undefined) {
      if (kind.responseType === 'stream') (res.data as Readable).destroy();
      throw new NetworkError('EPROXY', `the proxy answered ${refused} to CONNECT`);
    }
    return { status: res.status, headers: (res.headers as AxiosHeaders).toJSON() as IncomingHttpHeaders, body: res.data as B };
  })();
  return {
    response: response.catch((err: unknown) => {
      throw asNetworkError(err, proxy);
    }),
    cancel: (...args) => cancel(...args),
  };
}

/** A call whose whole answer is read (at most `maxBytes`, 8 MiB by default) within `timeoutMs`. */
export function call(req: OutRequest, maxBytes = 8 * 1024 * 1024): Promise<OutResponse<Buffer>> {
  return new Promise((resolve, reject) => {
    const started = start<Buffer>(req, { responseType: 'arraybuffer', maxContentLength: maxBytes });
    const timer = setTimeout(() => {
      reject(new NetworkError('ETIMEDOUT', `no complete answer within ${req.timeoutMs} ms`));
      started.cancel();
    }, req.timeoutMs);
    started.response.then(
      (res) => {
        clearTimeout(timer);
        resolve(res);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err as Error);
      },
    );
  });
}

/**
 * A call whose answer is read as it comes (event streams): resolves on the answer's head, within
 * `timeoutMs`; the body's pace is the reader's business. `cancel(err)` ends it at any point (before
 * the head: `response` rejects with `err`; after it: the body ends with `err`).
 */
export function open(req: OutRequest): { response: Promise<OutResponse<Readable>>; cancel(err: Error): void } {
  // Events are asked for uncompressed, so each arrives as it is sent, with no inflating per chunk.
  const started = start<Readable>({ ...req, headers: { 'Accept-Encoding': 'identity', ...req.headers } }, { responseType: 'stream' });
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
        started.cancel();
      }
    };
    const timer = setTimeout(() => fail(new NetworkError('ETIMEDOUT', `no answer within ${req.timeoutMs} ms`)), req.timeoutMs);
    started.response.then(
      (res) => {
        clearTimeout(timer);
        if (ended) return void res.body.destroy();
        body = res.body;
        resolve(res);
      },
      (err: unknown) => fail(err as Error),
    );
  });
  return { response, cancel: (err) => fail(err) };
}
