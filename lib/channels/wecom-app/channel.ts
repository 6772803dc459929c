/**
 * The WeCom self-built app (自建应用) as a channel (docs/wecom.md, docs/channels.md): members write to
 * the app in WeCom (or the WeChat plugin), WeCom posts each message encrypted to `/wecom` and waits
 * 5 seconds. Every callback is acknowledged with an empty 200 as soon as its message is claimed (one
 * claim per MsgId, however often WeCom re-delivers and on whichever instance), so nothing hangs on the
 * answer; the answer goes out with `message/send` when it is ready, as text cut at 2,048 bytes on
 * grapheme boundaries, or as WeCom markdown (WECOM_MARKDOWN), at most 30 messages a minute per
 * member, which WeCom would otherwise drop without a word; the answer's pictures follow as image
 * messages (lib/channels/wxbiz/pictures.ts). Fixed replies (help, keyword replies, limits) travel in
 * the callback's own answer, encrypted, so they need no API call.
 */
import { SEND_ATTEMPTS, answerMessages } from '../../core/channel';
import type { Channel, ChannelDeps, ChannelKind, HealthItem, WebhookRequest, WebhookResponse } from '../../core/channel';
import type { Content, Decision } from '../../core/bot';
import { conversationKey, parseKey } from '../../core/keys';
import { RequestError, WechatApiError, errorLogFields } from '../../errors';
import type { MessageRecord } from '../../store';
import { markdownToText, withoutImages } from '../../text/markdown';
import { paginate } from '../../text/paging';
import { openCallback, openEcho } from '../wxbiz/callback';
import type { CallbackKeys } from '../wxbiz/callback';
import { aesKeyFrom } from '../wxbiz/crypto';
import { cdata, sealXml } from '../wxbiz/envelope';
import { notePicturesUnsent, pictureFailure, pictureParts, uploadedPicture } from '../wxbiz/pictures';
import { SetupProblems, WecomClient } from '../wxbiz/wecom';
import { parseXmlFields } from '../wxbiz/xml';
import type { WecomAppSettings } from './settings';
import { WECOM_APP_VARIABLES, wecomAppSettings } from './settings';
import { floodGuard } from '../../util/log';
import { callbackFailure, plain } from '../wxbiz/respond';

export const WECOM_APP = 'wecom-app';

/** text.content and markdown.content: at most 2,048 UTF-8 bytes (beyond, WeCom cuts or refuses). */
export const WECOM_TEXT_BYTES = 2048;
/** message/send per app and member: beyond 30 a minute (and 1,000 an hour) WeCom drops messages silently. */
export const PER_MEMBER_PER_MINUTE = 30;
export const PER_MEMBER_PER_HOUR = 1000;
/** How long a send waits for a member's minute window at most, before it gives the rest up. */
const RATE_WAIT_MS = 65_000;

/** Pages are numbered, not "reply 1": they all arrive by themselves. */
const NUMBERING = '({page}/{total})';

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** At most `max` UTF-8 bytes of `text`, cut between grapheme clusters. */
export function fitBytes(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text;
  let out = '';
  let bytes = 0;
  for (const { segment } of graphemes.segment(text)) {
    const n = Buffer.byteLength(segment);
    if (bytes + n > max) break;
    out += segment;
    bytes += n;
  }
  return out;
}


/** A decrypted callback's fields as the bot reads them (docs/wecom.md "Self-built application"). */
export type AppMessage =
  | { kind: 'content'; content: Content; msgId: string; msgType: string }
  | { kind: 'unsupported'; msgId: string }
  | { kind: 'subscribe' | 'unsubscribe' | 'kf-notice' | 'other-event'; event: string; eventKey: string };

