/**
 * How an answer becomes WeChat reply pages (docs/wechat.md): Markdown rendered down to plain text,
 * cut into pages of at most PAGE_BYTES with the "reply 1" hint, leaving room for what a reply adds
 * around a page (the quote line, the "more waiting" footer, the answer page's link).
 */
import type { PageConfig } from '../../core/settings';
import { linkMarkup, PAGE_TOKEN_CHARS } from '../../core/settings';
import type { Texts } from '../../core/texts';
import { fill } from '../../text/fill';
import { markdownToText, withoutImages } from '../../text/markdown';
import type { AnswerPart } from '../../store';
import { paginate } from '../../text/paging';

/** The longest question quote (lib/text/quote.ts `quote`): 30 code points of up to 4 bytes, and "…". */
const WORST_QUOTE = '\u{20000}'.repeat(30) + '…';

/**
 * Bytes a reply may add around a page: the quote line above it when several answers are waiting,
 * the "more waiting" footer after the last page, and with the answer page on, the link to it on
 * the first page. Pages are cut this much smaller.
 */
export function replyReserveBytes(texts: Texts, page?: PageConfig): number {
  const head = Buffer.byteLength(fill(texts.answerQuote, { question: WORST_QUOTE }) + '\n');
  const tail = Buffer.byteLength('\n\n' + fill(texts.moreWaiting, { count: 99 }));
  const longest = [texts.pageLinkFull, texts.pageLinkParts].reduce((a, b) => (Buffer.byteLength(a) >= Buffer.byteLength(b) ? a : b));
  const link = page?.enabled ? Buffer.byteLength('\n' + linkMarkup(page, 'x'.repeat(PAGE_TOKEN_CHARS), longest)) : 0;
  return head + tail + link;
}

/**
 * An answer's reply pages. Its pictures that are parts (sent as image messages, or on its page) are
 * named in the text (`[alt]`) rather than written as URLs.
 */
export function wechatPages(answer: string, pageBytes: number, texts: Texts, page: PageConfig, parts: readonly AnswerPart[] = []): string[] {
  const text = parts.length > 0 ? withoutImages(answer, parts.map((p) => p.url)) : answer;
  return paginate(markdownToText(text), pageBytes, texts.pageHint, replyReserveBytes(texts, page));
}
