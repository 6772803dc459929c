/** Reply texts built from a question record, shared by the passive reply, `1` and push. */
import type { Texts } from './texts';
import { fill } from '../text/fill';
import { failureText } from '../errors';
import type { MessageRecord } from '../store';
import { pageCount } from '../store';

import { quote } from '../text/quote';

export { quote };

/** "「question」 reason" for an answer that failed. */
export function failedAnswerText(q: MessageRecord, texts: Texts): string {
  return fill(texts.failedAnswer, { question: quote(q.question ?? ''), reason: failureText(q.failure?.kind ?? 'failed', texts, q.failure?.note) });
}

export interface PageContext {
  /** Several answers are waiting: say which question this one answers. */
  quoteQuestion: boolean;
  /** Answers still waiting after this one (said after its last page). */
  moreWaiting: number;
  /** A failure in the question's own reply says only the reason (the question is right above it). */
  passive?: boolean;
  /** A link to the answer page, put under the page (room for it is reserved: replyReserveBytes). */
  link?: string | undefined;
}

/**
 * Page `page` of a settled question as the user reads it. Pages are cut with room for the quote
 * line and the footer (lib/config.ts `replyReserveBytes`), so this never exceeds PAGE_BYTES.
 */
export function pageReply(q: MessageRecord, page: number, texts: Texts, ctx: PageContext): string {
  const failed = q.status === 'failed';
  const body = failed ? (ctx.passive ? failureText(q.failure?.kind ?? 'failed', texts, q.failure?.note) : failedAnswerText(q, texts)) : (q.pages?.[page] ?? '');
  // A failure notice already quotes its question.
  const head = ctx.quoteQuestion && !failed ? fill(texts.answerQuote, { question: quote(q.question ?? '') }) + '\n' : '';
  const last = page + 1 >= pageCount(q);
  const tail = last && ctx.moreWaiting > 0 ? '\n\n' + fill(texts.moreWaiting, { count: ctx.moreWaiting }) : '';
  return head + body + (ctx.link ? '\n' + ctx.link : '') + tail;
}
