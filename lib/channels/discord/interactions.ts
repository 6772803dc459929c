/**
 * Discord interactions (docs/channels.md "Discord"), pure: the Ed25519 signature over
 * `timestamp + body` with the application's public key (node:crypto, no dependency) and the
 * timestamp's freshness, and the
 * interactions this bot answers, parsed.
 */
import { createPublicKey, verify } from 'crypto';
import type { KeyObject } from 'crypto';
import { RequestError, SignatureError } from '../../errors';
import { checkTimestamp } from '../wxbiz/signature';

/** RFC 8410's SPKI header for a raw 32-byte Ed25519 public key. */
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');

export function discordKey(publicKeyHex: string): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519, Buffer.from(publicKeyHex, 'hex')]), format: 'der', type: 'spki' });
}

/**
 * Verify a request's Ed25519 signature, then the freshness of its timestamp (Unix seconds) against
 * `nowMs`: Discord documents no window, but without one a captured request could be replayed once its
 * interaction id is forgotten, so WeChat's tolerance applies (`toleranceS`, SIGNATURE_TOLERANCE_S; 0 = off).
 * Throws `SignatureError` (`bad_signature`, `stale_timestamp`).
 */
export function verifyDiscordSignature(
  key: KeyObject,
  body: string,
  signature: string | undefined,
  timestamp: string | undefined,
  nowMs: number,
  toleranceS: number,
): void {
  if (!signature || !timestamp || !/^[0-9a-f]{128}$/i.test(signature) || timestamp.length > 32) throw new SignatureError('bad_signature', 'X-Signature-Ed25519 / X-Signature-Timestamp missing or malformed');
  if (!verify(null, Buffer.from(timestamp + body, 'utf8'), key, Buffer.from(signature, 'hex'))) throw new SignatureError('bad_signature', 'X-Signature-Ed25519 does not verify');
  if (toleranceS > 0) checkTimestamp(timestamp, nowMs, toleranceS);
}

export type Interaction =
  | { kind: 'ping' }
  | { kind: 'ask'; id: string; token: string; channelId: string; question: string }
  | { kind: 'clear'; id: string; token: string; channelId: string }
  | { kind: 'other'; id: string };

const SNOWFLAKE = /^\d{5,25}$/;

export function parseInteraction(body: string): Interaction {
  let i: Record<string, unknown>;
  try {
    i = JSON.parse(body) as Record<string, unknown>;
  } catch {
    throw new RequestError('bad_json', 'the body is not JSON');
  }
  if (!i || typeof i !== 'object') throw new RequestError('bad_body', 'the body is not an interaction');
  if (i['type'] === 1) return { kind: 'ping' };
  const id = typeof i['id'] === 'string' && SNOWFLAKE.test(i['id']) ? i['id'] : '';
  const token = typeof i['token'] === 'string' && /^[\x21-\x7e]{10,500}$/.test(i['token']) ? i['token'] : '';
  // The conversation is the channel's or the thread's (a thread is a channel with its own id).
  const channelId = typeof i['channel_id'] === 'string' && SNOWFLAKE.test(i['channel_id']) ? i['channel_id'] : '';
  const data = (i['data'] ?? {}) as { name?: unknown; options?: { name?: unknown; value?: unknown }[] };
  if (i['type'] !== 2 || !id || !token || !channelId) return { kind: 'other', id };
  if (data.name === 'ask') {
    const q = Array.isArray(data.options) ? data.options.find((o) => o?.name === 'question')?.value : undefined;
    return typeof q === 'string' && q.trim() ? { kind: 'ask', id, token, channelId, question: q.trim() } : { kind: 'other', id };
  }
  if (data.name === 'clear') return { kind: 'clear', id, token, channelId };
  return { kind: 'other', id };
}

/** The slash commands this bot registers (`npm run discord -- register`). */
export const COMMANDS = [
  { name: 'ask', type: 1, description: 'Ask the assistant', options: [{ type: 3, name: 'question', description: 'Your question', required: true, max_length: 2000 }] },
  { name: 'clear', type: 1, description: 'Forget this channel’s conversation' },
] as const;
