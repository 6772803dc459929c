/**
 * Reply builders (docs/wechat.md). XML: every value goes through `cdata`, so no content can break
 * the document: `]]>` is split across sections and characters XML 1.0 forbids are dropped. JSON,
 * for a push that came as JSON: the same fields under the same names, written by JSON.stringify.
 */

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

export interface TextReply {
  /** The user's OpenID (the inbound FromUserName). */
  toUser: string;
  /** The account's original id (the inbound ToUserName). */
  fromUser: string;
  /** Unix seconds. */
  createTime: number;
  content: string;
}

export function buildTextReply(r: TextReply): string {
  return (
    '<xml>' +
    `<ToUserName>${cdata(r.toUser)}</ToUserName>` +
    `<FromUserName>${cdata(r.fromUser)}</FromUserName>` +
    `<CreateTime>${Math.floor(r.createTime)}</CreateTime>` +
    `<MsgType>${cdata('text')}</MsgType>` +
    `<Content>${cdata(r.content)}</Content>` +
    '</xml>'
  );
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

/** The text reply to a push that came as JSON: the XML's fields as JSON keys (docs/wechat.md "JSON pushes"). */
export function buildTextReplyJson(r: TextReply): string {
  return JSON.stringify({ ToUserName: r.toUser, FromUserName: r.fromUser, CreateTime: Math.floor(r.createTime), MsgType: 'text', Content: r.content });
}

/** The safe-mode reply envelope in JSON, as the platform's example writes it (TimeStamp a number, Nonce a string). */
export function buildEncryptedEnvelopeJson(e: { encrypt: string; signature: string; timestamp: string; nonce: string }): string {
  return JSON.stringify({ Encrypt: e.encrypt, MsgSignature: e.signature, TimeStamp: Number(e.timestamp.replace(/\D/g, '')), Nonce: e.nonce });
}
