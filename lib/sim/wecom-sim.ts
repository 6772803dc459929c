/**
 * A WeCom (企业微信) simulator on loopback for the self-built app (自建应用) and WeChat customer service
 * (微信客服, "KF"), faithful to docs/wecom.md; never used by the bot itself. It plays both sides:
 *
 * - the API at qyapi.weixin.qq.com: `gettoken` (the same token while it is valid), `getcallbackip`,
 *   `message/send` (text, markdown, media; the 2,048-byte limit; 30 a minute and 1,000 an hour per member,
 *   silently dropped or 45009), `media/upload` and `media/get`, and the KF calls `kf/sync_msg` (cursor pages,
 *   has_more, empty pages), `kf/send_msg` (sessions 0–4, 95018, the 48-hour / 5-message window),
 *   `kf/send_msg_on_event` (single-use codes: the 20 s welcome_code), `kf/service_state/get|trans` and
 *   `kf/add_contact_way`. Every error is an HTTP 200 with `errcode`, as WeCom answers; 40014, 42001, 60020,
 *   48002 and any other code can be switched on;
 * - the users: a member writing to the app (encrypted XML callbacks to the app's URL, redelivered on
 *   timeout or non-200 with the same body; passive replies checked, decrypted and truncated as WeCom
 *   does), the URL-verification handshake, and WeChat customers writing to a KF account (the content-free
 *   `kf_msg_or_event` callback with a sync token, the message waiting in the account's log).
 *
 * Protocol time (token life, rate windows, 48 h, code and media expiry) comes from `now`, so a test can
 * move it without waiting; delivery timeouts and retries use real timers, scaled through the settings.
 * Error codes docs/wecom.md does not give are settings, and their defaults are marked there as assumed.
 */
import { randomBytes } from 'crypto';
import { createServer } from 'http';
import type { IncomingMessage, Server, ServerResponse } from 'http';
import { cdata } from '../channels/wechat-oa/reply';
import { parseXmlFields } from '../channels/wechat-oa/xml';
import { parseMultipart } from '../util/multipart';
import { readRaw } from './dify-sim';
import { listenLocal } from './listen';
import { WecomCrypto, deliver, handshake, newMsgId, newNonce, randomId, seconds } from './wecom-common';
import type { HandshakeResult } from './wecom-common';

export type { HandshakeResult } from './wecom-common';

/** Every API call the simulator answers. */
export type WecomOp =
  | 'gettoken'
  | 'getcallbackip'
  | 'message/send'
  | 'media/upload'
  | 'media/get'
  | 'kf/sync_msg'
  | 'kf/send_msg'
  | 'kf/send_msg_on_event'
  | 'kf/service_state/get'
  | 'kf/service_state/trans'
  | 'kf/add_contact_way';

const OPS: readonly WecomOp[] = ['gettoken', 'getcallbackip', 'message/send', 'media/upload', 'media/get', 'kf/sync_msg', 'kf/send_msg', 'kf/send_msg_on_event', 'kf/service_state/get', 'kf/service_state/trans', 'kf/add_contact_way'];

/** errmsg texts; clients must branch on errcode only, as the wording changes. */
export const WECOM_ERRMSG: Readonly<Record<number, string>> = {
  [-1]: 'system busy',
  40001: 'invalid credential (secret)',
  40005: 'invalid media type',
  40006: 'invalid file size',
  40007: 'invalid media_id',
  40008: 'invalid message type',
  40013: 'invalid corpid',
  40014: 'invalid access_token',
  40056: 'invalid agentid',
  40058: 'invalid parameter',
  40096: 'invalid external userid',
  41001: 'access_token missing',
  41011: 'agentid missing',
  42001: 'access_token expired',
  44001: 'empty media data',
  44004: 'text content is empty',
  45002: 'content size out of limit',
  45009: 'api freq out of limit',
  45033: 'api concurrent out of limit',
  48002: 'api forbidden',
  60020: 'not allow to access from your ip',
  81013: 'user & party & tag all invalid',
  82001: 'all touser, toparty and totag are empty',
  95000: 'invalid open_kfid',
  95001: 'send msg count limit',
  95004: 'open_kfid missing',
  95007: 'invalid msg token',
  95016: 'service state transition not allowed',
  95018: 'send msg session status invalid',
  301002: 'access_token and agentid mismatch',
};

/** The behaviours a test can switch; change them at any time through `sim.settings`. */
export interface WecomSimSettings {
  /** Lifetime of an access token in seconds (WeCom: 7200). */
  tokenTtlS: number;
  /** The corp's trusted IPs (企业可信IP); calls from other addresses answer 60020. Undefined: no check. */
  trustedIps: string[] | undefined;
  /** Whether gettoken is checked against `trustedIps` too (undocumented; default no). */
  gettokenChecksIp: boolean;
  /** How long WeCom waits for a callback answer (5 s). */
  callbackTimeoutMs: number;
  /** How long WeCom waits for the handshake answer (1 s). */
  handshakeTimeoutMs: number;
  /** Deliveries of one callback in all: the first and its retries ("总共重试三次": read as 3). */
  deliveries: number;
  /** Pause before a retry (WeCom re-sends as soon as a delivery failed). */
  retryDelayMs: number;
  /** Accept the literal body `success` as an acknowledgement (documented for the OA only; bridges use it). */
  acceptSuccessBody: boolean;
  /** Byte limit of text and markdown content (message/send, kf/send_msg, passive replies). */
  textLimitBytes: number;
  /** message/send and kf/send_msg beyond the limit: errcode 45002, or cut silently ("超过将截断"). */
  overLongText: 'error' | 'truncate';
  /** message/send per app and member: at most this many a minute and an hour. */
  perMemberPerMinute: number;
  perMemberPerHour: number;
  /** Above those: silently dropped (errcode 0, never shown: WeCom's documented behaviour) or 45009. */
  overRate: 'drop' | 'error';
  /** Members who use WeCom through the WeChat plugin: markdown is recorded as not shown to them. */
  pluginUsers: string[];
  /** The corp's UserIDs; a recipient outside it is `invaliduser`. Undefined: everyone exists. */
  members: string[] | undefined;
  /** How long a media_id lives (3 days). */
  mediaTtlMs: number;
  /** How long the Token of a KF callback can be passed to sync_msg (10 min). */
  kfTokenTtlMs: number;
  /** Errcode for a sync_msg token that is unknown or expired (assumed). */
  kfTokenErrcode: number;
  /** sync_msg calls without a token allowed per account and minute; beyond, 45009 (the limit is unpublished). */
  tokenlessSyncPerMinute: number;
  /** The most messages one sync_msg page holds, whatever `limit` asks (WeCom: 1000). */
  kfPageMax: number;
  /** A KF session and its send window last this long after the customer's last message (48 h). */
  kfWindowMs: number;
  /** kf/send_msg messages allowed per customer message (5). */
  kfMaxPerCustomerMessage: number;
  /** Breaking the window: the call fails with `kfLimitErrcode`, or it succeeds and a msg_send_fail event follows. */
  kfLimitMode: 'error' | 'async-fail';
  /** The synchronous errcode for a send outside the window (not published; assumed). */
  kfLimitErrcode: number;
  /** Errcode for kf/send_msg_on_event with an unknown, used or expired code, and for a reused send msgid (assumed). */
  kfCodeErrcode: number;
  /** The enter_session welcome_code's life (20 s); the end-of-session code's too. */
  welcomeCodeTtlMs: number;
  /** Queue-entry and pool-to-human codes' life (48 h). */
  transferCodeTtlMs: number;
  /** The corp set no native welcome message, so enter_session carries a welcome_code. */
  kfWelcomeCodes: boolean;
}

