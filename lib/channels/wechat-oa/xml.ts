/**
 * Inbound XML → typed message (docs/wechat.md). The flat fields come from the shared parser
 * (lib/channels/wxbiz/xml.ts), which refuses malformed and hostile input; this turns them into the
 * Official Account's messages and events.
 */
import { RequestError } from '../../errors';
import { parseXmlFields } from '../wxbiz/xml';

export { parseXmlFields };

interface Common {
  /** The account's original id (gh_…). */
  toUser: string;
  /** The sender's OpenID. */
  fromUser: string;
  /** Unix seconds. */
  createTime: number;
}

export type InboundMessage = Common &
  (
    | { kind: 'text'; msgId: string; content: string }
    | { kind: 'image'; msgId: string; picUrl: string; mediaId: string }
    | { kind: 'voice'; msgId: string; mediaId: string; format: string; recognition: string }
    | { kind: 'video' | 'shortvideo'; msgId: string; mediaId: string; thumbMediaId: string }
    | { kind: 'location'; msgId: string; latitude: string; longitude: string; scale: string; label: string }
    | { kind: 'link'; msgId: string; title: string; description: string; url: string }
    | { kind: 'subscribe'; eventKey: string; ticket: string }
    | { kind: 'unsubscribe' }
    | { kind: 'click'; eventKey: string }
    | { kind: 'view'; eventKey: string }
    | { kind: 'scan'; eventKey: string; ticket: string }
    | { kind: 'unknown'; msgType: string; event: string; msgId: string }
  );

/** Identifiers and numbers in WeChat XML never carry meaningful surrounding whitespace; text does. */
const field = (f: Record<string, string>, name: string): string => (f[name] ?? '').trim();

/**
 * Turn the flat fields of a plaintext push into a typed message. Each kind is one object literal:
 * spreading a shared part costs ten times as much, on every request.
 */
export function toMessage(f: Record<string, string>): InboundMessage {
  const toUser = field(f, 'ToUserName');
  const fromUser = field(f, 'FromUserName');
  const msgType = field(f, 'MsgType');
  const createTimeText = field(f, 'CreateTime');
  if (!toUser || !fromUser || !msgType) throw new RequestError('not_wechat', 'ToUserName, FromUserName or MsgType is missing');
  // An OpenID is letters, digits, `_` and `-` (28 characters in practice). Anything else, a colon above
  // all, could read as another channel's conversation key (lib/core/keys.ts): refused.
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(fromUser)) throw new RequestError('not_wechat', 'FromUserName is not an OpenID');
  if (!/^\d{1,12}$/.test(createTimeText)) throw new RequestError('not_wechat', 'CreateTime is missing or not a number');
  const createTime = Number(createTimeText);
  const msgId = field(f, 'MsgId') || field(f, 'MsgID');
  switch (msgType) {
    case 'text':
      return { toUser, fromUser, createTime, kind: 'text', msgId, content: f['Content'] ?? '' };
    case 'image':
      return { toUser, fromUser, createTime, kind: 'image', msgId, picUrl: field(f, 'PicUrl'), mediaId: field(f, 'MediaId') };
    case 'voice':
      return { toUser, fromUser, createTime, kind: 'voice', msgId, mediaId: field(f, 'MediaId'), format: field(f, 'Format'), recognition: field(f, 'Recognition') };
    case 'video':
    case 'shortvideo':
      return { toUser, fromUser, createTime, kind: msgType, msgId, mediaId: field(f, 'MediaId'), thumbMediaId: field(f, 'ThumbMediaId') };
    case 'location':
      return {
        toUser,
        fromUser,
        createTime,
        kind: 'location',
        msgId,
        latitude: field(f, 'Location_X'),
        longitude: field(f, 'Location_Y'),
        scale: field(f, 'Scale'),
        label: field(f, 'Label'),
      };
    case 'link':
      return { toUser, fromUser, createTime, kind: 'link', msgId, title: field(f, 'Title'), description: field(f, 'Description'), url: field(f, 'Url') };
    case 'event': {
      const event = field(f, 'Event');
      const eventKey = field(f, 'EventKey');
      switch (event.toLowerCase()) {
        case 'subscribe':
          return { toUser, fromUser, createTime, kind: 'subscribe', eventKey, ticket: field(f, 'Ticket') };
        case 'unsubscribe':
          return { toUser, fromUser, createTime, kind: 'unsubscribe' };
        case 'click':
          return { toUser, fromUser, createTime, kind: 'click', eventKey };
        case 'view':
          return { toUser, fromUser, createTime, kind: 'view', eventKey };
        case 'scan':
          return { toUser, fromUser, createTime, kind: 'scan', eventKey, ticket: field(f, 'Ticket') };
        default:
          return { toUser, fromUser, createTime, kind: 'unknown', msgType, event, msgId: '' };
      }
    }
    default:
      return { toUser, fromUser, createTime, kind: 'unknown', msgType, event: '', msgId };
  }
}

/** Parse a plaintext push. */
export function parseInbound(xml: string, maxBytes: number): InboundMessage {
  return toMessage(parseXmlFields(xml, maxBytes));
}
