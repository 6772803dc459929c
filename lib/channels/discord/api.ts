/**
 * The Discord calls this bot makes (docs/channels.md "Discord"): edit the deferred response and add
 * follow-ups with the interaction token (valid 15 minutes, no bot token needed), and register the
 * slash commands with the bot token. Model output never pings anyone (`allowed_mentions`).
 */
import { call as send, jsonOf } from '../../util/http';
import { BotError } from '../../errors';

export class DiscordApiError extends BotError {
  readonly status: number;
  readonly discordCode: number;
  constructor(status: number, discordCode: number, message: string) {
    super(`discord_${status}`, `Discord API ${status}${discordCode ? ` (${discordCode})` : ''}: ${message}`);
    this.status = status;
    this.discordCode = discordCode;
  }
}

export interface DiscordApi {
  /** Edit the original response; `images`: picture URLs Discord fetches itself, shown as embeds (at most 10). */
  editOriginal(token: string, content: string, images?: readonly string[]): Promise<void>;
  followUp(token: string, content: string): Promise<void>;
  registerCommands(botToken: string, commands: readonly unknown[]): Promise<number>;
}

/** A message's content holds at most 2,000 characters. */
export const DISCORD_TEXT_MAX = 2000;

export function createDiscordApi(opts: { apiBase: string; applicationId: string; timeoutMs?: number }): DiscordApi {
  const call = async (method: 'PATCH' | 'POST' | 'PUT', path: string, body: unknown, headers: Record<string, string> = {}) => {
    let res;
    try {
      res = await send({ method, url: `${opts.apiBase}${path}`, body, headers: { 'Content-Type': 'application/json', ...headers }, timeoutMs: opts.timeoutMs ?? 10_000 });
    } catch (err) {
      throw new DiscordApiError(0, 0, `network error ${(err as { code?: string }).code ?? ''}`.trim());
    }
    const data = jsonOf(res.body);
    if (res.status < 200 || res.status >= 300) {
      const d = (data ?? {}) as { code?: unknown; message?: unknown };
      throw new DiscordApiError(res.status, typeof d.code === 'number' ? d.code : 0, typeof d.message === 'string' ? d.message.slice(0, 200) : 'error');
    }
    return data;
  };
  const message = (content: string) => ({ content, allowed_mentions: { parse: [] } });
  const hook = (token: string) => `/webhooks/${opts.applicationId}/${encodeURIComponent(token)}`;
  return {
    async editOriginal(token, content, images = []) {
      await call('PATCH', `${hook(token)}/messages/@original`, { ...message(content), ...(images.length > 0 ? { embeds: images.slice(0, 10).map((url) => ({ image: { url } })) } : {}) });
    },
    async followUp(token, content) {
      await call('POST', hook(token), message(content));
    },
    async registerCommands(botToken, commands) {
      const out = await call('PUT', `/applications/${opts.applicationId}/commands`, commands, { Authorization: `Bot ${botToken}` });
      return Array.isArray(out) ? out.length : 0;
    },
  };
}
