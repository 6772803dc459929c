/**
 * The LINE Messaging API calls this bot makes (docs/channels.md "LINE"): reply (free, with the
 * event's token, once, within about a minute), push (counted against the monthly quota), and the
 * loading animation (1:1 chats only). Errors keep LINE's status and message.
 */
import { call, jsonOf } from '../../util/http';
import { BotError } from '../../errors';

export class LineApiError extends BotError {
  readonly status: number;
  constructor(status: number, message: string) {
    super(`line_${status}`, `LINE API ${status}: ${message}`);
    this.status = status;
  }
  /** The monthly message quota is used up: retrying is pointless until next month. */
  get quota(): boolean {
    return this.status === 429 && /monthly limit/i.test(this.message);
  }
}

/** A message: a text, or a picture LINE fetches itself (both URLs must be https). */
export type LineMessage = string | { image: string; preview: string };

export interface LineApi {
  reply(replyToken: string, messages: readonly LineMessage[]): Promise<void>;
  push(to: string, messages: readonly LineMessage[]): Promise<void>;
  loading(userId: string, seconds: number): Promise<void>;
}

/** At most 5 messages per reply or push. */
export const LINE_MESSAGES_PER_CALL = 5;
/** A text message holds at most 5,000 UTF-16 code units. */
export const LINE_TEXT_MAX = 5000;

export function createLineApi(opts: { apiBase: string; accessToken: string; timeoutMs?: number }): LineApi {
  const headers = { Authorization: `Bearer ${opts.accessToken}`, 'Content-Type': 'application/json' };
  const post = async (path: string, body: unknown) => {
    let res;
    try {
      res = await call({ method: 'POST', url: `${opts.apiBase}${path}`, body, headers, timeoutMs: opts.timeoutMs ?? 10_000 });
    } catch (err) {
      throw new LineApiError(0, `network error ${(err as { code?: string }).code ?? ''}`.trim());
    }
    if (res.status < 200 || res.status >= 300) {
      const message = (jsonOf(res.body) as { message?: unknown } | undefined)?.message;
      throw new LineApiError(res.status, typeof message === 'string' ? message.slice(0, 200) : 'error');
    }
  };
  const messages = (list: readonly LineMessage[]) =>
    list.map((m) => (typeof m === 'string' ? { type: 'text', text: m } : { type: 'image', originalContentUrl: m.image, previewImageUrl: m.preview }));
  return {
    reply: (replyToken, texts) => post('/v2/bot/message/reply', { replyToken, messages: messages(texts) }),
    push: (to, texts) => post('/v2/bot/message/push', { to, messages: messages(texts) }),
    loading: (userId, seconds) => post('/v2/bot/chat/loading/start', { chatId: userId, loadingSeconds: seconds }),
  };
}
