/**
 * WeChat request signatures (docs/wechat.md): SHA-1 over the lexicographically sorted parts joined
 * with no separator, lowercase hex. Pure functions; the clock is passed in.
 */
import * as crypto from 'crypto';
import { createHash, timingSafeEqual } from 'crypto';
import { SignatureError } from '../../errors';

/** One-shot hashing where Node has it (20.12+); laf's Node 20.10 takes the Hash object path. */
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;
const sha1Hex: (data: string) => string = oneShot ? (data) => oneShot('sha1', data, 'hex') : (data) => createHash('sha1').update(data).digest('hex');

export function sha1Signature(parts: readonly string[]): string {
  // Plain code-unit order, as the official example shows ('+' < digits < uppercase).
  return sha1Hex([...parts].sort().join(''));
}

/** Safe mode's msg_signature: the plain signature's parts plus the Encrypt value. */
export function msgSignature(token: string, timestamp: string, nonce: string, encrypt: string): string {
  return sha1Signature([token, timestamp, nonce, encrypt]);
}

/** Constant-time comparison of two hex digests; a prefix or a different length never matches. */
export function safeEqualHex(expected: string, given: string): boolean {
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(given.toLowerCase(), 'utf8');
  if (a.length !== b.length) {
    timingSafeEqual(a, a); // same work either way
    return false;
  }
  return timingSafeEqual(a, b);
}

export interface SignedQuery {
  signature?: string | undefined;
  timestamp?: string | undefined;
  nonce?: string | undefined;
}

/**
 * Check the freshness of `timestamp` against `nowMs`; `toleranceS` 0 disables the check
 * (WeChat documents no retry interval, so the tolerance is ours, default 300 s).
 */
export function checkTimestamp(timestamp: string | undefined, nowMs: number, toleranceS: number): void {
  if (!timestamp || !/^\d{1,12}$/.test(timestamp)) throw new SignatureError('missing_signature', 'timestamp is missing or not a number');
  if (toleranceS > 0 && Math.abs(nowMs / 1000 - Number(timestamp)) > toleranceS) {
    throw new SignatureError('stale_timestamp', `timestamp is more than ${toleranceS} s away from now`);
  }
}

/** Verify the plain `signature` of a GET handshake or POST. Throws `SignatureError`. */
export function verifySignature(token: string, q: SignedQuery, nowMs: number, toleranceS: number): void {
  if (!q.signature || q.nonce === undefined) throw new SignatureError('missing_signature', 'signature, timestamp or nonce is missing');
  checkTimestamp(q.timestamp, nowMs, toleranceS);
  const expected = sha1Signature([token, q.timestamp as string, q.nonce]);
  if (!safeEqualHex(expected, q.signature)) throw new SignatureError('bad_signature', 'signature does not match');
}

/**
 * Verify a `msg_signature` over `encrypt` (the body's `Encrypt`, or WeCom's encrypted `echostr`),
 * after the timestamp's freshness: safe mode's POSTs, and every WeCom callback, the GET handshake
 * included (docs/wecom.md). Throws `SignatureError`.
 */
export function verifyMsgSignature(token: string, q: { msgSignature?: string | undefined; timestamp?: string | undefined; nonce?: string | undefined }, encrypt: string, nowMs: number, toleranceS: number): void {
  if (!q.msgSignature || q.nonce === undefined) throw new SignatureError('missing_signature', 'msg_signature, timestamp or nonce is missing');
  checkTimestamp(q.timestamp, nowMs, toleranceS);
  if (!safeEqualHex(msgSignature(token, q.timestamp as string, q.nonce, encrypt), q.msgSignature)) throw new SignatureError('bad_signature', 'msg_signature does not match');
}
