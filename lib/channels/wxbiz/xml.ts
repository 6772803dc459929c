/**
 * WeChat's XML (docs/wechat.md, docs/wecom.md): the flat `<xml><A>…</A></xml>` documents the Official
 * Account and WeCom's self-built app and customer service post. A linear well-formedness check rejects
 * malformed and hostile input (DOCTYPE/entities, deep nesting, too many elements) before
 * fast-xml-parser builds the object; user text is taken exactly as sent (no trimming or folding).
 */
import { XMLParser } from 'fast-xml-parser';
import { RequestError } from '../../errors';

const MAX_DEPTH = 8;
const BLANK = /^\uFEFF?\s*$/;
const TAG_NAME = /[A-Za-z_][\w.:-]*/y;
const MAX_ELEMENTS = 256;

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
