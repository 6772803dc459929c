/**
 * The LINE channel (docs/channels.md): POST /line verified, each event turned into the bot's
 * message, the webhook answered at once; answers go back with the event's reply token while it is
 * valid, else with the push API. Split at LINE's 5,000-unit text limit, 5 messages per call.
 */
import { SEND_ATTEMPTS, answerMessages, verifiedBody } from '../../core/channel';
import type { Channel, ChannelDeps, ChannelKind, WebhookRequest, WebhookResponse } from '../../core/channel';
import { conversationKey, parseKey } from '../../core/keys';
import { RequestError, errorLogFields } from '../../errors';
import type { MessageRecord } from '../../store';
import { markdownToText, withoutImages } from '../../text/markdown';
import { splitByLength } from '../../text/paging';
import type { LineApi, LineMessage } from './api';
import { LINE_MESSAGES_PER_CALL, LINE_TEXT_MAX, LineApiError, createLineApi } from './api';
import type { LineSettings } from './settings';
import { LINE_VARIABLES, lineSettings } from './settings';
import type { LineEvent } from './webhook';
import { parseLineWebhook, verifyLineSignature } from './webhook';
import { floodGuard } from '../../util/log';

/** A reply token is used only this long after the event arrived (LINE: about a minute; network delay eats into it). */
export const REPLY_TOKEN_MS = 50_000;

/** The push target of a conversation key: the user, group or room id. */
export function lineTarget(key: string): string {
  const { parts } = parseKey(key);
  return parts[parts.length - 1] ?? '';
}

const json = (status: number, body: unknown): WebhookResponse => ({ status, contentType: 'application/json; charset=utf-8', body: JSON.stringify(body) });

