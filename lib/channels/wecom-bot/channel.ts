/**
 * WeCom's intelligent bot (智能机器人, API mode) as a channel (docs/wecom.md, docs/channels.md).
 * Members write to it one-to-one, or @-mention it in a group (the mention is cut from the question).
 * WeCom posts each message as encrypted JSON (the receiveid is empty) to `/wecom-bot`; every answer
 * travels in an encrypted JSON reply carrying the callback's own nonce.
 *
 * Answers stream. The first reply opens a stream (its id is derived from the message, so a
 * re-delivery gets the same one); WeCom then keeps polling with refresh callbacks, each answered with
 * the whole text so far (WeCom replaces what it shows each time), and `finish` with the final
 * answer. Any instance can answer a poll: the answer so far is kept in the store while it is written
 * (Channel.savesProgress), and the final one is taken once (Store.takeAll).
 *
 * WeCom stops polling 6 minutes after the user's message. An answer not finished 5½ minutes in
 * closes its stream with what is written so far and a note that the rest follows; the answer then
 * goes through the message's `response_url` (one call, within an hour) when it is ready, as it does
 * when WeCom stopped polling for any other reason.
 *
 * The answer's pictures go in the stream's final reply (`msg_item`, JPG or PNG); response_url takes
 * none, so an answer sent that way only names them.
 */
import { createHash } from 'crypto';
import type { Content, Decision } from '../../core/bot';
import { SEND_ATTEMPTS, answerMessages } from '../../core/channel';
import type { Channel, ChannelDeps, ChannelKind, WebhookRequest, WebhookResponse } from '../../core/channel';
import { conversationKey } from '../../core/keys';
import { RequestError, errorLogFields } from '../../errors';
import type { MessageRecord } from '../../store';
import { fill } from '../../text/fill';
import { withoutImages } from '../../text/markdown';
import { quote } from '../../text/quote';
import { call as send, jsonOf } from '../../util/http';
import type { FetchedMedia } from '../../util/media';
import { openCallback, openEcho } from '../wxbiz/callback';
import type { CallbackKeys } from '../wxbiz/callback';
import { aesKeyFrom } from '../wxbiz/crypto';
import { sealJson } from '../wxbiz/envelope';
import { asWecomPicture, notePicturesUnsent, pictureFailure, pictureParts } from '../wxbiz/pictures';
import type { WecomBotSettings } from './settings';
import { WECOM_BOT_VARIABLES, wecomBotSettings } from './settings';
import { floodGuard } from '../../util/log';
import { callbackFailure, plain } from '../wxbiz/respond';

export const WECOM_BOT = 'wecom-bot';

/** stream.content and response_url markdown: at most 20,480 UTF-8 bytes. */
export const BOT_CONTENT_BYTES = 20480;
/** WeCom polls a stream for 6 minutes after the user's message. */
export const STREAM_MS = 6 * 60_000;
/** A stream still being written this long after the message is closed, the rest promised (a margin for WeCom's poll interval and clock). */
export const STREAM_FINISH_MS = 5.5 * 60_000;
/** response_url takes one call within an hour; used at most this long after the message. */
export const RESPONSE_URL_MS = 3_600_000 - 60_000;
/** After WeCom's polls should have ended, an answer no poll took goes through response_url. */
const AFTER_STREAM_MS = 5000;
/** msg_item: at most 10 pictures in the final reply. */
export const MAX_PICTURES = 10;
/** How long the finishing poll waits for the answer's pictures (WeCom waits about 5 s for the answer to a poll). */
export const PICTURES_WITHIN_MS = 3000;
/** How long pictures fetched ahead for a poll on this instance are kept. */
const PREFETCH_KEEP_MS = 60_000;

