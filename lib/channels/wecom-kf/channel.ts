/**
 * WeChat customer service (微信客服, run from WeCom) as a channel (docs/wecom.md, docs/channels.md): any
 * WeChat user writes to a customer-service account through a link or QR code. WeCom's callback to
 * `/wecom-kf` only signals; every message of every page is pulled (./sync.ts) and handed to the core,
 * which claims each once by its msgid. Answers go out with `kf/send_msg` within WeCom's rules:
 *
 * - at most 5 messages after each customer message, and only within 48 hours of it (a new customer
 *   message opens a new window). The 5 are counted in the store (five slots per customer message,
 *   each taken once), so instances and concurrent answers never send a sixth. When an answer needs
 *   more than is left, the last allowed message says so: "reply 1" (`pageHint`, or `moreWaiting`
 *   when other answers wait), and `1`, itself a customer message, opens 5 more (Channel.more).
 * - only while the bot may speak: a session a human servicer has taken (state 2 or 3; 95018 when
 *   sending) is left alone: its messages are not asked, and an answer finished meanwhile is kept quiet.
 * - the answer's pictures follow its text as image messages, in the slots the text left.
 * - a customer opening the chat gets the welcome text with the event's single-use welcome code, at
 *   once (it lives 20 s).
 *
 * Several customer-service accounts (open_kfid) share one channel, each with its own cursor.
 */
import { createHash, randomBytes } from 'crypto';
import type { Content, Decision, Inbound } from '../../core/bot';
import { answerMessages } from '../../core/channel';
import type { Channel, ChannelDeps, ChannelKind, HealthItem, WebhookRequest, WebhookResponse } from '../../core/channel';
import { conversationKey, parseKey } from '../../core/keys';
import { RequestError, WechatApiError, errorLogFields } from '../../errors';
import type { MessageRecord } from '../../store';
import { pageCount } from '../../store';
import { fill } from '../../text/fill';
import { markdownToText, withoutImages } from '../../text/markdown';
import { paginate } from '../../text/paging';
import { openCallback, openEcho } from '../wxbiz/callback';
import type { CallbackKeys } from '../wxbiz/callback';
import { aesKeyFrom } from '../wxbiz/crypto';
import { notePicturesUnsent, pictureFailure, pictureParts, uploadedPicture } from '../wxbiz/pictures';
import { SetupProblems, WecomClient } from '../wxbiz/wecom';
import { parseXmlFields } from '../wxbiz/xml';
import type { WecomKfSettings } from './settings';
import { WECOM_KF_VARIABLES, wecomKfSettings } from './settings';
import { KfSync } from './sync';
import type { KfItem } from './sync';
import { floodGuard } from '../../util/log';
import { callbackFailure, plain } from '../wxbiz/respond';

export const WECOM_KF = 'wecom-kf';

/** Text messages: at most 2,048 UTF-8 bytes. */
export const KF_TEXT_BYTES = 2048;
/** Messages allowed after one customer message, and for how long (docs/wecom.md). */
export const KF_PER_CUSTOMER_MESSAGE = 5;
export const KF_WINDOW_MS = 48 * 3_600_000;
/** The window is closed this long before WeCom closes it, for clocks and the way there. */
const WINDOW_MARGIN_MS = 60_000;
/** How long the webhook waits for its pull before answering WeCom (which waits 5 s); the pull goes on after. */
const ANSWER_WITHIN_MS = 3000;
/** Send failures of one page retried by the recovery sweep, in all. */
const SEND_TRIES = 3;
/** A human servicer has the session (2 queued for one, 3 with one): the bot stays quiet. */
const HUMAN_STATES = new Set([2, 3]);
/** kf/send_msg in a state that does not allow it (a human servicer has the session). */
const SESSION_INVALID = 95018;

const NUMBERING = '({page}/{total})';

const SUCCESS: Decision = { success: true };

/** The customer's latest message as the bot last read it: the send window and the 5 messages hang on it. */
interface LastMessage {
  msgid: string;
  /** ms */
  at: number;
}

