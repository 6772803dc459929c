/**
 * The Discord channel (docs/channels.md): POST /discord verified (401 otherwise: Discord probes
 * this when the URL is saved), PING answered, `/ask` deferred within Discord's 3 s, then the
 * original response edited with the answer and follow-ups past 2,000 characters, while the
 * interaction token lives (15 minutes). `/clear` forgets the channel's (or thread's) conversation.
 */
import type { Bot } from '../bot/bot';
import type { Clock } from '../clock';
import type { Config } from '../config';
import { RequestError, SignatureError, errorLogFields } from '../errors';
import type { Logger } from '../log';
import type { Store } from '../store';
import { splitByLength } from '../text/paging';
import { SEND_ATTEMPTS, answerText, verifiedBody } from '../channels';
import type { Channel, ChannelRequest, ChannelResponse } from '../channels';
import type { DiscordApi } from './api';
import { DISCORD_TEXT_MAX, DiscordApiError } from './api';
import { discordKey, parseInteraction, verifyDiscordSignature } from './interactions';
import type { Interaction } from './interactions';

export interface DiscordDeps {
  config: Config;
  bot: Pick<Bot, 'channelText'>;
  store: Store;
  clock: Clock;
  logger: Logger;
  api: DiscordApi;
}

/** Interaction tokens live 15 minutes; the last minute is left for the edit itself. */
export const INTERACTION_TOKEN_MS = 14 * 60_000;
/** An edit waits this long after the question arrived, so the deferred response is surely out first. */
const AFTER_ACK_MS = 1500;

const json = (status: number, body: unknown): ChannelResponse => ({ status, contentType: 'application/json', body: JSON.stringify(body) });
const say = (content: string, ephemeral = false) => json(200, { type: 4, data: { content, allowed_mentions: { parse: [] }, ...(ephemeral ? { flags: 64 } : {}) } });

export function createDiscordChannel(deps: DiscordDeps): Channel {
  const { config, bot, store, clock, logger, api } = deps;
  const key = config.discord ? discordKey(config.discord.publicKey) : undefined;

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
    const parts = splitByLength(answerText(took, config), DISCORD_TEXT_MAX);
    let sent = 0;
    try {
      await api.editOriginal(q.replyHandle.token, parts[0] ?? '…');
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
      if (transient && sent === 0 && (await store.returnAll(took, 'discord', 'discord', SEND_ATTEMPTS))) logger.info('Discord answer back in the outbox for a later try', { key: id });
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

  async function command(i: Extract<Interaction, { kind: 'ask' | 'clear' }>, arrival: number): Promise<ChannelResponse> {
    const until = arrival + INTERACTION_TOKEN_MS;
    const decision = await bot.channelText(
      { channel: 'discord', user: `discord:${i.channelId}`, msgId: i.id, text: i.kind === 'ask' ? i.question : '/clear', sentAt: arrival, replyHandle: { token: i.token, until } },
      arrival,
    );
    if ('reply' in decision) return say(decision.reply);
    if ('queued' in decision) {
      if (decision.first) watchToken(decision.queued._id, i.token, until);
      return json(200, { type: 5 }); // deferred: "thinking…" until the original response is edited
    }
    return say(config.texts.channelUnsupported, true);
  }

  async function handle(req: ChannelRequest): Promise<ChannelResponse> {
    if (req.method !== 'POST') return json(405, { message: 'Method Not Allowed' });
    const arrival = clock.now();
    let stale = false;
    const raw = key
      ? verifiedBody(req.bodies, (body) => {
          try {
            verifyDiscordSignature(key, body, req.headers['x-signature-ed25519'], req.headers['x-signature-timestamp'], arrival, config.wechat.timestampToleranceS);
          } catch (err) {
            if (err instanceof SignatureError && err.code === 'stale_timestamp') stale = true;
            throw err;
          }
        })
      : undefined;
    if (raw === undefined) {
      // A stale timestamp (a replay, or this server's clock off) is told apart: README's troubleshooting names it.
      logger.warn(`rejected Discord request: ${stale ? 'stale_timestamp' : 'bad signature'}`);
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

  return { handle, deliver };
}

