/**
 * A simulator of Tencent's iLink bot API (personal WeChat bots, docs/ilink.md) on loopback, for tests and
 * offline runs; never used by the bot itself. It plays both the iLink servers and the WeChat users:
 *
 * - the headers and `base_info` a client must send, answering `errcode -14` ("session timeout") when the
 *   token or the `iLink-App-*` headers are wrong, always with HTTP 200, as the service does;
 * - QR login through every status (wait, scaned, need_verifycode, verify_code_blocked, expired,
 *   scaned_but_redirect to a second listener, binded_redirect, confirmed), the status call held as a long poll;
 * - `getupdates` held until a message arrives or the hold time passes, an opaque cursor acknowledged on
 *   delivery (or, switchable, messages re-sent while the cursor does not advance), uint64 message ids
 *   written as JSON numbers above 2^53 that `JSON.parse` cannot keep exactly, duplicates 1–9 s later;
 * - `sendmessage` with the `context_token` ledger (quota per inbound message, maximum age), GENERATING
 *   refused, silent truncation, a rate limit, and a silent-drop mode (risk control);
 * - typing tickets and typing events, notifystart/notifystop;
 * - the CDN: AES-128-ECB uploads checked against what `getuploadurl` declared, downloads, both key encodings.
 *
 * What a test does as a WeChat user (`sendText`, `sendImage`, …) and what the bot sent (`sent`, `chat(user)`)
 * are methods and arrays of the returned object. `violations` lists what the client did that the official
 * client never does (two items in one request, a reused client_id, a missing header, …).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'crypto';
import { createServer } from 'http';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'http';
import { readRaw } from './dify-sim';
import { listenLocal } from './listen';

export type QrStatus = 'wait' | 'scaned' | 'need_verifycode' | 'verify_code_blocked' | 'expired' | 'scaned_but_redirect' | 'binded_redirect' | 'confirmed';

/** How a duplicate delivery of an inbound message carries its id: the same `message_id`, a new one, or none. */
export type DuplicateMode = 'same-id' | 'new-id' | 'no-id';

/** Every call the simulator answers, by name (the CDN's two as `cdn-upload` and `cdn-download`). */
export type IlinkOp = 'get_bot_qrcode' | 'get_qrcode_status' | 'getupdates' | 'sendmessage' | 'getconfig' | 'sendtyping' | 'getuploadurl' | 'notifystart' | 'notifystop' | 'cdn-upload' | 'cdn-download';

/** An injected answer: a JSON body (HTTP 200), an HTTP status (with `x-error-message` for the CDN), a dropped connection, or no answer at all. */
export type IlinkFault = { json: Record<string, unknown> } | { status: number; body?: string; errorMessage?: string } | { drop: true } | { hang: true };

/** The behaviours a test can switch; change them at any time through `sim.settings`. */
export interface IlinkSimSettings {
  /** The `iLink-App-Id` the service expects (the official package's `ilink_appid`). */
  appId: string;
  /** Refuse (-14) calls without `iLink-App-Id` / `iLink-App-ClientVersion`, as observed. */
  checkAppHeaders: boolean;
  /** How long `getupdates` is held when there is nothing to deliver. */
  pollHoldMs: number;
  /** `longpolling_timeout_ms` in `getupdates` answers; 0 leaves the field out. */
  longpollingTimeoutMs: number;
  /** How long `get_qrcode_status` is held while the status does not change. */
  qrHoldMs: number;
  /** A QR code not confirmed this long after it was issued answers `expired` (assumed: 5 minutes). */
  qrTtlMs: number;
  /** Wrong verify codes before `verify_code_blocked`. */
  maxWrongVerifyCodes: number;
  /** `ack-on-delivery`: a message is delivered once, an old cursor replays nothing (the observed behaviour).
   * `redeliver-until-advanced`: messages delivered with a cursor come again, `redeliverAfterMs` later, to
   * every poll that does not send that cursor back. */
  cursorMode: 'ack-on-delivery' | 'redeliver-until-advanced';
  redeliverAfterMs: number;
  /** uint64 ids as JSON numbers (the wire format) or as strings. */
  idStyle: 'number' | 'string';
  /** Duplicate every inbound message (default off; per message with `InboundOptions.duplicate`). */
  duplicates: DuplicateMode | 'off';
  /** A duplicate arrives this long after the original, picked at random in the range (observed: 1–9 s). */
  duplicateDelayMs: readonly [number, number];
  /** Sends allowed per inbound message's `context_token`. */
  contextQuota: number;
  /** A `context_token` older than this is refused (24 h; reports also show ~2 min). */
  contextMaxAgeMs: number;
  /** Refuse a `context_token` the service never issued to this bot for this user. */
  refuseUnknownContextToken: boolean;
  /** Answer `message_state: 1` (GENERATING) with `ret -2`. */
  refuseGenerating: boolean;
  /** Text beyond this many characters is cut off silently; 0 never cuts. */
  truncateTextAt: number;
  /** More than `sends` sendmessage calls within `perMs` per bot answer `ret -2`. */
  rateLimit: { sends: number; perMs: number } | undefined;
  /** Risk control: sendmessage answers success, the user never sees the message. */
  silentDrop: boolean;
  /** Session expiry as `{errcode:-14}` or as `{ret:-14}`. */
  expiryStyle: 'errcode' | 'ret';
  /** Successful sendmessage answers carry a `message_id` (sometimes missing in reports). */
  sendReturnsMessageId: boolean;
  /** `getuploadurl` answers `upload_full_url` too (else the client builds the CDN URL). */
  uploadFullUrl: boolean;
  /** A CDN upload's 200 carries `x-encrypted-param` (off: the file is stored, but the answer leaves the header out, as some fetch runtimes hid it). */
  uploadReturnsParam: boolean;
  /** Inbound media carry `full_url` too (else the client builds the download URL). */
  downloadFullUrl: boolean;
}

export interface IlinkSimOptions extends Partial<IlinkSimSettings> {
  /** Ports on 127.0.0.1 of the main listener and of the redirect host (default: any free port). */
  port?: number;
  altPort?: number;
  /** The protocol clock (message times, token ages, QR expiry); hold timers use real time. */
  now?: () => number;
  /** Told of every accepted sendmessage (delivered or dropped). */
  onSend?: (m: SentMessage) => void;
  /** Told of every QR code issued. */
  onQrCode?: (qr: QrRecord) => void;
}

export const DEFAULT_SETTINGS: Readonly<IlinkSimSettings> = {
  appId: 'bot',
  checkAppHeaders: true,
  pollHoldMs: 35_000,
  longpollingTimeoutMs: 35_000,
  qrHoldMs: 30_000,
  qrTtlMs: 5 * 60_000,
  maxWrongVerifyCodes: 3,
  cursorMode: 'ack-on-delivery',
  redeliverAfterMs: 6_000,
  idStyle: 'number',
  duplicates: 'off',
  duplicateDelayMs: [1_000, 9_000],
  contextQuota: 10,
  contextMaxAgeMs: 24 * 3_600_000,
  refuseUnknownContextToken: true,
  refuseGenerating: true,
  truncateTextAt: 2000,
  rateLimit: undefined,
  silentDrop: false,
  expiryStyle: 'errcode',
  sendReturnsMessageId: true,
  uploadFullUrl: false,
  uploadReturnsParam: true,
  downloadFullUrl: false,
};