export function createLineChannel(settings: LineSettings, deps: ChannelDeps, api: LineApi = createLineApi({ apiBase: settings.apiBase, accessToken: settings.accessToken })): Channel {
  const { config, bot, store, clock, logger, instance } = deps;
  // Lines anyone can cause by sending bad requests: bounded, so a flood cannot flood the log.
  const refusals = floodGuard(logger);
  const secret = settings.channelSecret;
  const keyOf = (parts: readonly string[]) => conversationKey('line', instance, parts);
  let quotaWarned = false;

  /**
   * Send `texts` with the reply token when given and accepted, the rest (or all) with push.
   * `progress.sent` counts the calls that went through, so a caller knows whether anything arrived.
   */
  async function send(to: string, replyToken: string | undefined, texts: readonly LineMessage[], progress = { sent: 0 }): Promise<'line-reply' | 'line-push'> {
    let rest = texts;
    let via: 'line-reply' | 'line-push' = 'line-push';
    if (replyToken) {
      try {
        await api.reply(replyToken, rest.slice(0, LINE_MESSAGES_PER_CALL));
        progress.sent++;
        rest = rest.slice(LINE_MESSAGES_PER_CALL);
        via = 'line-reply';
      } catch (err) {
        // Expired or used: push instead (nothing was sent).
        if (!(err instanceof LineApiError && err.status === 400)) throw err;
        logger.info('LINE reply token no longer valid; pushing instead');
      }
    }
    for (let i = 0; i < rest.length; i += LINE_MESSAGES_PER_CALL) {
      await api.push(to, rest.slice(i, i + LINE_MESSAGES_PER_CALL));
      progress.sent++;
    }
    return via;
  }

  const report = (err: unknown, what: string) => {
    if (err instanceof LineApiError && err.quota) {
      // Retrying cannot help until the quota resets: say it once, loudly, and move on.
      if (!quotaWarned) logger.error('LINE monthly message quota used up: answers past the reply token cannot be pushed until it resets (LINE Official Account Manager → plan)');
      quotaWarned = true;
      return;
    }
    logger.warn(what, errorLogFields(err));
  };

  /** An answer's pictures as image messages, when the answer page gives them a public https URL. */
  async function pictureMessages(q: MessageRecord): Promise<{ index: number; message: LineMessage }[]> {
    const links = deps.links;
    if (!links || !config.page.publicUrl?.startsWith('https://') || q.status !== 'answered') return [];
    const out: { index: number; message: LineMessage }[] = [];
    for (const [index, part] of (q.parts ?? []).entries()) {
      if (part.kind !== 'image') continue;
      const url = await links.mediaUrl(q._id, index);
      out.push({ index, message: { image: url, preview: url } });
    }
    return out;
  }

  /** Deliver a settled question's answer, once (whoever calls: the worker's hook on any instance). */
  async function deliver(key: string): Promise<void> {
    const q = await store.message(key);
    if (!q || (q.status !== 'answered' && q.status !== 'failed')) return;
    const now = clock.now();
    const token = q.replyHandle && now < q.replyHandle.until ? q.replyHandle.token : undefined;
    const took = await store.takeAll(q, 'line', token ? 'line-reply' : 'line-push', now);
    if (!took) return;
    // The answer's pictures follow its text as image messages, which LINE fetches from the answer
    // page's https URL (docs/rich-answers.md); without one they stay named in the text.
    const pictures = await pictureMessages(took);
    const texts: LineMessage[] = [...answerMessages(took, config.texts), ...pictures.map((p) => p.message)];
    const progress = { sent: 0 };
    try {
      const via = await send(lineTarget(q.user), token, texts, progress);
      for (const p of pictures) await store.notePart(key, p.index, deps.name, 'image message');
      logger.info('LINE answer sent', { key, via, messages: texts.length });
    } catch (err) {
      report(err, 'LINE answer could not be sent');
      // LINE unreachable or failing (not a refusal): nothing arrived, so the sweep tries again later.
      const transient = err instanceof LineApiError && (err.status === 0 || err.status >= 500);
      if (transient && progress.sent === 0 && (await store.returnAll(took, 'line', deps.name, SEND_ATTEMPTS))) logger.info('LINE answer back in the outbox for a later try', { key });
    }
  }

  async function onEvent(e: LineEvent, arrival: number): Promise<void> {
    if (e.kind === 'ignored') return;
    const { source } = e;
    const replyNow = (text: string) => {
      const token = 'replyToken' in e ? e.replyToken : undefined;
      void send(source.to, token, [text]).catch((err) => report(err, 'LINE reply failed'));
    };
    switch (e.kind) {
      case 'follow':
        return replyNow(config.texts.welcome);
      case 'unfollow':
        // The user blocked the bot: their data goes (as on WeChat's unsubscribe).
        if (source.type === 'user') await store.forgetUser(keyOf(source.parts), Math.floor(e.at / 1000), clock.now());
        return;
      case 'other-message':
        if (source.type === 'user') replyNow(config.texts.channelUnsupported);
        return;
      case 'text': {
        // In a group or room, only a message that mentions the bot is for it.
        if (source.type !== 'user' && !e.mentionsBot) return;
        const user = keyOf(source.parts);
        const decision = await bot.receive({
          channel,
          user,
          key: `${user}:${e.id}`,
          sentAt: Math.floor(e.at / 1000),
          arrival,
          content: { type: 'text', text: e.text },
          replyHandle: e.replyToken ? { token: e.replyToken, until: arrival + REPLY_TOKEN_MS } : undefined,
        });
        if ('reply' in decision) return replyNow(decision.reply);
        if ('queued' in decision && decision.first && source.type === 'user' && source.userId) {
          // The loading animation while the answer is written (cosmetic; 1:1 chats only).
          void api.loading(source.userId, 60).catch((err) => logger.debug('LINE loading animation failed', errorLogFields(err)));
        }
        return;
      }
    }
  }

  async function handle(req: WebhookRequest): Promise<WebhookResponse> {
    if (req.method !== 'POST') return json(405, { message: 'Method Not Allowed' });
    const arrival = clock.now();
    const raw = verifiedBody(req.bodies, (body) => verifyLineSignature(secret, body, req.headers['x-line-signature']));
    if (raw === undefined) {
      refusals.warn('rejected LINE request: bad signature');
      return json(401, { message: 'Invalid signature' });
    }
    let events: LineEvent[];
    try {
      events = parseLineWebhook(raw);
    } catch (err) {
      if (err instanceof RequestError) return json(400, { message: err.message });
      throw err;
    }
    // Each event is claimed before the 200 (a store failure is a 500: LINE re-delivers); answers come later.
    try {
      await Promise.all(events.map((e) => onEvent(e, arrival)));
    } catch (err) {
      logger.error('could not handle a LINE event', errorLogFields(err));
      return json(500, { message: 'try again' });
    }
    return json(200, {});
  }

  const channel: Channel = {
    kind: 'line',
    instance,
    name: deps.name,
    answerer: deps.answerer,
    webhook: handle,
    delivery: 'send',
    // Plain text, in messages of at most 5,000 UTF-16 units (LINE shows no Markdown); pictures named, not linked.
    pages: (answer, parts) => splitByLength(markdownToText(withoutImages(answer, parts.map((p) => p.url))), LINE_TEXT_MAX),
    deliver,
    carries: { images: true, files: false },
    help: config.texts.channelHelp,
  };
  return channel;
}

export const line: ChannelKind<LineSettings> = {
  kind: 'line',
  path: '/line',
  variables: LINE_VARIABLES,
  // LINE fetches an answer's pictures from the answer page's URLs.
  usesPage: true,
  settings: (env) => lineSettings(env),
  secrets: (s) => [s.channelSecret, s.accessToken],
  create: (s, deps) => createLineChannel(s, deps),
};

