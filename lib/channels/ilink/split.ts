/**
 * An answer cut into iLink messages (docs/ilink.md "Sending"): each at most `maxUnits` UTF-16 code
 * units (text beyond about 2,000 characters is cut off silently by the service; counting UTF-16
 * units is never more than it counts, however it counts), preferring a paragraph, then a line, then
 * a sentence end, then a space, and only ever between grapheme clusters, so an emoji sequence or a
 * flag is never split across two messages.
 */

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
const SENTENCE_END = /[。！？!?；;…]|\.(?=\s)/g;

/**
 * Grapheme boundaries (offsets) in `text` after `start`, up to `start + max` units, ascending. Whether
 * a boundary falls before a character depends on that whole character and what precedes it, so the
 * window never ends inside a surrogate pair, and the boundary at its very end (which depends on the
 * character after it) is not trusted unless the text ends there.
 */
function boundaries(text: string, start: number, max: number): number[] {
  let end = Math.min(text.length, start + max + 1);
  const low = (i: number) => i < text.length && (text.charCodeAt(i) & 0xfc00) === 0xdc00;
  if (low(end)) end++;
  const out: number[] = [];
  for (const { index, segment } of graphemes.segment(text.slice(start, end))) {
    const at = start + index + segment.length;
    if (at === end && end < text.length) break;
    if (at - start > max) break;
    out.push(at);
  }
  return out;
}

/** Where to cut `chunk` (a prefix of the rest): the latest good break at or after `min`, or -1. */
function preferredCut(chunk: string, min: number): number {
  let para = chunk.lastIndexOf('\n\n');
  // A heading (a short line of its own) goes with what follows it, not at the end of a message.
  const before = chunk.lastIndexOf('\n\n', para - 1);
  const tail = chunk.slice(before + 2, para);
  if (before >= min && tail.length <= 40 && !tail.includes('\n') && !/[。！？.!?]$/.test(tail)) para = before;
  if (para >= min) return para + 2;
  const line = chunk.lastIndexOf('\n');
  if (line >= min) return line + 1;
  let sentence = -1;
  for (const m of chunk.matchAll(SENTENCE_END)) sentence = (m.index ?? 0) + m[0].length;
  if (sentence >= min) return sentence;
  const space = chunk.lastIndexOf(' ');
  if (space >= min) return space + 1;
  return -1;
}

/** `text` in pieces of at most `maxUnits` UTF-16 units each, cut between grapheme clusters. */
export function splitMessages(text: string, maxUnits: number): string[] {
  if (maxUnits < 16) throw new RangeError('a message must hold at least 16 units');
  const body = text.trim();
  const out: string[] = [];
  let start = 0;
  while (start < body.length) {
    if (body.length - start <= maxUnits) {
      out.push(body.slice(start));
      break;
    }
    const bounds = boundaries(body, start, maxUnits);
    // A single cluster longer than a message (hostile input) is cut between its code points.
    let end = bounds.length > 0 ? (bounds[bounds.length - 1] as number) : start + maxUnits;
    if (bounds.length === 0) {
      const c = body.charCodeAt(end - 1);
      if (c >= 0xd800 && c <= 0xdbff) end--;
    }
    const chunk = body.slice(start, end);
    const preferred = preferredCut(chunk, Math.floor(chunk.length * 0.5));
    // Snap the preferred cut down to a cluster boundary (a space may carry combining marks).
    let cut = end;
    if (preferred > 0) {
      const at = start + preferred;
      for (let i = bounds.length - 1; i >= 0; i--) {
        const b = bounds[i] as number;
        if (b <= at) {
          if (b > start) cut = b;
          break;
        }
      }
    }
    const piece = body.slice(start, cut).trimEnd();
    if (piece) out.push(piece);
    start = cut;
    while (start < body.length && /\s/.test(body[start] as string)) start++;
  }
  return out;
}