/** What a callback's plaintext means. Throws `RequestError` when it is not a member's message. */
export function readAppMessage(f: Record<string, string>): AppMessage & { user: string; sentAt: number; agentId: string } {
  const user = (f['FromUserName'] ?? '').trim();
  const msgType = (f['MsgType'] ?? '').trim();
  const created = (f['CreateTime'] ?? '').trim();
  if (!user || !msgType) throw new RequestError('not_wecom', 'FromUserName or MsgType is missing');
  if (!/^\d{1,12}$/.test(created)) throw new RequestError('not_wecom', 'CreateTime is missing or not a number');
  const head = { user, sentAt: Number(created), agentId: (f['AgentID'] ?? '').trim() };
  const msgId = (f['MsgId'] ?? '').trim();
  const field = (name: string) => (f[name] ?? '').trim();
  switch (msgType) {
    case 'text':
      return { ...head, kind: 'content', msgId, msgType, content: { type: 'text', text: f['Content'] ?? '' } };
    case 'image':
      return { ...head, kind: 'content', msgId, msgType, content: { type: 'image', image: { picUrl: field('PicUrl'), mediaId: field('MediaId') } } };
    case 'voice':
      // WeCom sends no transcript: the voice is downloaded and transcribed, as on the Official Account.
      return { ...head, kind: 'content', msgId, msgType, content: { type: 'voice', media: field('MediaId') ? { id: field('MediaId'), format: field('Format') || 'amr' } : undefined } };
    case 'event': {
      const event = field('Event');
      const lower = event.toLowerCase();
      const kind = lower === 'subscribe' ? 'subscribe' : lower === 'unsubscribe' ? 'unsubscribe' : lower === 'kf_msg_or_event' ? 'kf-notice' : 'other-event';
      return { ...head, kind, event, eventKey: field('EventKey') };
    }
    default:
      return { ...head, kind: 'unsupported', msgId };
  }
}

