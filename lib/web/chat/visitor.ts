/**
 * The web chat's visitor cookie (docs/web-chat.md "Visitors"): a random 128-bit id and, when
 * WEB_CHAT_ACCESS_CODE gates the page, a mark of the code it was admitted with, signed with a key
 * derived from the store's shared secret, so any instance can read it and no one can make up another
 * visitor's id or admit themselves. Changing the access code turns every admission away. Pure: the
 * secret comes in.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'crypto';
import { VISITOR_ID } from '../../channels/web/channel';

export interface Visitor {
  id: string;
  /** The access code it was admitted with (its mark), '' when it was not. */
  gate: string;
}

const mac = (secret: Buffer, purpose: string, value: string) => createHmac('sha256', secret).update(`${purpose}:${value}`).digest('base64url');

export const newVisitorId = (): string => randomBytes(16).toString('base64url');

/** The mark of an access code: who was admitted with it. */
export const gateOf = (secret: Buffer, code: string): string => mac(secret, 'web-chat-access-code', code).slice(0, 16);

/** The cookie's value. */
export function sealVisitor(secret: Buffer, v: Visitor): string {
  const payload = `${v.id}.${v.gate}`;
  return `${payload}.${mac(secret, 'web-chat-visitor', payload)}`;
}

/** The visitor a cookie value names, if its signature holds. */
export function openVisitor(secret: Buffer, value: string | undefined): Visitor | undefined {
  const m = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{0,16})\.([A-Za-z0-9_-]{43})$/.exec(value ?? '');
  if (!m || !VISITOR_ID.test(m[1] as string)) return undefined;
  const want = Buffer.from(mac(secret, 'web-chat-visitor', `${m[1]}.${m[2]}`));
  const got = Buffer.from(m[3] as string);
  return got.length === want.length && timingSafeEqual(got, want) ? { id: m[1] as string, gate: m[2] as string } : undefined;
}

/** The visitor's CSRF token: their page sends it with every change (X-CSRF-Token). */
export const csrfOf = (secret: Buffer, visitorId: string): string => mac(secret, 'web-chat-csrf', visitorId);

/** Constant-time equality of two strings of any length (their digests are compared). */
export function sameText(a: string, b: string): boolean {
  const da = createHmac('sha256', 'compare').update(a).digest();
  const db = createHmac('sha256', 'compare').update(b).digest();
  return timingSafeEqual(da, db);
}
