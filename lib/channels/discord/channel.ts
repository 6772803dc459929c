/**
 * The Discord channel (docs/channels.md): POST /discord verified (401 otherwise: Discord probes
 * this when the URL is saved), PING answered, `/ask` deferred within Discord's 3 s, then the
 * original response edited with the answer and follow-ups past 2,000 characters, while the
 * interaction token lives (15 minutes). `/clear` forgets the channel's (or thread's) conversation.
 */
import { SEND_ATTEMPTS, answerMessages, verifiedBody } from '../../core/channel';
import type { Channel, ChannelDeps, ChannelKind, WebhookRequest, WebhookResponse } from '../../core/channel';
import { conversationKey } from '../../core/keys';
import { RequestError, SignatureError, errorLogFields } from '../../errors';
import type { MessageRecord } from '../../store';
import { markdownToText, withoutImages } from '../../text/markdown';
import { splitByLength } from '../../text/paging';
import type { DiscordApi } from './api';
import { DISCORD_TEXT_MAX, DiscordApiError, createDiscordApi } from './api';
import { discordKey, parseInteraction, verifyDiscordSignature } from './interactions';
import type { Interaction } from './interactions';
import type { DiscordSettings } from './settings';
import { DISCORD_VARIABLES, discordSettings } from './settings';
import { floodGuard } from '../../util/log';

/** Interaction tokens live 15 minutes; the last minute is left for the edit itself. */
export const INTERACTION_TOKEN_MS = 14 * 60_000;
/** An edit waits this long after the question arrived, so the deferred response is surely out first. */
const AFTER_ACK_MS = 1500;
/** While an answer is written, the original response is edited at most this often (Discord allows about 5 edits in 5 s). */
export const PROGRESS_EVERY_MS = 1500;

const json = (status: number, body: unknown): WebhookResponse => ({ status, contentType: 'application/json', body: JSON.stringify(body) });
const say = (content: string, ephemeral = false) => json(200, { type: 4, data: { content, allowed_mentions: { parse: [] }, ...(ephemeral ? { flags: 64 } : {}) } });

/** The answer so far as one message: its end is cut (with "…") while it is longer than a message. */
export function progressText(textSoFar: string): string {
  const plain = markdownToText(textSoFar);
  return plain.length <= DISCORD_TEXT_MAX - 2 ? `${plain} …` : `${plain.slice(0, DISCORD_TEXT_MAX - 2)} …`;
}