export const DEFAULT_WECOM_SETTINGS: Readonly<WecomSimSettings> = {
  tokenTtlS: 7200,
  trustedIps: undefined,
  gettokenChecksIp: false,
  callbackTimeoutMs: 5000,
  handshakeTimeoutMs: 1000,
  deliveries: 3,
  retryDelayMs: 0,
  acceptSuccessBody: true,
  textLimitBytes: 2048,
  overLongText: 'error',
  perMemberPerMinute: 30,
  perMemberPerHour: 1000,
  overRate: 'drop',
  pluginUsers: [],
  members: undefined,
  mediaTtlMs: 3 * 24 * 3_600_000,
  kfTokenTtlMs: 10 * 60_000,
  kfTokenErrcode: 95007,
  tokenlessSyncPerMinute: 10,
  kfPageMax: 1000,
  kfWindowMs: 48 * 3_600_000,
  kfMaxPerCustomerMessage: 5,
  kfLimitMode: 'error',
  kfLimitErrcode: 95001,
  kfCodeErrcode: 40058,
  welcomeCodeTtlMs: 20_000,
  transferCodeTtlMs: 48 * 3_600_000,
  kfWelcomeCodes: true,
};

/** A self-built app: its AgentID, Secret and (to receive messages) its callback configuration. */
export interface WecomAppConfig {
  agentId: number;
  secret: string;
  callback?: { url: string; token: string; encodingAesKey: string };
}

export interface WecomSimOptions extends Partial<WecomSimSettings> {
  corpId?: string;
  /** Default: one app, AgentID 1000002, secret `sim-app-secret`, no callback. */
  apps?: WecomAppConfig[];
  /** The KF accounts' open_kfid (default one: `wkSimKf0000000001`). */
  kfAccounts?: string[];
  /** The app allowed to call the KF API and whose callback URL gets KF notices (default: the first). */
  kfAgentId?: number;
  /** Port on 127.0.0.1 (default: any free port). */
  port?: number;
  /** The protocol clock (ms). */
  now?: () => number;
  /** Told of every message the bot sent (accepted by message/send, kf/send_msg or kf/send_msg_on_event). */
  onSend?: (m: AppMessage | KfMessage) => void;
}

/** One API call as the simulator answered it. */
export interface ApiCall {
  op: WecomOp;
  at: number;
  ip: string;
  errcode: number;
  agentId?: number;
}

/** One message message/send accepted, per recipient. */
export interface AppMessage {
  channel: 'app';
  agentId: number;
  touser: string;
  msgtype: string;
  /** text.content or markdown.content as shown (after truncation). */
  content?: string;
  mediaId?: string;
  /** The request body as sent. */
  body: Record<string, unknown>;
  msgid: string;
  at: number;
  /** Over the per-member rate: accepted and never delivered. */
  dropped: boolean;
  /** False for markdown to a WeChat-plugin member (not displayed there) and for dropped messages. */
  shown: boolean;
  /** The byte length before a silent cut. */
  truncatedFrom?: number;
}

/** One message the bot sent to a WeChat customer. */
export interface KfMessage {
  channel: 'kf';
  openKfid: string;
  touser: string;
  via: 'send_msg' | 'send_msg_on_event';
  msgtype: string;
  content?: string;
  /** The media_id of an image, voice, video or file message. */
  mediaId?: string;
  body: Record<string, unknown>;
  msgid: string;
  at: number;
  /** Accepted but not delivered (kfLimitMode 'async-fail'): the msg_send_fail fail_type. */
  failType?: number;
  truncatedFrom?: number;
}

export interface MediaRecord {
  mediaId: string;
  type: 'image' | 'voice' | 'video' | 'file';
  filename: string;
  contentType: string;
  bytes: Buffer;
  createdAt: number;
  /** Uploaded by the bot (media/upload), not made by a user. */
  uploaded: boolean;
}

/** 0 new, 1 bot, 2 queued, 3 human servicer, 4 ended. */
export type KfServiceState = 0 | 1 | 2 | 3 | 4;

export interface KfSession {
  openKfid: string;
  externalUserid: string;
  state: KfServiceState;
  servicerUserid: string;
  /** The customer's last message (undefined: none yet). */
  lastCustomerAt: number | undefined;
  sendsSinceCustomerMessage: number;
  lastWelcomeAt: number | undefined;
  lastActivityAt: number;
}

/** What a member or customer can send. Media bytes default to a few bytes of a PNG or AMR header. */
export type AppPush =
  | { type: 'text'; content: string }
  | { type: 'image'; bytes?: Buffer; contentType?: string }
  | { type: 'voice'; bytes?: Buffer }
  | { type: 'location'; lat: number; lng: number; scale?: number; label?: string }
  | { type: 'link'; title: string; description?: string; url: string }
  | { type: 'event'; event: string; eventKey?: string };

export type KfPush =
  | { type: 'text'; content: string; menuId?: string }
  | { type: 'image' | 'voice' | 'file'; bytes?: Buffer; contentType?: string; filename?: string }
  | { type: 'location'; lat: number; lng: number; name?: string; address?: string };

/** How one callback delivery ended. */
export interface Delivery {
  n: number;
  outcome: 'ack' | 'reply' | 'bad-reply' | 'timeout' | 'network-error' | 'http-error';
  status?: number;
  detail?: string;
  ms: number;
}

/** A passive reply as WeCom read it. */
export interface PassiveReply {
  msgType: string;
  /** Text content as shown (cut at the byte limit). */
  content?: string;
  truncatedFrom?: number;
  fields: Record<string, string>;
}

export interface CallbackResult {
  /** Pass to `redeliver` to send exactly this request again. */
  callbackId: string;
  /** The MsgId of a member's message (events have none). */
  msgId?: string;
  deliveries: Delivery[];
  /** A delivery got HTTP 200. */
  acked: boolean;
  reply?: PassiveReply;
  /** Why a 200 answer was not a usable reply. */
  problem?: string;
}

export interface KfInbound {
  msgid: string;
  /** The notice sent for it (undefined with `notify: false`). */
  callback?: CallbackResult;
}

export interface WecomSim {
  url: string;
  corpId: string;
  server: Server;
  settings: WecomSimSettings;
  calls: ApiCall[];
  /** Every access token issued. */
  issued: string[];
  /** Every message message/send accepted, in order (one per recipient). */
  sent: AppMessage[];
  /** Every message sent to KF customers, in order. */
  kfSent: KfMessage[];
  media: Map<string, MediaRecord>;
  /** media_ids fetched with media/get. */
  mediaGets: string[];
  /** What a client did that WeCom tolerates but a careful one never does (a sync limit over 1000, …). */
  violations: string[];

