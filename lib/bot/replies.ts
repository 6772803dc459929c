/** Reply texts built from a question record, shared by the passive reply, `1` and push. */
import type { Texts } from '../config';
import { fill } from '../config';
import { failureText } from '../errors';
import type { MessageRecord } from '../store';

/** The question as quoted in placeholders and notices: one line, at most 30 characters. */
export function quote(question: string): string {
  const chars = [...question.replace(/\s+/g, ' ').trim()];
  return chars.length > 30 ? chars.slice(0, 30).join('') + '…' : chars.join('');
}

/** "「question」 reason" for an answer that failed. */
export function failedAnswerText(q: MessageRecord, texts: Texts): string {
  return fill(texts.failedAnswer, { question: quote(q.question ?? ''), reason: failureText(q.failure?.kind ?? 'failed', texts) });
}
