/**
 * Reasoning never reaches the user (docs/openai.md). Models that think out loud put it in the text:
 * `<think>…</think>` (Qwen3, QwQ, R1-0528), only a closing `</think>` after the thoughts (DeepSeek-R1
 * served without a parser), or, from Dify apps built on such models, a leading
 * `<details>…</details>` block. This returns what is left to show, for a whole answer or for the
 * text so far while it streams: an unclosed `<think>` hides everything after it (still thinking),
 * and a tag cut in two at the end is held back until the next piece shows what it is.
 */

const OPEN = '<think>';
const CLOSE = '</think>';
const OPEN_RE = /<think>/i;
const CLOSE_RE = /<\/think>/i;
/** A Dify reasoning block: `<details …><summary>…</summary>…</details>` at the very start. */
const LEADING_DETAILS = /^\s*<details\b[^>]*>[\s\S]*?<\/details>\s*/i;

/** Could `tail` be the start of `tag` (a tag split across pieces)? */
function partialTagAtEnd(text: string): number {
  const lt = text.lastIndexOf('<');
  if (lt === -1 || text.length - lt >= CLOSE.length) return text.length;
  const tail = text.slice(lt).toLowerCase();
  return OPEN.startsWith(tail) || CLOSE.startsWith(tail) || '<details'.startsWith(tail) ? lt : text.length;
}

export function visibleAnswer(raw: string, streaming = false): string {
  // The common case, cheaply: no tag at all.
  if (!raw.includes('<')) return raw;
  let text = raw;
  let stripped = false;
  // A closing tag without an opening one before it: everything up to it was thinking.
  const firstClose = text.search(CLOSE_RE);
  const firstOpen = text.search(OPEN_RE);
  if (firstClose !== -1 && (firstOpen === -1 || firstClose < firstOpen)) {
    text = text.slice(firstClose + CLOSE.length);
    stripped = true;
  }
  // Every complete block, and an unclosed one at the end (the model is still thinking).
  let out = '';
  const open = new RegExp(OPEN_RE.source, 'gi');
  const close = new RegExp(CLOSE_RE.source, 'gi');
  let at = 0;
  for (;;) {
    open.lastIndex = at;
    const o = open.exec(text);
    if (!o) {
      out += text.slice(at);
      break;
    }
    stripped = true;
    out += text.slice(at, o.index);
    close.lastIndex = o.index + OPEN.length;
    const c = close.exec(text);
    if (!c) break;
    at = c.index + CLOSE.length;
  }
  if (streaming) {
    out = out.slice(0, partialTagAtEnd(out));
    // A <details> block still being written at the start: hide it until it closes.
    if (/^\s*<details\b/i.test(out) && !/<\/details>/i.test(out)) return '';
  }
  if (LEADING_DETAILS.test(out)) {
    out = out.replace(LEADING_DETAILS, '');
    stripped = true;
  }
  // What followed the thoughts usually starts on a fresh line: not part of the answer.
  return stripped ? out.replace(/^\s+/, '') : out;
}
