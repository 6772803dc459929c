/**
 * The channel contract (docs/channels.md). A channel other than WeChat is an adapter with two
 * functions: `handle` verifies one webhook request and turns each event into the bot's message
 * (`Bot.channelText`: one claim per event id, the same lifecycle, store and recovery as WeChat),
 * answering the request at once; `deliver` sends a settled answer its own way, once
 * (`Store.takeAll`), called by the worker's settle hook on whichever instance settles it.
 */
import type { Config } from '../config';
import { SignatureError, failureText } from '../errors';
import type { MessageRecord } from '../store';
import { markdownToText } from '../text/markdown';

/** Sends of one answer that fail before anything arrives (the platform unreachable) are tried this many times in all. */
export const SEND_ATTEMPTS = 3;

export interface ChannelRequest {
  method: string;
  /** The raw body; on laf, the few serialisations of the parsed body it may have been (lib/adapters/laf/entry.ts). */
  bodies: readonly string[];
  /** Lower-case header names. */
  headers: Record<string, string | undefined>;
}

export interface ChannelResponse {
  status: number;
  contentType: string;
  body: string;
}

export interface Channel {
  handle(req: ChannelRequest): Promise<ChannelResponse>;
  deliver(questionKey: string): Promise<void>;
}

/**
 * The first of the request's bodies whose signature `check` accepts (it throws `SignatureError`
 * otherwise); undefined when none does. One body on the Node server, a few on laf.
 */
export function verifiedBody(bodies: readonly string[], check: (body: string) => void): string | undefined {
  for (const body of bodies) {
    try {
      check(body);
      return body;
    } catch (err) {
      if (!(err instanceof SignatureError)) throw err;
    }
  }
  return undefined;
}

/** Which channel a conversation key belongs to: `line:…`, `discord:…`, else WeChat (an OpenID). */
export function channelOf(userKey: string): 'wechat' | 'line' | 'discord' {
  if (userKey.startsWith('line:')) return 'line';
  if (userKey.startsWith('discord:')) return 'discord';
  return 'wechat';
}

/** An answer as plain text for a chat app: the Markdown rendered down, or the failure's reason. */
export function answerText(q: MessageRecord, config: Config): string {
  if (q.status === 'failed') return failureText(q.failure?.kind ?? 'failed', config.texts, q.failure?.note);
  return markdownToText(q.answer ?? '');
}
