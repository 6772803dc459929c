/**
 * The iLink bot API client (docs/ilink.md): every call a JSON POST to `<base>/ilink/bot/<op>` with
 * the headers and `base_info` of lib/channels/ilink/wire.ts, answered with HTTP 200 whatever
 * happened; failure is a non-zero `ret` or `errcode` (either may be missing), `-14` an ended session.
 * The QR status is a GET on the fixed base (or the host a redirect names). The long poll can be
 * stopped at any moment (the held request is closed). Uses lib/util/http.ts, so the proxy
 * variables apply; the bot token goes only in the Authorization header, never to the CDN.
 */
import type { Readable } from 'stream';
import type { StopSignal } from '../../core/answerer';
import { BotError } from '../../errors';
import { NetworkError, call, open } from '../../util/http';
import { BASE_INFO, ilinkHeaders, imageItem, isSessionExpired, newClientId, parseIlinkJson, resultOf, uploadUrlRequest, APP_ID, CLIENT_VERSION, ITEM, idText } from './wire';
import type { IlinkResult, OutboundImage, UploadPlan } from './wire';

/** How a call failed: the session ended (-14), the service refused (`ret`/`errcode`), no answer, or an HTTP error. */
export type IlinkFailure = 'expired' | 'refused' | 'network' | 'http';

export class IlinkApiError extends BotError {
  readonly failure: IlinkFailure;
  readonly ret: number;
  readonly errcode: number;
  /** The service's own words (safe to log: it never carries the token). */
  readonly errmsg: string;
  readonly status: number;
  /** The host that did not answer (a network failure): named so the owner can tell which address to fix. */
  readonly host: string;
  constructor(op: string, failure: IlinkFailure, detail: { ret?: number; errcode?: number; errmsg?: string; status?: number; host?: string; cause?: unknown } = {}) {
    const what =
      failure === 'network'
        ? `no answer${detail.host ? ` from ${detail.host}` : ''} (${detail.errmsg ?? ''})`
        : failure === 'http'
          ? `HTTP ${detail.status ?? 0}`
          : `ret ${detail.ret ?? 0} errcode ${detail.errcode ?? 0}${detail.errmsg ? ` "${detail.errmsg}"` : ''}`;
    super(`ilink_${failure}`, `iLink ${op}: ${what}`, { cause: detail.cause });
    this.failure = failure;
    this.ret = detail.ret ?? 0;
    this.errcode = detail.errcode ?? 0;
    this.errmsg = detail.errmsg ?? '';
    this.status = detail.status ?? 0;
    this.host = detail.host ?? '';
  }
}

/** A logged-in session: where to call and with which token. */
export interface IlinkSession {
  baseUrl: string;
  token: string;
}

export interface QrCode {
  qrcode: string;
  /** What the QR code encodes (a liteapp.weixin.qq.com URL). */
  imgContent: string;
}

/** One `get_qrcode_status` answer (`status`, and on `confirmed` the credentials; `redirect_host`). */
export type QrStatusAnswer = Record<string, unknown> & { status: string };

export interface UpdatesBatch {
  msgs: unknown[];
  /** The cursor to send next (the one sent, when the service gave none). */
  cursor: string;
  /** The service's suggested hold (`longpolling_timeout_ms`), when it gave one. */
  holdMs: number | undefined;
}

export interface IlinkApi {
  getQrCode(localTokens: readonly string[]): Promise<QrCode>;
  /** One status long-poll at `base` (the fixed base, or a redirect host); a timeout or gateway error is `wait`. */
  qrStatus(base: string, qrcode: string, verifyCode: string | undefined, timeoutMs: number): Promise<QrStatusAnswer>;
  /** One `getupdates` long-poll; a client-side timeout is an empty batch with the same cursor. */
  getUpdates(s: IlinkSession, cursor: string, timeoutMs: number, stop: StopSignal): Promise<UpdatesBatch>;
  /** One text item, FINISH, a fresh client_id; the new message's id when the service gives one. */
  sendText(s: IlinkSession, to: string, text: string, contextToken: string | undefined): Promise<{ messageId: string | undefined }>;
  /** One image item (a picture already on the CDN), as `sendText` otherwise. */
  sendImage(s: IlinkSession, to: string, image: OutboundImage, contextToken: string | undefined): Promise<{ messageId: string | undefined }>;
  /** Where to upload a file `plan` describes for `to`: `upload_param`, and `upload_full_url` when given. */
  getUploadUrl(s: IlinkSession, plan: UploadPlan, to: string): Promise<{ uploadParam: string; fullUrl: string | undefined }>;
  /**
   * POST the ciphertext to the CDN (no auth headers); the download parameter (`x-encrypted-param`).
   * Fails as `http` with the status and `x-error-message` (a 200 without the header is one too), or `network`.
   */
  upload(url: string, ciphertext: Buffer, timeoutMs: number): Promise<string>;
  getTypingTicket(s: IlinkSession, user: string, contextToken: string | undefined): Promise<string>;
  sendTyping(s: IlinkSession, user: string, ticket: string, typing: boolean): Promise<void>;
  notify(s: IlinkSession, what: 'start' | 'stop'): Promise<void>;
  /** The CDN's bytes at `url` (no auth), at most `maxBytes`. */
  download(url: string, maxBytes: number): Promise<Buffer>;
}