export function createDiscordChannel(settings: DiscordSettings, deps: ChannelDeps, api: DiscordApi = createDiscordApi({ apiBase: settings.apiBase, applicationId: settings.applicationId })): Channel {
  const { config, bot, store, clock, logger, instance } = deps;
  // Lines anyone can cause by sending bad requests: bounded, so a flood cannot flood the log.
  const refusals = floodGuard(logger);
  const key = discordKey(settings.publicKey);

  /** The answer so far, into the original response ("thinking…" until the first text). */
  async function update(q: MessageRecord, textSoFar: string): Promise<void> {
    const now = clock.now();
    if (!q.replyHandle || now < q.createdAt + AFTER_ACK_MS || now >= q.replyHandle.until || !textSoFar.trim()) return;
    await api.editOriginal(q.replyHandle.token, progressText(textSoFar));
  }

  async function deliver(id: string): Promise<void> {
    const q = await store.message(id);
    if (!q || (q.status !== 'answered' && q.status !== 'failed') || !q.replyHandle) return;
    const wait = q.createdAt + AFTER_ACK_MS - clock.now();
    if (wait > 0) await clock.sleep(wait);
    const now = clock.now();
    if (now >= q.replyHandle.until) {
      logger.warn('Discord answer too late: the interaction token has expired', { key: id });
      await store.dropOutbox(id);
      return;
    }
    const took = await store.takeAll(q, 'discord', 'discord', now);
    if (!took) return;
    const parts = answerMessages(took, config.texts);
    let sent = 0;
    try {
      // The answer's pictures as embeds Discord fetches from the answer page (docs/rich-answers.md).
      const pictures = deps.links && took.status === 'answered' ? await Promise.all((took.parts ?? []).map((p, i) => (p.kind === 'image' ? deps.links?.mediaUrl(id, i) : undefined))) : [];
      const urls = pictures.filter((u): u is string => u !== undefined);
      await api.editOriginal(q.replyHandle.token, parts[0] ?? '…', urls);
      for (const [i, u] of pictures.entries()) if (u !== undefined) await store.notePart(id, i, deps.name, 'embed');
      sent++;
      for (const part of parts.slice(1)) {
        await api.followUp(q.replyHandle.token, part);
        sent++;
      }
      logger.info('Discord answer sent', { key: id, messages: parts.length });
    } catch (err) {
      logger.warn('Discord answer could not be sent', { key: id, ...errorLogFields(err) });
      // Discord unreachable or failing (not a refusal): nothing arrived, so the sweep tries again while the token lives.
      const transient = err instanceof DiscordApiError && (err.status === 0 || err.status >= 500);
      if (transient && sent === 0 && (await store.returnAll(took, 'discord', deps.name, SEND_ATTEMPTS))) logger.info('Discord answer back in the outbox for a later try', { key: id });
    }
  }

  /** Before the token dies, a question still being answered says so (in this process; a best effort). */
  function watchToken(id: string, token: string, until: number): void {
    const timer = setTimeout(() => {
      void store
        .message(id)
        .then((q) => (q && q.status === 'pending' ? api.editOriginal(token, config.texts.channelTooSlow) : undefined))
        .catch((err) => logger.warn('Discord: could not say the answer is late', errorLogFields(err)));
    }, Math.max(0, until - clock.now() - 30_000));
    timer.unref?.();
  }

  async function command(i: Extract<Interaction, { kind: 'ask' | 'clear' }>, arrival: number): Promise<WebhookResponse> {
    const until = arrival + INTERACTION_TOKEN_MS;
    const user = conversationKey('discord', instance, [i.channelId]);
    const decision = await bot.receive({
      channel,
      user,
      key: `${user}:${i.id}`,
      sentAt: Math.floor(arrival / 1000),
      arrival,
      content: i.kind === 'ask' ? { type: 'text', text: i.question } : { type: 'command', name: '/clear' },
      replyHandle: { token: i.token, until },
    });
    if ('reply' in decision) return say(decision.reply);
    if ('queued' in decision) {
      if (decision.first) watchToken(decision.queued._id, i.token, until);
      return json(200, { type: 5 }); // deferred: "thinking…" until the original response is edited
    }
    return say(config.texts.channelUnsupported, true);
  }

  async function handle(req: WebhookRequest): Promise<WebhookResponse> {
    if (req.method !== 'POST') return json(405, { message: 'Method Not Allowed' });
    const arrival = clock.now();
    let stale = false;
    const raw = verifiedBody(req.bodies, (body) => {
      try {
        verifyDiscordSignature(key, body, req.headers['x-signature-ed25519'], req.headers['x-signature-timestamp'], arrival, settings.timestampToleranceS);
      } catch (err) {
        if (err instanceof SignatureError && err.code === 'stale_timestamp') stale = true;
        throw err;
      }
    });
    if (raw === undefined) {
      // A stale timestamp (a replay, or this server's clock off) is told apart: README's troubleshooting names it.
      refusals.warn(`rejected Discord request: ${stale ? 'stale_timestamp' : 'bad signature'}`);
      return json(401, { message: 'invalid request signature' });
    }
    let i: Interaction;
    try {
      i = parseInteraction(raw);
    } catch (err) {
      if (err instanceof RequestError) return json(400, { message: err.message });
      throw err;
    }
    if (i.kind === 'ping') return json(200, { type: 1 });
    if (i.kind === 'other') return say(config.texts.channelUnsupported, true);
    try {
      return await command(i, arrival);
    } catch (err) {
      logger.error('could not handle a Discord interaction', errorLogFields(err));
      return json(500, { message: 'try again' });
    }
  }

  const channel: Channel = {
    kind: 'discord',
    instance,
    name: deps.name,
    answerer: deps.answerer,
    webhook: handle,
    delivery: 'send',
    pages: (answer, parts) => splitByLength(markdownToText(withoutImages(answer, parts.map((p) => p.url))), DISCORD_TEXT_MAX),
    deliver,
    // The answer shows as it is written: the deferred response edited (docs/channels.md "Progressive").
    progress: { everyMs: PROGRESS_EVERY_MS, update },
    carries: { images: true, files: false },
    help: config.texts.channelHelp,
  };
  return channel;
}

export const discord: ChannelKind<DiscordSettings> = {
  kind: 'discord',
  path: '/discord',
  variables: DISCORD_VARIABLES,
  // Discord shows an answer's pictures from the answer page's URLs.
  usesPage: true,
  settings: (env, ctx) => discordSettings(env, ctx),
  secrets: (s) => [s.botToken],
  create: (s, deps) => createDiscordChannel(s, deps),
};