/** Who scans the QR code unless a test says otherwise. */
export const DEFAULT_OWNER = 'o9cq80owner@im.wechat';

/** A bot account: what a confirmed login hands the client. */
export interface IlinkAccount {
  token: string;
  botId: string;
  baseUrl: string;
  /** The WeChat user who scanned (the owner). */
  userId: string;
  /** False once the session expired (-14) or the same user logged in again. */
  live: boolean;
}

export interface QrRecord {
  qrcode: string;
  imgContent: string;
  method: string;
  /** `local_token_list` of the request. */
  localTokens: string[];
  issuedAt: number;
  status: QrStatus;
  /** Who scanned it. */
  user: string | undefined;
  verifyCode: string | undefined;
  wrongCodes: number;
  /** Scanned through another data centre: the main host answers `scaned_but_redirect`. */
  redirected: boolean;
  /** Every status answered for it, in order. */
  reported: QrStatus[];
  /** The account a confirm made or re-bound. */
  account: IlinkAccount | undefined;
}

/** A message as the bot receives it, ids as bigints (written as the wire writes them). */
export type WireMessage = Record<string, unknown>;

export interface InboundOptions {
  /** The bot it goes to (`ilink_bot_id`); default the newest live account. */
  bot?: string;
  /** Its `message_id`; default a fresh id above 2^53 that a double cannot hold; `none` leaves it out. */
  id?: bigint | string | 'none';
  /** Duplicate it (overrides `settings.duplicates`). */
  duplicate?: DuplicateMode | 'off';
  /** When the duplicate comes (default: random in `settings.duplicateDelayMs`). */
  duplicateAfterMs?: number;
  /** A quote of an earlier message: only `svrId` is what newer WeChat clients send. */
  quote?: { svrId?: bigint | string; title?: string; text?: string };
}

export interface Inbound {
  botId: string;
  from: string;
  seq: number;
  /** Decimal text of `message_id`, or undefined when the message has none. */
  messageId: string | undefined;
  contextToken: string;
  message: WireMessage;
  /** Set on a duplicate: the message it repeats. */
  duplicateOf: Inbound | undefined;
}

/** How an outbound media item's key was written: base64 of the hex text (right) or of the raw 16 bytes. */
export type KeyEncoding = 'base64-hex' | 'base64-raw' | 'invalid';

export interface OutboundMedia {
  type: 'image' | 'video' | 'file' | 'voice';
  /** The CDN holds the `encrypt_query_param`. */
  found: boolean;
  keyEncoding: KeyEncoding;
  /** The key decodes to the one the upload was encrypted with. */
  keyMatches: boolean;
  /** An image whose key is not base64 of the hex text: WeChat shows it grey. */
  grey: boolean;
  /** The plaintext, decrypted with the key as the message gives it (undefined when that fails). */
  bytes: Buffer | undefined;
  fileName: string | undefined;
}

export interface SentMessage {
  botId: string;
  to: string;
  clientId: string;
  contextToken: string | undefined;
  runId: string | undefined;
  state: number;
  items: Record<string, unknown>[];
  /** The text items' text as the user sees it (after truncation). */
  text: string;
  /** The length (characters) before a silent truncation, else undefined. */
  truncatedFrom: number | undefined;
  media: OutboundMedia[];
  /** False when risk control dropped it. */
  delivered: boolean;
  messageId: string;
  at: number;
}

export interface IlinkRequest {
  op: IlinkOp;
  method: string;
  /** Which listener: the main host or the redirect host. */
  host: 'main' | 'alt';
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  /** The JSON body (undefined when not JSON; CDN bodies are left out). */
  body: unknown;
  bytes: number;
  at: number;
  /** The JSON answered (undefined for CDN calls, injected HTTP errors and unanswered calls). */
  answer: unknown;
}

export interface PollRecord {
  botId: string;
  cursor: string;
  returned: string;
  /** The cursor sent was not the newest one handed out (or was empty after one had been). */
  stale: boolean;
  count: number;
  redelivered: number;
  at: number;
}

export interface TypingEvent {
  botId: string;
  user: string;
  status: number;
  at: number;
}

export interface CdnBlob {
  /** The download `encrypt_query_param`. */
  param: string;
  filekey: string;
  mediaType: number;
  toUser: string;
  aeskeyHex: string | undefined;
  ciphertext: Buffer;
  plaintext: Buffer;
}

export interface IlinkSim {
  /** The API base (the default host); QR calls, authenticated calls and the CDN (`cdnUrl`) live here. */
  url: string;
  /** A second listener serving the same API: the redirect host, or another base URL after login. */
  altUrl: string;
  /** `redirect_host` as `scaned_but_redirect` names it: the second listener's `host:port`. */
  altHost: string;
  /** The CDN base (`…/c2c`). */
  cdnUrl: string;
  server: Server;
  settings: IlinkSimSettings;
  qrcodes: QrRecord[];
  accounts: IlinkAccount[];
  requests: IlinkRequest[];
  polls: PollRecord[];
  inbound: Inbound[];
  /** Every accepted sendmessage, in order, delivered or silently dropped. */
  sent: SentMessage[];
  typing: TypingEvent[];
  notifies: { botId: string; op: 'notifystart' | 'notifystop'; at: number }[];
  blobs: CdnBlob[];
  /** Things the client did that the official client never does. */
  violations: string[];

  /** Scan the newest QR code (or `qrcode`) as `user`; `verifyCode` asks for digits first; `redirect` routes it through the second listener. */
  scan(o?: { user?: string; verifyCode?: string; redirect?: boolean; qrcode?: string }): QrRecord;
  /** Confirm on the phone: a new account (expiring the user's older ones), or `binded_redirect` when the QR
   * request listed a live token of this user (unless `fresh`). `baseUrl: 'alt'` hands out the second listener. */
  confirm(o?: { qrcode?: string; botId?: string; baseUrl?: 'main' | 'alt' | string; fresh?: boolean; withoutBotId?: boolean }): QrRecord;
  /** Expire the newest QR code (or `qrcode`). */
  expire(qrcode?: string): QrRecord;
  /** An account without the QR dance (expires the user's older ones, as a second login does). */
  login(o?: { user?: string; botId?: string; baseUrl?: 'main' | 'alt' | string }): IlinkAccount;
  /** End a session: every call with its token answers -14 from now on, held polls at once. */
  expireSession(botId?: string): void;
  /** `getupdates` calls held open now, across sessions (a killed client's poll stays held until its socket's close is seen). */
  heldPolls(): number;

  sendText(from: string, text: string, o?: InboundOptions): Inbound;
  sendItems(from: string, items: Record<string, unknown>[], o?: InboundOptions): Inbound;
  /** An image on the CDN; `keys` picks which key fields it carries (default `hex+raw`: `image_item.aeskey` hex and `media.aes_key` base64 of the raw bytes). */
  sendImage(from: string, bytes: Buffer, o?: InboundOptions & { keys?: 'hex+raw' | 'raw' | 'hex-b64' | 'hex' | 'none' }): Inbound;
  /** A voice note (SILK) on the CDN, with Tencent's transcript in `voice_item.text` when given. */
  sendVoice(from: string, bytes: Buffer, o?: InboundOptions & { transcript?: string; playtimeMs?: number }): Inbound;
  sendFile(from: string, bytes: Buffer, fileName: string, o?: InboundOptions): Inbound;
  sendVideo(from: string, bytes: Buffer, o?: InboundOptions): Inbound;

