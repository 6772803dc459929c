/**
 * LINE webhooks (docs/channels.md "LINE"), pure: the signature check and the events this bot acts
 * on, parsed from the raw body. `x-line-signature` is the base64 HMAC-SHA256 of the raw body under
 * the channel secret, compared in constant time before anything else is read.
 */
import { createHash, createHmac, timingSafeEqual } from 'crypto';
import { RequestError, SignatureError } from '../../errors';

export function verifyLineSignature(channelSecret: string, rawBody: string, header: string | undefined): void {
  if (typeof header !== 'string' || header === '') throw new SignatureError('bad_signature', 'x-line-signature is missing');
  const expected = createHmac('sha256', channelSecret).update(rawBody, 'utf8').digest();
  // Digests of both, so a signature of any length is compared in the same constant time.
  const digest = (b: Buffer) => createHash('sha256').update(b).digest();
  if (!timingSafeEqual(digest(Buffer.from(header, 'base64')), digest(expected))) throw new SignatureError('bad_signature', 'x-line-signature does not match');
}

/** Who an event comes from, and whose conversation it is: the user (1:1), or the group or room. */
export interface LineSource {
  type: 'user' | 'group' | 'room';
  userId: string | undefined;
  /** The id push messages go to: the user, group or room. */
  to: string;
  /** The conversation's parts (lib/core/keys.ts): `[U…]`, `['g', C…]`, `['r', R…]` (history per group). */
  parts: string[];
}

export type LineEvent =
  | { kind: 'text'; id: string; redelivery: boolean; at: number; source: LineSource; replyToken: string | undefined; text: string; mentionsBot: boolean }
  | { kind: 'other-message'; id: string; redelivery: boolean; at: number; source: LineSource; replyToken: string | undefined }
  | { kind: 'follow'; id: string; redelivery: boolean; at: number; source: LineSource; replyToken: string | undefined }
  | { kind: 'unfollow'; id: string; redelivery: boolean; at: number; source: LineSource }
  | { kind: 'ignored'; id: string };

const ID = /^[A-Za-z0-9_-]{1,64}$/;

function sourceOf(s: unknown): LineSource | undefined {
  if (!s || typeof s !== 'object') return undefined;
  const o = s as Record<string, unknown>;
  const userId = typeof o['userId'] === 'string' && ID.test(o['userId']) ? o['userId'] : undefined;
  if (o['type'] === 'user' && userId) return { type: 'user', userId, to: userId, parts: [userId] };
  if (o['type'] === 'group' && typeof o['groupId'] === 'string' && ID.test(o['groupId'])) return { type: 'group', userId, to: o['groupId'], parts: ['g', o['groupId']] };
  if (o['type'] === 'room' && typeof o['roomId'] === 'string' && ID.test(o['roomId'])) return { type: 'room', userId, to: o['roomId'], parts: ['r', o['roomId']] };
  return undefined;
}

/** The text without the mentions of the bot (`@Bot 你好` → `你好`); index/length count UTF-16 units. */
function withoutBotMentions(text: string, mention: unknown): { text: string; mentionsBot: boolean } {
  const list = (mention as { mentionees?: unknown } | undefined)?.mentionees;
  if (!Array.isArray(list)) return { text, mentionsBot: false };
  const mine = list
    .filter((m): m is { index: number; length: number; isSelf: true } => !!m && typeof m === 'object' && (m as { isSelf?: unknown }).isSelf === true)
    .filter((m) => Number.isInteger(m.index) && Number.isInteger(m.length) && m.index >= 0 && m.length > 0 && m.index + m.length <= text.length)
    .sort((a, b) => b.index - a.index);
  let out = text;
  for (const m of mine) out = out.slice(0, m.index) + out.slice(m.index + m.length);
  return { text: out.trim(), mentionsBot: mine.length > 0 };
}

/** The events of a webhook body; one that is not LINE's shape is a 400 (after the signature passed). */
export function parseLineWebhook(rawBody: string): LineEvent[] {
  let body: unknown;
  try {
    body = JSON.parse(rawBody);
  } catch {
    throw new RequestError('bad_json', 'the body is not JSON');
  }
  const events = (body as { events?: unknown } | null)?.events;
  if (!Array.isArray(events)) throw new RequestError('bad_body', 'the body has no events array');
  return events.slice(0, 100).map((raw, i): LineEvent => {
    const e = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
    const id = typeof e['webhookEventId'] === 'string' && ID.test(e['webhookEventId']) ? e['webhookEventId'] : `no-id-${i}`;
    const source = sourceOf(e['source']);
    // A module channel is handling the chat (standby): the bot must send nothing.
    if (!source || e['mode'] === 'standby' || id.startsWith('no-id-')) return { kind: 'ignored', id };
    const redelivery = (e['deliveryContext'] as { isRedelivery?: unknown } | undefined)?.isRedelivery === true;
    const at = typeof e['timestamp'] === 'number' ? e['timestamp'] : 0;
    const replyToken = typeof e['replyToken'] === 'string' && e['replyToken'] !== '' ? e['replyToken'] : undefined;
    switch (e['type']) {
      case 'message': {
        const m = (e['message'] ?? {}) as Record<string, unknown>;
        if (m['type'] === 'text' && typeof m['text'] === 'string') {
          const { text, mentionsBot } = withoutBotMentions(m['text'], m['mention']);
          return { kind: 'text', id, redelivery, at, source, replyToken, text, mentionsBot };
        }
        return { kind: 'other-message', id, redelivery, at, source, replyToken };
      }
      case 'follow':
        return { kind: 'follow', id, redelivery, at, source, replyToken };
      case 'unfollow':
        return { kind: 'unfollow', id, redelivery, at, source };
      default:
        return { kind: 'ignored', id };
    }
  });
}
