/**
 * A WeChat server API simulator on loopback (docs/wechat.md): `stable_token` (the same
 * token while it is valid; a new one when it is due), customer-service `send` and `typing` checking
 * the token (40001 unknown, 42001 expired) and answering the documented error codes per user.
 */
import { randomBytes } from 'crypto';
import { createServer } from 'http';
import { parseMultipart } from '../util/multipart';
import type { Server } from 'http';
import type { AddressInfo } from 'net';

export interface WechatApiSimOptions {
  appId: string;
  appSecret: string;
  /** Lifetime of a token in seconds (WeChat: 7200). */
  tokenTtlS?: number;
  /** An errcode to answer a send to this user with (45015, 45047, 48001, …), or undefined to accept. */
  refuse?: (openId: string) => number | undefined;
  /** An errcode for every menu call (48001 for an unverified subscription account). */
  refuseMenu?: number;
  /** Temporary media by MediaId (media/get); an unknown id answers 40007. */
  media?: Record<string, { bytes: Buffer; contentType: string }>;
}

export interface WechatApiSim {
  url: string;
  server: Server;
  sent: { touser: string; content: string }[];
  typing: string[];
  /** The published custom menu, as WeChat holds it. */
  menu: { button: unknown[] } | undefined;
  stableTokenCalls: number;
  /** Every token issued (for leak checks). */
  issued: string[];
  /** MediaIds downloaded with media/get. */
  mediaGets: string[];
  /** Pictures uploaded with media/upload, by media_id. */
  uploads: Map<string, { bytes: Buffer; contentType: string }>;
  /** Image messages sent with the customer-service API, in order. */
  sentImages: { touser: string; mediaId: string }[];
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
  40016: 'invalid button size',
  40017: 'invalid button type',
  40018: 'invalid button name size',
  40019: 'invalid button key size',
  46003: 'menu no exist',
  40007: 'invalid media_id',
};

/** WeChat's own checks on menu/create, as its error codes. */
function menuError(menu: unknown): number | undefined {
  const top = (menu as { button?: unknown })?.button;
  if (!Array.isArray(top) || top.length === 0 || top.length > 3) return 40016;
  for (const b of top as { name?: unknown; type?: unknown; key?: unknown; sub_button?: unknown[] }[]) {
    if (typeof b.name !== 'string' || Buffer.byteLength(b.name) > 16) return 40018;
    const subs = Array.isArray(b.sub_button) ? b.sub_button : [];
    if (subs.length > 5) return 40016;
    for (const s of subs as { name?: unknown; type?: unknown; key?: unknown }[]) {
      if (typeof s.name !== 'string' || Buffer.byteLength(s.name) > 60) return 40018;
      if (typeof s.type !== 'string') return 40017;
    }
    if (subs.length === 0 && typeof b.type !== 'string') return 40017;
    if (b.type === 'click' && (typeof b.key !== 'string' || Buffer.byteLength(b.key) > 128)) return 40019;
  }
  return undefined;
}

export async function startWechatApiSim(opts: WechatApiSimOptions): Promise<WechatApiSim> {
  const ttlMs = (opts.tokenTtlS ?? 7200) * 1000;
  const tokens = new Map<string, number>(); // token → expires at (ms)
  let current: string | undefined;
  const sim = {
    sent: [] as { touser: string; content: string }[],
    typing: [] as string[],
    menu: undefined as { button: unknown[] } | undefined,
    stableTokenCalls: 0,
    issued: [] as string[],
    mediaGets: [] as string[],
    /** Pictures uploaded with media/upload, by media_id. */
    uploads: new Map<string, { bytes: Buffer; contentType: string }>(),
    /** Image messages sent with the customer-service API, in order. */
    sentImages: [] as { touser: string; mediaId: string }[],
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
      const multipartBody = String(req.headers['content-type'] ?? '').startsWith('multipart/form-data');
      try {
        if (!multipartBody) body = JSON.parse(Buffer.concat(parts).toString('utf8') || '{}') as Record<string, unknown>;
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
      if (url.pathname.startsWith('/cgi-bin/menu/') || url.pathname === '/cgi-bin/get_current_selfmenu_info') {
        if (opts.refuseMenu) return err(opts.refuseMenu);
        if (req.method === 'POST' && url.pathname === '/cgi-bin/menu/create') {
          const bad = menuError(body);
          if (bad) return err(bad);
          sim.menu = body as { button: unknown[] };
          return reply({ errcode: 0, errmsg: 'ok' });
        }
        if (req.method === 'GET' && url.pathname === '/cgi-bin/get_current_selfmenu_info') {
          return reply(sim.menu ? { is_menu_open: 1, selfmenu_info: sim.menu } : { is_menu_open: 0 });
        }
        if (req.method === 'GET' && url.pathname === '/cgi-bin/menu/delete') {
          sim.menu = undefined;
          return reply({ errcode: 0, errmsg: 'ok' });
        }
      }
      if (req.method === 'POST' && url.pathname === '/cgi-bin/media/upload') {
        if (url.searchParams.get('type') !== 'image' || !multipartBody) return err(40004);
        const file = parseMultipart(Buffer.concat(parts), String(req.headers['content-type'])).files['media'];
        if (!file || file.bytes.length === 0) return err(41005);
        // Pictures up to 10 MB, bmp/png/jpeg/jpg/gif (docs/wechat.md).
        if (file.bytes.length > 10 * 1024 * 1024) return err(40009);
        const id = `MEDIA_${randomBytes(12).toString('hex')}`;
        sim.uploads.set(id, { bytes: file.bytes, contentType: file.contentType });
        return reply({ type: 'image', media_id: id, created_at: Math.floor(Date.now() / 1000) });
      }
      if (req.method === 'GET' && url.pathname === '/cgi-bin/media/get') {
        const id = url.searchParams.get('media_id') ?? '';
        const file = opts.media && Object.prototype.hasOwnProperty.call(opts.media, id) ? opts.media[id] : undefined;
        if (!file) return err(40007);
        sim.mediaGets.push(url.searchParams.get('media_id') ?? '');
        res.writeHead(200, { 'Content-Type': file.contentType, 'Content-disposition': 'attachment; filename="media"', 'Content-Length': file.bytes.length });
        res.end(file.bytes);
        return;
      }
      const touser = String(body['touser'] ?? '');
      if (req.method === 'POST' && url.pathname === '/cgi-bin/message/custom/typing') {
        sim.typing.push(touser);
        return reply({ errcode: 0, errmsg: 'ok' });
      }
      if (req.method === 'POST' && url.pathname === '/cgi-bin/message/custom/send') {
        const refused = opts.refuse?.(touser);
        if (refused) return err(refused);
        const image = body['image'] as { media_id?: unknown } | undefined;
        if (body['msgtype'] === 'image') {
          if (typeof image?.media_id !== 'string' || !sim.uploads.has(image.media_id)) return err(40007);
          sim.sentImages.push({ touser, mediaId: image.media_id });
          return reply({ errcode: 0, errmsg: 'ok' });
        }
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
