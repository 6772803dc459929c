/**
 * A WeChat server API simulator on loopback (docs/wechat.md): `stable_token` (the same
 * token while it is valid; a new one when it is due), customer-service `send` and `typing` checking
 * the token (40001 unknown, 42001 expired) and answering the documented error codes per user.
 */
import { randomBytes } from 'crypto';
import { createServer } from 'http';
import type { Server } from 'http';
import type { AddressInfo } from 'net';

export interface WechatApiSimOptions {
  appId: string;
  appSecret: string;
  /** Lifetime of a token in seconds (WeChat: 7200). */
  tokenTtlS?: number;
  /** An errcode to answer a send to this user with (45015, 45047, 48001, …), or undefined to accept. */
  refuse?: (openId: string) => number | undefined;
}

export interface WechatApiSim {
  url: string;
  server: Server;
  sent: { touser: string; content: string }[];
  typing: string[];
  stableTokenCalls: number;
  /** Every token issued (for leak checks). */
  issued: string[];
  /** Expire the current token at once (the next call with it gets 42001). */
  expireCurrent(): void;
  close(): Promise<void>;
}

const ERRMSG: Record<number, string> = {
  40001: 'invalid credential, access_token is invalid or not latest',
  40013: 'invalid appid',
  42001: 'access_token expired',
  45015: 'response out of time limit or subscription is canceled',
  45047: 'out of response count limit',
  48001: 'api unauthorized',
};

export async function startWechatApiSim(opts: WechatApiSimOptions): Promise<WechatApiSim> {
  const ttlMs = (opts.tokenTtlS ?? 7200) * 1000;
  const tokens = new Map<string, number>(); // token → expires at (ms)
  let current: string | undefined;
  const sim = {
    sent: [] as { touser: string; content: string }[],
    typing: [] as string[],
    stableTokenCalls: 0,
    issued: [] as string[],
  };

  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://sim');
      const reply = (body: object) => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      const err = (code: number) => reply({ errcode: code, errmsg: ERRMSG[code] ?? 'error' });
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(Buffer.concat(parts).toString('utf8') || '{}') as Record<string, unknown>;
      } catch {
        return err(47001);
      }
      if (req.method === 'POST' && url.pathname === '/cgi-bin/stable_token') {
        sim.stableTokenCalls++;
        if (body['grant_type'] !== 'client_credential' || body['appid'] !== opts.appId) return err(40013);
        if (body['secret'] !== opts.appSecret) return err(40001);
        const now = Date.now();
        const left = current ? (tokens.get(current) ?? 0) - now : 0;
        // The platform renews near the end of a token's life; before that it returns the same one.
        if (!current || left < ttlMs / 2) {
          current = randomBytes(48).toString('base64url');
          tokens.set(current, now + ttlMs);
          sim.issued.push(current);
          return reply({ access_token: current, expires_in: Math.round(ttlMs / 1000) });
        }
        return reply({ access_token: current, expires_in: Math.round(left / 1000) });
      }
      const token = url.searchParams.get('access_token') ?? '';
      const expires = tokens.get(token);
      if (expires === undefined) return err(40001);
      if (expires <= Date.now()) return err(42001);
      const touser = String(body['touser'] ?? '');
      if (req.method === 'POST' && url.pathname === '/cgi-bin/message/custom/typing') {
        sim.typing.push(touser);
        return reply({ errcode: 0, errmsg: 'ok' });
      }
      if (req.method === 'POST' && url.pathname === '/cgi-bin/message/custom/send') {
        const refused = opts.refuse?.(touser);
        if (refused) return err(refused);
        const text = body['text'] as { content?: unknown } | undefined;
        if (body['msgtype'] !== 'text' || typeof text?.content !== 'string') return err(40008);
        sim.sent.push({ touser, content: text.content });
        return reply({ errcode: 0, errmsg: 'ok' });
      }
      res.writeHead(404);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(sim, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    expireCurrent() {
      if (current) tokens.set(current, 0);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}
