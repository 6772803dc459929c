/**
 * Split an answer into reply pages of at most `maxBytes` UTF-8 bytes each, hint included
 * (wechat-protocol.md §3: WeChat drops text replies over about 2048 bytes). Cuts prefer a
 * paragraph, then a line, then a sentence end, then a space, and never split a character.
 */
import { fill } from '../config';

const utf8Len = (cp: number): number => (cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4);

/** The largest index `end` such that text.slice(start, end) fits in `budget` bytes (code-point aligned). */
function fitEnd(text: string, start: number, budget: number): number {
  let bytes = 0;
  let i = start;
  while (i < text.length) {
    const cp = text.codePointAt(i) as number;
    const len = utf8Len(cp);
    if (bytes + len > budget) break;
    bytes += len;
    i += cp > 0xffff ? 2 : 1;
  }
  return i;
}

const SENTENCE_END = /[。！？!?；;…](?=[^。！？!?；;…]|$)|\.(?=\s)/g;

/** Where to cut `chunk` (a prefix of the rest): the latest good boundary past `minLen`. */
function cutPoint(chunk: string, minLen: number): number {
  let para = chunk.lastIndexOf('\n\n');
  // Don't leave a heading (a short single-line paragraph) orphaned at the end of a page.
  const before = chunk.lastIndexOf('\n\n', para - 1);
  const tail = chunk.slice(before + 2, para);
  if (before >= minLen && tail.length <= 40 && !tail.includes('\n') && !/[。！？.!?]$/.test(tail)) para = before;
  if (para >= minLen) return para + 2;
  const line = chunk.lastIndexOf('\n');
  if (line >= minLen) return line + 1;
  let sentence = -1;
  for (const m of chunk.matchAll(SENTENCE_END)) sentence = (m.index ?? 0) + m[0].length;
  if (sentence >= minLen) return sentence;
  const space = Math.max(chunk.lastIndexOf(' '), chunk.lastIndexOf('\t'));
  if (space >= minLen) return space + 1;
  // Hard cut: don't leave a high surrogate at the end.
  return chunk.length;
}

export function byteLength(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/**
 * Pages for `text`. Every page but the last ends with "\n\n" + the filled `hintTemplate`
 * ({page}, {total}); every page, hint included, is at most `maxBytes` bytes.
 */
export function paginate(text: string, maxBytes: number, hintTemplate: string): string[] {
  const body = text.trim();
  if (byteLength(body) <= maxBytes) return [body];
  const reserve = byteLength('\n\n' + fill(hintTemplate, { page: 9999, total: 9999 }));
  const budget = maxBytes - reserve;
  if (budget < 16) throw new RangeError(`page size ${maxBytes} leaves no room beside the hint`);
  const chunks: string[] = [];
  let start = 0;
  while (start < body.length) {
    const end = fitEnd(body, start, budget);
    if (end >= body.length) {
      chunks.push(body.slice(start));
      break;
    }
    const chunk = body.slice(start, end);
    const cut = cutPoint(chunk, Math.floor(chunk.length * 0.4));
    const piece = body.slice(start, start + cut).trimEnd();
    if (piece) chunks.push(piece);
    start += cut;
    while (start < body.length && /\s/.test(body[start] as string)) start++;
  }
  const total = chunks.length;
  return chunks.map((c, i) => (i < total - 1 ? `${c}\n\n${fill(hintTemplate, { page: i + 1, total })}` : c));
}
