/** Raw HTTP to the webhook, for tests that need exact control over what WeChat would send. */
import { request } from 'http';
import { sha1Signature } from '../../lib/channels/wxbiz/signature';

export interface WireResponse {
  status: number;
  body: string;
  type: string;
  /** The server closed the connection without an answer (a dropped delivery). */
  dropped: boolean;
}

/** `from`: the local address to send from, e.g. 127.0.0.2 (any of loopback's 127.0.0.0/8 reaches a server on 127.0.0.1). */
export function call(url: string, opts: { method?: string; body?: string | Buffer | undefined; headers?: Record<string, string>; from?: string } = {}): Promise<WireResponse> {
  return new Promise((resolve) => {
    // A body is always framed: Node's client sends a DELETE's body with no Content-Length, which a
    // server can only read as a second, malformed request.
    const framed = opts.body !== undefined && !Object.keys(opts.headers ?? {}).some((k) => /^(content-length|transfer-encoding)$/i.test(k)) ? { 'Content-Length': String(Buffer.byteLength(opts.body)) } : {};
    const req = request(url, { method: opts.method ?? 'GET', headers: { ...opts.headers, ...framed }, ...(opts.from ? { localAddress: opts.from } : {}) }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8'), type: String(res.headers['content-type']), dropped: false }));
      res.on('error', () => resolve({ status: 0, body: '', type: '', dropped: true }));
    });
    req.on('error', () => resolve({ status: 0, body: '', type: '', dropped: true }));
    req.end(opts.body);
  });
}

/** The signature query WeChat adds to every request. */
export function signed(token: string, ts = String(Math.floor(Date.now() / 1000)), nonce = String(Math.floor(Math.random() * 1e9))): string {
  return `signature=${sha1Signature([token, ts, nonce])}&timestamp=${ts}&nonce=${nonce}`;
}

export function textXml(user: string, content: string, msgId: string, account = 'gh_wire'): string {
  return `<xml><ToUserName><![CDATA[${account}]]></ToUserName><FromUserName><![CDATA[${user}]]></FromUserName><CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${content}]]></Content><MsgId>${msgId}</MsgId></xml>`;
}

/** POST one signed delivery of a message. */
export function deliver(url: string, token: string, xml: string): Promise<WireResponse> {
  return call(`${url}?${signed(token)}`, { method: 'POST', body: xml, headers: { 'Content-Type': 'text/xml' } });
}
