/**
 * Split an answer into reply pages of at most `maxBytes` UTF-8 bytes each, hint included
 * (docs/wechat.md: WeChat drops text replies over about 2048 bytes). Cuts prefer a paragraph,
 * then a line, then a sentence end, then a space, and fall on grapheme-cluster boundaries, so a
 * flag 🇨🇳 or a family 👨‍👩‍👧‍👦 is never cut in half. Work is linear in the text: each page looks
 * only at its own window.
 */
import { fill } from './fill';

const utf8Len = (cp: number): number => (cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4);

export function byteLength(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** The largest code-point-aligned end such that text.slice(start, end) fits in `budget` bytes. */
function fitCodePoints(text: string, start: number, budget: number): number {
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

/**
 * The grapheme boundaries after `start` up to where `budget` bytes run out (ascending; the last is
 * the largest end that fits). Empty when the first cluster alone is over the budget.
 */
function fitGraphemes(text: string, start: number, budget: number): number[] {
  // Every UTF-16 unit is at least one byte, so `budget` units cover the budget; one more unit
  // shows whether the cluster at the window's edge goes on past it.
  const windowEnd = Math.min(text.length, start + budget + 1);
  const bounds: number[] = [];
  let bytes = 0;
  for (const { segment, index } of graphemes.segment(text.slice(start, windowEnd))) {
    const end = start + index + segment.length;
    if (end === windowEnd && windowEnd < text.length) break; // may continue past the window
    bytes += byteLength(segment);
    if (bytes > budget) break;
    bounds.push(end);
  }
  return bounds;
}

const SENTENCE_END = /[。！？!?；;…](?=[^。！？!?；;…]|$)|\.(?=\s)/g;

/** Where to cut `chunk` (a prefix of the rest): the latest good boundary past `minLen`, or -1. */
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
  return -1;
}

/** The largest value in ascending `sorted` that is ≤ `x`, or undefined. */
function floorOf(sorted: readonly number[], x: number): number | undefined {
  let lo = 0;
  let hi = sorted.length - 1;
  let found: number | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = sorted[mid] as number;
    if (v <= x) {
      found = v;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

/**
 * Pages for `text`. Every page but the last ends with "\n\n" + the filled `hintTemplate`
 * ({page}, {total}); every page, hint included, is at most `maxBytes - reserveBytes` bytes, so a
 * caller may add up to `reserveBytes` around a page (a quote line, a "more waiting" footer).
 */
export function paginate(text: string, maxBytes: number, hintTemplate: string, reserveBytes = 0): string[] {
  const body = text.trim();
  const limit = maxBytes - reserveBytes;
  if (byteLength(body) <= limit) return [body];
  const budget = limit - byteLength('\n\n' + fill(hintTemplate, { page: 9999, total: 9999 }));
  if (budget < 16) throw new RangeError(`page size ${maxBytes} leaves no room beside the hint and the reserve`);
  const chunks: string[] = [];
  let start = 0;
  while (start < body.length) {
    const bounds = fitGraphemes(body, start, budget);
    // A single cluster over the budget (hostile input) is cut between its code points.
    const end = bounds.length > 0 ? (bounds[bounds.length - 1] as number) : fitCodePoints(body, start, budget);
    if (end >= body.length) {
      chunks.push(body.slice(start));
      break;
    }
    const chunk = body.slice(start, end);
    const preferred = cutPoint(chunk, Math.floor(chunk.length * 0.4));
    // A preferred cut is snapped down to a cluster boundary (a space may carry combining marks).
    const snapped = preferred > 0 ? floorOf(bounds, start + preferred) : undefined;
    const cut = snapped !== undefined && snapped > start ? snapped : end;
    const piece = body.slice(start, cut).trimEnd();
    if (piece) chunks.push(piece);
    start = cut;
    while (start < body.length && /\s/.test(body[start] as string)) start++;
  }
  const total = chunks.length;
  return chunks.map((c, i) => (i < total - 1 ? `${c}\n\n${fill(hintTemplate, { page: i + 1, total })}` : c));
}

/**
 * Split `text` into pieces of at most `maxUnits` UTF-16 code units (JavaScript's length, which is
 * how LINE and Discord count: 5,000 and 2,000), preferring a paragraph break, then a line break,
 * then a space, within the last fifth of a piece; never inside a surrogate pair.
 */
export function splitByLength(text: string, maxUnits: number): string[] {
  const out: string[] = [];
  let rest = text.trim();
  while (rest.length > maxUnits) {
    let cut = -1;
    const floor = Math.floor(maxUnits * 0.8);
    for (const sep of ['\n\n', '\n', ' ']) {
      const at = rest.lastIndexOf(sep, maxUnits - sep.length);
      if (at >= floor) {
        cut = at + sep.length;
        break;
      }
    }
    if (cut === -1) {
      cut = maxUnits;
      const code = rest.charCodeAt(cut - 1);
      if (code >= 0xd800 && code <= 0xdbff) cut--; // keep a surrogate pair together
    }
    out.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  if (rest) out.push(rest);
  return out;
}
