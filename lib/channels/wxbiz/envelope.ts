/**
 * The encrypted envelopes replies travel in (docs/wechat.md, docs/wecom.md): the XML one of the
 * Official Account's safe mode and WeCom's self-built app, and the JSON one of WeCom's intelligent
 * bot. Every value goes through `cdata`, so no content can break the XML: `]]>` is split across
 * sections and characters XML 1.0 forbids are dropped. Pure functions; the clock is passed in.
 */
import { encryptMessage } from './crypto';
import { msgSignature } from './signature';

// Control characters other than tab/newline/CR, lone surrogates and U+FFFE/U+FFFF are not XML 1.0 characters.
// eslint-disable-next-line no-control-regex
const INVALID_XML_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

// A cheap test first: almost every text has none of these, and the full pattern (lookbehind) is slow.
// eslint-disable-next-line no-control-regex
const MAYBE_INVALID = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uD800-\uDFFF\uFFFE\uFFFF]/;

export function xmlSafe(text: string): string {
  return MAYBE_INVALID.test(text) ? text.replace(INVALID_XML_CHARS, '') : text;
}

export function cdata(text: string): string {
  return `<![CDATA[${xmlSafe(text).split(']]>').join(']]]]><![CDATA[>')}]]>`;
}

/** The safe-mode reply envelope, elements in the official order. */
export function buildEncryptedEnvelope(e: { encrypt: string; signature: string; timestamp: string; nonce: string }): string {
  return (
    '<xml>' +
    `<Encrypt>${cdata(e.encrypt)}</Encrypt>` +
    `<MsgSignature>${cdata(e.signature)}</MsgSignature>` +
    `<TimeStamp>${e.timestamp.replace(/\D/g, '')}</TimeStamp>` +
    `<Nonce>${cdata(e.nonce)}</Nonce>` +
    '</xml>'
  );
}

/** What sealing a reply needs: the callback's token and key, the receiveid, and the moment (ms). */
export interface Sealer {
  token: string;
  key: Buffer;
  receiveId: string;
}

/** `plain` encrypted and signed in the XML envelope, with `nonce` (the request's) and Unix seconds. */
export function sealXml(s: Sealer, plain: string, nonce: string, nowMs: number): string {
  const timestamp = String(Math.floor(nowMs / 1000));
  const encrypt = encryptMessage(s.key, plain, s.receiveId);
  return buildEncryptedEnvelope({ encrypt, signature: msgSignature(s.token, timestamp, nonce, encrypt), timestamp, nonce });
}

/**
 * `plain` (a JSON text) encrypted and signed in the intelligent bot's JSON envelope: all four fields,
 * `timestamp` in seconds and `nonce` the callback URL's own, as WeCom requires (docs/wecom.md).
 */
export function sealJson(s: Sealer, plain: string, nonce: string, nowMs: number): string {
  const timestamp = Math.floor(nowMs / 1000);
  const encrypt = encryptMessage(s.key, plain, s.receiveId);
  return JSON.stringify({ encrypt, msgsignature: msgSignature(s.token, String(timestamp), nonce, encrypt), timestamp, nonce });
}
