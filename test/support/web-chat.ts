/**
 * A visitor of the web chat over real HTTP, as its page's script talks to the server
 * (lib/web/chat/assets.ts): the cookie the page sets, the CSRF token it carries, JSON requests,
 * and the answer's event stream.
 */
import { randomBytes } from 'crypto';
import { request } from 'http';
import { openSse } from '../../lib/sim/sse-client';
import type { SseStream } from '../../lib/sim/sse-client';
import type { WireResponse } from './wire';

interface CallOptions {
  method: string;
  body: string | undefined;
  headers: Record<string, string>;
  from?: string;
}

export const messageId = () => randomBytes(12).toString('base64url');

export interface Turn {
  id: string;
  question: string;
  status: 'pending' | 'answered' | 'failed' | 'stopped';
  at: number;
  generation: number;
  html?: string;
  message?: string;
  text?: string;
  attempt?: number;
  seen?: boolean;
}

export class ChatVisitor {
  cookie = '';
  csrf = '';
  setCookie = '';

  /** `from`: the local address to send from (127.0.0.x), for per-address limits. */
  constructor(
    readonly origin: string,
    readonly from?: string,
  ) {}

  /** Open the page: the visitor's cookie (new, or kept) and CSRF token. */
  async open(query = ''): Promise<WireResponse> {
    const r = await this.raw('GET', `/chat${query}`);
    const m = /data-csrf="([^"]+)"/.exec(r.body) ?? /name="csrf" value="([^"]+)"/.exec(r.body);
    if (m) this.csrf = m[1] as string;
    return r;
  }

  async raw(method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<WireResponse & { headers: Record<string, string | string[] | undefined> }> {
    const got: { headers: Record<string, string | string[] | undefined> } = { headers: {} };
    const r = await callWithHeaders(`${this.origin}${path}`, { method, body, headers: { ...(this.cookie ? { cookie: this.cookie } : {}), ...headers }, ...(this.from ? { from: this.from } : {}) }, got);
    const set = got.headers['set-cookie'];
    const first = Array.isArray(set) ? set[0] : set;
    if (first) {
      this.setCookie = first;
      this.cookie = first.split(';')[0] as string;
    }
    return { ...r, headers: got.headers };
  }

  async post(op: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
    const r = await this.raw('POST', `/chat/api/${op}`, JSON.stringify(body), { 'Content-Type': 'application/json', 'X-CSRF-Token': this.csrf, ...headers });
    return { status: r.status, json: parse(r.body) };
  }

  async get(op: string, query = ''): Promise<{ status: number; json: Record<string, unknown> }> {
    const r = await this.raw('GET', `/chat/api/${op}${query ? `?${query}` : ''}`);
    return { status: r.status, json: parse(r.body) };
  }

  ask(text: string, id = messageId()) {
    return this.post('ask', { id, text });
  }

  async history(before?: number): Promise<{ turns: Turn[]; more: boolean; generation: number }> {
    const r = await this.get('history', before === undefined ? '' : `before=${before}`);
    return r.json as unknown as { turns: Turn[]; more: boolean; generation: number };
  }

  events(id: string, headers: Record<string, string> = {}): Promise<SseStream> {
    return openSse(`${this.origin}/chat/api/events?id=${id}`, { cookie: this.cookie, ...headers });
  }
}

function parse(body: string): Record<string, unknown> {
  try {
    return JSON.parse(body) as Record<string, unknown>;
  } catch {
    return {};
  }
}

function callWithHeaders(url: string, opts: CallOptions, out: { headers: Record<string, string | string[] | undefined> }): Promise<WireResponse> {
  return new Promise((resolve) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers, ...(opts.from ? { localAddress: opts.from } : {}) }, (res) => {
      out.headers = res.headers;
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8'), type: String(res.headers['content-type']), dropped: false }));
      res.on('error', () => resolve({ status: 0, body: '', type: '', dropped: true }));
    });
    req.on('error', () => resolve({ status: 0, body: '', type: '', dropped: true }));
    req.end(opts.body);
  });
}
