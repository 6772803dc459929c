/**
 * The Official Account's webhook: a WeChat HTTP request in, a response out (docs/wechat.md). The
 * laf function and the Node server are thin adapters around it. Errors become responses here and
 * nowhere else.
 */
import type { Decision } from '../../core/bot';
import type { WebhookRequest, WebhookResponse } from '../../core/channel';
import { RequestError, SignatureError, errorLogFields } from '../../errors';
import type { Logger } from '../../util/log';
import { aesKeyFrom, decryptMessage, encryptMessage } from '../wxbiz/crypto';
import { buildEncryptedEnvelope, buildTextReply } from './reply';
import { checkTimestamp, msgSignature, safeEqualHex, verifySignature } from '../wxbiz/signature';
import { parseXmlFields, toMessage } from './xml';
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

export function createWechatWebhook(deps: WechatWebhookDeps): (req: WebhookRequest) => Promise<WebhookResponse> {
  const { settings, clock, logger, maxBodyBytes } = deps;
  const { token, appId, timestampToleranceS } = settings;
  const aesKey = settings.aesKey ? aesKeyFrom(settings.aesKey) : undefined;

  async function post(q: Record<string, string | undefined>, body: string): Promise<WebhookResponse> {
    const arrival = clock.now();
    const outer = parseXmlFields(body, maxBodyBytes);
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
      fields = parseXmlFields(decryptMessage(aesKey, encrypt, appId).message, maxBodyBytes);
    } else {
      verifySignature(token, q, arrival, timestampToleranceS);
    }
    const msg = toMessage(fields);
    const decision: Decision = await deps.onMessage(msg, arrival);
    if ('drop' in decision) return decision;
    // `success` is never encrypted (docs/wechat.md). (`queued` is `send` channels' and never comes here.)
    if ('success' in decision || 'queued' in decision) return plain(200, 'success');
    const xml = buildTextReply({ toUser: msg.fromUser, fromUser: msg.toUser, createTime: clock.now() / 1000, content: decision.reply });
    const giveBack = decision.giveBack;
    const undelivered = giveBack ? { undelivered: () => void giveBack().catch((err) => logger.warn('could not give a page back', errorLogFields(err))) } : {};
    if (!encrypted || !aesKey || !appId) return { status: 200, contentType: 'application/xml; charset=utf-8', body: xml, ...undelivered };
    const timestamp = String(Math.floor(clock.now() / 1000));
    const nonce = q['nonce'] ?? '';
    const encrypt = encryptMessage(aesKey, xml, appId);
    const envelope = buildEncryptedEnvelope({ encrypt, signature: msgSignature(token, timestamp, nonce, encrypt), timestamp, nonce });
    return { status: 200, contentType: 'application/xml; charset=utf-8', body: envelope, ...undelivered };
  }

  return async function handle(req) {
    const q = req.query;
    try {
      if (req.method === 'GET') {
        verifySignature(token, q, clock.now(), timestampToleranceS);
        return plain(200, q['echostr'] ?? '');
      }
      if (req.method === 'POST') return await post(q, req.bodies[0] ?? '');
      return plain(405, 'Method Not Allowed');
    } catch (err) {
      if (err instanceof SignatureError) {
        logger.warn('rejected request', errorLogFields(err));
        return plain(401, 'Invalid signature');
      }
      if (err instanceof RequestError) {
        logger.warn('rejected body', errorLogFields(err));
        return plain(err.status, err.status === 413 ? 'Payload Too Large' : `Bad Request: ${err.message}`);
      }
      // Our own fault (store unreachable, a bug): no answer, so WeChat delivers again and the
      // question gets another chance instead of being acknowledged and lost.
      logger.error('could not handle message', errorLogFields(err));
      return { drop: true };
    }
  };
}
