/**
 * Reply builders (docs/wechat.md). XML: every value goes through `cdata` (lib/channels/wxbiz/envelope.ts),
 * so no content can break the document; the encrypted envelope is shared with WeCom there. JSON, for a
 * push that came as JSON: the same fields under the same names, written by JSON.stringify.
 */
import { buildEncryptedEnvelope, cdata, xmlSafe } from '../wxbiz/envelope';

export { cdata, xmlSafe, buildEncryptedEnvelope };

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
/** The text reply to a push that came as JSON: the XML's fields as JSON keys (docs/wechat.md "JSON pushes"). */
export function buildTextReplyJson(r: TextReply): string {
  return JSON.stringify({ ToUserName: r.toUser, FromUserName: r.fromUser, CreateTime: Math.floor(r.createTime), MsgType: 'text', Content: r.content });
}

/** The safe-mode reply envelope in JSON, as the platform's example writes it (TimeStamp a number, Nonce a string). */
export function buildEncryptedEnvelopeJson(e: { encrypt: string; signature: string; timestamp: string; nonce: string }): string {
  return JSON.stringify({ Encrypt: e.encrypt, MsgSignature: e.signature, TimeStamp: Number(e.timestamp.replace(/\D/g, '')), Nonce: e.nonce });
}
