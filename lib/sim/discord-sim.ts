/**
 * A Discord simulator (docs/channels.md "Discord"), faithful to the public docs where this bot
 * touches it: interactions signed with Ed25519 over `timestamp + body` (a key pair made here; its
 * public key is what DISCORD_PUBLIC_KEY holds), PING, slash commands with a token that works for
 * `tokenMs` (Discord: 15 minutes), the webhook routes that edit the original response and add
 * follow-ups (2,000 characters each, Discord's error bodies), and command registration.
 */
import { generateKeyPairSync, randomBytes, sign } from 'crypto';
import { createServer, request } from 'http';
import type { Server } from 'http';
import type { AddressInfo } from 'net';
import { pyJson, readJson } from './dify-sim';

export interface SendOptions {
  badSignature?: boolean;
  style?: 'compact' | 'python';
  timestampS?: number;
}

export interface DiscordSim {
  /** The API base, like https://discord.com/api/v10. */
  url: string;
  server: Server;
  applicationId: string;
  publicKeyHex: string;
  /** Each interaction token's messages: the original's edits, then follow-ups. */
  edits: { token: string; content: string; allowedMentions: unknown; embeds?: unknown[] }[];
  followUps: { token: string; content: string }[];
  registered: unknown[] | undefined;
  errors: { path: string; status: number; code: number }[];
  /**
   * Send an interaction to `endpoint`; `badSignature` signs something else (Discord's probe);
   * `timestampS` signs with that X-Signature-Timestamp (Unix seconds) instead of now (a replay).
   */
  send(endpoint: string, interaction: object, opts?: SendOptions): Promise<{ status: number; body: unknown }>;
  ping(): object;
  ask(channelId: string, question: string): { id: string; token: string; [k: string]: unknown };
  clear(channelId: string): { id: string; token: string; [k: string]: unknown };
  close(): Promise<void>;
}

export async function startDiscordSim(opts: { botToken?: string; tokenMs?: number; port?: number } = {}): Promise<DiscordSim> {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const publicKeyHex = (publicKey.export({ format: 'der', type: 'spki' }) as Buffer).subarray(12).toString('hex');
  const applicationId = '1180000000000000001';
  const tokenMs = opts.tokenMs ?? 15 * 60_000;
  const tokens = new Map<string, number>();
  let snowflake = 1190000000000000000n;
  const sim = {
    edits: [] as { token: string; content: string; allowedMentions: unknown; embeds?: unknown[] }[],
    followUps: [] as { token: string; content: string }[],
    registered: undefined as unknown[] | undefined,
    errors: [] as { path: string; status: number; code: number }[],
  };
  const server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const body = (await readJson(req)) as Record<string, unknown> | unknown[] | undefined;
      const reply = (status: number, value: unknown) => {
        if (status >= 400) sim.errors.push({ path, status, code: Number((value as { code?: unknown }).code ?? 0) });
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      const commands = `/api/v10/applications/${applicationId}/commands`;
      if (req.method === 'PUT' && path === commands) {
        if (req.headers.authorization !== `Bot ${opts.botToken ?? ''}` || !opts.botToken) return reply(401, { message: '401: Unauthorized', code: 0 });
        if (!Array.isArray(body)) return reply(400, { message: 'Invalid Form Body', code: 50035 });
        sim.registered = body;
        return reply(200, body.map((c, i) => ({ id: String(snowflake + BigInt(i)), application_id: applicationId, version: '1', ...(c as object) })));
      }
      const m = /^\/api\/v10\/webhooks\/(\d+)\/([^/]+)(\/messages\/@original)?$/.exec(path);
      if (!m || m[1] !== applicationId) return reply(404, { message: '404: Not Found', code: 0 });
      const token = decodeURIComponent(m[2] as string);
      const until = tokens.get(token);
      if (until === undefined || Date.now() > until) return reply(401, { message: 'Invalid Webhook Token', code: 50027 });
      const content = (body as { content?: unknown } | undefined)?.content;
      if (typeof content !== 'string' || content.length > 2000) {
        return reply(400, { code: 50035, message: 'Invalid Form Body', errors: { content: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 2000 or fewer in length.' }] } } });
      }
      // At most 10 embeds a message; an embed's picture needs an http(s) URL Discord can fetch.
      const embeds = (body as { embeds?: unknown }).embeds;
      if (embeds !== undefined) {
        const bad = !Array.isArray(embeds) || embeds.length > 10 || embeds.some((e) => !/^https?:\/\//.test(String((e as { image?: { url?: unknown } })?.image?.url ?? '')));
        if (bad) return reply(400, { code: 50035, message: 'Invalid Form Body', errors: { embeds: { _errors: [{ code: 'BASE_TYPE_BAD', message: 'Invalid embeds.' }] } } });
      }
      if (m[3] && req.method === 'PATCH') {
        sim.edits.push({ token, content, allowedMentions: (body as { allowed_mentions?: unknown }).allowed_mentions, ...(Array.isArray(embeds) ? { embeds } : {}) });
        return reply(200, { id: String(snowflake++), content });
      }
      if (!m[3] && req.method === 'POST') {
        sim.followUps.push({ token, content });
        return reply(200, { id: String(snowflake++), content });
      }
      return reply(405, { message: '405: Method Not Allowed', code: 0 });
    })().catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v10`;
  const command = (channelId: string, name: string, options?: object[]) => {
    const token = `aW50ZXJhY3Rpb246${randomBytes(24).toString('base64url')}`;
    tokens.set(token, Date.now() + tokenMs);
    return { id: String(snowflake++), application_id: applicationId, type: 2, token, version: 1, channel_id: channelId, guild_id: '1170000000000000001', member: { user: { id: '1160000000000000001', username: 'tester' } }, data: { id: '1', name, type: 1, ...(options ? { options } : {}) } };
  };
  return Object.assign(sim, {
    url,
    server,
    applicationId,
    publicKeyHex,
    send(endpoint: string, interaction: object, o: SendOptions = {}) {
      const raw = o.style === 'python' ? pyJson(interaction) : JSON.stringify(interaction);
      const timestamp = String(o.timestampS ?? Math.floor(Date.now() / 1000));
      const signature = sign(null, Buffer.from(timestamp + (o.badSignature ? raw + ' ' : raw)), privateKey).toString('hex');
      return new Promise<{ status: number; body: unknown }>((resolve, reject) => {
        const r = request(endpoint, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Signature-Ed25519': signature, 'X-Signature-Timestamp': timestamp, 'Content-Length': Buffer.byteLength(raw) } }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => {
            const text = Buffer.concat(parts).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              // not JSON: keep the text
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
        });
        r.on('error', reject);
        r.end(raw);
      });
    },
    ping: () => ({ id: String(snowflake++), application_id: applicationId, type: 1, token: 'ping', version: 1 }),
    ask: (channelId: string, question: string) => command(channelId, 'ask', [{ type: 3, name: 'question', value: question }]),
    clear: (channelId: string) => command(channelId, 'clear'),
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  });
}
