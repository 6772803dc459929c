/**
 * A LINE platform simulator (docs/channels.md "LINE"), faithful to the Messaging API's public docs
 * where this bot touches it: signed webhooks (base64 HMAC-SHA256 of the body under the channel
 * secret) with a reply token per event, re-deliveries with `isRedelivery`, and the API side: reply
 * (a token works once, for `replyTokenMs`), push (counted against a monthly quota), the loading
 * animation (1:1 chats only), 1–5 messages per call and 5,000 UTF-16 units per text, LINE's error bodies.
 */
import { createHmac, randomBytes } from 'crypto';
import { createServer, request } from 'http';
import type { Server } from 'http';
import type { AddressInfo } from 'net';
import { readJson } from './dify-sim';

export interface LineSimOptions {
  channelSecret: string;
  accessToken: string;
  /** How long a reply token works after its event was sent (LINE: about a minute). */
  replyTokenMs?: number;
  /** Push messages allowed this month; past it, 429 "You have reached your monthly limit." */
  pushQuota?: number;
  /** Port on 127.0.0.1 (default: any free port). */
  port?: number;
  /** Answer this API call with this status instead (an outage), by path and call number. */
  fail?: (path: string, call: number) => number | undefined;
}

export interface LineSim {
  url: string;
  server: Server;
  replies: { replyToken: string; texts: string[]; images?: { original: string; preview: string }[] }[];
  pushes: { to: string; texts: string[]; images?: { original: string; preview: string }[] }[];
  loading: string[];
  /** Every API error answered, by status. */
  errors: { path: string; status: number; message: string }[];
  /** Send one webhook with `events` to `webhookUrl`, signed (or with `signature` as given). */
  deliver(webhookUrl: string, events: object[], signature?: string): Promise<{ status: number; body: string }>;
  /** A text message event from a user, or in a group (`group`), mentioning the bot when `mention`. */
  text(from: string, text: string, opts?: { group?: string; mention?: boolean; id?: string; redelivery?: boolean; replyToken?: string }): LineTextEvent;
  follow(from: string): object;
  unfollow(from: string): object;
  close(): Promise<void>;
}

export interface LineTextEvent {
  type: 'message';
  webhookEventId: string;
  replyToken: string;
  [field: string]: unknown;
}

/** A ULID-like id (26 Crockford base32 characters), as webhookEventId is. */
function ulid(): string {
  const chars = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  return Array.from(randomBytes(26), (b) => chars[b % 32]).join('');
}

