/**
 * A simulator of WeCom's intelligent bot (智能机器人, API mode) on loopback, faithful to docs/wecom.md; never
 * used by the bot itself. It plays WeCom and its members: it signs and encrypts JSON callbacks (receiveid
 * is the empty string) to the bot's URL, reads the encrypted JSON reply, and when the reply opens a stream
 * it polls the URL with stream-refresh callbacks until the bot says `finish` or the deadline (6 minutes
 * from the user's message) passes, recording what the user saw after each poll. It serves the one-shot
 * `response_url` (one call within an hour) for late answers and the AES-encrypted media URLs (5 minutes).
 *
 * Group chats carry a `chatid` and the @-mention stays in the text; images, voice and files come only in
 * single chats; at most 3 messages per user are in flight. Poll interval, deadline and timeouts are
 * settings (the interval is undocumented); protocol time (deadline, response_url and media life, the
 * once-a-day enter_chat) comes from `now`, so a test can pass the deadline without waiting.
 */
import { createHash, randomBytes } from 'crypto';
import { createServer } from 'http';
import type { Server, ServerResponse } from 'http';
import { readRaw } from './dify-sim';
import { listenLocal } from './listen';
import { WecomCrypto, deliver, encryptMedia, handshake, newNonce, randomId, seconds } from './wecom-common';
import type { HandshakeResult } from './wecom-common';
import { WECOM_ERRMSG } from './wecom-sim';

export type { HandshakeResult } from './wecom-common';

export interface WecomBotSimSettings {
  /** How long WeCom waits for an answer to a callback or a poll (undocumented; assumed 5 s). */
  replyTimeoutMs: number;
  /** How long WeCom waits for the URL-verification answer (1 s). */
  handshakeTimeoutMs: number;
  /** Deliveries of a message callback after timeouts or non-200 (undocumented; assumed 3, as for the app). */
  deliveries: number;
  /** Pause between stream-refresh polls (undocumented). */
  pollIntervalMs: number;
  /** Polling stops this long after the user's message (6 minutes). */
  streamDeadlineMs: number;
  /** response_url works once within this long (1 hour). */
  responseUrlTtlMs: number;
  /** Messages per user whose answer is still open; a member cannot send more. */
  maxInFlightPerUser: number;
  /** Reply envelopes need all four fields, the URL's nonce and a timestamp in seconds. Off: `encrypt` alone will do. */
  strictEnvelope: boolean;
  /** Take a plain `success` body as "nothing new" (undocumented; one bridge answers polls so). */
  acceptSuccessBody: boolean;
  /** stream.content and response_url markdown limit in UTF-8 bytes. */
  contentLimitBytes: number;
  /** Media URLs in callbacks work this long (5 minutes). */
  mediaUrlTtlMs: number;
}

export const DEFAULT_BOT_SETTINGS: Readonly<WecomBotSimSettings> = {
  replyTimeoutMs: 5000,
  handshakeTimeoutMs: 1000,
  deliveries: 3,
  pollIntervalMs: 1000,
  streamDeadlineMs: 6 * 60_000,
  responseUrlTtlMs: 3_600_000,
  maxInFlightPerUser: 3,
  strictEnvelope: true,
  acceptSuccessBody: true,
  contentLimitBytes: 20480,
  mediaUrlTtlMs: 5 * 60_000,
};

export interface WecomBotSimOptions extends Partial<WecomBotSimSettings> {
  /** The bot's callback URL. */
  url: string;
  token: string;
  encodingAesKey: string;
  aibotid?: string;
  /** The name members @-mention in groups. */
  botName?: string;
  /** Port on 127.0.0.1 for response_url and media (default: any free port). */
  port?: number;
  /** The protocol clock (ms). */
  now?: () => number;
  /** Told of every frame the user saw (first reply and each poll). */
  onFrame?: (c: BotConversation, f: StreamFrame) => void;
  /** Told of every accepted response_url call. */
  onLateReply?: (r: LateReply) => void;
}