/** What a customer's message is to the core; undefined for what the bot cannot read. */
export function kfContent(item: KfItem): Content | undefined {
  const body = (name: string) => (item[name] && typeof item[name] === 'object' ? (item[name] as Record<string, unknown>) : {});
  switch (item.msgtype) {
    case 'text':
      return { type: 'text', text: typeof body('text')['content'] === 'string' ? (body('text')['content'] as string) : '' };
    case 'voice': {
      const id = body('voice')['media_id'];
      // sync_msg's voice_format 0: AMR; transcribed like the Official Account's voices.
      return typeof id === 'string' && id ? { type: 'voice', media: { id, format: 'amr' } } : undefined;
    }
    default:
      return undefined;
  }
}

/** The msgid WeCom keeps for a send (≤ 32 of [0-9a-zA-Z_-], unique per account): the same for the same page. */
export const sendMsgid = (what: string) => createHash('sha256').update(what).digest('base64url').slice(0, 32);

export function createWecomKf(settings: WecomKfSettings, deps: ChannelDeps): Channel {
  const { config, bot, store, clock, logger, instance } = deps;
  // Lines anyone can cause by sending bad requests: bounded, so a flood cannot flood the log.
  const refusals = floodGuard(logger);
  const texts = config.texts;
  const keys: CallbackKeys = { token: settings.token, key: aesKeyFrom(settings.aesKey, 'WECOM_AES_KEY'), receiveId: settings.corpId, toleranceS: settings.timestampToleranceS };
  const client = new WecomClient({ apiBase: settings.apiBase, corpId: settings.corpId, secret: settings.secret, secretVariable: 'WECOM_KF_SECRET' }, { store, clock, logger });
  const problems = new SetupProblems({ store, clock, logger, name: deps.name, secret: 'WECOM_KF_SECRET' });
  const keyOf = (openKfid: string, user: string) => conversationKey(WECOM_KF, instance, [openKfid, user]);
  const partsOf = (key: string) => {
    const [openKfid = '', user = ''] = parseKey(key).parts;
    return { openKfid, user };
  };
  const label = instance ? `微信客服 ${instance}` : '微信客服';
  const at = (ms: number) => new Date(ms + config.store.statsUtcOffsetMin * 60_000).toISOString().slice(0, 16).replace('T', ' ');
  const lastKey = (openKfid: string, user: string) => `wecom-kf:last:${settings.corpId}:${openKfid}:${user}`;
  // Room on each page for "reply 1" in place of its number, or "N more answers" after the last.
  const hintRoom = Math.max(
    Buffer.byteLength(fill(texts.pageHint, { page: 9999, total: 9999 })) - Buffer.byteLength('(9999/9999)'),
    Buffer.byteLength('\n\n' + fill(texts.moreWaiting, { count: 99 })),
  );
  const me = randomBytes(6).toString('hex');

  async function lastMessage(openKfid: string, user: string): Promise<LastMessage | undefined> {
    const v = await store.kvGet(lastKey(openKfid, user), clock.now());
    if (v === undefined) return undefined;
    const cut = v.indexOf(':');
    return { at: Number(v.slice(0, cut)), msgid: v.slice(cut + 1) };
  }

  /** A customer message read from the log: the window and the count start again from it (never from an older one). */
  async function noteCustomerMessage(openKfid: string, user: string, item: KfItem): Promise<void> {
    const sent = typeof item.send_time === 'number' ? item.send_time * 1000 : clock.now();
    const prev = await lastMessage(openKfid, user);
    if (prev && prev.at > sent) return;
    await store.kvPut(lastKey(openKfid, user), `${sent}:${item.msgid}`, sent + KF_WINDOW_MS, sent + KF_WINDOW_MS + 86_400_000);
  }

  /**
   * One of the 5 messages allowed after `last` (of the first `room`), taken for `what` (a page, a
   * picture): its number (0–4), or -1 when none is left. Each slot is a lease only one taker gets,
   * however many instances race.
   */
  async function takeSlot(openKfid: string, user: string, last: LastMessage, what: string, room = KF_PER_CUSTOMER_MESSAGE): Promise<number> {
    for (let i = 0; i < room; i++) {
      if (await store.acquireLease(`wecom-kf:slot:${settings.corpId}:${openKfid}:${user}:${last.msgid}:${i}`, what, last.at + KF_WINDOW_MS, clock.now())) return i;
    }
    return -1;
  }

  const releaseSlot = (openKfid: string, user: string, last: LastMessage, slot: number, what: string) =>
    store.releaseLease(`wecom-kf:slot:${settings.corpId}:${openKfid}:${user}:${last.msgid}:${slot}`, what).catch(() => undefined);

  /** The window of the customer's last message is open now. */
  const open = (last: LastMessage | undefined): last is LastMessage => last !== undefined && clock.now() < last.at + KF_WINDOW_MS - WINDOW_MARGIN_MS;

  async function sendText(openKfid: string, user: string, content: string, msgid: string): Promise<void> {
    await client.call('kf/send_msg', { touser: user, open_kfid: openKfid, msgid, msgtype: 'text', text: { content } });
  }

  /** Outside the bot's turn: a human servicer has the session. */
  const humanHasIt = (err: unknown) => err instanceof WechatApiError && err.errcode === SESSION_INVALID;

  /** Answers besides `q` the customer still waits for (being written, or with pages left). */
  async function othersWaiting(q: MessageRecord): Promise<number> {
    const items = await store.inbox(q.user);
    return items.filter((i) => i._id !== q._id && (i.status === 'pending' || (i.pagesDelivered ?? 0) < pageCount(i))).length;
  }

  /** Page `k` of `q` as the last allowed message: "reply 1" when pages are left, else how many answers wait. */
  async function lastAllowed(q: MessageRecord, k: number, text: string): Promise<string> {
    const total = pageCount(q);
    if (k + 1 < total) return text.replace(new RegExp(`\\n\\n\\(${k + 1}/${total}\\)$`), '') + `\n\n${fill(texts.pageHint, { page: k + 1, total })}`;
    const others = await othersWaiting(q);
    return others > 0 ? `${text}\n\n${fill(texts.moreWaiting, { count: others })}` : text;
  }

  /**
   * One customer's sends, one after the other (in this process): slots are taken in the order the
   * messages go out, so the one in the last slot, which says how to get the rest, arrives last.
   */
  const lanes = new Map<string, Promise<unknown>>();
  function inLane<T>(customer: string, job: () => Promise<T>): Promise<T> {
    const run = (lanes.get(customer) ?? Promise.resolve()).then(job, job);
    const tail = run.catch(() => undefined);
    lanes.set(customer, tail);
    void tail.then(() => {
      if (lanes.get(customer) === tail) lanes.delete(customer);
    });
    return run;
  }

  /**
   * Send what is left of a settled answer, page by page, while the window and the count allow.
   * 'done': all of it went; 'held': it waits for `1` (or a new window); 'failed': WeCom refused or failed.
   */
  function sendPages(start: MessageRecord): Promise<'done' | 'held' | 'failed'> {
    return inLane(start.user, () => sendPagesNow(start));
  }

  async function sendPagesNow(start: MessageRecord): Promise<'done' | 'held' | 'failed'> {
    const { openKfid, user } = partsOf(start.user);
    // Read again in the lane: an earlier send may have taken pages of it.
    const fresh = await store.message(start._id);
    if (!fresh || fresh.inbox === undefined || (fresh.status !== 'answered' && fresh.status !== 'failed')) return 'done';
    let q = fresh;
    const last = await lastMessage(openKfid, user);
    if (!open(last)) {
      logger.info('WeCom customer service: 48 hours since the customer’s last message; the answer waits for their next one', { key: q._id });
      await store.dropOutbox(q._id);
      return 'held';
    }
    for (let k = q.pagesDelivered ?? 0; k < pageCount(q); k++) {
      const what = `${q._id}:${k}`;
      const slot = await takeSlot(openKfid, user, last, what);
      if (slot < 0) {
        logger.info('WeCom customer service: 5 messages sent since the customer’s last message; the rest waits for 1', { key: q._id, page: k + 1 });
        await store.dropOutbox(q._id);
        return 'held';
      }
      const took = await store.takePage(q, k, WECOM_KF, WECOM_KF, clock.now());
      if (!took) {
        await releaseSlot(openKfid, user, last, slot, what);
        return 'done';
      }
      q = took;
      let text = answerMessages(q, texts)[k] ?? '';
      if (slot === KF_PER_CUSTOMER_MESSAGE - 1) text = await lastAllowed(q, k, text);
      try {
        await sendText(openKfid, user, text, sendMsgid(`${what}:${last.msgid}`));
        await problems.ok();
      } catch (err) {
        await store.returnPage(q, k, WECOM_KF);
        await releaseSlot(openKfid, user, last, slot, what);
        if (humanHasIt(err)) {
          logger.info('WeCom customer service: a human servicer has the session; the answer is not sent', { key: q._id });
          await store.dropOutbox(q._id);
          return 'failed';
        }
        const setup = await problems.note(err);
        if (!setup) logger.warn('WeCom customer service: could not send', { key: q._id, page: k + 1, ...errorLogFields(err) });
        // Tried again by the recovery sweep (the answer keeps its outbox), a few times in all.
        if (!(await store.countUnder(`wecom-kf:fail:${q._id}`, SEND_TRIES - 1, 86_400_000, clock.now()))) await store.dropOutbox(q._id);
        return 'failed';
      }
    }
    await store.dropOutbox(q._id);
    logger.info('WeCom customer service answer sent', { key: q._id, pages: pageCount(q) });
    await sendPictures(q, openKfid, user, last);
    return 'done';
  }

  /**
   * The answer's pictures once all its text went, each as an image message (docs/wecom.md
   * "Pictures"), uploaded with the customer-service secret's token and sent with kf/send_msg, each in
   * one of the 5 slots the text left. While other answers wait, the last slot stays for text, which
   * says how to get them. A picture with no slot left, or that fails, stays named in the text and
   * its part says why (once across instances: Store.claimPart); the text is never affected.
   */
  async function sendPictures(q: MessageRecord, openKfid: string, user: string, last: LastMessage): Promise<void> {
    const fetchPart = deps.fetchPart;
    if (!fetchPart) return;
    for (const { index } of pictureParts(q)) {
      if (!(await store.claimPart(q._id, index, deps.name))) continue;
      const what = `${q._id}:p${index}`;
      const room = (await othersWaiting(q)) > 0 ? KF_PER_CUSTOMER_MESSAGE - 1 : KF_PER_CUSTOMER_MESSAGE;
      const slot = open(last) ? await takeSlot(openKfid, user, last, what, room) : -1;
      if (slot < 0) {
        await store.notePart(q._id, index, deps.name, 'named in text (no message left of the 5 after the customer’s)');
        logger.info('WeCom customer service: no message left for an answer picture; it stays named in the text', { key: q._id, part: index });
        continue;
      }
      try {
        const mediaId = await uploadedPicture({ store, clock, client, fetchPart, channel: deps.name }, q, index);
        await client.call('kf/send_msg', { touser: user, open_kfid: openKfid, msgid: sendMsgid(`${what}:${last.msgid}`), msgtype: 'image', image: { media_id: mediaId } });
        await store.notePart(q._id, index, deps.name, 'image message');
        logger.info('WeCom customer service answer picture sent', { key: q._id, part: index });
      } catch (err) {
        await releaseSlot(openKfid, user, last, slot, what);
        await store.notePart(q._id, index, deps.name, `named in text (${humanHasIt(err) ? 'a human servicer has the session' : pictureFailure(err)})`);
        if (humanHasIt(err)) return notePicturesUnsent(store, q, deps.name, 'a human servicer has the session');
        if (!(await problems.note(err))) logger.warn('WeCom customer service answer picture not sent; it stays named in the text', { key: q._id, part: index, ...errorLogFields(err) });
      }
    }
  }

  /** Send a settled answer (the worker on any instance, or the recovery sweep). */
  async function deliver(key: string): Promise<void> {
    const q = await store.message(key);
    if (!q || (q.status !== 'answered' && q.status !== 'failed')) return;
    if (q.inbox === undefined) {
      await store.dropOutbox(key);
      return;
    }
    await sendPages(q);
  }

  /** Something happens once per message (a reply, a welcome), whoever reads it and however often. */
  const once = (what: string) => store.acquireLease(`wecom-kf:once:${what}`, me, clock.now() + KF_WINDOW_MS + 86_400_000, clock.now());

  /** A fixed reply (help, keyword replies, limits) to the customer's message `key`: once, within the count. */
  function reply(openKfid: string, user: string, key: string, text: string): Promise<void> {
    return inLane(keyOf(openKfid, user), () => replyNow(openKfid, user, key, text));
  }

  async function replyNow(openKfid: string, user: string, key: string, text: string): Promise<void> {
    if (!(await once(`reply:${key}`))) return;
    const last = await lastMessage(openKfid, user);
    if (!open(last)) return;
    const what = `${key}:reply`;
    const slot = await takeSlot(openKfid, user, last, what);
    if (slot < 0) return;
    try {
      await sendText(openKfid, user, paginate(text, KF_TEXT_BYTES, NUMBERING)[0] ?? text, sendMsgid(what));
    } catch (err) {
      await releaseSlot(openKfid, user, last, slot, what);
      if (!humanHasIt(err) && !(await problems.note(err))) logger.warn('WeCom customer service: could not send a reply', errorLogFields(err));
    }
  }

  /** `1`: what the count held back, as much as the new count allows. */
  async function more(m: Inbound): Promise<Decision> {
    if (!(await once(`more:${m.key}`))) return SUCCESS;
    const items = await store.inbox(m.user);
    const ready = items.filter((q) => (q.status === 'answered' || q.status === 'failed') && (q.pagesDelivered ?? 0) < pageCount(q));
    // Answers still being written come by themselves.
    if (ready.length === 0) return items.length > 0 ? SUCCESS : { reply: texts.nothingPending };
    for (const q of ready) if ((await sendPages(q)) !== 'done') break;
    return SUCCESS;
  }

  /** Session states read during one pull, per customer (one call each). */
  const states = new Map<string, number | undefined>();
  async function humanSession(openKfid: string, user: string): Promise<boolean> {
    const k = `${openKfid}\n${user}`;
    if (!states.has(k)) {
      let state: number | undefined;
      try {
        const r = await client.call('kf/service_state/get', { open_kfid: openKfid, external_userid: user });
        state = typeof r['service_state'] === 'number' ? r['service_state'] : undefined;
      } catch (err) {
        // Not knowing is no reason to stay quiet: a send in the wrong state is refused (95018) anyway.
        if (!(await problems.note(err))) logger.warn('WeCom customer service: could not read the session state', errorLogFields(err));
      }
      states.set(k, state);
    }
    const state = states.get(k);
    return state !== undefined && HUMAN_STATES.has(state);
  }

  async function welcome(item: KfItem, event: Record<string, unknown>): Promise<void> {
    const code = event['welcome_code'];
    if (typeof code !== 'string' || !code || !(await once(`welcome:${item.msgid}`))) return;
    try {
      await client.call('kf/send_msg_on_event', { code, msgid: sendMsgid(`welcome:${item.msgid}`), msgtype: 'text', text: { content: paginate(texts.welcome, KF_TEXT_BYTES, NUMBERING)[0] ?? texts.welcome } });
    } catch (err) {
      if (!(await problems.note(err))) logger.warn('WeCom customer service: could not send the welcome', errorLogFields(err));
    }
  }

  /** One item of the account's log, in order. */
  async function handle(item: KfItem): Promise<void> {
    const openKfid = typeof item.open_kfid === 'string' ? item.open_kfid : '';
    if (item.origin === 4 || item.msgtype === 'event') {
      const event = item['event'] && typeof item['event'] === 'object' ? (item['event'] as Record<string, unknown>) : {};
      if (event['event_type'] === 'enter_session') return welcome(item, event);
      if (event['event_type'] === 'msg_send_fail') logger.warn('WeCom customer service: WeCom did not deliver a message', { failType: event['fail_type'] });
      return;
    }
    // A human servicer's own messages (5), and anything not from a customer, are not questions.
    const user = typeof item.external_userid === 'string' ? item.external_userid : '';
    if (item.origin !== 3 || !openKfid || !user) return;
    await noteCustomerMessage(openKfid, user, item);
    if (await humanSession(openKfid, user)) {
      logger.debug('WeCom customer service: a human servicer has the session; the message is theirs');
      return;
    }
    const key = keyOf(openKfid, user);
    const msgKey = `${key}:${item.msgid}`;
    const content = kfContent(item);
    if (!content) return reply(openKfid, user, msgKey, texts.channelUnsupported);
    const decision = await bot.receive({
      channel,
      user: key,
      key: msgKey,
      sentAt: typeof item.send_time === 'number' ? item.send_time : Math.floor(clock.now() / 1000),
      arrival: clock.now(),
      msgId: item.msgid,
      content,
      origin: { msgType: item.msgtype ?? 'text' },
    });
    if ('reply' in decision) await reply(openKfid, user, msgKey, decision.reply);
  }

  const sync = new KfSync({
    store,
    clock,
    logger,
    corpId: settings.corpId,
    call: (body) => client.call('kf/sync_msg', body),
    handle,
    starting: (openKfid) => {
      for (const k of states.keys()) if (k.startsWith(`${openKfid}\n`)) states.delete(k);
    },
  });

  async function post(q: Record<string, string | undefined>, body: string): Promise<WebhookResponse> {
    const arrival = clock.now();
    const outer = parseXmlFields(body, config.server.maxBodyBytes);
    const f = parseXmlFields(openCallback(keys, q, outer['Encrypt'], arrival), config.server.maxBodyBytes);
    if ((f['Event'] ?? '').trim() !== 'kf_msg_or_event') {
      if ((f['MsgType'] ?? '').trim() !== 'event') {
        await problems.record('app_message', 'members’ messages to an app arrive at /wecom-kf: this URL is for the app that calls the customer-service API; the app members talk to needs /wecom (README "WeCom")');
      }
      return plain(200, '');
    }
    const openKfid = (f['OpenKfId'] ?? '').trim();
    if (!openKfid) throw new RequestError('not_wecom', 'a customer-service notice without OpenKfId');
    const token = (f['Token'] ?? '').trim() || undefined;
    // Claimed before the answer when the pull is quick (a store failure is then a 500 and WeCom
    // calls again); a long pull goes on after WeCom has its answer.
    const pulled = sync.run(openKfid, token).then(
      () => 'ok' as const,
      (err: unknown) => err,
    );
    const first = await Promise.race([pulled, clock.sleep(ANSWER_WITHIN_MS).then(() => 'later' as const)]);
    if (first === 'later') {
      void pulled.then((r) => r !== 'ok' && logger.warn('WeCom customer service: the pull failed', errorLogFields(r)));
      return plain(200, '');
    }
    if (first !== 'ok') {
      if (await problems.note(first)) return plain(200, ''); // calling again cannot help until the setup is fixed
      throw first;
    }
    await problems.ok();
    return plain(200, '');
  }

  async function webhook(req: WebhookRequest): Promise<WebhookResponse> {
    try {
      if (req.method === 'GET') return plain(200, openEcho(keys, req.query, clock.now()));
      if (req.method === 'POST') return await post(req.query, req.bodies[0] ?? '');
      return plain(405, 'Method Not Allowed');
    } catch (err) {
      return callbackFailure(err, 'WeCom customer-service', { refusals, logger, failed: 'could not pull WeCom customer-service messages' });
    }
  }

  const channel: Channel = {
    kind: WECOM_KF,
    instance,
    name: deps.name,
    answerer: deps.answerer,
    webhook,
    delivery: 'send',
    // Pictures that are parts go as image messages: the text names them (`[alt]`) instead of their URLs.
    pages: (answer, parts) => paginate(markdownToText(parts.length > 0 ? withoutImages(answer, parts.map((p) => p.url)) : answer), KF_TEXT_BYTES, NUMBERING, hintRoom),
    deliver,
    more,
    media: (mediaId) => client.media(mediaId, config.media.maxBytes),
    carries: { images: true, files: false },
    help: texts.channelHelp,
    async health(): Promise<HealthItem[]> {
      const token: HealthItem = { name: `${label}：access token`, ok: undefined, text: '还没有取过（第一次拉取消息时获取）' };
      const until = await client.tokens.validUntil();
      if (until !== undefined) Object.assign(token, { ok: true, text: `有效，到 ${at(until)}` });
      return [await problems.health(label, at), token];
    },
  };
  return channel;
}

export const wecomKf: ChannelKind<WecomKfSettings> = {
  kind: WECOM_KF,
  path: '/wecom-kf',
  variables: WECOM_KF_VARIABLES,
  settings: wecomKfSettings,
  secrets: (s) => [s.secret, s.token, s.aesKey],
  create: createWecomKf,
};