  /** The messages one member received from the app, in order (dropped ones included, flagged). */
  sentTo(user: string, agentId?: number): AppMessage[];
  /** The messages one customer received from a KF account, in order. */
  kfSentTo(openKfid: string, user: string): KfMessage[];
  /** The next `times` calls of `op` answer `errcode` (-1, 45033, 48002, 60020, …). */
  inject(op: WecomOp, errcode: number, times?: number): void;
  /** The app's current token is past its life: calls with it answer 42001. */
  expireToken(agentId?: number): void;
  /** WeCom revoked the app's current token early: calls with it answer 40014. */
  revokeToken(agentId?: number): void;
  /** Store a file as WeCom media (as a user's picture or voice would be) and return its media_id. */
  addMedia(m: { type: MediaRecord['type']; bytes: Buffer; filename?: string; contentType?: string }): string;

  /** The self-built app's URL verification (GET, encrypted echostr); `badSignature` checks the server refuses. */
  verifyUrl(o?: { agentId?: number; badSignature?: boolean }): Promise<HandshakeResult>;
  /** A member writes to the app: one encrypted callback, redelivered on failure, its passive reply read. */
  memberSends(user: string, push: AppPush | string, o?: { agentId?: number }): Promise<CallbackResult>;
  /** Send the request of an earlier callback again, byte for byte (a duplicate). */
  redeliver(callbackId: string): Promise<CallbackResult>;

  /** A WeChat customer writes to a KF account: the message goes into the account's log and (unless `notify: false`) one notice is sent. */
  customerSends(openKfid: string, user: string, push: KfPush | string, o?: { notify?: boolean }): Promise<KfInbound>;
  /** Several customer messages land before one notice: the burst a single sync window sees. */
  customerBurst(openKfid: string, items: { user: string; push: KfPush | string }[]): Promise<{ msgids: string[]; callback: CallbackResult }>;
  /** A customer opens the chat (enter_session); returns the welcome_code when one is due. */
  customerEnters(openKfid: string, user: string, o?: { scene?: string; sceneParam?: string; notify?: boolean }): Promise<KfInbound & { welcomeCode?: string }>;
  /** A human servicer writes in WeCom (origin 5): it appears in sync_msg. */
  servicerSends(openKfid: string, user: string, servicerUserid: string, text: string, o?: { notify?: boolean }): Promise<KfInbound>;
  /** Move a session, as the KF admin or a servicer would (3: a human has it). */
  setServiceState(openKfid: string, user: string, state: KfServiceState, servicerUserid?: string): void;
  session(openKfid: string, user: string): KfSession | undefined;
  /** A kf_msg_or_event notice with a fresh sync token. */
  notifyKf(openKfid: string): Promise<CallbackResult>;
  /** The next `count` sync_msg calls for the account answer an empty page with has_more 1. */
  injectEmptyPage(openKfid: string, count?: number): void;
  /** The account's log as sync_msg serves it. */
  kfLog(openKfid: string): Record<string, unknown>[];
  /** Wait for notices sent in the background (msg_send_fail). */
  idle(): Promise<void>;
  close(): Promise<void>;
}

interface TokenRecord {
  agentId: number;
  expiresAt: number;
  revoked: boolean;
}

interface KfAccount {
  openKfid: string;
  index: number;
  log: Record<string, unknown>[];
  emptyPages: number;
  tokenless: number[];
  usedMsgids: Set<string>;
}

interface KfCode {
  openKfid: string;
  user: string;
  expiresAt: number;
  used: boolean;
  msgtypes: readonly string[];
  kind: 'welcome' | 'transfer' | 'end';
}

/** Cut `text` to at most `limit` UTF-8 bytes on a character boundary. */
export function cutUtf8(text: string, limit: number): string {
  if (Buffer.byteLength(text, 'utf8') <= limit) return text;
  let bytes = 0;
  let out = '';
  for (const ch of text) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > limit) break;
    bytes += n;
    out += ch;
  }
  return out;
}

const PNG_HEAD = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');

/** A PNG or JPEG by its first bytes. */
const isJpgOrPng = (b: Buffer) => b.subarray(0, 8).equals(PNG_HEAD.subarray(0, 8)) || (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff);
const AMR_HEAD = Buffer.from('#!AMR\n\u0000\u0000\u0000\u0000', 'latin1');