/** What a member sends. A string is text. */
export type BotPush =
  | string
  | { type: 'text'; content: string; quote?: string }
  | { type: 'image'; bytes: Buffer }
  | { type: 'voice'; transcript: string }
  | { type: 'file'; bytes: Buffer }
  | { type: 'mixed'; items: (string | { image: Buffer })[] };

/** What the user saw after the first reply or one poll. */
export interface StreamFrame {
  n: number;
  source: 'reply' | 'poll' | 'duplicate';
  at: number;
  content: string;
  finish: boolean;
  /** msg_item images attached (only with finish). */
  images: number;
  /** Those images, checked (md5 of the bytes, JPG or PNG). */
  pictures?: { md5: string; bytes: Buffer }[];
  /** False when WeCom would refuse it (the user keeps seeing the previous frame). */
  accepted: boolean;
  problem?: string;
}

export interface LateReply {
  msgid: string;
  user: string;
  chatid?: string;
  at: number;
  msgtype: string;
  content?: string;
  body: Record<string, unknown>;
}

export interface BotDelivery {
  n: number;
  outcome: 'answered' | 'timeout' | 'network-error' | 'http-error';
  status?: number;
  detail?: string;
  ms: number;
}

export interface BotConversation {
  msgid: string;
  user: string;
  chatid?: string;
  chattype: 'single' | 'group';
  /** The decrypted callback as sent. */
  callback: Record<string, unknown>;
  responseUrl: string;
  startedAt: number;
  /**
   * pending: waiting for the first answer; streaming: polls go on; finished: the bot said finish;
   * expired: the deadline passed first; no-reply: an empty answer (the bot may use response_url);
   * replied: a non-stream reply; failed: no usable answer; refused: too many messages in flight.
   */
  state: 'pending' | 'streaming' | 'finished' | 'expired' | 'no-reply' | 'replied' | 'failed' | 'refused';
  streamId?: string;
  frames: StreamFrame[];
  polls: number;
  /** What the chat shows for this message now (the last accepted content). */
  shown: string;
  /** The pictures the user saw (the accepted final reply's msg_item; a duplicate's are never shown). */
  images: { md5: string; bytes: Buffer }[];
  feedbackId?: string;
  /** The first decrypted reply. */
  reply?: Record<string, unknown>;
  deliveries: BotDelivery[];
  problems: string[];
  lateReplies: LateReply[];
  /** Resolves when the state is final. */
  done: Promise<BotConversation>;
}

export interface BotEventResult {
  deliveries: BotDelivery[];
  /** The decrypted reply, if the bot answered one. */
  reply?: Record<string, unknown>;
  problem?: string;
}

export interface WecomBotSim {
  /** Base URL of the simulator's own server (response_url, media). */
  url: string;
  server: Server;
  settings: WecomBotSimSettings;
  conversations: BotConversation[];
  lateReplies: LateReply[];
  /** Media ids fetched by the bot. */
  mediaFetches: string[];
  verifyUrl(o?: { badSignature?: boolean }): Promise<HandshakeResult>;
  /** A member writes; resolves when the answer is final (finished, expired, …). */
  send(user: string, push: BotPush, o?: { chatid?: string; mention?: boolean }): Promise<BotConversation>;
  /** The same, without waiting: the conversation as it stands, with `done`. */
  start(user: string, push: BotPush, o?: { chatid?: string; mention?: boolean }): BotConversation;
  /** Deliver a message's callback again (a duplicate) and record the bot's answer as a 'duplicate' frame. */
  redeliver(msgid: string): Promise<BotEventResult>;
  /** enter_chat, at most once per user and day; undefined when already sent today. */
  enterChat(user: string): Promise<BotEventResult | undefined>;
  /** A thumbs up (1), down (2) or cancel (3) on a reply's feedback id; the bot must answer an empty packet. */
  feedback(user: string, feedbackId: string, type: 1 | 2 | 3): Promise<BotEventResult>;
  /** A click on a template card: one attempt, no retry. */
  templateCardEvent(user: string, o: { eventKey: string; taskId: string; cardType?: string }): Promise<BotEventResult>;
  inFlight(user: string): number;
  close(): Promise<void>;
}

type Read = { kind: 'empty' } | { kind: 'bad'; problem: string } | { kind: 'json'; json: Record<string, unknown> };

