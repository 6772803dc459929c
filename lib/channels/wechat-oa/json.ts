/**
 * A push in WeChat's JSON data format (docs/wechat.md "JSON pushes"): the platform offers XML or JSON
 * for some products, and an Official Account should be set to XML, but a JSON body is read too,
 * defensively. The keys are the XML tag names (`{"ToUserName": …, "MsgType": "text", …}`; safe mode
 * sends `{"ToUserName", "Encrypt"}`). The checks are as strict as for XML: the size first, then one
 * linear pass that refuses nesting deeper than MAX_DEPTH, more than MAX_VALUES values and a repeated
 * top-level key, before JSON.parse; the result is the same flat map of strings `toMessage` reads.
 * Numbers keep their exact text (a 64-bit MsgId is beyond a JavaScript number's precision).
 */
import { RequestError } from '../../errors';

const MAX_DEPTH = 8;
const MAX_VALUES = 256;
const NUMBER = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** Does this body look like JSON (its first non-blank character a `{`)? A byte-order mark is skipped. */
export function looksLikeJson(body: string): boolean {
  for (let i = 0; i < body.length; i++) {
    const c = body.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || (c === 0xfeff && i === 0)) continue;
    return c === 0x7b; // '{'
  }
  return false;
}

const malformed = (why: string) => new RequestError('malformed_json', `malformed JSON: ${why}`);

/**
 * One pass over the text: nesting depth and the count of values are bounded, and every top-level
 * key is seen once; the exact text of each top-level number is kept.
 */
function scan(text: string): Map<string, string> {
  const numbers = new Map<string, string>();
  const keys = new Set<string>();
  let depth = 0;
  let values = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === '"') {
      // A string: find its end, skipping escapes.
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length) throw malformed('unterminated string');
      let k = j + 1;
      while (k < text.length && /\s/.test(text[k] as string)) k++;
      if (depth === 1 && text[k] === ':') {
        let key: string;
        try {
          key = JSON.parse(text.slice(i, j + 1)) as string;
        } catch {
          throw malformed('bad key');
        }
        if (keys.has(key)) throw new RequestError('hostile_json', `the key "${key.slice(0, 40)}" appears twice`);
        keys.add(key);
        k++;
        while (k < text.length && /\s/.test(text[k] as string)) k++;
        NUMBER.lastIndex = k;
        const n = NUMBER.exec(text);
        if (n) numbers.set(key, n[0]);
      }
      i = j + 1;
      continue;
    }
    if (c === '{' || c === '[') {
      if (++depth > MAX_DEPTH) throw new RequestError('hostile_json', `values nested deeper than ${MAX_DEPTH}`);
    } else if (c === '}' || c === ']') {
      depth--;
    } else if (c === ':' || c === ',') {
      if (++values > MAX_VALUES) throw new RequestError('hostile_json', `more than ${MAX_VALUES} values`);
    }
    i++;
  }
  return numbers;
}

/**
 * Parse a WeChat JSON push into the flat map of its top-level strings and numbers (nested values,
 * as nested XML elements, are left out). Throws `RequestError` (400/413) for oversized, malformed or
 * hostile input, or anything but an object.
 */
export function parseJsonFields(body: string, maxBytes: number): Record<string, string> {
  if (body.length * 3 > maxBytes && Buffer.byteLength(body, 'utf8') > maxBytes) throw new RequestError('too_large', `body is larger than ${maxBytes} bytes`, 413);
  const text = body.charCodeAt(0) === 0xfeff ? body.slice(1) : body;
  const numbers = scan(text);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new RequestError('malformed_json', 'malformed JSON', 400, { cause });
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new RequestError('not_wechat', 'a JSON push must be an object');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    if (typeof v === 'string') out[k] = v;
    else if (typeof v === 'number') out[k] = numbers.get(k) ?? String(v);
  }
  return out;
}
