/**
 * Inbound XML → typed message (docs/wechat.md). A linear well-formedness check rejects
 * malformed and hostile input (DOCTYPE/entities, deep nesting, too many elements) before
 * fast-xml-parser builds the object; user text is taken exactly as sent (no trimming or folding).
 */
import { XMLParser } from 'fast-xml-parser';
import { RequestError } from '../../errors';

const MAX_DEPTH = 8;
const BLANK = /^\uFEFF?\s*$/;
const TAG_NAME = /[A-Za-z_][\w.:-]*/y;
const MAX_ELEMENTS = 256;

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

/**
 * One linear pass that checks well-formedness for what WeChat sends (elements, text, CDATA,
 * comments, an XML declaration): tag names match, one root element, nothing but whitespace
 * outside it. It refuses DOCTYPE/ENTITY declarations (entity expansion, XXE), nesting deeper than
 * MAX_DEPTH and more than MAX_ELEMENTS elements. CDATA is skipped, so user text that mentions
 * "<!DOCTYPE" is fine. fast-xml-parser then only has to build the object.
 */
const malformed = (why: string) => new RequestError('malformed_xml', `malformed XML: ${why}`);

/** Is xml[from, to) whitespace only (a byte-order mark allowed first)? */
function blank(xml: string, from: number, to: number): boolean {
  for (let k = from; k < to; k++) {
    const c = xml.charCodeAt(k);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09 && !(c === 0xfeff && k === 0) && !BLANK.test(xml[k] as string)) return false;
  }
  return true;
}

function checkMarkup(xml: string): void {
  const open: string[] = [];
  let elements = 0;
  let roots = 0;
  let i = 0;
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    if (open.length === 0 && !blank(xml, i, lt === -1 ? xml.length : lt)) throw malformed('text outside the root element');
    if (lt === -1) break;
    if (xml.startsWith('<![CDATA[', lt)) {
      const end = xml.indexOf(']]>', lt + 9);
      if (end === -1) throw malformed('unterminated CDATA section');
      if (open.length === 0) throw malformed('CDATA outside the root element');
      i = end + 3;
    } else if (xml.startsWith('<!--', lt)) {
      const end = xml.indexOf('-->', lt + 4);
      if (end === -1) throw malformed('unterminated comment');
      i = end + 3;
    } else if (xml.startsWith('<?', lt)) {
      const end = xml.indexOf('?>', lt + 2);
      if (end === -1) throw malformed('unterminated processing instruction');
      i = end + 2;
    } else if (xml.startsWith('<!', lt)) {
      throw new RequestError('hostile_xml', 'DOCTYPE and entity declarations are not accepted');
    } else {
      const gt = xml.indexOf('>', lt + 1);
      if (gt === -1) throw malformed('unterminated tag');
      const closing = xml.charCodeAt(lt + 1) === 47; // '/'
      TAG_NAME.lastIndex = closing ? lt + 2 : lt + 1;
      const name = TAG_NAME.exec(xml)?.[0];
      if (!name || TAG_NAME.lastIndex > gt) throw malformed('invalid tag');
      if (closing) {
        if (open.pop() !== name) throw malformed(`unexpected </${name}>`);
      } else {
        if (open.length === 0 && ++roots > 1) throw malformed('more than one root element');
        if (++elements > MAX_ELEMENTS) throw new RequestError('hostile_xml', `more than ${MAX_ELEMENTS} elements`);
        if (xml[gt - 1] !== '/') {
          open.push(name);
          if (open.length > MAX_DEPTH) throw new RequestError('hostile_xml', `elements nested deeper than ${MAX_DEPTH}`);
        }
      }
      i = gt + 1;
    }
  }
  if (open.length > 0) throw malformed(`<${open[open.length - 1]}> is not closed`);
  if (roots === 0) throw malformed('no root element');
}

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false, // MsgId is 64-bit: keep every value a string
  trimValues: false, // user text arrives exactly as typed
  processEntities: true,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
});

/**
 * Parse a WeChat XML document into the flat map of its root's children (`<xml><A>…</A></xml>`).
 * Throws `RequestError` (400/413) for oversized, malformed or hostile input.
 */
export function parseXmlFields(xml: string, maxBytes: number): Record<string, string> {
  // At most 3 bytes per UTF-16 unit: short bodies need no count.
  if (xml.length * 3 > maxBytes && Buffer.byteLength(xml, 'utf8') > maxBytes) throw new RequestError('too_large', `body is larger than ${maxBytes} bytes`, 413);
  checkMarkup(xml);
  let doc: unknown;
  try {
    doc = parser.parse(xml);
  } catch (cause) {
    throw new RequestError('malformed_xml', 'malformed XML', 400, { cause });
  }
  const root = (doc as Record<string, unknown>)['xml'];
  if (!root || typeof root !== 'object') throw new RequestError('not_wechat', 'root element <xml> is missing');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(root as Record<string, unknown>)) {
    if (typeof v === 'string') out[k] = v;
    else if (Array.isArray(v) && typeof v[0] === 'string') out[k] = v[0]; // a repeated element: the first wins
  }
  return out;
}

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
