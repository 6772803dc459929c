/**
 * WeCom's callbacks (docs/wecom.md): every request, the URL check included, is signed with
 * `msg_signature` over the encrypted value and carries `timestamp` and `nonce`; the plaintext ends
 * with the receiveid (the CorpID, or '' for the intelligent bot). The GET handshake is not an echo:
 * `echostr` is ciphertext and the answer is its plaintext. Pure functions; the clock is passed in.
 */
import { RequestError } from '../../errors';
import { decryptFor } from './crypto';
import { verifyMsgSignature } from './signature';

export interface CallbackKeys {
  token: string;
  key: Buffer;
  /** The CorpID (self-built app, customer service) or '' (intelligent bot). */
  receiveId: string;
  /** SIGNATURE_TOLERANCE_S: a timestamp further from now is refused (0: no check). */
  toleranceS: number;
}

/** A query value as sent: `+` in base64 arrives as a space when the sender did not percent-encode it. */
const base64Param = (v: string | undefined) => (v === undefined ? undefined : v.replace(/ /g, '+'));

const signed = (q: Record<string, string | undefined>) => ({ msgSignature: q['msg_signature'], timestamp: q['timestamp'], nonce: q['nonce'] });

/** The URL check: the decrypted `echostr`, exactly what WeCom wants back. Throws `SignatureError`, `RequestError`. */
export function openEcho(c: CallbackKeys, q: Record<string, string | undefined>, nowMs: number): string {
  const echostr = base64Param(q['echostr']);
  if (!echostr) throw new RequestError('missing_echostr', 'the URL check has no echostr');
  verifyMsgSignature(c.token, signed(q), echostr, nowMs, c.toleranceS);
  return decryptFor(c.key, echostr, c.receiveId);
}

/** A callback's encrypted value (the body's Encrypt or `encrypt`), verified and decrypted. */
export function openCallback(c: CallbackKeys, q: Record<string, string | undefined>, encrypt: string | undefined, nowMs: number): string {
  if (encrypt === undefined || encrypt === '') throw new RequestError('bad_ciphertext', 'the body carries no encrypted message');
  verifyMsgSignature(c.token, signed(q), encrypt, nowMs, c.toleranceS);
  return decryptFor(c.key, encrypt, c.receiveId);
}