  /** The next `times` calls of `op` get `fault` instead of their answer. */
  inject(op: IlinkOp, fault: IlinkFault, times?: number): void;
  /** What `user` sees from the bot, in order (one entry per client_id, its last update). */
  chat(user: string): SentMessage[];
  /** Whether the bot's last typing event for `user` left "typing…" shown. */
  isTyping(user: string, botId?: string): boolean;
  /** The ledger entry of a context token. */
  contextToken(token: string): { botId: string; user: string; issuedAt: number; sends: number } | undefined;
  close(): Promise<void>;
}

// ---- wire helpers

const MARK = `\u0001u64-${randomBytes(4).toString('hex')}:`;
const MARKED = new RegExp(`"${JSON.stringify(MARK).slice(1, -1).replace(/\\/g, '\\\\')}(\\d+)"`, 'g');

/** JSON as iLink writes it: bigints as bare numbers (beyond what a double holds) or as strings. */
export function wireJson(value: unknown, idStyle: 'number' | 'string' = 'number'): string {
  const text = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? (idStyle === 'string' ? v.toString() : `${MARK}${v.toString()}`) : v));
  return idStyle === 'string' ? text : text.replace(MARKED, '$1');
}

/** A uint64 id in [2^62, 2^63), odd: above 2^53, so no double holds it exactly. */
function mintId(): bigint {
  const n = randomBytes(8).readBigUInt64BE();
  return (n & ((1n << 62n) - 1n)) | (1n << 62n) | 1n;
}

const hex = (n: number) => randomBytes(n).toString('hex');
const b64 = (n: number) => randomBytes(n).toString('base64');
const HEX32 = /^[0-9a-f]{32}$/;

function aesEcb(mode: 'encrypt' | 'decrypt', data: Buffer, key: Buffer): Buffer {
  const c = mode === 'encrypt' ? createCipheriv('aes-128-ecb', key, null) : createDecipheriv('aes-128-ecb', key, null);
  return Buffer.concat([c.update(data), c.final()]);
}

/** Which key an outbound `media.aes_key` holds, and how it was written. */
function decodeKey(aesKey: unknown): { encoding: KeyEncoding; key: Buffer | undefined } {
  if (typeof aesKey !== 'string') return { encoding: 'invalid', key: undefined };
  const raw = Buffer.from(aesKey, 'base64');
  if (raw.length === 32 && HEX32.test(raw.toString('latin1').toLowerCase())) return { encoding: 'base64-hex', key: Buffer.from(raw.toString('latin1'), 'hex') };
  if (raw.length === 16) return { encoding: 'base64-raw', key: raw };
  return { encoding: 'invalid', key: undefined };
}

interface Session {
  account: IlinkAccount;
  seq: number;
  queue: WireMessage[];
  latestCursor: string | undefined;
  unacked: { msgs: WireMessage[]; cursor: string; deliveredAt: number } | undefined;
  waiters: Set<() => void>;
  notified: boolean;
  warnedNotify: boolean;
  tickets: Map<string, string>;
  sendTimes: number[];
}

interface Ledger {
  botId: string;
  user: string;
  issuedAt: number;
  sends: number;
}

interface PendingUpload {
  filekey: string;
  mediaType: number;
  toUser: string;
  aeskeyHex: string;
  rawsize: number;
  rawmd5: string;
  filesize: number;
  downloadParam: string | undefined;
}

const ITEM_FIELD: Record<number, string> = { 1: 'text_item', 2: 'image_item', 3: 'voice_item', 4: 'file_item', 5: 'video_item', 11: 'tool_call_start_item', 12: 'tool_call_result_item' };
const MEDIA_KIND: Record<number, OutboundMedia['type']> = { 2: 'image', 3: 'voice', 4: 'file', 5: 'video' };
const OPS: Record<string, IlinkOp> = {
  get_bot_qrcode: 'get_bot_qrcode',
  get_qrcode_status: 'get_qrcode_status',
  getupdates: 'getupdates',
  sendmessage: 'sendmessage',
  getconfig: 'getconfig',
  sendtyping: 'sendtyping',
  getuploadurl: 'getuploadurl',
  'msg/notifystart': 'notifystart',
  'msg/notifystop': 'notifystop',
};