export function createWecomApp(settings: WecomAppSettings, deps: ChannelDeps): Channel {
  const { config, bot, store, clock, logger, instance } = deps;
  // Lines anyone can cause by sending bad requests: bounded, so a flood cannot flood the log.
  const refusals = floodGuard(logger);
  const keys: CallbackKeys = { token: settings.token, key: aesKeyFrom(settings.aesKey, 'WECOM_AES_KEY'), receiveId: settings.corpId, toleranceS: settings.timestampToleranceS };
  const client = new WecomClient({ apiBase: settings.apiBase, corpId: settings.corpId, secret: settings.secret, secretVariable: 'WECOM_SECRET' }, { store, clock, logger });
  const problems = new SetupProblems({ store, clock, logger, name: deps.name, secret: 'WECOM_SECRET' });
  const keyOf = (userId: string) => conversationKey(WECOM_APP, instance, [userId]);
  const userIdOf = (key: string) => parseKey(key).parts[0] ?? '';
  const label = instance ? `企业微信应用 ${instance}` : '企业微信应用';
  const at = (ms: number) => new Date(ms + config.store.statsUtcOffsetMin * 60_000).toISOString().slice(0, 16).replace('T', ' ');
  let otherAgentWarned = false;

  /**
   * Wait until the member's windows have room for one more message (WeCom drops the excess without
   * an error). False when the hour's 1,000 are used up, or the minute does not free up in time.
   */
  async function admit(userId: string): Promise<boolean> {
    const id = `wecom-app:rate:${settings.corpId}:${settings.agentId}:${userId}`;
    const until = clock.now() + RATE_WAIT_MS;
    for (;;) {
      if (await store.countUnder(`${id}:m`, PER_MEMBER_PER_MINUTE, 60_000, clock.now())) break;
      const full = await store.kvEntry(`${id}:m`, clock.now());
      const wait = (full?.expiresAt ?? clock.now() + 1000) - clock.now() + 50;
      if (clock.now() + wait > until) return false;
      await clock.sleep(Math.max(50, wait));
    }
    // The hour's 1,000 count by the clock's hours (a window that every message extended would never end for a busy member).
    const hour = Math.floor(clock.now() / 3_600_000);
    return store.countUnder(`${id}:h${hour}`, PER_MEMBER_PER_HOUR, 3_600_000, clock.now());
  }

  async function sendOne(userId: string, text: string): Promise<void> {
    const msgtype = settings.markdown ? 'markdown' : 'text';
    await client.call('message/send', { touser: userId, msgtype, agentid: settings.agentId, [msgtype]: { content: text }, safe: 0 });
  }

  /** Send a settled answer, once, whoever calls (the worker on any instance, or the recovery sweep). */
  async function deliver(key: string): Promise<void> {
    const q = await store.message(key);
    if (!q || (q.status !== 'answered' && q.status !== 'failed')) return;
    const took = await store.takeAll(q, WECOM_APP, WECOM_APP, clock.now());
    if (!took) return;
    const userId = userIdOf(q.user);
    const texts = answerMessages(took, config.texts);
    let sent = 0;
    try {
      for (const text of texts) {
        if (!(await admit(userId))) {
          logger.warn('WeCom app: the member’s message rate is used up (30 a minute, 1,000 an hour); the rest of the answer is not sent', { key, sent, of: texts.length });
          await notePicturesUnsent(store, took, deps.name, 'the member’s message rate is used up');
          return;
        }
        await sendOne(userId, text);
        sent++;
      }
      await problems.ok();
      logger.info('WeCom app answer sent', { key, messages: sent });
    } catch (err) {
      const setup = await problems.note(err);
      if (!setup) logger.warn('WeCom app answer could not be sent', { key, sent, ...errorLogFields(err) });
      // WeCom busy or unreachable, or a setup error being fixed: nothing arrived, so the sweep tries again.
      const retry = setup || (err instanceof WechatApiError && (err.errcode === -1 || err.errcode === 45009 || err.errcode === 45033));
      if (retry && sent === 0 && (await store.returnAll(took, WECOM_APP, deps.name, SEND_ATTEMPTS))) {
        logger.info('WeCom app answer back in the outbox for a later try', { key });
        return;
      }
      // Not tried again: its pictures will not follow either.
      await notePicturesUnsent(store, took, deps.name, 'the text could not be sent');
      return;
    }
    await sendPictures(took, userId);
  }

  /**
   * The answer's pictures after its text, each as an image message (docs/wecom.md "Pictures"):
   * uploaded with the app's token (the media_id kept for its 3 days), within the member's 30 a
   * minute like the text, once across instances (Store.claimPart). A picture that cannot go stays
   * named in the text, and its part says why; the text is never affected.
   */
  async function sendPictures(q: MessageRecord, userId: string): Promise<void> {
    const fetchPart = deps.fetchPart;
    if (!fetchPart) return;
    for (const { index } of pictureParts(q)) {
      if (!(await store.claimPart(q._id, index, deps.name))) continue;
      try {
        const mediaId = await uploadedPicture({ store, clock, client, fetchPart, channel: deps.name }, q, index);
        if (!(await admit(userId))) {
          await store.notePart(q._id, index, deps.name, 'named in text (the member’s message rate is used up)');
          logger.warn('WeCom app: the member’s message rate is used up; an answer picture is not sent', { key: q._id, part: index });
          continue;
        }
        await client.call('message/send', { touser: userId, msgtype: 'image', agentid: settings.agentId, image: { media_id: mediaId }, safe: 0 });
        await store.notePart(q._id, index, deps.name, 'image message');
        logger.info('WeCom app answer picture sent', { key: q._id, part: index });
      } catch (err) {
        await store.notePart(q._id, index, deps.name, `named in text (${pictureFailure(err)})`);
        logger.warn('WeCom app answer picture not sent; it stays named in the text', { key: q._id, part: index, ...errorLogFields(err) });
      }
    }
  }

  /** A fixed reply in the callback's own answer (no API call, so it works before the trusted IP is set). */
  function passive(toUser: string, text: string, nonce: string): WebhookResponse {
    const now = clock.now();
    const xml =
      '<xml>' +
      `<ToUserName>${cdata(toUser)}</ToUserName><FromUserName>${cdata(settings.corpId)}</FromUserName>` +
      `<CreateTime>${Math.floor(now / 1000)}</CreateTime><MsgType>${cdata('text')}</MsgType>` +
      `<Content>${cdata(fitBytes(text, WECOM_TEXT_BYTES))}</Content>` +
      '</xml>';
    return { status: 200, contentType: 'application/xml; charset=utf-8', body: sealXml(keys, xml, nonce, now) };
  }

  async function onMessage(f: Record<string, string>, arrival: number): Promise<Decision | undefined> {
    const m = readAppMessage(f);
    if (m.agentId && m.agentId !== String(settings.agentId)) {
      // Another app's callback with the same token and key: answering through this app would reach the wrong chat.
      if (!otherAgentWarned) logger.warn('WeCom app: a callback for another AgentID arrived at this URL; it is ignored (each app needs its own URL: BOTS)', { agentId: m.agentId });
      otherAgentWarned = true;
      return undefined;
    }
    const user = keyOf(m.user);
    switch (m.kind) {
      case 'content':
        return bot.receive({ channel, user, key: `${user}:${m.msgId || `t${m.sentAt}`}`, sentAt: m.sentAt, arrival, msgId: m.msgId, content: m.content, origin: { msgType: m.msgType } });
      case 'unsupported':
        return { reply: config.texts.channelUnsupported };
      case 'subscribe':
        return { reply: config.texts.welcome };
      case 'unsubscribe':
        // Out of the app's scope, or left the corp: their data goes, as on the Official Account.
        await store.forgetUser(user, m.sentAt, clock.now());
        return undefined;
      case 'kf-notice':
        await problems.record(
          'kf_msg_or_event',
          'customer-service notices arrive at this app’s URL: the app allowed to call the customer-service API sends them to its callback URL, which must be /wecom-kf (README "WeCom": give customer service its own app)',
        );
        return undefined;
      case 'other-event':
        return undefined;
    }
  }

  async function post(q: Record<string, string | undefined>, body: string): Promise<WebhookResponse> {
    const arrival = clock.now();
    const outer = parseXmlFields(body, config.server.maxBodyBytes);
    const inner = parseXmlFields(openCallback(keys, q, outer['Encrypt'], arrival), config.server.maxBodyBytes);
    const decision = await onMessage(inner, arrival);
    if (decision && 'reply' in decision) return passive((inner['FromUserName'] ?? '').trim(), decision.reply, q['nonce'] ?? '');
    // An empty 200 is WeCom's acknowledgement: the answer follows with message/send.
    return plain(200, '');
  }

  async function handle(req: WebhookRequest): Promise<WebhookResponse> {
    try {
      if (req.method === 'GET') return plain(200, openEcho(keys, req.query, clock.now()));
      if (req.method === 'POST') return await post(req.query, req.bodies[0] ?? '');
      return plain(405, 'Method Not Allowed');
    } catch (err) {
      return callbackFailure(err, 'WeCom app', { refusals, logger, failed: 'could not handle a WeCom app callback' });
    }
  }

  const channel: Channel = {
    kind: WECOM_APP,
    instance,
    name: deps.name,
    answerer: deps.answerer,
    webhook: handle,
    delivery: 'send',
    // Pictures that are parts go as image messages: the text names them (`[alt]`) instead of their URLs.
    pages: (answer, parts) => {
      const text = parts.length > 0 ? withoutImages(answer, parts.map((p) => p.url)) : answer;
      return paginate(settings.markdown ? text : markdownToText(text), WECOM_TEXT_BYTES, NUMBERING);
    },
    deliver,
    media: (mediaId) => client.media(mediaId, config.media.maxBytes),
    carries: { images: true, files: false },
    help: config.texts.channelHelp,
    async health(): Promise<HealthItem[]> {
      const token: HealthItem = { name: `${label}：access token`, ok: undefined, text: '还没有取过（第一次发送回答时获取）' };
      const until = await client.tokens.validUntil();
      if (until !== undefined) Object.assign(token, { ok: true, text: `有效，到 ${at(until)}` });
      return [await problems.health(label, at), token];
    },
  };
  return channel;
}

export const wecomApp: ChannelKind<WecomAppSettings> = {
  kind: WECOM_APP,
  path: '/wecom',
  variables: WECOM_APP_VARIABLES,
  settings: wecomAppSettings,
  secrets: (s) => [s.secret, s.token, s.aesKey],
  create: createWecomApp,
};