export async function startLineSim(opts: LineSimOptions): Promise<LineSim> {
  const tokenMs = opts.replyTokenMs ?? 60_000;
  const tokens = new Map<string, { until: number; used: boolean }>();
  let pushed = 0;
  let calls = 0;
  const sim = {
    replies: [] as { replyToken: string; texts: string[]; images?: { original: string; preview: string }[] }[],
    pushes: [] as { to: string; texts: string[]; images?: { original: string; preview: string }[] }[],
    loading: [] as string[],
    errors: [] as { path: string; status: number; message: string }[],
  };
  const server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const body = ((await readJson(req)) ?? {}) as Record<string, unknown>;
      const reply = (status: number, value: object) => {
        if (status >= 400) sim.errors.push({ path, status, message: String((value as { message?: unknown }).message) });
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      const down = opts.fail?.(path, ++calls);
      if (down) return reply(down, { message: 'Internal server error' });
      if (req.headers.authorization !== `Bearer ${opts.accessToken}`) return reply(401, { message: 'Authentication failed. Confirm that the access token in the authorization header is valid.' });
      if (req.method === 'POST' && path === '/v2/bot/chat/loading/start') {
        const id = String(body['chatId'] ?? '');
        if (!id.startsWith('U')) return reply(400, { message: 'The request body has 1 error(s)', details: [{ message: 'Only user id is acceptable, please confirm if there are any group/room ids or illegal ids.', property: 'chatId' }] });
        const s = Number(body['loadingSeconds'] ?? 20);
        if (!(s >= 5 && s <= 60 && s % 5 === 0)) return reply(400, { message: 'The request body has 1 error(s)', details: [{ message: 'Must be between 5 and 60', property: 'loadingSeconds' }] });
        sim.loading.push(id);
        return reply(202, {});
      }
      if (req.method !== 'POST' || (path !== '/v2/bot/message/reply' && path !== '/v2/bot/message/push')) return reply(404, { message: 'Not found' });
      const messages = body['messages'];
      if (!Array.isArray(messages) || messages.length < 1 || messages.length > 5) return reply(400, { message: 'The request body has 1 error(s)', details: [{ message: 'Size must be between 1 and 5', property: 'messages' }] });
      const texts: string[] = [];
      const images: { original: string; preview: string }[] = [];
      for (const [i, m] of messages.entries()) {
        const t = (m as { type?: unknown; text?: unknown; originalContentUrl?: unknown; previewImageUrl?: unknown }) ?? {};
        if (t.type === 'image') {
          // LINE fetches pictures itself: https only, at most 2,000 characters each.
          const ok = (u: unknown) => typeof u === 'string' && u.startsWith('https://') && u.length <= 2000;
          if (!ok(t.originalContentUrl) || !ok(t.previewImageUrl)) return reply(400, { message: 'The request body has 1 error(s)', details: [{ message: 'must be a valid HTTPS URL', property: `messages[${i}].originalContentUrl` }] });
          images.push({ original: t.originalContentUrl as string, preview: t.previewImageUrl as string });
          continue;
        }
        if (t.type !== 'text' || typeof t.text !== 'string' || t.text.length === 0 || t.text.length > 5000) {
          return reply(400, { message: 'The request body has 1 error(s)', details: [{ message: 'Length must be between 0 and 5000', property: `messages[${i}].text` }] });
        }
        texts.push(t.text);
      }
      const extra = images.length > 0 ? { images } : {};
      if (path === '/v2/bot/message/reply') {
        const token = String(body['replyToken'] ?? '');
        const t = tokens.get(token);
        if (!t || t.used || Date.now() > t.until) return reply(400, { message: 'Invalid reply token' });
        t.used = true;
        sim.replies.push({ replyToken: token, texts, ...extra });
        return reply(200, { sentMessages: messages.map(() => ({ id: String(Date.now()), quoteToken: ulid() })) });
      }
      if (opts.pushQuota !== undefined && pushed + messages.length > opts.pushQuota) return reply(429, { message: 'You have reached your monthly limit.' });
      pushed += messages.length;
      sim.pushes.push({ to: String(body['to'] ?? ''), texts, ...extra });
      return reply(200, { sentMessages: messages.map(() => ({ id: String(Date.now()), quoteToken: ulid() })) });
    })().catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const base = (from: string, group?: string) => ({
    timestamp: Date.now(),
    source: group ? { type: 'group', groupId: group, userId: from } : { type: 'user', userId: from },
    mode: 'active',
    webhookEventId: ulid(),
    deliveryContext: { isRedelivery: false },
  });
  const token = () => {
    const t = randomBytes(16).toString('hex');
    tokens.set(t, { until: Date.now() + tokenMs, used: false });
    return t;
  };
  return Object.assign(sim, {
    url,
    server,
    deliver(webhookUrl: string, events: object[], signature?: string) {
      const raw = JSON.stringify({ destination: 'Ubot0000000000000000000000000000', events });
      const sig = signature ?? createHmac('sha256', opts.channelSecret).update(raw).digest('base64');
      return new Promise<{ status: number; body: string }>((resolve, reject) => {
        const r = request(webhookUrl, { method: 'POST', headers: { 'Content-Type': 'application/json; charset=utf-8', 'x-line-signature': sig, 'Content-Length': Buffer.byteLength(raw) } }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8') }));
        });
        r.on('error', reject);
        r.end(raw);
      });
    },
    text(from: string, text: string, o: { group?: string; mention?: boolean; id?: string; redelivery?: boolean; replyToken?: string } = {}): LineTextEvent {
      const mention = o.mention ? { mention: { mentionees: [{ index: 0, length: 4, userId: 'Ubot', type: 'user', isSelf: true }] } } : {};
      const full = o.mention ? `@Bot ${text}` : text;
      return {
        type: 'message',
        ...base(from, o.group),
        ...(o.id ? { webhookEventId: o.id } : {}),
        deliveryContext: { isRedelivery: o.redelivery === true },
        replyToken: o.replyToken ?? token(),
        message: { id: String(Date.now()), type: 'text', quoteToken: ulid(), text: full, ...mention },
      };
    },
    follow: (from: string) => ({ type: 'follow', ...base(from), replyToken: token(), follow: { isUnblocked: false } }),
    unfollow: (from: string) => ({ type: 'unfollow', ...base(from) }),
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  });
}
