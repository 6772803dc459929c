/**
 * Reply XML builders (docs/wechat.md). Every value goes through `cdata` (lib/channels/wxbiz/envelope.ts),
 * so no content can break the document; the encrypted envelope is shared with WeCom there.
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