export async function startIlinkSim(opts: IlinkSimOptions = {}): Promise<IlinkSim> {
  const { port, altPort, now: clock, onSend, onQrCode, ...chosen } = opts;
  const settings: IlinkSimSettings = { ...DEFAULT_SETTINGS, ...chosen };
  const now = clock ?? Date.now;
  const sessions = new Map<string, Session>(); // token → session
  const byBot = new Map<string, Session>();
  const ledger = new Map<string, Ledger>();
  const uploads = new Map<string, PendingUpload>(); // upload_param → declared upload
  const blobs = new Map<string, CdnBlob>(); // download param → blob
  const qrWaiters = new Map<string, Set<() => void>>();
  const faults = new Map<IlinkOp, IlinkFault[]>();
  const clientIds = new Map<string, number>(); // client_id → last message_state
  const timers = new Set<NodeJS.Timeout>();
  const open = new Set<ServerResponse>();
  const answers = new WeakMap<ServerResponse, IlinkRequest>();
  const noBotId = new Set<string>(); // QR codes confirmed without ilink_bot_id (a failed login)
  let lastUin: string | undefined;

  const sim = {
    settings,
    qrcodes: [] as QrRecord[],
    accounts: [] as IlinkAccount[],
    requests: [] as IlinkRequest[],
    polls: [] as PollRecord[],
    inbound: [] as Inbound[],
    sent: [] as SentMessage[],
    typing: [] as TypingEvent[],
    notifies: [] as { botId: string; op: 'notifystart' | 'notifystop'; at: number }[],
    blobs: [] as CdnBlob[],
    violations: [] as string[],
  };
  const violate = (v: string) => sim.violations.push(v);

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, Math.max(0, ms));
    timers.add(t);
    return t;
  };
  const cancel = (t: NodeJS.Timeout) => {
    clearTimeout(t);
    timers.delete(t);
  };

  function reply(res: ServerResponse, body: unknown, status = 200): void {
    if (res.writableEnded || res.destroyed) return;
    const record = answers.get(res);
    if (record) record.answer = body;
    const text = wireJson(body, settings.idStyle);
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(text);
  }
  const expired = () => (settings.expiryStyle === 'ret' ? { ret: -14, errmsg: 'session timeout' } : { errcode: -14, errmsg: 'session timeout' });

  // ---- listeners

  let mainUrl = '';
  let altUrl = '';
  const servers = (['main', 'alt'] as const).map((host) =>
    createServer((req, res) => {
      open.add(res);
      res.on('close', () => open.delete(res));
      handle(req, res, host).catch(() => res.destroy());
    }),
  );
  const [mainServer, altServer] = servers as [Server, Server];
  mainUrl = `http://127.0.0.1:${await listenLocal(mainServer, port ?? 0)}`;
  // The redirect host's port taken: the main listener goes too, so the start fails cleanly.
  const altHost = `127.0.0.1:${await listenLocal(altServer, altPort ?? 0).catch((err: unknown) => new Promise<never>((_, reject) => mainServer.close(() => reject(err as Error))))}`;
  altUrl = `http://${altHost}`;
  const cdnUrl = `${mainUrl}/c2c`;

  async function handle(req: IncomingMessage, res: ServerResponse, host: 'main' | 'alt'): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sim');
    const query = Object.fromEntries(url.searchParams) as Record<string, string>;
    const method = req.method ?? 'GET';
    if (url.pathname === '/c2c/upload' || url.pathname === '/c2c/download') {
      const op: IlinkOp = url.pathname === '/c2c/upload' ? 'cdn-upload' : 'cdn-download';
      const raw = (await readRaw(req, 120 * 1024 * 1024)) ?? Buffer.alloc(0);
      sim.requests.push({ op, method, host, path: url.pathname, query, headers: req.headers, body: undefined, bytes: raw.length, at: now(), answer: undefined });
      if (req.headers.authorization) violate(`${op}: the bot token was sent to the CDN`);
      if (applyFault(op, res, true)) return;
      return op === 'cdn-upload' ? cdnUpload(res, method, query, raw) : cdnDownload(res, method, query);
    }
    const m = /^\/ilink\/bot\/(.+)$/.exec(url.pathname);
    const op = m ? OPS[m[1] as string] : undefined;
    if (!op) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('404 page not found');
      return;
    }
    const raw = (await readRaw(req, 1024 * 1024)) ?? Buffer.alloc(0);
    let body: unknown;
    try {
      body = raw.length ? JSON.parse(raw.toString('utf8')) : undefined;
    } catch {
      body = undefined;
    }
    const record: IlinkRequest = { op, method, host, path: url.pathname, query, headers: req.headers, body, bytes: raw.length, at: now(), answer: undefined };
    sim.requests.push(record);
    answers.set(res, record);
    const allowed = op === 'get_qrcode_status' ? method === 'GET' : op === 'get_bot_qrcode' ? method === 'GET' || method === 'POST' : method === 'POST';
    if (!allowed) {
      violate(`${op}: ${method} instead of ${op === 'get_qrcode_status' ? 'GET' : 'POST'}`);
      res.writeHead(405);
      res.end();
      return;
    }
    appHeaders(req.headers, op);
    if (applyFault(op, res, false)) return;
    if (op === 'get_bot_qrcode') return getQr(res, method, query, body);
    if (op === 'get_qrcode_status') return qrStatus(res, host, query);

    const b = (body ?? {}) as Record<string, unknown>;
    const session = authenticate(req.headers, b, op, raw.length > 0 && body === undefined);
    if (!session) return reply(res, expired());
    if (body === undefined || typeof body !== 'object') return reply(res, { ret: -2, errmsg: 'invalid request' });
    switch (op) {
      case 'getupdates':
        return getUpdates(res, session, b);
      case 'sendmessage':
        return sendMessage(res, session, b);
      case 'getconfig': {
        const user = b['ilink_user_id'];
        if (typeof user !== 'string' || user === '') return reply(res, { ret: -2, errmsg: 'ilink_user_id required' });
        let ticket = session.tickets.get(user);
        if (!ticket) session.tickets.set(user, (ticket = b64(24)));
        return reply(res, { ret: 0, typing_ticket: ticket });
      }
      case 'sendtyping': {
        const user = b['ilink_user_id'];
        const status = b['status'];
        if (typeof user !== 'string' || user === '') return reply(res, { ret: -2, errmsg: 'ilink_user_id required' });
        if (typeof b['typing_ticket'] !== 'string' || session.tickets.get(user) !== b['typing_ticket']) return reply(res, { ret: -2, errmsg: 'invalid typing_ticket' });
        if (status !== 1 && status !== 2) return reply(res, { ret: -2, errmsg: 'invalid status' });
        sim.typing.push({ botId: session.account.botId, user, status, at: now() });
        return reply(res, { ret: 0 });
      }
      case 'getuploadurl':
        return getUploadUrl(res, b);
      case 'notifystart':
      case 'notifystop':
        if (op === 'notifystart') session.notified = true;
        sim.notifies.push({ botId: session.account.botId, op, at: now() });
        return reply(res, { ret: 0, errmsg: '' });
    }
  }

  function applyFault(op: IlinkOp, res: ServerResponse, cdn: boolean): boolean {
    const queue = faults.get(op);
    const fault = queue?.shift();
    if (!fault) return false;
    if ('json' in fault) reply(res, fault.json);
    else if ('drop' in fault) res.destroy();
    else if ('hang' in fault) return true; // answered by nobody; closed when the client gives up or the sim closes
    else {
      res.writeHead(fault.status, { 'Content-Type': 'text/plain', ...(cdn || fault.errorMessage ? { 'x-error-message': fault.errorMessage ?? 'injected' } : {}) });
      res.end(fault.body ?? '');
    }
    return true;
  }

  /** The headers every call carries; a violation for each the official client would not send so. */
  function appHeaders(h: IncomingHttpHeaders, op: IlinkOp): void {
    if (h['ilink-app-id'] !== settings.appId) violate(`${op}: iLink-App-Id is ${JSON.stringify(h['ilink-app-id'] ?? null)}, not ${settings.appId}`);
    const version = h['ilink-app-clientversion'];
    if (typeof version !== 'string' || !/^[1-9]\d*$/.test(version) || Number(version) > 0xffffff) violate(`${op}: iLink-App-ClientVersion is ${JSON.stringify(version ?? null)}, not major<<16|minor<<8|patch in decimal`);
  }

  function authenticate(h: IncomingHttpHeaders, body: Record<string, unknown>, op: IlinkOp, badJson: boolean): Session | undefined {
    if (!/^application\/json\b/i.test(String(h['content-type'] ?? ''))) violate(`${op}: Content-Type is not application/json`);
    if (badJson) violate(`${op}: the body is not JSON`);
    const uin = h['x-wechat-uin'];
    const decoded = typeof uin === 'string' ? Buffer.from(uin, 'base64').toString('latin1') : '';
    if (typeof uin !== 'string' || Buffer.from(decoded, 'latin1').toString('base64') !== uin || !/^\d{1,10}$/.test(decoded) || Number(decoded) > 0xffffffff) {
      violate(`${op}: X-WECHAT-UIN is not base64 of a decimal uint32`);
    } else if (uin === lastUin) violate(`${op}: X-WECHAT-UIN repeated (it is new per request)`);
    if (typeof uin === 'string') lastUin = uin;
    const info = body['base_info'] as Record<string, unknown> | undefined;
    if (!info || typeof info !== 'object' || typeof info['channel_version'] !== 'string') violate(`${op}: no base_info.channel_version`);
    else if (info['bot_agent'] !== undefined && (typeof info['bot_agent'] !== 'string' || !/^[\x20-\x7e]*$/.test(info['bot_agent']) || info['bot_agent'].length > 256)) violate(`${op}: base_info.bot_agent is not ASCII of at most 256 bytes`);
    if (settings.checkAppHeaders && (h['ilink-app-id'] !== settings.appId || !h['ilink-app-clientversion'])) return undefined;
    if (h['authorizationtype'] !== 'ilink_bot_token') return undefined;
    const bearer = /^Bearer (\S+)$/.exec(String(h.authorization ?? ''));
    const session = bearer ? sessions.get(bearer[1] as string) : undefined;
    return session?.account.live ? session : undefined;
  }

  // ---- QR login

  function newestQr(qrcode?: string): QrRecord {
    const qr = qrcode ? sim.qrcodes.find((q) => q.qrcode === qrcode) : sim.qrcodes[sim.qrcodes.length - 1];
    if (!qr) throw new Error(qrcode ? `no QR code ${qrcode}` : 'no QR code was issued');
    return qr;
  }

  function qrChanged(qr: QrRecord): void {
    for (const wake of [...(qrWaiters.get(qr.qrcode) ?? [])]) wake();
  }

  function getQr(res: ServerResponse, method: string, query: Record<string, string>, body: unknown): void {
    if (query['bot_type'] !== '3') violate(`get_bot_qrcode: bot_type is ${JSON.stringify(query['bot_type'] ?? null)}, not 3`);
    const list = (body as { local_token_list?: unknown } | undefined)?.local_token_list;
    const localTokens = Array.isArray(list) ? list.filter((t): t is string => typeof t === 'string') : [];
    if (localTokens.length > 10) violate('get_bot_qrcode: local_token_list holds more than 10 tokens');
    const qrcode = hex(16);
    const qr: QrRecord = {
      qrcode,
      imgContent: `https://liteapp.weixin.qq.com/q/${randomBytes(6).toString('base64url')}?qrcode=${qrcode}&bot_type=3`,
      method,
      localTokens,
      issuedAt: now(),
      status: 'wait',
      user: undefined,
      verifyCode: undefined,
      wrongCodes: 0,
      redirected: false,
      reported: [],
      account: undefined,
    };
    sim.qrcodes.push(qr);
    onQrCode?.(qr);
    reply(res, { qrcode, qrcode_img_content: qr.imgContent });
  }

  /** The status as `host` sees it: the main host keeps saying "go elsewhere" once the scan was redirected. */
  function seen(qr: QrRecord, host: 'main' | 'alt'): QrStatus {
    if (qr.status !== 'confirmed' && qr.status !== 'binded_redirect' && qr.status !== 'verify_code_blocked' && now() - qr.issuedAt >= settings.qrTtlMs) qr.status = 'expired';
    if (qr.redirected && host === 'main' && qr.status !== 'expired') return 'scaned_but_redirect';
    return qr.status;
  }

  function qrStatus(res: ServerResponse, host: 'main' | 'alt', query: Record<string, string>): void {
    const qr = sim.qrcodes.find((q) => q.qrcode === query['qrcode']);
    if (!qr) {
      violate('get_qrcode_status: unknown qrcode');
      return reply(res, { status: 'expired' });
    }
    if (qr.redirected && host === 'main' && qr.reported.includes('scaned_but_redirect')) violate('get_qrcode_status: polled the old host after scaned_but_redirect');
    const code = query['verify_code'];
    if (code !== undefined && qr.status === 'need_verifycode' && !(qr.redirected && host === 'main')) {
      if (code === qr.verifyCode) qr.status = 'scaned';
      else if (++qr.wrongCodes >= settings.maxWrongVerifyCodes) qr.status = 'verify_code_blocked';
      return answerQr(res, qr, host);
    }
    // Held while nothing changed since the last answer (the first answer of a fresh code too).
    const last = qr.reported[qr.reported.length - 1] ?? 'wait';
    const current = seen(qr, host);
    if (current !== last || !['wait', 'scaned', 'need_verifycode', 'scaned_but_redirect'].includes(current)) return answerQr(res, qr, host);
    let waiters = qrWaiters.get(qr.qrcode);
    if (!waiters) qrWaiters.set(qr.qrcode, (waiters = new Set()));
    const set = waiters;
    const done = () => {
      set.delete(wake);
      cancel(timer);
      answerQr(res, qr, host);
    };
    const wake = () => {
      if (seen(qr, host) !== last) done();
    };
    const timer = later(Math.min(settings.qrHoldMs, Math.max(0, qr.issuedAt + settings.qrTtlMs - now())), done);
    set.add(wake);
    res.on('close', () => {
      set.delete(wake);
      cancel(timer);
    });
  }

  function answerQr(res: ServerResponse, qr: QrRecord, host: 'main' | 'alt'): void {
    if (res.writableEnded || res.destroyed) return;
    const status = seen(qr, host);
    qr.reported.push(status);
    if (status === 'scaned_but_redirect') return reply(res, { status, redirect_host: altHost });
    if (status === 'confirmed' && qr.account) {
      const a = qr.account;
      return reply(res, { status, bot_token: a.token, ...(noBotId.has(qr.qrcode) ? {} : { ilink_bot_id: a.botId }), baseurl: a.baseUrl, ilink_user_id: a.userId });
    }
    reply(res, { status });
  }

  function baseUrlOf(choice: 'main' | 'alt' | string | undefined): string {
    return choice === undefined || choice === 'main' ? mainUrl : choice === 'alt' ? altUrl : choice;
  }

  function newAccount(user: string, botId: string | undefined, baseUrl: string): IlinkAccount {
    // One WeChat user, one client: a new login ends that user's older sessions.
    for (const s of sessions.values()) if (s.account.userId === user && s.account.live) endSession(s);
    const account: IlinkAccount = { token: `${hex(8)}@im.bot:${randomBytes(24).toString('base64url')}`, botId: botId ?? `${hex(12)}@im.bot`, baseUrl, userId: user, live: true };
    const session: Session = { account, seq: 100, queue: [], latestCursor: undefined, unacked: undefined, waiters: new Set(), notified: false, warnedNotify: false, tickets: new Map(), sendTimes: [] };
    sessions.set(account.token, session);
    byBot.set(account.botId, session);
    sim.accounts.push(account);
    return account;
  }

  function endSession(s: Session): void {
    s.account.live = false;
    s.queue.length = 0;
    for (const wake of [...s.waiters]) wake();
  }

  // ---- getupdates

  function getUpdates(res: ServerResponse, session: Session, body: Record<string, unknown>): void {
    const botId = session.account.botId;
    if (!session.notified && !session.warnedNotify) {
      session.warnedNotify = true;
      violate(`getupdates: polled before msg/notifystart (${botId})`);
    }
    const sentCursor = body['get_updates_buf'];
    if (typeof sentCursor !== 'string') violate('getupdates: get_updates_buf is not a string ("" at first)');
    const cursor = typeof sentCursor === 'string' ? sentCursor : '';
    if (session.waiters.size > 0) violate(`getupdates: a second poll while one is held (${botId})`);
    const stale = cursor !== (session.latestCursor ?? '');
    if (session.unacked && cursor === session.unacked.cursor) session.unacked = undefined; // acknowledged

    let redeliverTimer: NodeJS.Timeout | undefined;
    const finish = (msgs: WireMessage[], redelivered: number) => {
      session.waiters.delete(attempt);
      cancel(hold);
      if (redeliverTimer) cancel(redeliverTimer);
      if (!session.account.live) return reply(res, expired());
      let returned = cursor;
      if (msgs.length) {
        returned = randomBytes(36).toString('base64');
        session.latestCursor = returned;
        if (settings.cursorMode === 'redeliver-until-advanced') session.unacked = { msgs, cursor: returned, deliveredAt: Date.now() };
      }
      sim.polls.push({ botId, cursor, returned, stale, count: msgs.length, redelivered, at: now() });
      reply(res, { ret: 0, msgs, get_updates_buf: returned, ...(settings.longpollingTimeoutMs > 0 ? { longpolling_timeout_ms: settings.longpollingTimeoutMs } : {}) });
    };
    const attempt = (final = false) => {
      if (res.writableEnded || res.destroyed) return;
      if (!session.account.live) return finish([], 0);
      let again: WireMessage[] = [];
      const un = session.unacked;
      if (settings.cursorMode === 'redeliver-until-advanced' && un && cursor !== un.cursor) {
        const due = un.deliveredAt + settings.redeliverAfterMs - Date.now();
        if (due <= 0) {
          again = un.msgs;
          session.unacked = undefined;
        } else if (!redeliverTimer) redeliverTimer = later(due, () => attempt());
      }
      if (again.length || session.queue.length || final) finish([...again, ...session.queue.splice(0)], again.length);
    };
    const hold = later(settings.pollHoldMs, () => attempt(true));
    session.waiters.add(attempt);
    // The response's close, not the request's: since Node 16 a request closes as soon as its body is read.
    res.on('close', () => {
      session.waiters.delete(attempt);
      cancel(hold);
      if (redeliverTimer) cancel(redeliverTimer);
    });
    attempt();
  }

  function enqueue(session: Session, msg: WireMessage): void {
    if (!session.account.live) return;
    session.queue.push(msg);
    for (const wake of [...session.waiters]) wake();
  }

  // ---- inbound (the WeChat user's side)

  function pickSession(botId?: string): Session {
    if (botId) {
      const s = byBot.get(botId);
      if (!s) throw new Error(`no bot ${botId}`);
      return s;
    }
    const live = [...sessions.values()].filter((s) => s.account.live);
    const s = live[live.length - 1];
    if (!s) throw new Error('no live bot account: log in first');
    return s;
  }

  function issueContextToken(botId: string, user: string): string {
    const token = `AARz${randomBytes(60).toString('base64')}`;
    ledger.set(token, { botId, user, issuedAt: now(), sends: 0 });
    return token;
  }

  function sendItems(from: string, items: Record<string, unknown>[], o: InboundOptions = {}): Inbound {
    const session = pickSession(o.bot);
    const botId = session.account.botId;
    const id = o.id === 'none' ? undefined : o.id === undefined ? mintId() : BigInt(o.id);
    const list = items.map((it) => ({ ...it }));
    if (o.quote && list[0]) {
      const q = o.quote;
      list[0]['ref_msg'] = {
        ...(q.title !== undefined ? { title: q.title } : {}),
        ...(q.text !== undefined ? { message_item: { type: 1, text_item: { text: q.text } } } : {}),
        ...(q.svrId !== undefined ? { svr_id: BigInt(q.svrId) } : {}),
      };
    }
    const contextToken = issueContextToken(botId, from);
    const at = now();
    const message: WireMessage = {
      seq: ++session.seq,
      ...(id !== undefined ? { message_id: id } : {}),
      from_user_id: from,
      to_user_id: botId,
      client_id: `wx-${hex(8)}`,
      create_time_ms: at,
      update_time_ms: at,
      session_id: `${from}#${botId}`,
      group_id: '',
      message_type: 1,
      message_state: 2,
      context_token: contextToken,
      item_list: list,
    };
    const inbound: Inbound = { botId, from, seq: message['seq'] as number, messageId: id?.toString(), contextToken, message, duplicateOf: undefined };
    sim.inbound.push(inbound);
    enqueue(session, message);
    const mode = o.duplicate ?? settings.duplicates;
    if (mode !== 'off') {
      const [lo, hi] = settings.duplicateDelayMs;
      later(o.duplicateAfterMs ?? lo + Math.random() * Math.max(0, hi - lo), () => {
        const copy: WireMessage = { ...message, context_token: issueContextToken(botId, from) };
        if (mode === 'new-id') copy['message_id'] = mintId();
        if (mode === 'no-id') delete copy['message_id'];
        const dup: Inbound = { botId, from, seq: inbound.seq, messageId: copy['message_id'] === undefined ? undefined : String(copy['message_id']), contextToken: copy['context_token'] as string, message: copy, duplicateOf: inbound };
        sim.inbound.push(dup);
        enqueue(session, copy);
      });
    }
    return inbound;
  }

  /** Put bytes on the CDN as WeChat does for a user's media: encrypted with a fresh key. */
  function storeMedia(bytes: Buffer, mediaType: number, toUser: string, encrypt: boolean): { param: string; keyHex: string; ciphertext: Buffer } {
    const keyHex = hex(16);
    const ciphertext = encrypt ? aesEcb('encrypt', bytes, Buffer.from(keyHex, 'hex')) : Buffer.from(bytes);
    const param = b64(48);
    const blob: CdnBlob = { param, filekey: hex(16), mediaType, toUser, aeskeyHex: encrypt ? keyHex : undefined, ciphertext, plaintext: Buffer.from(bytes) };
    blobs.set(param, blob);
    sim.blobs.push(blob);
    return { param, keyHex, ciphertext };
  }

  function mediaRef(param: string, aesKey: string | undefined): Record<string, unknown> {
    return {
      encrypt_query_param: param,
      ...(aesKey !== undefined ? { aes_key: aesKey } : {}),
      encrypt_type: 1,
      ...(settings.downloadFullUrl ? { full_url: `${cdnUrl}/download?encrypted_query_param=${encodeURIComponent(param)}` } : {}),
    };
  }
  const b64hex = (keyHex: string) => Buffer.from(keyHex, 'latin1').toString('base64');
  const b64raw = (keyHex: string) => Buffer.from(keyHex, 'hex').toString('base64');

  // ---- sendmessage

  function sendMessage(res: ServerResponse, session: Session, body: Record<string, unknown>): void {
    const botId = session.account.botId;
    const msg = body['msg'] as Record<string, unknown> | undefined;
    if (!msg || typeof msg !== 'object') return reply(res, { ret: -2, errmsg: '' });
    const to = msg['to_user_id'];
    const items = Array.isArray(msg['item_list']) ? (msg['item_list'] as Record<string, unknown>[]) : [];
    if (typeof to !== 'string' || to === '' || items.length === 0) return reply(res, { ret: -2, errmsg: '' });
    if (items.length > 1) violate(`sendmessage: ${items.length} items in one request (one item per request)`);
    if (msg['message_type'] !== 2) violate(`sendmessage: message_type ${JSON.stringify(msg['message_type'])}, not 2 (BOT)`);
    const state = typeof msg['message_state'] === 'number' ? msg['message_state'] : 2;
    if (state !== 1 && state !== 2) violate(`sendmessage: message_state ${JSON.stringify(msg['message_state'])}, not 2 (FINISH)`);
    const clientId = typeof msg['client_id'] === 'string' ? msg['client_id'] : '';
    if (!clientId) violate('sendmessage: no client_id');
    for (const it of items) {
      const field = ITEM_FIELD[it['type'] as number];
      if (!field || typeof it[field] !== 'object') violate(`sendmessage: item type ${JSON.stringify(it['type'])} without its ${field ?? 'known *_item'}`);
    }

    // GENERATING → FINISH is refused in practice (docs/ilink.md).
    if (state === 1 && settings.refuseGenerating) return reply(res, { ret: -2 });
    const at = now();
    if (settings.rateLimit) {
      const { sends, perMs } = settings.rateLimit;
      session.sendTimes = session.sendTimes.filter((t) => at - t < perMs);
      session.sendTimes.push(at);
      if (session.sendTimes.length > sends) return reply(res, { ret: -2, errmsg: '' });
    }
    const token = typeof msg['context_token'] === 'string' && msg['context_token'] !== '' ? msg['context_token'] : undefined;
    if (token !== undefined) {
      const entry = ledger.get(token);
      if (!entry || entry.botId !== botId || entry.user !== to) {
        if (settings.refuseUnknownContextToken) return reply(res, { ret: -2, errmsg: 'prepare failed' });
      } else {
        if (at - entry.issuedAt > settings.contextMaxAgeMs || entry.sends >= settings.contextQuota) return reply(res, { ret: -2, errmsg: 'prepare failed' });
        entry.sends++;
      }
    }
    const previous = clientIds.get(clientId);
    if (clientId && previous === 2) violate(`sendmessage: client_id ${clientId} reused`);
    if (clientId) clientIds.set(clientId, state);

    let text = '';
    let truncatedFrom: number | undefined;
    const media: OutboundMedia[] = [];
    for (const it of items) {
      const t = (it['text_item'] as { text?: unknown } | undefined)?.text;
      if (it['type'] === 1 && typeof t === 'string') {
        const chars = [...t];
        if (settings.truncateTextAt > 0 && chars.length > settings.truncateTextAt) {
          truncatedFrom = chars.length;
          text += chars.slice(0, settings.truncateTextAt).join('');
        } else text += t;
      }
      const kind = MEDIA_KIND[it['type'] as number];
      if (kind) media.push(outboundMedia(kind, it));
    }
    const messageId = mintId();
    const sent: SentMessage = {
      botId,
      to,
      clientId,
      contextToken: token,
      runId: typeof msg['run_id'] === 'string' ? msg['run_id'] : undefined,
      state,
      items,
      text,
      truncatedFrom,
      media,
      delivered: !settings.silentDrop,
      messageId: messageId.toString(),
      at,
    };
    sim.sent.push(sent);
    onSend?.(sent);
    reply(res, settings.sendReturnsMessageId ? { ret: 0, message_id: messageId } : { ret: 0 });
  }

  function outboundMedia(type: OutboundMedia['type'], item: Record<string, unknown>): OutboundMedia {
    const field = `${type}_item`;
    const inner = (item[field] ?? {}) as Record<string, unknown>;
    const ref = (inner['media'] ?? {}) as Record<string, unknown>;
    const blob = typeof ref['encrypt_query_param'] === 'string' ? blobs.get(ref['encrypt_query_param']) : undefined;
    const { encoding, key } = decodeKey(ref['aes_key']);
    const keyMatches = !!(key && blob?.aeskeyHex && key.toString('hex') === blob.aeskeyHex);
    if (!blob) violate(`sendmessage: ${type} whose encrypt_query_param the CDN does not hold`);
    if (encoding !== 'base64-hex') violate(`sendmessage: ${type} media.aes_key is ${encoding}, not base64 of the hex key`);
    if (ref['encrypt_type'] !== 1) violate(`sendmessage: ${type} media.encrypt_type is not 1`);
    let bytes: Buffer | undefined;
    if (blob && key) {
      try {
        bytes = aesEcb('decrypt', blob.ciphertext, key);
      } catch {
        bytes = undefined;
      }
    }
    if (blob) {
      if (type === 'image' && inner['mid_size'] !== blob.ciphertext.length) violate('sendmessage: image mid_size is not the ciphertext size');
      if (type === 'video' && inner['video_size'] !== blob.ciphertext.length) violate('sendmessage: video_size is not the ciphertext size');
      if (type === 'file' && inner['len'] !== String(blob.plaintext.length)) violate('sendmessage: file len is not the plaintext size as text');
    }
    return { type, found: !!blob, keyEncoding: encoding, keyMatches, grey: type === 'image' && !(encoding === 'base64-hex' && keyMatches), bytes, fileName: typeof inner['file_name'] === 'string' ? inner['file_name'] : undefined };
  }

  // ---- media upload

  function getUploadUrl(res: ServerResponse, b: Record<string, unknown>): void {
    const aeskey = b['aeskey'];
    const mediaType = b['media_type'];
    const rawsize = b['rawsize'];
    if (typeof aeskey !== 'string' || !/^[0-9a-fA-F]{32}$/.test(aeskey)) return reply(res, { ret: -2, errmsg: 'invalid aeskey' });
    if (!HEX32.test(aeskey)) violate('getuploadurl: aeskey is not lowercase hex');
    if (mediaType !== 1 && mediaType !== 2 && mediaType !== 3 && mediaType !== 4) return reply(res, { ret: -2, errmsg: 'invalid media_type' });
    if (typeof rawsize !== 'number' || !Number.isInteger(rawsize) || rawsize < 0) return reply(res, { ret: -2, errmsg: 'invalid rawsize' });
    const filekey = typeof b['filekey'] === 'string' ? b['filekey'] : '';
    if (!HEX32.test(filekey)) violate('getuploadurl: filekey is not 16 random bytes in hex');
    const filesize = Math.ceil((rawsize + 1) / 16) * 16;
    if (b['filesize'] !== filesize) violate(`getuploadurl: filesize ${JSON.stringify(b['filesize'])}, not ceil((rawsize+1)/16)*16 = ${filesize}`);
    const rawmd5 = typeof b['rawfilemd5'] === 'string' ? b['rawfilemd5'].toLowerCase() : '';
    if (!HEX32.test(rawmd5)) violate('getuploadurl: rawfilemd5 is not an MD5 in hex');
    if (typeof b['to_user_id'] !== 'string' || b['to_user_id'] === '') violate('getuploadurl: no to_user_id');
    if (b['no_need_thumb'] !== true) violate('getuploadurl: no_need_thumb is not true (thumbnails are not simulated)');
    const param = b64(48);
    uploads.set(param, { filekey, mediaType, toUser: String(b['to_user_id'] ?? ''), aeskeyHex: aeskey.toLowerCase(), rawsize, rawmd5, filesize, downloadParam: undefined });
    const full = `${cdnUrl}/upload?encrypted_query_param=${encodeURIComponent(param)}&filekey=${encodeURIComponent(filekey)}`;
    reply(res, { upload_param: param, thumb_upload_param: '', ...(settings.uploadFullUrl ? { upload_full_url: full } : {}) });
  }

  function cdnError(res: ServerResponse, status: number, message: string): void {
    res.writeHead(status, { 'x-error-message': message, 'Content-Type': 'text/plain' });
    res.end();
  }

  function cdnUpload(res: ServerResponse, method: string, query: Record<string, string>, raw: Buffer): void {
    if (method !== 'POST') return cdnError(res, 404, 'not found'); // PUT 404s
    const up = uploads.get(query['encrypted_query_param'] ?? '');
    if (!up) return cdnError(res, 400, 'invalid encrypted_query_param');
    if ((query['filekey'] ?? '') !== up.filekey) return cdnError(res, 400, 'filekey mismatch');
    if (raw.length !== up.filesize) return cdnError(res, 400, `size mismatch: ${raw.length} bytes, declared ${up.filesize}`);
    let plain: Buffer;
    try {
      plain = aesEcb('decrypt', raw, Buffer.from(up.aeskeyHex, 'hex'));
    } catch {
      return cdnError(res, 400, 'decrypt failed');
    }
    if (plain.length !== up.rawsize || createHash('md5').update(plain).digest('hex') !== up.rawmd5) return cdnError(res, 400, 'md5 mismatch');
    const param = up.downloadParam ?? b64(48);
    up.downloadParam = param;
    if (!blobs.has(param)) {
      const blob: CdnBlob = { param, filekey: up.filekey, mediaType: up.mediaType, toUser: up.toUser, aeskeyHex: up.aeskeyHex, ciphertext: raw, plaintext: plain };
      blobs.set(param, blob);
      sim.blobs.push(blob);
    }
    res.writeHead(200, { ...(settings.uploadReturnsParam ? { 'x-encrypted-param': param } : {}), 'Content-Length': 0 });
    res.end();
  }

  function cdnDownload(res: ServerResponse, method: string, query: Record<string, string>): void {
    if (method !== 'GET') return cdnError(res, 404, 'not found');
    const blob = blobs.get(query['encrypted_query_param'] ?? '');
    if (!blob) return cdnError(res, 404, 'not found');
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': blob.ciphertext.length });
    res.end(blob.ciphertext);
  }

  // ---- the returned object

  return Object.assign(sim, {
    url: mainUrl,
    altUrl,
    altHost,
    cdnUrl,
    server: mainServer,
    scan(o: { user?: string; verifyCode?: string; redirect?: boolean; qrcode?: string } = {}): QrRecord {
      const qr = newestQr(o.qrcode);
      if (seen(qr, 'alt') !== 'wait') throw new Error(`QR code is ${qr.status}, not wait`);
      qr.user = o.user ?? DEFAULT_OWNER;
      qr.verifyCode = o.verifyCode;
      qr.status = o.verifyCode !== undefined ? 'need_verifycode' : 'scaned';
      qr.redirected = o.redirect === true;
      qrChanged(qr);
      return qr;
    },
    confirm(o: { qrcode?: string; botId?: string; baseUrl?: 'main' | 'alt' | string; fresh?: boolean; withoutBotId?: boolean } = {}): QrRecord {
      const qr = newestQr(o.qrcode);
      if (qr.status !== 'scaned') throw new Error(`QR code is ${qr.status}, not scaned`);
      const user = qr.user as string;
      const bound = o.fresh ? undefined : qr.localTokens.map((t) => sessions.get(t)).find((s) => s?.account.live && s.account.userId === user);
      if (bound) {
        qr.status = 'binded_redirect';
        qr.account = bound.account;
      } else {
        qr.status = 'confirmed';
        qr.account = newAccount(user, o.botId, baseUrlOf(o.baseUrl));
        if (o.withoutBotId) noBotId.add(qr.qrcode);
      }
      qrChanged(qr);
      return qr;
    },
    expire(qrcode?: string): QrRecord {
      const qr = newestQr(qrcode);
      qr.status = 'expired';
      qrChanged(qr);
      return qr;
    },
    login(o: { user?: string; botId?: string; baseUrl?: 'main' | 'alt' | string } = {}): IlinkAccount {
      return newAccount(o.user ?? DEFAULT_OWNER, o.botId, baseUrlOf(o.baseUrl));
    },
    expireSession(botId?: string): void {
      endSession(pickSession(botId));
    },
    heldPolls(): number {
      let n = 0;
      for (const session of sessions.values()) n += session.waiters.size;
      return n;
    },
    sendText(from: string, text: string, o?: InboundOptions): Inbound {
      return sendItems(from, [{ type: 1, text_item: { text } }], o);
    },
    sendItems,
    sendImage(from: string, bytes: Buffer, o: InboundOptions & { keys?: 'hex+raw' | 'raw' | 'hex-b64' | 'hex' | 'none' } = {}): Inbound {
      const keys = o.keys ?? 'hex+raw';
      const to = pickSession(o.bot).account.botId;
      const { param, keyHex, ciphertext } = storeMedia(bytes, 1, to, keys !== 'none');
      const aesKey = keys === 'hex+raw' || keys === 'raw' ? b64raw(keyHex) : keys === 'hex-b64' ? b64hex(keyHex) : undefined;
      const item = { media: mediaRef(param, aesKey), ...(keys === 'hex+raw' || keys === 'hex' ? { aeskey: keyHex } : {}), mid_size: ciphertext.length };
      return sendItems(from, [{ type: 2, image_item: item }], o);
    },
    sendVoice(from: string, bytes: Buffer, o: InboundOptions & { transcript?: string; playtimeMs?: number } = {}): Inbound {
      const { param, keyHex } = storeMedia(bytes, 4, pickSession(o.bot).account.botId, true);
      const item = { media: mediaRef(param, b64hex(keyHex)), encode_type: 6, sample_rate: 24000, bits_per_sample: 16, playtime: o.playtimeMs ?? 3000, ...(o.transcript !== undefined ? { text: o.transcript } : {}) };
      return sendItems(from, [{ type: 3, voice_item: item }], o);
    },
    sendFile(from: string, bytes: Buffer, fileName: string, o: InboundOptions = {}): Inbound {
      const { param, keyHex } = storeMedia(bytes, 3, pickSession(o.bot).account.botId, true);
      const item = { media: mediaRef(param, b64hex(keyHex)), file_name: fileName, md5: createHash('md5').update(bytes).digest('hex'), len: String(bytes.length) };
      return sendItems(from, [{ type: 4, file_item: item }], o);
    },
    sendVideo(from: string, bytes: Buffer, o: InboundOptions = {}): Inbound {
      const { param, keyHex, ciphertext } = storeMedia(bytes, 2, pickSession(o.bot).account.botId, true);
      const item = { media: mediaRef(param, b64hex(keyHex)), video_size: ciphertext.length, video_md5: createHash('md5').update(bytes).digest('hex') };
      return sendItems(from, [{ type: 5, video_item: item }], o);
    },
    inject(op: IlinkOp, fault: IlinkFault, times = 1): void {
      const queue = faults.get(op) ?? [];
      for (let i = 0; i < times; i++) queue.push(fault);
      faults.set(op, queue);
    },
    chat(user: string): SentMessage[] {
      const out: SentMessage[] = [];
      const at = new Map<string, number>();
      for (const m of sim.sent) {
        if (m.to !== user || !m.delivered) continue;
        const i = m.clientId ? at.get(m.clientId) : undefined;
        if (i === undefined) {
          if (m.clientId) at.set(m.clientId, out.length);
          out.push(m);
        } else out[i] = m; // a GENERATING bubble's update
      }
      return out;
    },
    isTyping(user: string, botId?: string): boolean {
      const last = sim.typing.filter((t) => t.user === user && (botId === undefined || t.botId === botId)).pop();
      return last?.status === 1;
    },
    contextToken(token: string) {
      const e = ledger.get(token);
      return e ? { ...e } : undefined;
    },
    async close(): Promise<void> {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const res of open) res.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r())))));
    },
  });
}