const ipOf = (req: IncomingMessage): string => (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');

export async function startWecomSim(opts: WecomSimOptions = {}): Promise<WecomSim> {
  const settings: WecomSimSettings = { ...DEFAULT_WECOM_SETTINGS };
  for (const k of Object.keys(DEFAULT_WECOM_SETTINGS) as (keyof WecomSimSettings)[]) {
    if (opts[k] !== undefined) (settings as unknown as Record<string, unknown>)[k] = opts[k];
  }
  const now = opts.now ?? Date.now;
  const corpId = opts.corpId ?? 'ww5a1c9e3b7d20f864';
  const apps = new Map<number, WecomAppConfig>();
  for (const a of opts.apps ?? [{ agentId: 1000002, secret: 'sim-app-secret' }]) apps.set(a.agentId, a);
  const firstApp = [...apps.keys()][0];
  if (firstApp === undefined) throw new Error('wecom-sim: at least one app');
  const kfAgentId = opts.kfAgentId ?? firstApp;
  const cryptos = new Map<number, WecomCrypto>();
  for (const a of apps.values()) if (a.callback) cryptos.set(a.agentId, new WecomCrypto(a.callback.token, a.callback.encodingAesKey, corpId));

  const tokens = new Map<string, TokenRecord>();
  const current = new Map<number, string>();
  const injected = new Map<WecomOp, number[]>();
  const rate = new Map<string, number[]>();
  const accounts = new Map<string, KfAccount>();
  (opts.kfAccounts ?? ['wkSimKf0000000001']).forEach((id, index) => accounts.set(id, { openKfid: id, index, log: [], emptyPages: 0, tokenless: [], usedMsgids: new Set() }));
  const kfTokens = new Map<string, { openKfid: string; expiresAt: number }>();
  const sessions = new Map<string, KfSession>();
  const codes = new Map<string, KfCode>();
  const requests = new Map<string, { agentId: number; url: string; body: string; user: string | undefined; msgId: string | undefined }>();
  const background = new Set<Promise<unknown>>();
  let baseUrl = '';

  const sim = {
    corpId,
    settings,
    calls: [] as ApiCall[],
    issued: [] as string[],
    sent: [] as AppMessage[],
    kfSent: [] as KfMessage[],
    media: new Map<string, MediaRecord>(),
    mediaGets: [] as string[],
    violations: [] as string[],
  };

  function addMedia(m: { type: MediaRecord['type']; bytes: Buffer; filename?: string; contentType?: string; uploaded?: boolean }): string {
    const mediaId = `3${randomId(63)}`;
    const ext = { image: 'png', voice: 'amr', video: 'mp4', file: 'bin' }[m.type];
    const type = { image: 'image/png', voice: 'audio/amr', video: 'video/mp4', file: 'application/octet-stream' }[m.type];
    sim.media.set(mediaId, { mediaId, type: m.type, filename: m.filename ?? `${mediaId.slice(0, 8)}.${ext}`, contentType: m.contentType ?? type, bytes: m.bytes, createdAt: now(), uploaded: m.uploaded ?? false });
    return mediaId;
  }

  // ---- callbacks (WeCom → the bot)

  function cryptoFor(agentId: number): { app: WecomAppConfig & { callback: NonNullable<WecomAppConfig['callback']> }; crypto: WecomCrypto } {
    const app = apps.get(agentId);
    const crypto = cryptos.get(agentId);
    if (!app?.callback || !crypto) throw new Error(`wecom-sim: app ${agentId} has no callback URL`);
    return { app: app as WecomAppConfig & { callback: NonNullable<WecomAppConfig['callback']> }, crypto };
  }

  /** Read a passive reply the way WeCom does; a string is the reason it is unusable. */
  function readReply(body: string, user: string, agentId: number): PassiveReply | string {
    const { crypto } = cryptoFor(agentId);
    let outer: Record<string, string>;
    try {
      outer = parseXmlFields(body, 1024 * 1024);
    } catch (err) {
      return `reply is not XML: ${(err as Error).message}`;
    }
    const encrypt = outer['Encrypt'];
    if (encrypt === undefined) return 'reply is not encrypted (WeCom has no plaintext mode)';
    if (!crypto.verify(outer['MsgSignature'] ?? '', outer['TimeStamp'] ?? '', outer['Nonce'] ?? '', encrypt)) return 'reply MsgSignature does not match';
    let fields: Record<string, string>;
    try {
      fields = parseXmlFields(crypto.decrypt(encrypt), 1024 * 1024);
    } catch (err) {
      return `reply does not decrypt for this CorpID: ${(err as Error).message}`;
    }
    if (fields['ToUserName'] !== user) return 'reply ToUserName is not the member';
    if (fields['FromUserName'] !== corpId) return 'reply FromUserName is not the CorpID';
    const msgType = fields['MsgType'] ?? '';
    if (!['text', 'image', 'voice', 'video', 'news', 'update_button', 'update_template_card'].includes(msgType)) return `reply MsgType ${JSON.stringify(msgType)} cannot be a passive reply`;
    if (msgType !== 'text') return { msgType, fields };
    const full = fields['Content'] ?? '';
    const content = cutUtf8(full, settings.textLimitBytes);
    return content === full ? { msgType, content, fields } : { msgType, content, truncatedFrom: Buffer.byteLength(full, 'utf8'), fields };
  }

  async function send(callbackId: string): Promise<CallbackResult> {
    const r = requests.get(callbackId);
    if (!r) throw new Error(`wecom-sim: no callback ${callbackId}`);
    const result: CallbackResult = { callbackId, deliveries: [], acked: false, ...(r.msgId ? { msgId: r.msgId } : {}) };
    for (let n = 1; n <= settings.deliveries; n++) {
      if (n > 1 && settings.retryDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, settings.retryDelayMs));
      const p = await deliver(r.url, { body: r.body, contentType: 'text/xml', timeoutMs: settings.callbackTimeoutMs });
      if ('failure' in p) {
        result.deliveries.push({ n, outcome: p.failure === 'timeout' ? 'timeout' : 'network-error', detail: p.detail, ms: p.ms });
        continue;
      }
      if (p.status !== 200) {
        result.deliveries.push({ n, outcome: 'http-error', status: p.status, detail: p.body.slice(0, 200), ms: p.ms });
        continue;
      }
      result.acked = true;
      if (p.body === '' || (settings.acceptSuccessBody && p.body === 'success') || r.user === undefined) {
        result.deliveries.push({ n, outcome: 'ack', status: 200, ms: p.ms });
        return result;
      }
      const reply = readReply(p.body, r.user, r.agentId);
      if (typeof reply === 'string') {
        result.deliveries.push({ n, outcome: 'bad-reply', status: 200, detail: reply, ms: p.ms });
        result.problem = reply;
      } else {
        result.deliveries.push({ n, outcome: 'reply', status: 200, ms: p.ms });
        result.reply = reply;
      }
      return result;
    }
    return result;
  }

  /** Encrypt, sign and send one callback; the request is kept for `redeliver`. */
  function callback(agentId: number, inner: string, user: string | undefined, msgId: string | undefined): Promise<CallbackResult> {
    const { app, crypto } = cryptoFor(agentId);
    const encrypt = crypto.encrypt(inner);
    const body = `<xml><ToUserName>${cdata(corpId)}</ToUserName><AgentID>${cdata(String(agentId))}</AgentID><Encrypt>${cdata(encrypt)}</Encrypt></xml>`;
    const q = crypto.query(encrypt, seconds(now()), newNonce());
    const callbackId = msgId ?? `cb-${randomId(12)}`;
    requests.set(callbackId, { agentId, url: `${app.callback.url}${app.callback.url.includes('?') ? '&' : '?'}${q}`, body, user, msgId });
    return send(callbackId);
  }

  function appXml(user: string, agentId: number, push: AppPush, msgId: string | undefined): string {
    const head = `<ToUserName>${cdata(corpId)}</ToUserName><FromUserName>${cdata(user)}</FromUserName><CreateTime>${seconds(now())}</CreateTime>`;
    const tail = `${msgId ? `<MsgId>${msgId}</MsgId>` : ''}<AgentID>${agentId}</AgentID>`;
    switch (push.type) {
      case 'text':
        return `<xml>${head}<MsgType>${cdata('text')}</MsgType><Content>${cdata(push.content)}</Content>${tail}</xml>`;
      case 'image': {
        const mediaId = addMedia({ type: 'image', bytes: push.bytes ?? PNG_HEAD, ...(push.contentType ? { contentType: push.contentType } : {}) });
        return `<xml>${head}<MsgType>${cdata('image')}</MsgType><PicUrl>${cdata(`${baseUrl}/sim/pic/${mediaId}`)}</PicUrl><MediaId>${cdata(mediaId)}</MediaId>${tail}</xml>`;
      }
      case 'voice': {
        const mediaId = addMedia({ type: 'voice', bytes: push.bytes ?? AMR_HEAD });
        return `<xml>${head}<MsgType>${cdata('voice')}</MsgType><MediaId>${cdata(mediaId)}</MediaId><Format>${cdata('amr')}</Format>${tail}</xml>`;
      }
      case 'location':
        return `<xml>${head}<MsgType>${cdata('location')}</MsgType><Location_X>${push.lat}</Location_X><Location_Y>${push.lng}</Location_Y><Scale>${push.scale ?? 15}</Scale><Label>${cdata(push.label ?? '')}</Label><AppType>${cdata('wxwork')}</AppType>${tail}</xml>`;
      case 'link':
        return `<xml>${head}<MsgType>${cdata('link')}</MsgType><Title>${cdata(push.title)}</Title><Description>${cdata(push.description ?? '')}</Description><Url>${cdata(push.url)}</Url><PicUrl>${cdata('')}</PicUrl>${tail}</xml>`;
      case 'event':
        return `<xml>${head}<MsgType>${cdata('event')}</MsgType><Event>${cdata(push.event)}</Event><EventKey>${cdata(push.eventKey ?? '')}</EventKey>${tail}</xml>`;
    }
  }

  // ---- KF: accounts, sessions, log

  function account(openKfid: string): KfAccount {
    const a = accounts.get(openKfid);
    if (!a) throw new Error(`wecom-sim: no KF account ${openKfid}`);
    return a;
  }

  /** The session, ended lazily once the window after its last activity has passed. */
  function sessionOf(openKfid: string, user: string, create: boolean): KfSession | undefined {
    const key = `${openKfid}\n${user}`;
    let s = sessions.get(key);
    if (!s && create) {
      s = { openKfid, externalUserid: user, state: 0, servicerUserid: '', lastCustomerAt: undefined, sendsSinceCustomerMessage: 0, lastWelcomeAt: undefined, lastActivityAt: now() };
      sessions.set(key, s);
    }
    if (s && s.state !== 4 && now() - s.lastActivityAt > settings.kfWindowMs) s.state = 4;
    return s;
  }

  function appendLog(a: KfAccount, entry: Record<string, unknown>): string {
    const msgid = randomId(26);
    a.log.push({ msgid, open_kfid: a.openKfid, ...entry, send_time: Math.floor(now() / 1000) });
    return msgid;
  }

  function notifyKf(openKfid: string): Promise<CallbackResult> {
    account(openKfid);
    const token = `ENC${randomBytes(24).toString('base64url')}`;
    kfTokens.set(token, { openKfid, expiresAt: now() + settings.kfTokenTtlMs });
    const inner =
      `<xml><ToUserName>${cdata(corpId)}</ToUserName><CreateTime>${seconds(now())}</CreateTime><MsgType>${cdata('event')}</MsgType>` +
      `<Event>${cdata('kf_msg_or_event')}</Event><Token>${cdata(token)}</Token><OpenKfId>${cdata(openKfid)}</OpenKfId></xml>`;
    return callback(kfAgentId, inner, undefined, undefined);
  }

  function kfContent(push: KfPush): Record<string, unknown> {
    switch (push.type) {
      case 'text':
        return { msgtype: 'text', text: { content: push.content, ...(push.menuId ? { menu_id: push.menuId } : {}) } };
      case 'location':
        return { msgtype: 'location', location: { latitude: push.lat, longitude: push.lng, name: push.name ?? '', address: push.address ?? '' } };
      default: {
        const bytes = push.bytes ?? (push.type === 'voice' ? AMR_HEAD : PNG_HEAD);
        const mediaId = addMedia({ type: push.type, bytes, ...(push.filename ? { filename: push.filename } : {}), ...(push.contentType ? { contentType: push.contentType } : {}) });
        return { msgtype: push.type, [push.type]: { media_id: mediaId } };
      }
    }
  }

  function customerMessage(openKfid: string, user: string, push: KfPush | string): string {
    const a = account(openKfid);
    const s = sessionOf(openKfid, user, true) as KfSession;
    if (s.state === 4) {
      s.state = 0;
      s.servicerUserid = '';
    }
    s.lastCustomerAt = now();
    s.lastActivityAt = now();
    s.sendsSinceCustomerMessage = 0;
    const p: KfPush = typeof push === 'string' ? { type: 'text', content: push } : push;
    return appendLog(a, { external_userid: user, origin: 3, ...kfContent(p) });
  }

  function newCode(c: Omit<KfCode, 'used'>): string {
    const code = randomBytes(24).toString('base64url');
    codes.set(code, { ...c, used: false });
    return code;
  }

  function later(p: Promise<unknown>): void {
    const q = p.catch(() => undefined).finally(() => background.delete(q));
    background.add(q);
  }

  // ---- the API (the bot → WeCom)

  function recordSend(m: AppMessage | KfMessage): void {
    if (m.channel === 'app') sim.sent.push(m);
    else sim.kfSent.push(m);
    opts.onSend?.(m);
  }

  /** Text or markdown content within the limit, cut (setting) or refused (undefined). */
  function limitText(content: string): { content: string; truncatedFrom?: number } | undefined {
    const bytes = Buffer.byteLength(content, 'utf8');
    if (bytes <= settings.textLimitBytes) return { content };
    if (settings.overLongText === 'error') return undefined;
    return { content: cutUtf8(content, settings.textLimitBytes), truncatedFrom: bytes };
  }

  function withinRate(agentId: number, user: string): boolean {
    const t = now();
    const key = `${agentId}\n${user}`;
    const times = (rate.get(key) ?? []).filter((x) => t - x < 3_600_000);
    rate.set(key, times);
    return times.filter((x) => t - x < 60_000).length < settings.perMemberPerMinute && times.length < settings.perMemberPerHour;
  }

  type Answer = { status?: number; json?: Record<string, unknown>; bytes?: { data: Buffer; headers: Record<string, string | number> } };
  const ok = (extra: Record<string, unknown> = {}): Answer => ({ json: { errcode: 0, errmsg: 'ok', ...extra } });

  function fail(code: number, ip: string, detail?: string): Answer {
    const hint = `[${Math.floor(now() / 1000)}-${randomId(6)}]`;
    const text = detail ?? WECOM_ERRMSG[code] ?? 'error';
    const from = code === 60020 ? `, from ip: ${ip}` : '';
    return { json: { errcode: code, errmsg: `${text}, hint: ${hint}${from}, more info at https://open.work.weixin.qq.com/devtool/query?e=${code}` } };
  }

  function handleMessageSend(agentId: number, body: Record<string, unknown>, ip: string): Answer {
    if (body['agentid'] === undefined) return fail(41011, ip);
    const agent = Number(body['agentid']);
    if (!apps.has(agent)) return fail(40056, ip);
    if (agent !== agentId) return fail(301002, ip);
    const msgtype = String(body['msgtype'] ?? '');
    const payload = body[msgtype] as Record<string, unknown> | undefined;
    if (!['text', 'markdown', 'image', 'voice', 'video', 'file', 'textcard', 'news', 'mpnews', 'template_card'].includes(msgtype) || !payload || typeof payload !== 'object') return fail(40008, ip);
    let content: { content: string; truncatedFrom?: number } | undefined;
    let mediaId: string | undefined;
    if (msgtype === 'text' || msgtype === 'markdown') {
      const raw = payload['content'];
      if (typeof raw !== 'string' || raw === '') return fail(44004, ip);
      content = limitText(raw);
      if (!content) return fail(45002, ip, `content size out of limit (${Buffer.byteLength(raw, 'utf8')} > ${settings.textLimitBytes} bytes)`);
    } else if (['image', 'voice', 'video', 'file'].includes(msgtype)) {
      mediaId = String(payload['media_id'] ?? '');
      const m = sim.media.get(mediaId);
      if (!m || now() - m.createdAt > settings.mediaTtlMs) return fail(40007, ip);
    }
    const touser = typeof body['touser'] === 'string' ? body['touser'] : '';
    const toparty = typeof body['toparty'] === 'string' ? body['toparty'] : '';
    const totag = typeof body['totag'] === 'string' ? body['totag'] : '';
    if (!touser && !toparty && !totag) return fail(82001, ip);
    let users = touser === '@all' ? (settings.members ?? ['@all']) : touser.split('|').filter(Boolean);
    if (users.length > 1000) return fail(40058, ip, 'touser lists more than 1000 members');
    const invalid = settings.members ? users.filter((u) => u !== '@all' && !settings.members?.includes(u)) : [];
    users = users.filter((u) => !invalid.includes(u));
    if (users.length === 0 && !toparty && !totag) return fail(81013, ip);
    if (settings.overRate === 'error' && users.some((u) => !withinRate(agentId, u))) return fail(45009, ip, 'api freq out of limit (30 messages a minute / 1000 an hour per member)');
    const msgid = randomId(40);
    for (const u of users) {
      const dropped = !withinRate(agentId, u);
      if (!dropped) rate.get(`${agentId}\n${u}`)?.push(now());
      const hidden = msgtype === 'markdown' && settings.pluginUsers.includes(u);
      recordSend({
        channel: 'app',
        agentId,
        touser: u,
        msgtype,
        ...(content ? { content: content.content } : {}),
        ...(content?.truncatedFrom ? { truncatedFrom: content.truncatedFrom } : {}),
        ...(mediaId ? { mediaId } : {}),
        body,
        msgid,
        at: now(),
        dropped,
        shown: !dropped && !hidden,
      });
    }
    return ok({ invaliduser: invalid.join('|'), invalidparty: '', invalidtag: '', unlicenseduser: '', msgid, response_code: '' });
  }

  function handleUpload(url: URL, raw: Buffer, contentType: string, ip: string): Answer {
    const type = url.searchParams.get('type') ?? '';
    if (type !== 'image' && type !== 'voice' && type !== 'video' && type !== 'file') return fail(40005, ip);
    const file = parseMultipart(raw, contentType).files['media'];
    if (!file || file.bytes.length === 0) return fail(44001, ip);
    const max = { image: 10, voice: 2, video: 10, file: 20 }[type] * 1024 * 1024;
    if (file.bytes.length <= 5 || file.bytes.length > max) return fail(40006, ip, `invalid file size (${file.bytes.length} bytes; ${type}: 6 bytes to ${max / 1024 / 1024} MB)`);
    // Pictures are JPG or PNG (docs/wecom.md), told by their bytes (the errcode is assumed).
    if (type === 'image' && !isJpgOrPng(file.bytes)) return fail(40005, ip, 'invalid media type (an image must be JPG or PNG)');
    const mediaId = addMedia({ type, bytes: file.bytes, filename: file.filename, contentType: file.contentType, uploaded: true });
    return { json: { errcode: 0, errmsg: '', type, media_id: mediaId, created_at: seconds(now()) } };
  }

  function handleMediaGet(url: URL, ip: string): Answer {
    const id = url.searchParams.get('media_id') ?? '';
    const m = sim.media.get(id);
    if (!m || now() - m.createdAt > settings.mediaTtlMs) return fail(40007, ip);
    sim.mediaGets.push(id);
    const name = m.filename;
    return {
      bytes: {
        data: m.bytes,
        headers: {
          'Content-Type': m.contentType,
          'Content-Disposition': `attachment; filename="${name.replace(/[^\x20-\x7e]|"/g, '_')}"; filename*=utf-8''${encodeURIComponent(name)}`,
          'Content-Length': m.bytes.length,
        },
      },
    };
  }

  const CURSOR_PREFIX = 'c1';
  const cursorFor = (a: KfAccount, pos: number) => `${CURSOR_PREFIX}${Buffer.from(`${a.index}.${pos}.${randomId(8)}`).toString('base64url')}`;
  function positionOf(a: KfAccount, cursor: string): number | undefined {
    if (!cursor.startsWith(CURSOR_PREFIX)) return undefined;
    const m = /^(\d+)\.(\d+)\.[\w-]+$/.exec(Buffer.from(cursor.slice(CURSOR_PREFIX.length), 'base64url').toString('utf8'));
    if (!m || Number(m[1]) !== a.index) return undefined;
    const pos = Number(m[2]);
    return pos <= a.log.length ? pos : undefined;
  }

  function kfAccountOf(body: Record<string, unknown>, ip: string): KfAccount | Answer {
    const id = body['open_kfid'];
    if (typeof id !== 'string' || id === '') return fail(95004, ip);
    return accounts.get(id) ?? fail(95000, ip);
  }

  function handleSync(body: Record<string, unknown>, ip: string): Answer {
    const a = kfAccountOf(body, ip);
    if (!('index' in a)) return a;
    const token = body['token'];
    if (token !== undefined && token !== '') {
      const t = kfTokens.get(String(token));
      if (!t || t.openKfid !== a.openKfid || t.expiresAt <= now()) return fail(settings.kfTokenErrcode, ip);
    } else {
      a.tokenless = a.tokenless.filter((x) => now() - x < 60_000);
      if (a.tokenless.length >= settings.tokenlessSyncPerMinute) return fail(45009, ip, 'sync_msg without token: api freq out of limit');
      a.tokenless.push(now());
    }
    let limit = 1000;
    if (body['limit'] !== undefined) {
      const l = body['limit'];
      if (typeof l !== 'number' || !Number.isInteger(l) || l < 1) return fail(40058, ip, 'invalid limit');
      if (l > 1000) sim.violations.push(`sync_msg limit ${l} is over the maximum 1000`);
      limit = Math.min(l, 1000);
    }
    let pos = 0;
    const cursor = body['cursor'];
    if (cursor !== undefined && cursor !== '') {
      const p = typeof cursor === 'string' ? positionOf(a, cursor) : undefined;
      if (p === undefined) return fail(40058, ip, 'invalid cursor');
      pos = p;
    }
    if (a.emptyPages > 0) {
      a.emptyPages--;
      return ok({ next_cursor: cursorFor(a, pos), has_more: 1, msg_list: [] });
    }
    const page = a.log.slice(pos, pos + Math.min(limit, settings.kfPageMax));
    const next = pos + page.length;
    return ok({ next_cursor: cursorFor(a, next), has_more: next < a.log.length ? 1 : 0, msg_list: page });
  }

  /** msgid given by the caller: ≤ 32 bytes of [0-9a-zA-Z_-], unique per account. */
  function takeMsgid(a: KfAccount, body: Record<string, unknown>, ip: string): string | Answer {
    const given = body['msgid'];
    if (given === undefined || given === '') {
      const id = randomId(24);
      a.usedMsgids.add(id);
      return id;
    }
    if (typeof given !== 'string' || !/^[0-9a-zA-Z_-]{1,32}$/.test(given)) return fail(40058, ip, 'invalid msgid');
    if (a.usedMsgids.has(given)) return fail(settings.kfCodeErrcode, ip, 'msgid already used for this KF account');
    a.usedMsgids.add(given);
    return given;
  }

  const KF_TYPES = ['text', 'image', 'voice', 'video', 'file', 'link', 'miniprogram', 'msgmenu', 'location'];

  function kfPayload(body: Record<string, unknown>, allowed: readonly string[], ip: string): { msgtype: string; content?: { content: string; truncatedFrom?: number }; mediaId?: string } | Answer {
    const msgtype = String(body['msgtype'] ?? '');
    const payload = body[msgtype] as Record<string, unknown> | undefined;
    if (!allowed.includes(msgtype) || !payload || typeof payload !== 'object') return fail(40008, ip);
    if (msgtype === 'text') {
      const raw = payload['content'];
      if (typeof raw !== 'string' || raw === '') return fail(44004, ip);
      const content = limitText(raw);
      if (!content) return fail(45002, ip, `content size out of limit (${Buffer.byteLength(raw, 'utf8')} > ${settings.textLimitBytes} bytes)`);
      return { msgtype, content };
    }
    if (['image', 'voice', 'video', 'file'].includes(msgtype)) {
      const mediaId = String(payload['media_id'] ?? '');
      const m = sim.media.get(mediaId);
      if (!m || now() - m.createdAt > settings.mediaTtlMs) return fail(40007, ip);
      return { msgtype, mediaId };
    }
    return { msgtype };
  }

  function handleKfSend(body: Record<string, unknown>, ip: string): Answer {
    const a = kfAccountOf(body, ip);
    if (!('index' in a)) return a;
    const user = typeof body['touser'] === 'string' ? body['touser'] : '';
    const s = user ? sessionOf(a.openKfid, user, false) : undefined;
    if (!s) return fail(40096, ip);
    const p = kfPayload(body, KF_TYPES, ip);
    if (!('msgtype' in p)) return p;
    if (s.state === 2 || s.state === 3) return fail(95018, ip);
    const outOfTime = s.lastCustomerAt === undefined || now() - s.lastCustomerAt > settings.kfWindowMs;
    const overCount = s.sendsSinceCustomerMessage >= settings.kfMaxPerCustomerMessage;
    if ((outOfTime || overCount) && settings.kfLimitMode === 'error') {
      return fail(settings.kfLimitErrcode, ip, outOfTime ? 'send msg out of the 48 hours after the customer message' : `send msg count limit (${settings.kfMaxPerCustomerMessage} per customer message)`);
    }
    if (s.state === 4 && !outOfTime) return fail(95018, ip);
    const msgid = takeMsgid(a, body, ip);
    if (typeof msgid !== 'string') return msgid;
    const failType = outOfTime ? 4 : overCount ? 6 : undefined;
    if (failType === undefined) s.sendsSinceCustomerMessage++;
    recordSend({
      channel: 'kf',
      openKfid: a.openKfid,
      touser: user,
      via: 'send_msg',
      msgtype: p.msgtype,
      ...(p.content ? { content: p.content.content } : {}),
      ...(p.mediaId ? { mediaId: p.mediaId } : {}),
      ...(p.content?.truncatedFrom ? { truncatedFrom: p.content.truncatedFrom } : {}),
      ...(failType !== undefined ? { failType } : {}),
      body,
      msgid,
      at: now(),
    });
    if (failType !== undefined) {
      appendLog(a, { origin: 4, msgtype: 'event', event: { event_type: 'msg_send_fail', open_kfid: a.openKfid, external_userid: user, fail_msgid: msgid, fail_type: failType } });
      later(notifyKf(a.openKfid));
    }
    return ok({ msgid });
  }

  function handleOnEvent(body: Record<string, unknown>, ip: string): Answer {
    const c = codes.get(String(body['code'] ?? ''));
    if (!c) return fail(settings.kfCodeErrcode, ip, 'invalid code');
    if (c.used) return fail(settings.kfCodeErrcode, ip, 'code already used');
    if (c.expiresAt <= now()) return fail(settings.kfCodeErrcode, ip, 'code expired');
    const p = kfPayload(body, c.msgtypes, ip);
    if (!('msgtype' in p)) return p;
    const a = account(c.openKfid);
    const msgid = takeMsgid(a, body, ip);
    if (typeof msgid !== 'string') return msgid;
    c.used = true;
    const s = sessionOf(c.openKfid, c.user, true) as KfSession;
    if (c.kind === 'welcome') s.lastWelcomeAt = now();
    recordSend({
      channel: 'kf',
      openKfid: c.openKfid,
      touser: c.user,
      via: 'send_msg_on_event',
      msgtype: p.msgtype,
      ...(p.content ? { content: p.content.content } : {}),
      ...(p.content?.truncatedFrom ? { truncatedFrom: p.content.truncatedFrom } : {}),
      body,
      msgid,
      at: now(),
    });
    return ok({ msgid });
  }

  function handleState(op: 'kf/service_state/get' | 'kf/service_state/trans', body: Record<string, unknown>, ip: string): Answer {
    const a = kfAccountOf(body, ip);
    if (!('index' in a)) return a;
    const user = typeof body['external_userid'] === 'string' ? body['external_userid'] : '';
    const s = user ? sessionOf(a.openKfid, user, false) : undefined;
    if (!s) return fail(40096, ip);
    if (op === 'kf/service_state/get') return ok({ service_state: s.state, servicer_userid: s.servicerUserid });
    const to = body['service_state'];
    if (typeof to !== 'number' || ![1, 2, 3, 4].includes(to)) return fail(40058, ip, 'invalid service_state');
    const allowed: Record<KfServiceState, number[]> = { 0: [1, 2, 3, 4], 1: [2, 3, 4], 2: [3, 4], 3: [3, 4], 4: [] };
    if (!allowed[s.state].includes(to)) return fail(95016, ip);
    const servicer = typeof body['servicer_userid'] === 'string' ? body['servicer_userid'] : '';
    if (to === 3 && !servicer) return fail(40058, ip, 'servicer_userid missing');
    s.state = to as KfServiceState;
    s.servicerUserid = to === 3 ? servicer : '';
    if (to === 1) return ok();
    const end = to === 4;
    const msgCode = newCode({ openKfid: a.openKfid, user, kind: end ? 'end' : 'transfer', msgtypes: end ? ['text', 'msgmenu'] : ['text'], expiresAt: now() + (end ? settings.welcomeCodeTtlMs : settings.transferCodeTtlMs) });
    return ok({ msg_code: msgCode });
  }

  function route(op: WecomOp, req: IncomingMessage, url: URL, raw: Buffer): Answer {
    const ip = ipOf(req);
    if (op === 'gettoken') {
      const corp = url.searchParams.get('corpid');
      const secret = url.searchParams.get('corpsecret');
      if (!corp) return fail(41002, ip, 'corpid missing');
      if (corp !== corpId) return fail(40013, ip);
      if (!secret) return fail(41004, ip, 'corpsecret missing');
      const app = [...apps.values()].find((x) => x.secret === secret);
      if (!app) return fail(40001, ip);
      if (settings.gettokenChecksIp && settings.trustedIps && !settings.trustedIps.includes(ip)) return fail(60020, ip);
      const queued = injected.get(op);
      if (queued?.length) return fail(queued.shift() as number, ip);
      const existing = current.get(app.agentId);
      const rec = existing ? tokens.get(existing) : undefined;
      if (existing && rec && !rec.revoked && rec.expiresAt > now()) return ok({ access_token: existing, expires_in: Math.max(1, Math.round((rec.expiresAt - now()) / 1000)) });
      const token = randomBytes(96).toString('base64url'); // WeCom asks for 512 bytes of room; real tokens are shorter
      tokens.set(token, { agentId: app.agentId, expiresAt: now() + settings.tokenTtlS * 1000, revoked: false });
      current.set(app.agentId, token);
      sim.issued.push(token);
      return ok({ access_token: token, expires_in: settings.tokenTtlS });
    }
    const token = url.searchParams.get('access_token');
    if (!token) return fail(41001, ip);
    const rec = tokens.get(token);
    if (!rec || rec.revoked) return fail(40014, ip);
    if (rec.expiresAt <= now()) return fail(42001, ip);
    if (settings.trustedIps && !settings.trustedIps.includes(ip)) return fail(60020, ip);
    const queued = injected.get(op);
    if (queued?.length) return fail(queued.shift() as number, ip);
    if (op.startsWith('kf/') && rec.agentId !== kfAgentId) return fail(48002, ip, 'api forbidden: the app may not call the customer-service API');
    if (op === 'getcallbackip') return ok({ ip_list: ['127.0.0.1'] });
    if (op === 'media/upload') return handleUpload(url, raw, String(req.headers['content-type'] ?? ''), ip);
    if (op === 'media/get') return handleMediaGet(url, ip);
    let body: Record<string, unknown>;
    try {
      const parsed = JSON.parse(raw.toString('utf8') || '{}') as unknown;
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return fail(40058, ip, 'body is not a JSON object');
      body = parsed as Record<string, unknown>;
    } catch {
      return fail(40058, ip, 'body is not JSON');
    }
    switch (op) {
      case 'message/send':
        return handleMessageSend(rec.agentId, body, ip);
      case 'kf/sync_msg':
        return handleSync(body, ip);
      case 'kf/send_msg':
        return handleKfSend(body, ip);
      case 'kf/send_msg_on_event':
        return handleOnEvent(body, ip);
      case 'kf/service_state/get':
      case 'kf/service_state/trans':
        return handleState(op, body, ip);
      case 'kf/add_contact_way': {
        const a = kfAccountOf(body, ip);
        if (!('index' in a)) return a;
        const scene = body['scene'] === undefined ? '' : String(body['scene']);
        if (!/^[0-9a-zA-Z_-]{0,32}$/.test(scene)) return fail(40058, ip, 'invalid scene');
        return ok({ url: `https://work.weixin.qq.com/kfid/${a.openKfid}${scene ? `?enc_scene=${scene}` : ''}` });
      }
    }
  }

  function write(res: ServerResponse, a: Answer): void {
    if (a.bytes) {
      res.writeHead(200, a.bytes.headers);
      res.end(a.bytes.data);
      return;
    }
    const text = JSON.stringify(a.json ?? {});
    res.writeHead(a.status ?? 200, { 'Content-Type': 'application/json; charset=UTF-8', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://sim');
      const raw = await readRaw(req, 32 * 1024 * 1024);
      if (raw === null) return write(res, { status: 413, json: { errcode: 40006, errmsg: 'body too large' } });
      const pic = /^\/sim\/pic\/([\w-]+)$/.exec(url.pathname);
      if (pic && req.method === 'GET') {
        const m = sim.media.get(pic[1] as string);
        if (!m) return write(res, { status: 404, json: {} });
        return write(res, { bytes: { data: m.bytes, headers: { 'Content-Type': m.contentType, 'Content-Length': m.bytes.length } } });
      }
      const op = OPS.find((o) => url.pathname === `/cgi-bin/${o}`);
      const method = op === 'gettoken' || op === 'getcallbackip' || op === 'media/get' ? 'GET' : 'POST';
      if (!op || req.method !== method) return write(res, { status: 404, json: { errcode: 404, errmsg: 'no such API in the simulator' } });
      const answer = route(op, req, url, raw);
      const errcode = Number(answer.json?.['errcode'] ?? 0);
      const rec = tokens.get(url.searchParams.get('access_token') ?? '');
      sim.calls.push({ op, at: now(), ip: ipOf(req), errcode, ...(rec ? { agentId: rec.agentId } : {}) });
      write(res, answer);
    })().catch((err: unknown) => {
      if (!res.headersSent) write(res, { status: 500, json: { errcode: -1, errmsg: String(err) } });
    });
  });
  baseUrl = `http://127.0.0.1:${await listenLocal(server, opts.port ?? 0)}`;

  const tokenOf = (agentId?: number): TokenRecord | undefined => tokens.get(current.get(agentId ?? firstApp) ?? '');

  return Object.assign(sim, {
    url: baseUrl,
    server,
    sentTo: (user: string, agentId?: number) => sim.sent.filter((m) => m.touser === user && (agentId === undefined || m.agentId === agentId)),
    kfSentTo: (openKfid: string, user: string) => sim.kfSent.filter((m) => m.openKfid === openKfid && m.touser === user),
    inject(op: WecomOp, errcode: number, times = 1) {
      const q = injected.get(op) ?? [];
      for (let i = 0; i < times; i++) q.push(errcode);
      injected.set(op, q);
    },
    expireToken(agentId?: number) {
      const t = tokenOf(agentId);
      if (t) t.expiresAt = now();
    },
    revokeToken(agentId?: number) {
      const t = tokenOf(agentId);
      if (t) t.revoked = true;
    },
    addMedia: (m: { type: MediaRecord['type']; bytes: Buffer; filename?: string; contentType?: string }) => addMedia(m),
    verifyUrl(o: { agentId?: number; badSignature?: boolean } = {}) {
      const agentId = o.agentId ?? firstApp;
      const { app, crypto } = cryptoFor(agentId);
      return handshake(app.callback.url, crypto, now(), settings.handshakeTimeoutMs, o.badSignature ?? false);
    },
    memberSends(user: string, push: AppPush | string, o: { agentId?: number } = {}) {
      const agentId = o.agentId ?? firstApp;
      const p: AppPush = typeof push === 'string' ? { type: 'text', content: push } : push;
      const msgId = p.type === 'event' ? undefined : newMsgId();
      return callback(agentId, appXml(user, agentId, p, msgId), user, msgId);
    },
    redeliver: (callbackId: string) => send(callbackId),
    async customerSends(openKfid: string, user: string, push: KfPush | string, o: { notify?: boolean } = {}) {
      const msgid = customerMessage(openKfid, user, push);
      if (o.notify === false) return { msgid };
      return { msgid, callback: await notifyKf(openKfid) };
    },
    async customerBurst(openKfid: string, items: { user: string; push: KfPush | string }[]) {
      const msgids = items.map((i) => customerMessage(openKfid, i.user, i.push));
      return { msgids, callback: await notifyKf(openKfid) };
    },
    async customerEnters(openKfid: string, user: string, o: { scene?: string; sceneParam?: string; notify?: boolean } = {}) {
      const a = account(openKfid);
      const s = sessionOf(openKfid, user, true) as KfSession;
      if (s.state === 4) s.state = 0;
      s.lastActivityAt = now();
      const quiet = (t: number | undefined) => t === undefined || now() - t > settings.kfWindowMs;
      const welcomeCode = settings.kfWelcomeCodes && quiet(s.lastCustomerAt) && quiet(s.lastWelcomeAt) ? newCode({ openKfid, user, kind: 'welcome', msgtypes: ['text', 'msgmenu'], expiresAt: now() + settings.welcomeCodeTtlMs }) : undefined;
      const event = { event_type: 'enter_session', open_kfid: openKfid, external_userid: user, scene: o.scene ?? '', scene_param: o.sceneParam ?? '', ...(welcomeCode ? { welcome_code: welcomeCode } : {}) };
      const msgid = appendLog(a, { origin: 4, msgtype: 'event', event });
      const callbackResult = o.notify === false ? undefined : await notifyKf(openKfid);
      return { msgid, ...(welcomeCode ? { welcomeCode } : {}), ...(callbackResult ? { callback: callbackResult } : {}) };
    },
    async servicerSends(openKfid: string, user: string, servicerUserid: string, text: string, o: { notify?: boolean } = {}) {
      const msgid = appendLog(account(openKfid), { external_userid: user, origin: 5, servicer_userid: servicerUserid, msgtype: 'text', text: { content: text } });
      if (o.notify === false) return { msgid };
      return { msgid, callback: await notifyKf(openKfid) };
    },
    setServiceState(openKfid: string, user: string, state: KfServiceState, servicerUserid?: string) {
      const s = sessionOf(openKfid, user, true) as KfSession;
      s.state = state;
      s.servicerUserid = state === 3 ? (servicerUserid ?? 'servicer') : '';
    },
    session: (openKfid: string, user: string) => sessionOf(openKfid, user, false),
    notifyKf,
    injectEmptyPage(openKfid: string, count = 1) {
      account(openKfid).emptyPages += count;
    },
    kfLog: (openKfid: string) => [...account(openKfid).log],
    async idle() {
      while (background.size > 0) await Promise.all([...background]);
    },
    async close() {
      while (background.size > 0) await Promise.all([...background]);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}
