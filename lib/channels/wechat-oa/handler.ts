/**
 * The Official Account's webhook: a WeChat HTTP request in, a response out (docs/wechat.md). The
 * laf function and the Node server are thin adapters around it. Errors become responses here and
 * nowhere else.
 *
 * The URL check (GET with `echostr`) is answered with status 200, `text/plain` and exactly the
 * `echostr` it carried: no quotes, no byte-order mark, nothing else (WeChat refuses anything more,
 * "200302 verify token fail"). Pushes are XML; a JSON body (the platform's other data format) is
 * read as strictly and answered in JSON (lib/channels/wechat-oa/json.ts).
 */
import type { Decision } from '../../core/bot';
import type { WebhookRequest, WebhookResponse } from '../../core/channel';
import { RequestError, SignatureError, errorLogFields } from '../../errors';
import type { Logger } from '../../util/log';
import { floodGuard } from '../../util/log';
import { aesKeyFrom, decryptMessage, encryptMessage } from '../wxbiz/crypto';
import { buildEncryptedEnvelope, buildEncryptedEnvelopeJson, buildTextReply, buildTextReplyJson } from './reply';
import { checkTimestamp, msgSignature, safeEqualHex, verifySignature } from '../wxbiz/signature';
import { parseXmlFields, toMessage } from './xml';
import { looksLikeJson, parseJsonFields } from './json';
import type { Clock } from '../../util/clock';
import type { WechatOaSettings } from './settings';
import type { InboundMessage } from './xml';

export interface WechatWebhookDeps {
  settings: WechatOaSettings;
  maxBodyBytes: number;
  /** What to answer a verified, parsed message with (lib/channels/wechat-oa/inbound.ts). */
  onMessage(msg: InboundMessage, arrival: number): Promise<Decision>;
  clock: Clock;
  logger: Logger;
}

const plain = (status: number, body: string): WebhookResponse => ({ status, contentType: 'text/plain; charset=utf-8', body });

/** A push's fields, from XML or (defensively) JSON: the same flat map either way. */
function parseFields(body: string, maxBytes: number): { fields: Record<string, string>; json: boolean } {
  const json = looksLikeJson(body);
  return { fields: json ? parseJsonFields(body, maxBytes) : parseXmlFields(body, maxBytes), json };
}

export function createWechatWebhook(deps: WechatWebhookDeps): (req: WebhookRequest) => Promise<WebhookResponse> {
  const { settings, clock, logger, maxBodyBytes } = deps;
  // Lines anyone can cause by sending bad requests: bounded, so a flood cannot flood the log.
  const refusals = floodGuard(logger);
  const { token, appId, timestampToleranceS } = settings;
  const aesKey = settings.aesKey ? aesKeyFrom(settings.aesKey) : undefined;
  let jsonNoted = false;

  async function post(q: Record<string, string | undefined>, body: string): Promise<WebhookResponse> {
    const arrival = clock.now();
    const { fields: outer, json } = parseFields(body, maxBodyBytes);
    const encrypted = q['encrypt_type'] === 'aes' && q['msg_signature'] !== undefined;
    let fields = outer;
    if (encrypted) {
      // Safe mode: msg_signature over the Encrypt value, not the plain signature (docs/wechat.md).
      checkTimestamp(q['timestamp'], arrival, timestampToleranceS);
      const encrypt = outer['Encrypt'];
      if (encrypt === undefined) throw new RequestError('bad_ciphertext', 'encrypt_type=aes but the body has no Encrypt');
      const expected = msgSignature(token, q['timestamp'] as string, q['nonce'] ?? '', encrypt);
      if (!safeEqualHex(expected, q['msg_signature'] ?? '')) throw new SignatureError('bad_signature', 'msg_signature does not match');
      if (!aesKey || !appId) {
        logger.error('WeChat sends encrypted messages but WECHAT_AES_KEY / WECHAT_APPID are not set');
        throw new RequestError('aes_not_configured', 'encrypted message, but safe mode is not configured');
      }
      fields = parseFields(decryptMessage(aesKey, encrypt, appId).message, maxBodyBytes).fields;
    } else {
      verifySignature(token, q, arrival, timestampToleranceS);
    }
    if (json && !jsonNoted) {
      jsonNoted = true;
      logger.warn('WeChat pushes JSON: choose XML as the data format (数据格式) in 域名与消息推送配置; JSON is read, and answered in JSON, only as a fallback');
    }
    const msg = toMessage(fields);
    const decision: Decision = await deps.onMessage(msg, arrival);
    if ('drop' in decision) return decision;
    // `success` is never encrypted (docs/wechat.md). (`queued` is `send` channels' and never comes here.)
    if ('success' in decision || 'queued' in decision) return plain(200, 'success');
    const reply = { toUser: msg.fromUser, fromUser: msg.toUser, createTime: clock.now() / 1000, content: decision.reply };
    const text = json ? buildTextReplyJson(reply) : buildTextReply(reply);
    const contentType = json ? 'application/json; charset=utf-8' : 'application/xml; charset=utf-8';
    const giveBack = decision.giveBack;
    const undelivered = giveBack ? { undelivered: () => void giveBack().catch((err) => logger.warn('could not give a page back', errorLogFields(err))) } : {};
    if (!encrypted || !aesKey || !appId) return { status: 200, contentType, body: text, ...undelivered };
    const timestamp = String(Math.floor(clock.now() / 1000));
    const nonce = q['nonce'] ?? '';
    const encrypt = encryptMessage(aesKey, text, appId);
    const sealed = { encrypt, signature: msgSignature(token, timestamp, nonce, encrypt), timestamp, nonce };
    return { status: 200, contentType, body: json ? buildEncryptedEnvelopeJson(sealed) : buildEncryptedEnvelope(sealed), ...undelivered };
  }

  return async function handle(req) {
    const q = req.query;
    try {
      if (req.method === 'GET') {
        verifySignature(token, q, clock.now(), timestampToleranceS);
        // Exactly the echostr, as text/plain: anything around it fails WeChat's check.
        return { status: 200, contentType: 'text/plain', body: q['echostr'] ?? '' };
      }
      if (req.method === 'POST') return await post(q, req.bodies[0] ?? '');
      return plain(405, 'Method Not Allowed');
    } catch (err) {
      if (err instanceof SignatureError) {
        refusals.warn('rejected request', errorLogFields(err));
        return plain(401, 'Invalid signature');
      }
      if (err instanceof RequestError) {
        refusals.warn('rejected body', errorLogFields(err));
        return plain(err.status, err.status === 413 ? 'Payload Too Large' : `Bad Request: ${err.message}`);
      }
      // Our own fault (store unreachable, a bug): no answer, so WeChat delivers again and the
      // question gets another chance instead of being acknowledged and lost.
      logger.error('could not handle message', errorLogFields(err));
      return { drop: true };
    }
  };
}