interface Stored {
  url: string;
  body: string;
  nonce: string;
}

/** China's calendar day of `ms`: enter_chat comes once per day. */
const dayOf = (ms: number) => Math.floor((ms + 8 * 3_600_000) / 86_400_000);

export async function startWecomBotSim(opts: WecomBotSimOptions): Promise<WecomBotSim> {
  const settings: WecomBotSimSettings = { ...DEFAULT_BOT_SETTINGS };
  for (const k of Object.keys(DEFAULT_BOT_SETTINGS) as (keyof WecomBotSimSettings)[]) {
    if (opts[k] !== undefined) (settings as unknown as Record<string, unknown>)[k] = opts[k];
  }
  const now = opts.now ?? Date.now;
  const crypto = new WecomCrypto(opts.token, opts.encodingAesKey, '');
  const aibotid = opts.aibotid ?? 'aibSIMBOT0000000001';
  const botName = opts.botName ?? 'SimBot';
  const stored = new Map<string, Stored>();
  const media = new Map<string, { bytes: Buffer; createdAt: number }>();
  const codes = new Map<string, { conv: BotConversation; expiresAt: number; used: boolean }>();
  const enterDays = new Set<string>();
  const loops = new Set<Promise<unknown>>();
  let closed = false;
  let baseUrl = '';

  const sim = { settings, conversations: [] as BotConversation[], lateReplies: [] as LateReply[], mediaFetches: [] as string[] };

  function mediaUrl(bytes: Buffer): string {
    const id = randomId(24);
    media.set(id, { bytes, createdAt: now() });
    return `${baseUrl}/sim/media/${id}`;
  }

  /** Sign, encrypt and post one JSON callback; `attempts` deliveries on timeout or non-200. */
  async function post(plain: Record<string, unknown>, attempts: number, keep?: string): Promise<{ deliveries: BotDelivery[]; body?: string; nonce: string }> {
    const encrypt = crypto.encrypt(JSON.stringify(plain));
    const nonce = newNonce();
    const url = `${opts.url}${opts.url.includes('?') ? '&' : '?'}${crypto.query(encrypt, seconds(now()), nonce)}`;
    const body = JSON.stringify({ encrypt });
    if (keep) stored.set(keep, { url, body, nonce });
    return send({ url, body, nonce }, attempts);
  }

  async function send(s: Stored, attempts: number): Promise<{ deliveries: BotDelivery[]; body?: string; nonce: string }> {
    const deliveries: BotDelivery[] = [];
    for (let n = 1; n <= attempts; n++) {
      const p = await deliver(s.url, { body: s.body, contentType: 'application/json', timeoutMs: settings.replyTimeoutMs });
      if ('failure' in p) {
        deliveries.push({ n, outcome: p.failure === 'timeout' ? 'timeout' : 'network-error', detail: p.detail, ms: p.ms });
        continue;
      }
      if (p.status !== 200) {
        deliveries.push({ n, outcome: 'http-error', status: p.status, detail: p.body.slice(0, 200), ms: p.ms });
        continue;
      }
      deliveries.push({ n, outcome: 'answered', status: 200, ms: p.ms });
      return { deliveries, body: p.body, nonce: s.nonce };
    }
    return { deliveries, nonce: s.nonce };
  }

  /** The decrypted reply, nothing for an empty (or `success`) body, or why it is unusable. */
  function readReply(body: string, nonce: string): Read {
    if (body === '' || (settings.acceptSuccessBody && body === 'success')) return { kind: 'empty' };
    const out = readEnvelope(body, nonce);
    return typeof out === 'string' ? { kind: 'bad', problem: out } : { kind: 'json', json: out };
  }

  function readEnvelope(body: string, nonce: string): Record<string, unknown> | string {
    let env: Record<string, unknown>;
    try {
      env = JSON.parse(body) as Record<string, unknown>;
    } catch {
      return 'reply is not JSON';
    }
    const encrypt = env['encrypt'];
    if (typeof encrypt !== 'string') return 'reply has no encrypt field';
    const sig = env['msgsignature'];
    const ts = env['timestamp'];
    const rn = env['nonce'];
    if (settings.strictEnvelope) {
      if (typeof sig !== 'string' || ts === undefined || rn === undefined) return 'reply envelope lacks msgsignature, timestamp or nonce';
      if (String(rn) !== nonce) return "reply nonce is not the callback URL's nonce";
      if (!/^\d{9,10}$/.test(String(ts))) return 'reply timestamp is not Unix seconds';
    }
    if (typeof sig === 'string' && !crypto.verify(sig, String(ts ?? ''), String(rn ?? ''), encrypt)) return 'reply msgsignature does not match';
    try {
      const plain = JSON.parse(crypto.decrypt(encrypt)) as unknown;
      if (!plain || typeof plain !== 'object') return 'decrypted reply is not a JSON object';
      return plain as Record<string, unknown>;
    } catch (err) {
      return `reply does not decrypt (receiveid ""): ${(err as Error).message}`;
    }
  }

  /** A stream packet as WeCom would render it. */
  function readStream(reply: Record<string, unknown>, conv: BotConversation, source: StreamFrame['source']): StreamFrame {
    const n = conv.frames.length + 1;
    const base = { n, source, at: now(), images: 0 };
    const stream = reply['stream'] as Record<string, unknown> | undefined;
    const bad = (problem: string): StreamFrame => ({ ...base, content: conv.shown, finish: false, accepted: false, problem });
    if (!stream || typeof stream !== 'object') return bad('stream packet has no stream object');
    const id = typeof stream['id'] === 'string' ? stream['id'] : '';
    if (conv.streamId === undefined) {
      if (!id) return bad('the first stream reply must carry stream.id');
    } else if (id && id !== conv.streamId) return bad(`stream.id ${JSON.stringify(id)} is not ${JSON.stringify(conv.streamId)}`);
    const content = typeof stream['content'] === 'string' ? stream['content'] : '';
    if (Buffer.byteLength(content, 'utf8') > settings.contentLimitBytes) return bad(`stream.content over ${settings.contentLimitBytes} bytes`);
    const finish = stream['finish'] === true;
    const items = stream['msg_item'];
    const images: { md5: string; bytes: Buffer }[] = [];
    if (items !== undefined) {
      if (!finish) return bad('msg_item before finish');
      if (!Array.isArray(items) || items.length > 10) return bad('msg_item must be a list of at most 10');
      for (const it of items as Record<string, unknown>[]) {
        const img = it?.['image'] as Record<string, unknown> | undefined;
        if (it?.['msgtype'] !== 'image' || typeof img?.['base64'] !== 'string' || typeof img['md5'] !== 'string') return bad('msg_item entries must be images with base64 and md5');
        const bytes = Buffer.from(img['base64'], 'base64');
        const md5 = createHash('md5').update(bytes).digest('hex');
        if (md5 !== img['md5'].toLowerCase()) return bad('msg_item image md5 does not match its bytes');
        if (bytes.length > 10 * 1024 * 1024) return bad('msg_item image over 10 MB');
        const png = bytes.subarray(0, 8).equals(Buffer.from('89504e470d0a1a0a', 'hex'));
        const jpg = bytes[0] === 0xff && bytes[1] === 0xd8;
        if (!png && !jpg) return bad('msg_item image is neither JPG nor PNG');
        images.push({ md5, bytes });
      }
    }
    const fb = stream['feedback'] as Record<string, unknown> | undefined;
    if (fb !== undefined && (typeof fb?.['id'] !== 'string' || Buffer.byteLength(fb['id']) > 256)) return bad('feedback.id must be a string of at most 256 bytes');
    if (conv.streamId === undefined) conv.streamId = id;
    if (typeof fb?.['id'] === 'string') conv.feedbackId = fb['id'];
    return { ...base, content, finish, images: images.length, ...(images.length > 0 ? { pictures: images } : {}), accepted: true };
  }

  function record(conv: BotConversation, f: StreamFrame): void {
    conv.frames.push(f);
    if (f.problem) conv.problems.push(f.problem);
    if (f.accepted) {
      conv.shown = f.content;
      conv.images.push(...(f.pictures ?? []));
    }
    opts.onFrame?.(conv, f);
  }

  async function poll(conv: BotConversation): Promise<void> {
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, settings.pollIntervalMs));
      if (closed) return;
      if (now() - conv.startedAt >= settings.streamDeadlineMs) {
        conv.state = 'expired';
        return;
      }
      conv.polls++;
      const refresh = { msgid: randomId(32), aibotid, ...(conv.chatid ? { chatid: conv.chatid } : {}), chattype: conv.chattype, from: { userid: conv.user }, msgtype: 'stream', stream: { id: conv.streamId } };
      const r = await post(refresh, 1);
      if (r.body === undefined) {
        conv.problems.push(`poll ${conv.polls}: ${r.deliveries[0]?.outcome ?? 'no answer'}`);
        continue;
      }
      const read = readReply(r.body, r.nonce);
      if (read.kind === 'empty') continue;
      if (read.kind === 'bad') {
        record(conv, { n: conv.frames.length + 1, source: 'poll', at: now(), content: conv.shown, finish: false, images: 0, accepted: false, problem: read.problem });
        continue;
      }
      const reply = read.json;
      const f = reply['msgtype'] === 'stream' || reply['msgtype'] === 'stream_with_template_card' ? readStream(reply, conv, 'poll') : { n: conv.frames.length + 1, source: 'poll' as const, at: now(), content: conv.shown, finish: false, images: 0, accepted: false, problem: `poll answered msgtype ${JSON.stringify(reply['msgtype'])}` };
      record(conv, f);
      if (f.accepted && f.finish) {
        conv.state = 'finished';
        return;
      }
    }
  }

  function callbackBody(conv: BotConversation, push: BotPush, mention: boolean): Record<string, unknown> {
    const p = typeof push === 'string' ? { type: 'text' as const, content: push } : push;
    const at = conv.chattype === 'group' && mention ? `@${botName} ` : '';
    switch (p.type) {
      case 'text':
        return { msgtype: 'text', text: { content: `${at}${p.content}` }, ...(p.quote !== undefined ? { quote: { msgtype: 'text', text: { content: p.quote } } } : {}) };
      case 'image':
        return { msgtype: 'image', image: { url: mediaUrl(p.bytes) } };
      case 'voice':
        return { msgtype: 'voice', voice: { content: p.transcript } };
      case 'file':
        return { msgtype: 'file', file: { url: mediaUrl(p.bytes) } };
      case 'mixed':
        return {
          msgtype: 'mixed',
          mixed: { msg_item: p.items.map((it, i) => (typeof it === 'string' ? { msgtype: 'text', text: { content: i === 0 ? `${at}${it}` : it } } : { msgtype: 'image', image: { url: mediaUrl(it.image) } })) },
        };
    }
  }

  async function run(conv: BotConversation): Promise<BotConversation> {
    const r = await post(conv.callback, settings.deliveries, conv.msgid);
    conv.deliveries.push(...r.deliveries);
    if (r.body === undefined) {
      conv.state = 'failed';
      conv.problems.push('no HTTP 200 answer to the callback');
      return conv;
    }
    const read = readReply(r.body, r.nonce);
    if (read.kind === 'empty') {
      conv.state = 'no-reply';
      return conv;
    }
    if (read.kind === 'bad') {
      conv.state = 'failed';
      conv.problems.push(read.problem);
      return conv;
    }
    const reply = read.json;
    conv.reply = reply;
    if (reply['msgtype'] !== 'stream' && reply['msgtype'] !== 'stream_with_template_card') {
      if (reply['msgtype'] === 'template_card' || reply['msgtype'] === 'text' || reply['msgtype'] === 'markdown') {
        conv.state = 'replied';
        return conv;
      }
      conv.state = 'failed';
      conv.problems.push(`reply msgtype ${JSON.stringify(reply['msgtype'])} is not a bot reply`);
      return conv;
    }
    const f = readStream(reply, conv, 'reply');
    record(conv, f);
    if (!f.accepted && conv.streamId === undefined) {
      conv.state = 'failed';
      return conv;
    }
    if (f.accepted && f.finish) {
      conv.state = 'finished';
      return conv;
    }
    conv.state = 'streaming';
    await poll(conv);
    return conv;
  }

  function start(user: string, push: BotPush, o: { chatid?: string; mention?: boolean } = {}): BotConversation {
    const chattype = o.chatid ? 'group' : 'single';
    const kind = typeof push === 'string' ? 'text' : push.type;
    if (chattype === 'group' && (kind === 'image' || kind === 'voice' || kind === 'file')) throw new Error(`wecom-bot-sim: ${kind} messages come only in single chats`);
    const msgid = randomId(32);
    const code = randomBytes(24).toString('base64url');
    const responseUrl = `${baseUrl}/cgi-bin/aibot/response?response_code=${code}`;
    const conv: BotConversation = {
      msgid,
      user,
      ...(o.chatid ? { chatid: o.chatid } : {}),
      chattype,
      callback: {},
      responseUrl,
      startedAt: now(),
      state: 'pending',
      frames: [],
      polls: 0,
      shown: '',
      images: [],
      deliveries: [],
      problems: [],
      lateReplies: [],
      done: undefined as unknown as Promise<BotConversation>,
    };
    if (inFlight(user) >= settings.maxInFlightPerUser) {
      conv.state = 'refused';
      conv.problems.push(`${settings.maxInFlightPerUser} messages of this user are still in flight`);
      conv.done = Promise.resolve(conv);
      sim.conversations.push(conv);
      return conv;
    }
    conv.callback = { msgid, aibotid, ...(o.chatid ? { chatid: o.chatid } : {}), chattype, from: { userid: user }, response_url: responseUrl, ...callbackBody(conv, push, o.mention ?? true) };
    codes.set(code, { conv, expiresAt: now() + settings.responseUrlTtlMs, used: false });
    sim.conversations.push(conv);
    const done = run(conv).catch((err: unknown) => {
      conv.state = 'failed';
      conv.problems.push(String(err));
      return conv;
    });
    const tracked = done.finally(() => loops.delete(tracked));
    loops.add(tracked);
    conv.done = done;
    return conv;
  }

  function inFlight(user: string): number {
    return sim.conversations.filter((c) => c.user === user && (c.state === 'pending' || c.state === 'streaming')).length;
  }

  async function event(user: string, ev: Record<string, unknown>, attempts: number): Promise<BotEventResult> {
    const plain = { msgid: randomId(32), create_time: Math.floor(now() / 1000), aibotid, chattype: 'single', from: { userid: user }, msgtype: 'event', event: ev };
    const r = await post(plain, attempts);
    if (r.body === undefined) return { deliveries: r.deliveries, problem: 'no HTTP 200 answer' };
    const read = readReply(r.body, r.nonce);
    if (read.kind === 'empty') return { deliveries: r.deliveries };
    if (read.kind === 'bad') return { deliveries: r.deliveries, problem: read.problem };
    return { deliveries: r.deliveries, reply: read.json };
  }

  function answer(res: ServerResponse, status: number, body: Record<string, unknown>): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  const fail = (code: number, detail?: string) => ({ errcode: code, errmsg: `${detail ?? WECOM_ERRMSG[code] ?? 'error'}, more info at https://open.work.weixin.qq.com/devtool/query?e=${code}` });

  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://sim');
      const raw = await readRaw(req, 1024 * 1024);
      const m = /^\/sim\/media\/([\w-]+)$/.exec(url.pathname);
      if (m && req.method === 'GET') {
        const file = media.get(m[1] as string);
        if (!file || now() - file.createdAt > settings.mediaUrlTtlMs) return answer(res, 404, { error: 'expired or unknown' });
        sim.mediaFetches.push(m[1] as string);
        const data = encryptMedia(crypto.key, file.bytes);
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length });
        res.end(data);
        return;
      }
      if (url.pathname !== '/cgi-bin/aibot/response' || req.method !== 'POST') return answer(res, 404, { errcode: 404, errmsg: 'no such API in the simulator' });
      const c = codes.get(url.searchParams.get('response_code') ?? '');
      if (!c) return answer(res, 200, fail(40058, 'invalid response_code'));
      if (c.used) return answer(res, 200, fail(40058, 'response_code already used'));
      if (now() >= c.expiresAt) return answer(res, 200, fail(40058, 'response_code expired'));
      let body: Record<string, unknown>;
      try {
        body = JSON.parse((raw ?? Buffer.alloc(0)).toString('utf8')) as Record<string, unknown>;
        if (!body || typeof body !== 'object') throw new Error('not an object');
      } catch {
        return answer(res, 200, fail(40058, 'body is not a JSON object'));
      }
      const msgtype = body['msgtype'];
      let content: string | undefined;
      if (msgtype === 'markdown') {
        const md = body['markdown'] as Record<string, unknown> | undefined;
        if (typeof md?.['content'] !== 'string' || md['content'] === '') return answer(res, 200, fail(44004, 'markdown content is empty'));
        if (Buffer.byteLength(md['content'], 'utf8') > settings.contentLimitBytes) return answer(res, 200, fail(45002));
        content = md['content'];
      } else if (msgtype === 'template_card') {
        if (c.conv.chattype === 'group') return answer(res, 200, fail(40058, 'template_card through response_url only in single chats'));
      } else {
        return answer(res, 200, fail(40008));
      }
      c.used = true;
      const late: LateReply = { msgid: c.conv.msgid, user: c.conv.user, ...(c.conv.chatid ? { chatid: c.conv.chatid } : {}), at: now(), msgtype, ...(content !== undefined ? { content } : {}), body };
      c.conv.lateReplies.push(late);
      sim.lateReplies.push(late);
      opts.onLateReply?.(late);
      answer(res, 200, { errcode: 0, errmsg: 'ok' });
    })().catch((err: unknown) => {
      if (!res.headersSent) answer(res, 500, { errcode: -1, errmsg: String(err) });
    });
  });
  baseUrl = `http://127.0.0.1:${await listenLocal(server, opts.port ?? 0)}`;

  return Object.assign(sim, {
    url: baseUrl,
    server,
    verifyUrl: (o: { badSignature?: boolean } = {}) => handshake(opts.url, crypto, now(), settings.handshakeTimeoutMs, o.badSignature ?? false),
    start,
    send: (user: string, push: BotPush, o: { chatid?: string; mention?: boolean } = {}) => start(user, push, o).done,
    async redeliver(msgid: string): Promise<BotEventResult> {
      const s = stored.get(msgid);
      const conv = sim.conversations.find((c) => c.msgid === msgid);
      if (!s || !conv) throw new Error(`wecom-bot-sim: no message ${msgid}`);
      const r = await send(s, 1);
      if (r.body === undefined) return { deliveries: r.deliveries, problem: 'no HTTP 200 answer' };
      const read = readReply(r.body, r.nonce);
      if (read.kind === 'empty') return { deliveries: r.deliveries };
      if (read.kind === 'bad') return { deliveries: r.deliveries, problem: read.problem };
      const reply = read.json;
      if (reply['msgtype'] === 'stream') {
        // A duplicate's answer is recorded, not shown: WeCom already has the first one.
        const f = readStream(reply, conv, 'duplicate');
        conv.frames.push({ ...f, accepted: false });
      }
      return { deliveries: r.deliveries, reply };
    },
    async enterChat(user: string) {
      const key = `${user}\n${dayOf(now())}`;
      if (enterDays.has(key)) return undefined;
      enterDays.add(key);
      return event(user, { eventtype: 'enter_chat' }, settings.deliveries);
    },
    async feedback(user: string, feedbackId: string, type: 1 | 2 | 3) {
      const r = await event(user, { eventtype: 'feedback_event', feedback_event: { id: feedbackId, type } }, settings.deliveries);
      return r.reply ? { ...r, problem: 'a feedback event must be answered with an empty packet' } : r;
    },
    templateCardEvent: (user: string, o: { eventKey: string; taskId: string; cardType?: string }) =>
      event(user, { eventtype: 'template_card_event', template_card_event: { card_type: o.cardType ?? 'button_interaction', event_key: o.eventKey, task_id: o.taskId } }, 1),
    inFlight,
    async close() {
      closed = true;
      while (loops.size > 0) await Promise.all([...loops]);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}
