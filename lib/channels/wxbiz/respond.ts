/**
 * What a WeCom callback answers (docs/wecom.md): plain text, and one mapping of failures shared by the
 * self-built app, customer service and the intelligent bot. A bad signature is 401 and a bad body its
 * 4xx, both logged through the channel's flood guard; our own failure is 500, so WeCom delivers again.
 */
import type { WebhookResponse } from '../../core/channel';
import { RequestError, SignatureError, errorLogFields } from '../../errors';
import type { Logger } from '../../util/log';

export const plain = (status: number, body: string): WebhookResponse => ({ status, contentType: 'text/plain; charset=utf-8', body });

/** The response to a callback that threw `err`; `what` names the channel in the log ("WeCom app"). */
export function callbackFailure(err: unknown, what: string, o: { refusals: Logger; logger: Logger; failed: string }): WebhookResponse {
  if (err instanceof SignatureError) {
    o.refusals.warn(`rejected ${what} request`, errorLogFields(err));
    return plain(401, 'Invalid signature');
  }
  if (err instanceof RequestError) {
    o.refusals.warn(`rejected ${what} body`, errorLogFields(err));
    return plain(err.status, err.status === 413 ? 'Payload Too Large' : `Bad Request: ${err.message}`);
  }
  o.logger.error(o.failed, errorLogFields(err));
  return plain(500, 'try again');
}