const CALL_TIMEOUT_MS = 15_000;

function readBody(res: Readable, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) res.destroy(new NetworkError('ETOOLARGE', `the answer is larger than ${max} bytes`));
      else parts.push(c);
    });
    res.on('end', () => resolve(Buffer.concat(parts)));
    res.on('error', reject);
    res.on('aborted', () => reject(new NetworkError('ECONNRESET', 'the answer was cut off')));
  });
}

const netCode = (err: unknown) => (err as { code?: string }).code ?? 'ENETWORK';
const hostOf = (url: string) => {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
};

export function createIlinkApi(o: { apiBase: string; now?: () => number }): IlinkApi {
  const now = o.now ?? Date.now;

  /** The answer of an authenticated call, checked: throws on -14, any other failure, HTTP errors and silence. */
  async function post(op: string, s: IlinkSession | undefined, path: string, body: Record<string, unknown>, timeoutMs = CALL_TIMEOUT_MS): Promise<Record<string, unknown>> {
    let res;
    const base = s?.baseUrl ?? o.apiBase;
    try {
      res = await call({ method: 'POST', url: `${base}/ilink/bot/${path}`, headers: ilinkHeaders(s?.token), body: { ...body, base_info: BASE_INFO }, timeoutMs });
    } catch (err) {
      // The host only: the token is in a header, and a base URL could carry credentials.
      throw new IlinkApiError(op, 'network', { errmsg: netCode(err), host: hostOf(base), cause: err });
    }
    return checked(op, res.status, res.body);
  }

  function checked(op: string, status: number, raw: Buffer): Record<string, unknown> {
    if (status !== 200) throw new IlinkApiError(op, 'http', { status });
    const body = parseIlinkJson(raw.toString('utf8'));
    if (!body || typeof body !== 'object') throw new IlinkApiError(op, 'http', { status, errmsg: 'not JSON' });
    const r: IlinkResult = resultOf(body);
    if (isSessionExpired(r)) throw new IlinkApiError(op, 'expired', r);
    if (r.ret !== 0 || r.errcode !== 0) throw new IlinkApiError(op, 'refused', r);
    return body as Record<string, unknown>;
  }

  /** One item, FINISH, a fresh client_id (the official client sends one item per request). */
  async function sendItem(s: IlinkSession, to: string, item: Record<string, unknown>, contextToken: string | undefined): Promise<{ messageId: string | undefined }> {
    const out = await post('sendmessage', s, 'sendmessage', {
      msg: {
        from_user_id: '',
        to_user_id: to,
        client_id: newClientId(now()),
        message_type: 2,
        message_state: 2,
        ...(contextToken ? { context_token: contextToken } : {}),
        item_list: [item],
      },
    });
    return { messageId: idText(out['message_id']) };
  }

  return {
    async getQrCode(localTokens) {
      // POST with the recent tokens (so the service can say the bot is already bound); older clients GET.
      const out = await post('get_bot_qrcode', undefined, 'get_bot_qrcode?bot_type=3', { local_token_list: localTokens.slice(0, 10) });
      const qrcode = out['qrcode'];
      const imgContent = out['qrcode_img_content'];
      if (typeof qrcode !== 'string' || !qrcode || typeof imgContent !== 'string' || !imgContent) throw new IlinkApiError('get_bot_qrcode', 'http', { status: 200, errmsg: 'no qrcode in the answer' });
      return { qrcode, imgContent };
    },

    async qrStatus(base, qrcode, verifyCode, timeoutMs) {
      const q = `qrcode=${encodeURIComponent(qrcode)}${verifyCode !== undefined ? `&verify_code=${encodeURIComponent(verifyCode)}` : ''}`;
      let res;
      try {
        // Only the app headers: this call carries no token and no body.
        res = await call({ url: `${base}/ilink/bot/get_qrcode_status?${q}`, headers: { 'iLink-App-Id': APP_ID, 'iLink-App-ClientVersion': CLIENT_VERSION }, timeoutMs });
      } catch {
        return { status: 'wait' }; // a timeout or network error is another wait (the official client's rule)
      }
      if (res.status !== 200) return { status: 'wait' }; // a gateway 524 too
      const body = parseIlinkJson(res.body.toString('utf8'));
      const status = (body as { status?: unknown } | undefined)?.status;
      return typeof status === 'string' ? { ...(body as Record<string, unknown>), status } : { status: 'wait' };
    },

    getUpdates(s, cursor, timeoutMs, stop) {
      return new Promise<UpdatesBatch>((resolve, reject) => {
        const held = open({ method: 'POST', url: `${s.baseUrl}/ilink/bot/getupdates`, headers: ilinkHeaders(s.token), body: { get_updates_buf: cursor, base_info: BASE_INFO }, timeoutMs });
        let done = false;
        const finish = (fn: () => void) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          fn();
        };
        // The whole poll (head and body) within the timeout; the service's hold ends well before it.
        const timer = setTimeout(() => held.cancel(new NetworkError('ETIMEDOUT', `no answer within ${timeoutMs} ms`)), timeoutMs);
        stop.onStop(() => {
          held.cancel(new NetworkError('ESTOPPED', 'stopped'));
          finish(() => reject(new IlinkApiError('getupdates', 'network', { errmsg: 'stopped' })));
        });
        const empty = () => finish(() => resolve({ msgs: [], cursor, holdMs: undefined }));
        held.response
          .then(async (res) => {
            const raw = await readBody(res.body, 32 * 1024 * 1024);
            const out = checked('getupdates', res.status, raw);
            const next = typeof out['get_updates_buf'] === 'string' && out['get_updates_buf'] !== '' ? out['get_updates_buf'] : cursor;
            const hold = out['longpolling_timeout_ms'];
            finish(() => resolve({ msgs: Array.isArray(out['msgs']) ? (out['msgs'] as unknown[]) : [], cursor: next, holdMs: typeof hold === 'number' && hold > 0 ? hold : undefined }));
          })
          .catch((err: unknown) => {
            // A client-side timeout is an ordinary empty poll, as the official client treats it.
            if (err instanceof NetworkError && err.code === 'ETIMEDOUT') return empty();
            finish(() => reject(err instanceof IlinkApiError ? err : new IlinkApiError('getupdates', 'network', { errmsg: netCode(err), cause: err })));
          });
      });
    },

    sendText(s, to, text, contextToken) {
      return sendItem(s, to, { type: ITEM.TEXT, text_item: { text } }, contextToken);
    },

    sendImage(s, to, image, contextToken) {
      return sendItem(s, to, imageItem(image), contextToken);
    },

    async getUploadUrl(s, plan, to) {
      const out = await post('getuploadurl', s, 'getuploadurl', uploadUrlRequest(plan, to));
      const param = out['upload_param'];
      const full = out['upload_full_url'];
      const fullUrl = typeof full === 'string' && /^https?:\/\//.test(full) ? full : undefined;
      if ((typeof param !== 'string' || !param) && !fullUrl) throw new IlinkApiError('getuploadurl', 'refused', { errmsg: 'no upload_param' });
      return { uploadParam: typeof param === 'string' ? param : '', fullUrl };
    },

    async upload(url, ciphertext, timeoutMs) {
      let res;
      try {
        // POST, not PUT (PUT answers 404); the bot token never goes to the CDN.
        res = await call({ method: 'POST', url, headers: { 'Content-Type': 'application/octet-stream' }, body: ciphertext, timeoutMs }, 64 * 1024);
      } catch (err) {
        throw new IlinkApiError('cdn-upload', 'network', { errmsg: netCode(err), cause: err });
      }
      const said = res.headers['x-error-message'];
      const param = res.headers['x-encrypted-param'];
      if (res.status !== 200) throw new IlinkApiError('cdn-upload', 'http', { status: res.status, errmsg: String(Array.isArray(said) ? said[0] : (said ?? '')).slice(0, 200) });
      const value = Array.isArray(param) ? param[0] : param;
      if (!value) throw new IlinkApiError('cdn-upload', 'http', { status: 200, errmsg: 'no x-encrypted-param' });
      return value;
    },

    async getTypingTicket(s, user, contextToken) {
      const out = await post('getconfig', s, 'getconfig', { ilink_user_id: user, ...(contextToken ? { context_token: contextToken } : {}) });
      const ticket = out['typing_ticket'];
      if (typeof ticket !== 'string' || !ticket) throw new IlinkApiError('getconfig', 'refused', { errmsg: 'no typing_ticket' });
      return ticket;
    },

    async sendTyping(s, user, ticket, typing) {
      await post('sendtyping', s, 'sendtyping', { ilink_user_id: user, typing_ticket: ticket, status: typing ? 1 : 2 });
    },

    async notify(s, what) {
      await post(`notify${what}`, s, `msg/notify${what}`, {});
    },

    async download(url, maxBytes) {
      let res;
      try {
        res = await call({ url, timeoutMs: 30_000 }, maxBytes);
      } catch (err) {
        throw new IlinkApiError('cdn-download', 'network', { errmsg: netCode(err), cause: err });
      }
      if (res.status !== 200) throw new IlinkApiError('cdn-download', 'http', { status: res.status, errmsg: String(res.headers['x-error-message'] ?? '') });
      return res.body;
    },
  };
}