/** One picture of a final stream reply. */
interface MsgItem {
  msgtype: 'image';
  image: { base64: string; md5: string };
}

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** At most `max` UTF-8 bytes of `text`, cut between grapheme clusters. */
function fitBytes(text: string, max: number): string {
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

/** The stream id of a question: the same for every delivery of its message (polls name it; the store maps it back). */
export const streamIdOf = (questionKey: string) => createHash('sha256').update(questionKey).digest('hex').slice(0, 32);

/** The callback as decrypted (docs/wecom.md "Intelligent bot"). */
interface BotCallback {
  msgid?: string;
  chatid?: string;
  chattype?: string;
  from?: { userid?: string };
  response_url?: string;
  msgtype?: string;
  text?: { content?: string };
  voice?: { content?: string };
  mixed?: { msg_item?: { msgtype?: string; text?: { content?: string } }[] };
  stream?: { id?: string };
  event?: { eventtype?: string };
}

/**
 * The question in a group message, the mention of the bot cut out; undefined when the bot is not
 * mentioned. With the bot's name known, `@name` is cut wherever it is; without it, a leading `@word`.
 */
export function groupQuestion(text: string, name: string | undefined): string | undefined {
  if (name) {
    const at = `@${name}`;
    if (!text.includes(at)) return undefined;
    return text.split(at).join(' ').replace(/\s+/g, ' ').trim();
  }
  const m = /^\s*@\S+\s*/.exec(text);
  return m ? text.slice(m[0].length).trim() : undefined;
}

export function createWecomBot(settings: WecomBotSettings, deps: ChannelDeps): Channel {
  const { config, bot, store, clock, logger, instance } = deps;
  // Lines anyone can cause by sending bad requests: bounded, so a flood cannot flood the log.
  const refusals = floodGuard(logger);
  const texts = config.texts;
  const keys: CallbackKeys = { token: settings.token, key: aesKeyFrom(settings.aesKey, 'WECOM_BOT_AES_KEY'), receiveId: '', toleranceS: settings.timestampToleranceS };
  const streamKey = (id: string) => `wecom-bot:stream:${id}`;
  const closedKey = (id: string) => `wecom-bot:closed:${id}`;
  const timers = new Set<ReturnType<typeof setTimeout>>();

  const json = (plain: Record<string, unknown>, nonce: string): WebhookResponse => ({ status: 200, contentType: 'application/json; charset=utf-8', body: sealJson(keys, JSON.stringify(plain), nonce, clock.now()) });
  const streamReply = (id: string, content: string, finish: boolean, nonce: string, pictures: readonly MsgItem[] = []) =>
    json({ msgtype: 'stream', stream: { id, finish, content: fitBytes(content, BOT_CONTENT_BYTES), ...(finish && pictures.length > 0 ? { msg_item: pictures } : {}) } }, nonce);
  const empty = (): WebhookResponse => ({ status: 200, contentType: 'text/plain; charset=utf-8', body: '' });
  
  /**
   * Pictures being fetched for answers that settled in this process, by question and part: the poll
   * that finishes the stream (most often on this instance) finds them ready. Dropped once used, or
   * after a minute.
   */
  const fetching = new Map<string, Promise<FetchedMedia>>();
  const fetchKey = (key: string, index: number) => `${key}\n${index}`;

  function prefetch(q: MessageRecord): void {
    const fetchPart = deps.fetchPart;
    if (!fetchPart) return;
    for (const { index, part } of pictureParts(q).slice(0, MAX_PICTURES)) {
      const k = fetchKey(q._id, index);
      if (fetching.has(k)) continue;
      const p = fetchPart(q.user, part.url);
      p.catch(() => undefined); // its failure is read (and noted) by the poll that uses it
      fetching.set(k, p);
      const timer = setTimeout(() => {
        timers.delete(timer);
        fetching.delete(k);
      }, PREFETCH_KEEP_MS);
      timer.unref?.();
      timers.add(timer);
    }
  }

  /**
   * The pictures of an answer the stream just took, as the final reply's `msg_item` (docs/wecom.md
   * "Pictures"): JPG or PNG of at most 10 MB, base64 with the md5 of their bytes, at most 10, each
   * once (Store.claimPart: only this reply carries it, never a re-delivery's or a later poll's). A
   * picture not fetched within PICTURES_WITHIN_MS, or not one WeCom shows, stays named in the text.
   */
  async function pictureItems(q: MessageRecord): Promise<MsgItem[]> {
    const fetchPart = deps.fetchPart;
    const parts = pictureParts(q);
    if (!fetchPart || parts.length === 0) return [];
    const claimed: { index: number; url: string }[] = [];
    for (const { index, part } of parts) if (await store.claimPart(q._id, index, deps.name)) claimed.push({ index, url: part.url });
    // WeCom waits for the poll's answer in real time, whatever the protocol clock says.
    const late = new Error('not fetched in time');
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(late), PICTURES_WITHIN_MS);
    });
    deadline.catch(() => undefined);
    const results = await Promise.all(
      claimed.map(async ({ index, url }) => {
        const k = fetchKey(q._id, index);
        const pending = fetching.get(k) ?? fetchPart(q.user, url);
        fetching.delete(k);
        try {
          return { index, f: asWecomPicture(await Promise.race([pending, deadline])) };
        } catch (err) {
          return { index, err };
        }
      }),
    ).finally(() => clearTimeout(timer));
    const items: MsgItem[] = [];
    for (const r of results) {
      let outcome: string;
      if ('f' in r && items.length < MAX_PICTURES) {
        items.push({ msgtype: 'image', image: { base64: r.f.bytes.toString('base64'), md5: createHash('md5').update(r.f.bytes).digest('hex') } });
        outcome = 'image in the final reply';
      } else if ('f' in r) {
        outcome = `named in text (a reply carries at most ${MAX_PICTURES} pictures)`;
      } else {
        outcome = `named in text (${r.err === late ? 'not fetched in time' : pictureFailure(r.err)})`;
        logger.warn('WeCom bot answer picture not sent; it stays named in the text', { key: q._id, part: r.index, ...(r.err === late ? { code: 'late' } : errorLogFields(r.err)) });
      }
      await store.notePart(q._id, r.index, deps.name, outcome);
    }
    return items;
  }

  /** What a stream shows for question `q` now: the text so far, or the final answer (taken once) with its pictures. */
  async function frame(q: MessageRecord | null, id: string): Promise<{ content: string; finish: boolean; pictures?: MsgItem[] }> {
    if (!q) return { content: '', finish: true };
    const now = clock.now();
    if (q.status === 'cleared') return { content: fill(texts.questionCleared, { question: quote(q.question ?? ''), seconds: 0 }), finish: true };
    if (q.status === 'pending') {
      const soFar = q.answer ?? '';
      if (now < q.createdAt + STREAM_FINISH_MS) return { content: soFar, finish: false };
      // WeCom is about to stop asking: close the stream with what there is; the answer follows by response_url.
      await store.kvPut(closedKey(id), '1', q.createdAt + 2 * 3_600_000);
      const note = fill(texts.placeholderPush, { question: quote(q.question ?? ''), seconds: Math.round((now - q.createdAt) / 1000) });
      return { content: soFar ? `${fitBytes(soFar, BOT_CONTENT_BYTES - Buffer.byteLength(note) - 2)}\n\n${note}` : note, finish: true };
    }
    // Settled: the stream takes it, unless response_url already did (then it only closes).
    const took = q.inbox !== undefined ? await store.takeAll(q, WECOM_BOT, 'wecom-stream', now) : null;
    const cur = took ?? q;
    const pictures = took ? await pictureItems(took) : [];
    if (took) logger.info('WeCom bot answer sent', { key: q._id, via: 'stream', pictures: pictures.length });
    return { content: answerMessages(cur, texts)[0] ?? '', finish: true, pictures };
  }

  /** Send a settled answer through response_url, once, when no stream will take it. */
  async function deliver(key: string): Promise<void> {
    const q = await store.message(key);
    if (!q || (q.status !== 'answered' && q.status !== 'failed')) return;
    if (q.inbox === undefined) {
      await store.dropOutbox(key);
      return;
    }
    const now = clock.now();
    const id = streamIdOf(key);
    const closed = (await store.kvGet(closedKey(id), now)) !== undefined;
    const streamEnds = q.createdAt + STREAM_MS + AFTER_STREAM_MS;
    if (!closed && now < streamEnds) {
      // WeCom is still polling: the next poll takes it (its pictures fetched meanwhile). Should the polls have stopped, look again after them.
      prefetch(q);
      const timer = setTimeout(() => {
        timers.delete(timer);
        void deliver(key).catch((err) => logger.warn('WeCom bot: could not deliver', { key, ...errorLogFields(err) }));
      }, streamEnds - now);
      timer.unref?.();
      timers.add(timer);
      return;
    }
    const url = q.replyHandle?.token;
    if (!url || now >= (q.replyHandle?.until ?? 0)) {
      logger.warn('WeCom bot answer too late: its response_url has expired (an hour)', { key });
      await store.dropOutbox(key);
      return;
    }
    const took = await store.takeAll(q, WECOM_BOT, 'wecom-response-url', now);
    if (!took) return;
    // response_url takes markdown or a card, no pictures: they stay named in the text.
    await notePicturesUnsent(store, took, deps.name, 'response_url takes no pictures');
    const content = fitBytes(answerMessages(took, texts)[0] ?? '', BOT_CONTENT_BYTES);
    try {
      const res = await send({ method: 'POST', url, body: { msgtype: 'markdown', markdown: { content } }, timeoutMs: 10_000 });
      const d = jsonOf(res.body) as { errcode?: unknown; errmsg?: unknown } | undefined;
      if (res.status !== 200) throw Object.assign(new Error(`HTTP ${res.status}`), { transient: res.status >= 500 });
      if (d && typeof d.errcode === 'number' && d.errcode !== 0) throw Object.assign(new Error(`response_url refused: ${d.errcode}`), { transient: d.errcode === -1 });
      logger.info('WeCom bot answer sent', { key, via: 'response_url' });
    } catch (err) {
      // The code in the URL is logged by no one: only what went wrong.
      logger.warn('WeCom bot answer could not be sent through response_url', { key, error: err instanceof Error ? err.message.replace(/https?:\S+/g, '<url>') : 'failed' });
      const transient = !(err instanceof Error) || (err as { transient?: boolean }).transient !== false;
      if (transient && (await store.returnAll(took, WECOM_BOT, deps.name, SEND_ATTEMPTS))) logger.info('WeCom bot answer back in the outbox for a later try', { key });
    }
  }

  /** The question a message asks, or why none. */
  function questionOf(c: BotCallback): Content | 'not-for-us' | 'unsupported' {
    const group = c.chattype === 'group';
    const ask = (text: string): Content | 'not-for-us' => {
      if (!group) return { type: 'text', text };
      const q = groupQuestion(text, settings.name);
      return q === undefined ? 'not-for-us' : { type: 'text', text: q };
    };
    switch (c.msgtype) {
      case 'text':
        return ask(c.text?.content ?? '');
      case 'mixed': {
        const parts = (c.mixed?.msg_item ?? []).filter((i) => i.msgtype === 'text').map((i) => i.text?.content ?? '');
        return parts.length > 0 ? ask(parts.join('\n')) : 'unsupported';
      }
      case 'voice':
        // WeCom sends the transcript, not the audio.
        return c.voice?.content ? { type: 'voice', transcript: c.voice.content } : 'unsupported';
      default:
        return 'unsupported';
    }
  }

  async function onMessage(c: BotCallback, nonce: string, arrival: number): Promise<WebhookResponse> {
    if (c.msgtype === 'stream') {
      const id = c.stream?.id ?? '';
      const key = id ? await store.kvGet(streamKey(id), clock.now()) : undefined;
      const f = await frame(key ? await store.message(key) : null, id);
      return streamReply(id, f.content, f.finish, nonce, f.pictures);
    }
    if (c.msgtype === 'event') {
      if (c.event?.eventtype === 'enter_chat') return json({ msgtype: 'text', text: { content: texts.welcome } }, nonce);
      // feedback and card clicks want an empty answer.
      return empty();
    }
    const userid = c.from?.userid ?? '';
    const msgid = c.msgid ?? '';
    if (!userid || !msgid) throw new RequestError('not_wecom', 'a bot callback without from.userid or msgid');
    const group = c.chattype === 'group' && c.chatid;
    const user = conversationKey(WECOM_BOT, instance, group ? ['g', c.chatid as string] : ['u', userid]);
    const key = `${user}:${msgid}`;
    const id = streamIdOf(key);
    const content = questionOf(c);
    if (content === 'not-for-us') return empty();
    if (content === 'unsupported') return streamReply(id, texts.channelUnsupported, true, nonce);
    const responseUrl = typeof c.response_url === 'string' && /^https?:\/\//.test(c.response_url) ? c.response_url : undefined;
    const decision: Decision = await bot.receive({
      channel,
      user,
      key,
      sentAt: Math.floor(arrival / 1000),
      arrival,
      msgId: msgid,
      content,
      origin: { msgType: c.msgtype ?? 'text' },
      replyHandle: responseUrl ? { token: responseUrl, until: arrival + RESPONSE_URL_MS } : undefined,
    });
    if ('reply' in decision) return streamReply(id, decision.reply, true, nonce);
    if (!('queued' in decision)) return empty();
    // Polls name the stream, not the message: remember which question it is (an hour is enough).
    await store.kvPut(streamKey(id), key, arrival + 2 * 3_600_000);
    const f = await frame(await store.message(key), id);
    return streamReply(id, f.content, f.finish, nonce, f.pictures);
  }

  /** The callback's `encrypt`: from the raw body, or on laf from any form of its parsed body. */
  function encryptOf(bodies: readonly string[]): string | undefined {
    for (const b of bodies) {
      try {
        const v = (JSON.parse(b) as { encrypt?: unknown }).encrypt;
        if (typeof v === 'string') return v;
      } catch {
        // the next form
      }
    }
    return undefined;
  }

  async function webhook(req: WebhookRequest): Promise<WebhookResponse> {
    try {
      if (req.method === 'GET') return plain(200, openEcho(keys, req.query, clock.now()));
      if (req.method !== 'POST') return plain(405, 'Method Not Allowed');
      const arrival = clock.now();
      const body = req.bodies[0] ?? '';
      if (Buffer.byteLength(body) > config.server.maxBodyBytes) throw new RequestError('too_large', 'body too large', 413);
      const text = openCallback(keys, req.query, encryptOf(req.bodies), arrival);
      let c: BotCallback;
      try {
        c = JSON.parse(text) as BotCallback;
      } catch {
        throw new RequestError('not_wecom', 'the decrypted callback is not JSON');
      }
      if (!c || typeof c !== 'object') throw new RequestError('not_wecom', 'the decrypted callback is not an object');
      return await onMessage(c, req.query['nonce'] ?? '', arrival);
    } catch (err) {
      return callbackFailure(err, 'WeCom bot', { refusals, logger, failed: 'could not handle a WeCom bot callback' });
    }
  }

  const channel: Channel = {
    kind: WECOM_BOT,
    instance,
    name: deps.name,
    answerer: deps.answerer,
    webhook,
    delivery: 'send',
    // One message of WeCom markdown; an answer over 20,480 bytes is cut and says so. Pictures that
    // are parts go with the final reply: the text names them (`[alt]`) instead of their URLs.
    pages: (answer, parts) => {
      const text = parts.length > 0 ? withoutImages(answer, parts.map((p) => p.url)) : answer;
      if (Buffer.byteLength(text) <= BOT_CONTENT_BYTES) return [text];
      const note = `\n\n${texts.answerCut}`;
      return [fitBytes(text, BOT_CONTENT_BYTES - Buffer.byteLength(note)) + note];
    },
    deliver,
    savesProgress: true,
    carries: { images: true, files: false },
    help: texts.channelHelp,
    stop() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      fetching.clear();
    },
  };
  return channel;
}

export const wecomBot: ChannelKind<WecomBotSettings> = {
  kind: WECOM_BOT,
  path: '/wecom-bot',
  variables: WECOM_BOT_VARIABLES,
  settings: wecomBotSettings,
  secrets: (s) => [s.token, s.aesKey],
  create: createWecomBot,
};
