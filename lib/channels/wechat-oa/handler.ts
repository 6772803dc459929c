/**
 * The one handler: a WeChat HTTP request in, a response out. The laf function and the Node
 * server are thin adapters around it. Errors become responses here and nowhere else.
 */
import type { Config } from '../../config';
import { RequestError, SignatureError, errorLogFields } from '../../errors';
import type { Logger } from '../../util/log';
import { aesKeyFrom, decryptMessage, encryptMessage } from '../wxbiz/crypto';
import { buildEncryptedEnvelope, buildTextReply } from './reply';
import { checkTimestamp, msgSignature, safeEqualHex, verifySignature } from '../wxbiz/signature';
import { parseXmlFields, toMessage } from './xml';
import type { Bot, Decision } from '../../core/bot';
import type { Clock } from '../../util/clock';

export interface HandlerRequest {
  method: string;
  /** Query parameters; a repeated parameter counts by its first value. */
  query: Record<string, string | string[] | undefined>;
  /** The raw body text, exactly as WeChat sent it. */
  body: string;
}

/**
 * A response, or `drop`: don't answer at all (let this delivery time out so WeChat retries).
 * `undelivered`: the adapter calls it when the client was gone before the response could be sent
 * (the page it carries goes back to the user's inbox).
 */
export type HandlerResponse = { status: number; contentType: string; body: string; undelivered?: () => void } | { drop: true };

export type Handler = (req: HandlerRequest) => Promise<HandlerResponse>;

export interface HandlerDeps {
  config: Config;
  bot: Bot;
  clock: Clock;
  logger: Logger;
}

const plain = (status: number, body: string): HandlerResponse => ({ status, contentType: 'text/plain; charset=utf-8', body });

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export function createHandler(deps: HandlerDeps): Handler {
  const { config, bot, clock, logger } = deps;
  const { token, appId, timestampToleranceS } = config.wechat;
  const aesKey = config.wechat.aesKey ? aesKeyFrom(config.wechat.aesKey) : undefined;

  async function post(q: Record<string, string | undefined>, body: string): Promise<HandlerResponse> {
    const arrival = clock.now();
    const outer = parseXmlFields(body, config.server.maxBodyBytes);
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
      fields = parseXmlFields(decryptMessage(aesKey, encrypt, appId).message, config.server.maxBodyBytes);
    } else {
      verifySignature(token, q, arrival, timestampToleranceS);
    }
    const msg = toMessage(fields);
    const decision: Decision = await bot.handle(msg, arrival);
    if ('drop' in decision) return decision;
    // `success` is never encrypted (docs/wechat.md). (`queued` is other channels' and never comes here.)
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
    // No WECHAT_TOKEN (a LINE- or Discord-only bot): an empty token would let anyone sign, so nothing is served.
    if (!token) return plain(404, 'Not Found');
    // A repeated parameter counts by its first value; most queries have none, and need no copy.
    let q = req.query as Record<string, string | undefined>;
    for (const k in req.query) {
      if (Array.isArray(req.query[k])) {
        q = {};
        for (const [key, v] of Object.entries(req.query)) q[key] = first(v);
        break;
      }
    }
    try {
      if (req.method === 'GET') {
        verifySignature(token, q, clock.now(), timestampToleranceS);
        return plain(200, q['echostr'] ?? '');
      }
      if (req.method === 'POST') return await post(q, req.body);
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
